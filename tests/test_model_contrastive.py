# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of contrastive training (Wei et al. 2022, SimCLR): loss, views, tiny CPU runs."""

import math

import numpy as np
import pytest
import torch
from astropy.table import Table
from lightning.pytorch.callbacks import Callback

from galmorphsearch.model import (
    HISTORY_FILENAME,
    ContrastiveModule,
    Encoder,
    TwoViewDataset,
    info_nce_loss,
    train_contrastive,
)

TINY = {"architecture": "resnet18-trimmed", "input_size": 32, "batch_size": 4,
        "accelerator": "cpu", "devices": 1}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (16, 48, 48, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------
# loss
def test_info_nce_loss_by_hand():
    z1 = np.array([[1.0, 0.0], [0.6, 0.8]])
    z2 = np.array([[3.0, 4.0], [0.0, 2.0]])  # not unit length: the loss uses cosines
    t = 0.5
    z = np.concatenate([z1, z2])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    sim = z @ z.T / t
    positives = [2, 3, 0, 1]
    expected = np.mean([
        -sim[i, positives[i]] + np.log(sum(np.exp(sim[i, k]) for k in range(4) if k != i))
        for i in range(4)])
    got = info_nce_loss(torch.tensor(z1), torch.tensor(z2), temperature=t)
    assert got.dtype == torch.float32 and got.ndim == 0
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    # swapping the views or the images changes nothing
    assert math.isclose(float(info_nce_loss(torch.tensor(z2), torch.tensor(z1), t)),
                        expected, rel_tol=1e-6)
    assert math.isclose(float(info_nce_loss(torch.tensor(z1[::-1].copy()),
                                            torch.tensor(z2[::-1].copy()), t)),
                        expected, rel_tol=1e-6)


def test_info_nce_loss_aligned_shuffled_uninformative():
    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(16, 32, generator=gen)
    aligned = z1 + 0.05 * torch.randn(16, 32, generator=gen)
    shuffled = aligned.roll(1, dims=0)
    low, high = info_nce_loss(z1, aligned), info_nce_loss(z1, shuffled)
    assert float(low) < 0.1 < math.log(31) < float(high)
    # at a high temperature nothing is told apart: log(2B - 1)
    assert math.isclose(float(info_nce_loss(z1, shuffled, temperature=1e4)), math.log(31),
                        rel_tol=1e-3)
    # a lower temperature sharpens the contrast
    assert float(info_nce_loss(z1, aligned, temperature=0.05)) < float(low)
    # gradients reach both views
    a, b = z1.clone().requires_grad_(), shuffled.clone().requires_grad_()
    info_nce_loss(a, b).backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    # a single pair has no negatives
    assert float(info_nce_loss(z1[:1], shuffled[:1])) == 0.0


def test_info_nce_loss_float32_under_autocast():
    gen = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    exact = info_nce_loss(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = info_nce_loss(z1.bfloat16(), z2.bfloat16())
    assert mixed.dtype == torch.float32
    assert math.isclose(float(mixed), float(exact), rel_tol=2e-2)


def test_info_nce_loss_errors():
    z = torch.zeros(4, 8)
    with pytest.raises(ValueError, match="same shape"):
        info_nce_loss(z, torch.zeros(3, 8))
    with pytest.raises(ValueError, match="same shape"):
        info_nce_loss(torch.zeros(8), torch.zeros(8))
    for bad in (0, -0.1, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ValueError, match="temperature"):
            info_nce_loss(z, z, temperature=bad)


# ---------------------------------------------------------------------------
# views
def test_two_view_dataset(images):
    tensor = torch.from_numpy(np.moveaxis(images, -1, 1).copy())  # uint8, 48 px
    state = torch.get_rng_state()
    val = TwoViewDataset(tensor, [3, 5, 7], input_size=32, seed=1)
    assert len(val) == 3
    v1, v2 = val[0]
    for v in (v1, v2):
        assert v.shape == (3, 32, 32) and v.dtype == torch.float32
        assert float(v.min()) >= 0 and float(v.max()) <= 1
    assert not torch.equal(v1, v2)
    # the views of an image do not look like the plain resized image
    plain = torch.nn.functional.interpolate(tensor[3:4].float() / 255, size=32,
                                            mode="bilinear", antialias=True)[0]
    assert float((v1 - plain).abs().mean()) > 0.02
    # validation views: the same at every call, set by the seed and the image index
    again = TwoViewDataset(tensor, [7, 3], input_size=32, seed=1)[1]
    assert torch.equal(again[0], v1) and torch.equal(again[1], v2)
    assert not torch.equal(TwoViewDataset(tensor, [3], input_size=32, seed=2)[0][0], v1)
    assert not torch.equal(val[1][0], v1)
    assert torch.equal(torch.get_rng_state(), state)  # seeded views leave torch's RNG alone
    # training views: new at every call, drawn from torch's global generator
    train = TwoViewDataset(tensor, [3], input_size=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        first = train[0]
        second = train[0]
        torch.manual_seed(0)
        replay = train[0]
    assert not torch.equal(first[0], second[0])
    assert torch.equal(first[0], replay[0]) and torch.equal(first[1], replay[1])
    # arrays in display order are read like the encoder reads them, floats too
    from_array = TwoViewDataset(images, input_size=32, seed=1)
    assert len(from_array) == 16 and from_array[0][0].shape == (3, 32, 32)
    floats = TwoViewDataset(tensor.float() / 255, [3], input_size=32, seed=1)[0][0]
    assert float((floats - v1).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="input_size"):
        TwoViewDataset(tensor, input_size=0)


# ---------------------------------------------------------------------------
# module
def test_module_head_and_single_image_batches():
    module = ContrastiveModule(architecture="vit-small", input_size=32, projection_dim=16)
    assert module.encoder.training_method == "contrastive"
    assert module.encoder.latent_dim == 256
    assert [type(m).__name__ for m in module.head] == ["Linear", "ReLU", "Linear"]
    assert module.head[0].in_features == module.head[0].out_features == 256
    assert module.head[2].out_features == 16
    x = torch.rand(3, 3, 32, 32)
    assert module(x).shape == (3, 16)
    assert module._step((x[:1], x[:1]), "val") is None and module._sums == {}
    with pytest.raises(ValueError, match="projection_dim"):
        ContrastiveModule(input_size=32, projection_dim=0)
    with pytest.raises(ValueError, match="momentum"):
        ContrastiveModule(input_size=32, momentum=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        ContrastiveModule(input_size=32, learning_rate=0)
    with pytest.raises(ValueError, match="weight_decay"):
        ContrastiveModule(input_size=32, weight_decay=-1e-4)
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveModule(input_size=32, temperature=0)


# ---------------------------------------------------------------------------
# training
@pytest.mark.parametrize(("architecture", "features"),
                         [("resnet18-trimmed", 256), ("vit-small", 256), ("hybrid", 512)])
def test_train_architectures(images, architecture, features):
    settings = {**TINY, "architecture": architecture}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        initial = ContrastiveModule(architecture=architecture, input_size=32).encoder
    state = torch.get_rng_state()
    encoder, history = train_contrastive(images, max_steps=2, **settings)
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    assert isinstance(encoder, Encoder) and not encoder.training
    assert next(encoder.parameters()).device.type == "cpu"
    assert encoder.training_method == "contrastive"
    assert encoder.metadata["training"] == "contrastive"
    assert (encoder.architecture, encoder.latent_dim) == (architecture, features)
    assert encoder.weights_hash != initial.weights_hash
    # only the encoder's weights, not the projection head, are returned
    assert encoder.state_dict().keys() == initial.state_dict().keys()
    assert history.colnames == ["epoch", "step", "train_loss", "val_loss"]
    assert history["step"][-1] == 2
    assert np.isfinite(history["train_loss"]).all()
    # the loss of an encoder that tells little apart is about log(2B - 1)
    assert abs(history["train_loss"][0] - math.log(7)) < 1.0
    meta = history.meta
    assert meta["METHOD"] == "contrastive"
    assert (meta["ENCARCH"], meta["INSIZE"], meta["INMODE"], meta["LATDIM"]) == \
        (architecture, 32, "rgb", features)
    assert (meta["TEMP"], meta["PROJDIM"], meta["BATCH"], meta["SEED"]) == (0.1, 128, 4, 0)
    assert math.isclose(meta["LR"], 0.3 * 4 / 256)
    assert (meta["MOMENTUM"], meta["WDECAY"]) == (0.9, 1e-4)
    assert (meta["NTRAIN"], meta["NVAL"], meta["NTEST"]) == (14, 2, 0)
    assert np.isnan(meta["TESTLOSS"])
    z = encoder.encode(images[:3])
    assert z.shape == (3, features) and np.isfinite(z).all()
    if architecture == "resnet18-trimmed":  # same seed, same encoder
        again, _ = train_contrastive(images, max_steps=2, **settings)
        assert again.weights_hash == encoder.weights_hash


def test_trained_encoder_saves_and_builds_a_database(tmp_path):
    from galmorphsearch import GalaxyCutout
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.datasets import make_synthetic_sample

    truth, fields = make_synthetic_sample(n_per_type=2, types=["Er", "Sb", "SBc"], seed=0)
    cutouts = [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=64) for f in fields]
    encoder, history = train_contrastive(cutouts, val_fraction=0, max_steps=2,
                                         **{**TINY, "batch_size": 3})
    assert history.meta["NTRAIN"] == 6 and np.isnan(history["val_loss"]).all()
    # the preprocessing of the cutouts is recorded
    assert encoder.preprocessing == Encoder._check_preprocessing(cutouts[0].header_keywords())

    path = tmp_path / "contrastive.safetensors"
    saved_hash = encoder.save(path)
    assert saved_hash == encoder.weights_hash
    back = Encoder.load(path)
    assert back.weights_hash == encoder.weights_hash
    assert back.training_method == "contrastive"
    assert back.metadata == encoder.metadata
    np.testing.assert_allclose(back.encode(cutouts[:2]), encoder.encode(cutouts[:2]),
                               rtol=1e-5, atol=1e-6)

    db = LatentDatabase.build(truth, cutouts, back, scheme="gz2")
    assert db.latents.shape == (6, 256)
    assert db.meta["ENCTRAIN"] == "contrastive"
    assert db.meta["ENCHASH"] == encoder.weights_hash
    db.check_encoder(encoder)


class _StopAfterFirstEpoch(Callback):
    """Interrupts a run at the end of its first epoch."""

    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = True


def test_checkpoint_and_resume(images, tmp_path):
    ckpt = tmp_path / "ckpt"
    settings = {**TINY, "val_fraction": 0.25, "test_fraction": 0.25}  # 8 / 4 / 4 images
    # an interrupted run, resumed, ends as the uninterrupted run
    _, history = train_contrastive(images, max_epochs=2, checkpoint_dir=ckpt,
                                   callbacks=[_StopAfterFirstEpoch()], **settings)
    assert len(history) == 1 and history["step"][0] == 2
    assert np.isfinite(history["val_loss"]).all() and np.isfinite(history.meta["TESTLOSS"])
    assert (ckpt / "last.ckpt").is_file()
    assert len(list(ckpt.glob("best-*.ckpt"))) == 1
    on_disk = Table.read(ckpt / HISTORY_FILENAME)
    np.testing.assert_allclose(on_disk["train_loss"], history["train_loss"])

    resumed, history2 = train_contrastive(images, max_epochs=2, checkpoint_dir=ckpt,
                                          resume="last", **settings)
    assert len(history2) == 2 and history2["step"][-1] == 4
    np.testing.assert_allclose(history2["train_loss"][0], history["train_loss"][0])
    whole, history3 = train_contrastive(images, max_epochs=2, **settings)
    assert whole.weights_hash == resumed.weights_hash
    np.testing.assert_allclose(history3["train_loss"], history2["train_loss"])
    np.testing.assert_allclose(history3["val_loss"], history2["val_loss"])
    assert len(Table.read(ckpt / HISTORY_FILENAME)) == 2

    # the checkpoint gives the encoder back, through Lightning or as a backbone start
    module = ContrastiveModule.load_from_checkpoint(ckpt / "last.ckpt", map_location="cpu")
    assert module.encoder.weights_hash == resumed.weights_hash
    fresh = Encoder(architecture="resnet18-trimmed", input_size=32)
    report = fresh.load_backbone_weights(ckpt / "last.ckpt")
    assert not report["missing"] and any(k.startswith("head.") for k in report["unused"])
    assert fresh.weights_hash == resumed.weights_hash
    # ... or as an encoder of its own (the projection head is left out)
    direct = Encoder.from_state_dict_file(ckpt / "last.ckpt", architecture="resnet18-trimmed",
                                          input_size=32)
    assert direct.weights_hash == resumed.weights_hash

    # training on for longer stretches the rest of the cosine schedule over the new plan
    state = torch.load(ckpt / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["lr_schedulers"][0]["T_max"] == 4
    longer, history4 = train_contrastive(images, max_epochs=3, checkpoint_dir=ckpt,
                                         resume="last", **settings)
    assert len(history4) == 3 and history4["step"][-1] == 6
    assert longer.weights_hash != resumed.weights_hash
    state = torch.load(ckpt / "last.ckpt", map_location="cpu", weights_only=True)
    scheduler = state["lr_schedulers"][0]
    assert scheduler["T_max"] == 6 and scheduler["last_epoch"] == 6
    assert abs(scheduler["_last_lr"][0]) < 1e-12  # the schedule ends at zero


def test_train_errors(images, tmp_path):
    for bad in (1, 0, True, 2.0):
        with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
            train_contrastive(images, **{**TINY, "batch_size": bad})
    for bad in (0, -1.0, float("nan"), None):
        with pytest.raises(ValueError, match="temperature"):
            train_contrastive(images, temperature=bad, **TINY)
    with pytest.raises(ValueError, match="unknown architecture 'resnet-99'"):
        train_contrastive(images, **{**TINY, "architecture": "resnet-99"})
    with pytest.raises(ValueError, match="at least 2 training images"):
        train_contrastive(images[:2], val_fraction=0.5, **TINY)
    with pytest.raises(ValueError, match="validation set holds a single image"):
        train_contrastive(images[:10], val_fraction=0.1, **TINY)
    with pytest.raises(ValueError, match="test set holds a single image"):
        train_contrastive(images[:10], val_fraction=0.2, test_fraction=0.1, **TINY)
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        train_contrastive(images, resume="last", **TINY)
    with pytest.raises(FileNotFoundError, match="to resume from"):
        train_contrastive(images, resume=tmp_path / "x.ckpt", **TINY)
