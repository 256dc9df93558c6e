# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The pieces together: synthetic fields of every GZ2 type through GalaxyCutout."""

import numpy as np
import pytest

from galmorphsearch import GalaxyCutout
from galmorphsearch.catalogs import GZ2_SCHEME
from galmorphsearch.datasets import make_synthetic_sample


@pytest.fixture(scope="module")
def sample():
    # A 384-pixel field around a disc of the default 256-pixel field's size
    # (scale length 16 px): room for the rotated 3-Kron-radius crop of even
    # the largest late-type discs, so no cutout needs padding.
    return make_synthetic_sample(n_per_type=1, seed=42, shape=(384, 384), size=16.0)


def test_every_type_is_cut_cleanly_and_centred(sample):
    truth, fields = sample
    assert sorted(set(truth["morphology"])) == sorted(GZ2_SCHEME.types)
    for row, field in zip(truth, fields, strict=True):
        cutout = GalaxyCutout(field["g"], field["r"], field["i"], field.position,
                              size=64, rotate=True, seed=0)
        assert int(cutout.flag) == 0, (row["morphology"], cutout.flag)
        x, y = cutout.centroid
        assert np.hypot(x - field.truth["x"], y - field.truth["y"]) < 3, row["morphology"]
        # The Kron radius follows the galaxy's true half-light radius (both in
        # pixels here): about 1 to 2 half-light radii for every type.
        r_half_pix = field.truth["r_half"] / field.truth["pixel_scale"]
        ratio = cutout.kron_radius / r_half_pix
        assert 0.6 < ratio < 3, (row["morphology"], ratio)
        # The galaxy is what is bright in the middle of the cutout.
        lum = cutout.image.astype(float).mean(axis=2)
        centre = lum[24:40, 24:40].mean()
        border = np.concatenate([lum[:6].ravel(), lum[-6:].ravel()]).mean()
        assert centre > 3 * border + 5, row["morphology"]


def test_edge_on_comes_out_flat_after_rotation(sample):
    truth, fields = sample
    field = fields[list(truth["morphology"]).index("Edge-on")]
    cutout = GalaxyCutout(field["g"], field["r"], field["i"], field.position,
                          size=64, rotate=True, seed=0)
    lum = cutout.image.astype(float).mean(axis=2)
    lum -= np.median(lum)
    ys, xs = np.nonzero(lum > 0.3 * lum.max())
    # Major axis horizontal: the bright pixels spread far more in x than in y.
    assert np.ptp(xs) > 3 * max(np.ptp(ys), 1)
