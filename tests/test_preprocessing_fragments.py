# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Deblended pieces of a spiral are merged back; stars on its disc are not."""

import warnings

import numpy as np
import pytest
from scipy import ndimage

from galmorphsearch import GalaxyCutout
from galmorphsearch.datasets import make_synthetic_galaxy
from galmorphsearch.datasets._sersic import moffat_kernel

SEED = 3  # an Sc whose arms photutils' deblending cuts into several children
STAR = {"mag": 19.0, "dx": 1.2}  # a star 1.2 half-light radii east of the centre


def _masked_model_fraction(cutout, model):
    """Fraction of ``model``'s flux inside the crop that the cutout masks."""
    seg = cutout.segmentation.data
    other = ndimage.binary_dilation((seg > 0) & (seg != cutout.label), np.ones((3, 3), bool),
                                    iterations=cutout.params["mask_dilation"])
    other &= seg != cutout.label
    yy, xx = np.indices(seg.shape)
    t = np.radians(cutout._angle)
    xc, yc = cutout.centroid
    u = (xx - xc) * np.cos(t) + (yy - yc) * np.sin(t)
    v = -(xx - xc) * np.sin(t) + (yy - yc) * np.cos(t)
    inside = (np.abs(u) <= cutout.crop_size / 2) & (np.abs(v) <= cutout.crop_size / 2)
    return model[other & inside].sum() / model[inside].sum()


@pytest.fixture(scope="module")
def spiral():
    field = make_synthetic_galaxy("Sc", seed=SEED, neighbours=0, stars=0)
    model = make_synthetic_galaxy("Sc", seed=SEED, neighbours=0, stars=0, noise=False)
    bands = {b: field[b].data.astype(float) for b in "gri"}
    return field, bands, model["r"].data.astype(float)


@pytest.fixture(scope="module")
def cutouts(spiral):
    field, bands, _ = spiral
    pos = (field.truth["x"], field.truth["y"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        merged = GalaxyCutout(*bands.values(), pos, size=64, rotate=True, seed=0)
        shredded = GalaxyCutout(*bands.values(), pos, size=64, rotate=True, seed=0,
                                merge_fragments=False)
    return merged, shredded


def test_spiral_not_shredded(spiral, cutouts):
    field, _, model = spiral
    merged, shredded = cutouts
    # without merging, photutils cuts the arms off and they are masked
    assert _masked_model_fraction(shredded, model) > 0.05
    assert merged.params["n_merged"] >= 1
    assert _masked_model_fraction(merged, model) < 0.02
    x, y = merged.centroid
    assert np.hypot(x - field.truth["x"], y - field.truth["y"]) < 2
    assert merged.kron_radius > shredded.kron_radius
    keywords = merged.header_keywords()
    assert keywords["MRGFRAG"] is True and keywords["MRGCONTR"] == 0.45
    assert keywords["NMERGED"] == merged.params["n_merged"]


def test_star_on_disc_still_masked(spiral):
    field, bands, model = spiral
    kernel = moffat_kernel(1.4 / 0.396)
    kernel /= kernel.sum()
    h = kernel.shape[0] // 2
    r_half = field.truth["r_half"] / field.truth["pixel_scale"]
    sx = int(round(field.truth["x"] + STAR["dx"] * r_half))
    sy = int(round(field.truth["y"]))
    with_star = {b: d.copy() for b, d in bands.items()}
    for data in with_star.values():
        data[sy - h:sy + h + 1, sx - h:sx + h + 1] += 10 ** (-0.4 * (STAR["mag"] - 22.5)) * kernel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cut = GalaxyCutout(*with_star.values(), (field.truth["x"], field.truth["y"]), size=64,
                           rotate=True, seed=0)
    star_label = cut.segmentation.data[sy, sx]
    assert star_label not in (0, cut.label)
    # the star (and its dilated footprint) is replaced in the crop ...
    assert not cut.target_mask.all() and cut.mask.any()
    # ... with the watershed basin photutils gives it (about a tenth of the
    # disc's light here), while the arms are merged back
    assert cut.params["n_merged"] >= 1
    assert _masked_model_fraction(cut, model) < 0.15
    x, y = cut.centroid
    assert np.hypot(x - field.truth["x"], y - field.truth["y"]) < 3  # basin taken off


def test_merge_parameters_validated():
    with pytest.raises(ValueError, match="merge_radius"):
        GalaxyCutout(np.ones((8, 8)), np.ones((8, 8)), np.ones((8, 8)), (4, 4),
                     merge_radius=0)
