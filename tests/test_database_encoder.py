# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A tiny latent database built with the real `~galmorphsearch.model.Encoder`."""

import numpy as np
import pytest

from galmorphsearch import GalaxyCutout
from galmorphsearch.database import LatentDatabase
from galmorphsearch.datasets import make_synthetic_sample
from galmorphsearch.utils import EncoderMismatchError

model = pytest.importorskip("galmorphsearch.model")


@pytest.fixture(scope="module")
def sample():
    truth, fields = make_synthetic_sample(n_per_type=1, types=["Er", "Sb", "SBc"], seed=0)
    cutouts = [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=64) for f in fields]
    return truth, cutouts


def test_build_with_encoder(sample, tmp_path):
    import torch

    torch.manual_seed(0)
    truth, cutouts = sample
    encoder = model.Encoder(input_size=64)
    db = LatentDatabase.build(truth, cutouts, encoder, scheme="gz2", carry=["r_half"],
                              catalog_name="synthetic")
    assert db.latents.shape == (3, 512)
    assert db.meta["ENCHASH"] == encoder.weights_hash
    assert db.meta["INSIZE"] == 64
    assert db.meta["LATDIM"] == 512
    shared = {k: v for k, v in cutouts[0].header_keywords().items()
              if all(c.header_keywords()[k] == v for c in cutouts)}
    assert "NMERGED" not in shared or "NMERGED" in db.meta
    for key, value in shared.items():
        assert db.meta[key] == value
    db.check_encoder(encoder)

    path = tmp_path / "db.fits"
    db.write(path)
    back = LatentDatabase.read(path)
    assert back.meta == db.meta
    assert back.latents.tobytes() == db.latents.tobytes()
    back.check_encoder(encoder)
    # The latents read back can go straight to torch (native byte order).
    assert torch.from_numpy(back.latents).shape == (3, 512)

    other = model.Encoder(input_size=64)
    if other.weights_hash != encoder.weights_hash:
        with pytest.raises(EncoderMismatchError, match="weights hash"):
            back.check_encoder(other)
    with pytest.raises(EncoderMismatchError, match="input size"):
        back.check_encoder(model.Encoder(input_size=32))
    assert np.isfinite(back.h_similarity_std)


def test_build_warns_only_for_parameters_that_change_the_images(sample):
    """A different seed of the sky draws is a run detail; a different stretch is not."""
    import warnings

    from galmorphsearch.utils import GalMorphSearchWarning

    truth, cutouts = sample
    keys = cutouts[0].header_keywords()
    run_only = {k: v for k, v in keys.items() if k not in GalaxyCutout.RUN_KEYWORDS}
    encoder = model.Encoder(input_size=64, preprocessing={**run_only, "PREPSEED": 12345})
    with warnings.catch_warnings():
        warnings.simplefilter("error", GalMorphSearchWarning)
        LatentDatabase.build(truth, cutouts, encoder, scheme="gz2")
    changed = model.Encoder(input_size=64,
                            preprocessing={**run_only, "STRETCH": keys["STRETCH"] + 1.0})
    with pytest.warns(GalMorphSearchWarning, match="STRETCH"):
        LatentDatabase.build(truth, cutouts, changed, scheme="gz2")
