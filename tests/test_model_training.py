# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the Lightning training of the autoencoder (tiny CPU runs)."""

import math

import numpy as np
import pytest
import torch
from astropy.table import Table

from galmorphsearch.model import (
    HISTORY_FILENAME,
    Autoencoder,
    Encoder,
    class_balanced_weights,
    split_indices,
    train_autoencoder,
)

TINY = {"input_size": 32, "decoder_channels": (8,), "fc_channels": 16, "latent_dim": 32,
        "batch_size": 8, "accelerator": "cpu", "devices": 1}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)


def test_class_balanced_weights():
    labels = np.array(["Er"] * 90 + ["Sb"] * 9 + ["Sd"])
    w = class_balanced_weights(labels)
    assert w.shape == (100,)
    for name in ("Er", "Sb", "Sd"):
        assert math.isclose(w[labels == name].sum(), 1.0)
    gen = torch.Generator().manual_seed(0)
    draws = torch.multinomial(torch.as_tensor(w), 30000, replacement=True, generator=gen)
    counts = np.bincount(np.unique(labels, return_inverse=True)[1][draws.numpy()])
    np.testing.assert_allclose(counts / 30000, 1 / 3, atol=0.02)
    from galmorphsearch.model.training import _EpochSampler

    sampler = _EpochSampler(len(labels) * 300, seed=0, weights=np.tile(w, 300))
    drawn = np.tile(labels, 300)[list(sampler)]
    for name in ("Er", "Sb", "Sd"):
        assert abs((drawn == name).mean() - 1 / 3) < 0.02
    assert list(sampler) == list(sampler)  # same epoch, same draws
    with pytest.raises(ValueError, match="non-empty 1D"):
        class_balanced_weights([])


def test_split_indices():
    train, val, test = split_indices(25, seed=3)
    assert (len(train), len(val), len(test)) == (15, 5, 5)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(25))
    again = split_indices(25, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(split_indices(25, seed=4)[1], val)
    with pytest.raises(ValueError, match="no training samples"):
        split_indices(2, 0.5, 0.5)
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(10, 1.5)


def test_train_checkpoint_and_resume(images, tmp_path):
    labels = ["Er", "Sb", "Sc"] * 8
    ckpt = tmp_path / "ckpt"
    model, history = train_autoencoder(images, labels, max_epochs=1, checkpoint_dir=ckpt,
                                       **TINY)
    assert isinstance(model, Autoencoder) and isinstance(model.encoder, Encoder)
    assert not model.training
    assert history.colnames == ["epoch", "step", "train_loss", "val_loss"]
    assert len(history) == 1 and history["step"][0] == 2  # 14 training images
    assert np.isfinite(history["train_loss"]).all() and np.isfinite(history["val_loss"]).all()
    assert np.isfinite(history.meta["TESTLOSS"])
    assert (history.meta["NTRAIN"], history.meta["NVAL"], history.meta["NTEST"]) == (14, 5, 5)
    assert history.meta["BALANCED"]
    assert (ckpt / "last.ckpt").is_file()
    assert len(list(ckpt.glob("best-*.ckpt"))) == 1
    on_disk = Table.read(ckpt / HISTORY_FILENAME)
    np.testing.assert_allclose(on_disk["train_loss"], history["train_loss"])
    z = model.encoder.encode(images[:2])
    assert z.shape == (2, 32) and np.isfinite(z).all()

    before = model.encoder.weights_hash
    model2, history2 = train_autoencoder(images, labels, max_epochs=2, checkpoint_dir=ckpt,
                                         resume="last", **TINY)
    assert len(history2) == 2
    np.testing.assert_allclose(history2["train_loss"][0], history["train_loss"][0])
    assert history2["step"][-1] == 4
    assert model2.encoder.weights_hash != before
    assert len(Table.read(ckpt / HISTORY_FILENAME)) == 2
    # the checkpoint gives the model back, through Lightning or safely as a state dict
    from galmorphsearch.model import AutoencoderModule

    module = AutoencoderModule.load_from_checkpoint(ckpt / "last.ckpt", map_location="cpu")
    assert module.autoencoder.encoder.weights_hash == model2.encoder.weights_hash
    enc = Encoder.from_state_dict_file(ckpt / "last.ckpt", input_size=32, latent_dim=32)
    assert enc.weights_hash == model2.encoder.weights_hash
    # the resumed run continues exactly as an uninterrupted one
    model3, history3 = train_autoencoder(images, labels, max_epochs=2, **TINY)
    assert model3.encoder.weights_hash == model2.encoder.weights_hash
    np.testing.assert_allclose(history3["train_loss"], history2["train_loss"])


def test_train_max_steps_no_split(images):
    tensor = torch.from_numpy(np.moveaxis(images[:12], -1, 1).copy()).float() / 255
    rng_state = torch.get_rng_state()
    model, history = train_autoencoder(tensor, max_epochs=5, max_steps=3, val_fraction=0,
                                       test_fraction=0, augment=False, **TINY)
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    assert history["step"][-1] == 3
    assert np.isnan(history["val_loss"]).all()
    assert np.isnan(history.meta["TESTLOSS"])
    # same seed, same result
    model2, _ = train_autoencoder(tensor, max_epochs=5, max_steps=3, val_fraction=0,
                                  test_fraction=0, augment=False, **TINY)
    assert model2.encoder.weights_hash == model.encoder.weights_hash


def test_train_errors(images, tmp_path):
    with pytest.raises(ValueError, match="one label per image"):
        train_autoencoder(images, labels=[0, 1], **TINY)
    with pytest.raises(ValueError, match="batch_size"):
        train_autoencoder(images, **{**TINY, "batch_size": 0})
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        train_autoencoder(images, resume="last", **TINY)
    with pytest.raises(FileNotFoundError, match="to resume from"):
        train_autoencoder(images, resume=tmp_path / "x.ckpt", **TINY)
