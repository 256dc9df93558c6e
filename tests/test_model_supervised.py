# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the supervised classifiers used as feature extractors (tiny CPU runs)."""

import math

import numpy as np
import pytest
import torch
from astropy.table import Table

from galmorphsearch.evaluation import knn_accuracy
from galmorphsearch.model import (
    HISTORY_FILENAME,
    ClassifierModule,
    Encoder,
    train_classifier,
)

CPU = {"accelerator": "cpu", "devices": 1}
COLUMNS = ["epoch", "step", "train_loss", "val_loss", "train_accuracy", "val_accuracy"]


def blobs_and_bars(n, size=32, seed=0):
    """An easy two-class problem: round blobs and horizontal bars, noisy, jittered."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    images, labels = [], []
    for i in range(n):
        dx, dy = rng.uniform(-2, 2, 2)
        if i % 2 == 0:
            img = np.exp(-((x - dx) ** 2 + (y - dy) ** 2) / (2 * rng.uniform(2.5, 3.5) ** 2))
            labels.append("blob")
        else:
            img = (np.exp(-((y - dy) ** 2) / (2 * 1.2 ** 2))
                   * (np.abs(x - dx) < rng.uniform(9, 12)))
            labels.append("bar")
        img = img * rng.uniform(0.7, 1.0) + rng.normal(0, 0.03, img.shape)
        rgb = np.clip(img[..., None] * np.array([1.0, 0.9, 0.8]), 0, 1)
        images.append((rgb * 255).astype(np.uint8))
    return np.stack(images), np.array(labels)


def separation(latents, labels):
    """Mean between-class over mean within-class distance of standardised latents."""
    z = (latents - latents.mean(0)) / (latents.std(0) + 1e-6)
    d = np.linalg.norm(z[:, None] - z[None], axis=-1)
    same = labels[:, None] == labels[None]
    other = ~np.eye(len(z), dtype=bool)
    return d[~same].mean() / d[same & other].mean()


@pytest.fixture(scope="module")
def easy():
    return blobs_and_bars(48)


def test_learns_an_easy_problem(easy, tmp_path):
    images, labels = easy
    with torch.random.fork_rng():
        torch.manual_seed(0)  # train_classifier builds its model under its seed
        initial = ClassifierModule(["bar", "blob"], input_size=32).encoder.eval()
    before = initial.encode(images)
    rng_state = torch.get_rng_state()
    encoder, history = train_classifier(images, labels, input_size=32, max_steps=60,
                                        max_epochs=100, batch_size=16, val_fraction=0.25,
                                        **CPU)
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    assert isinstance(encoder, Encoder) and not encoder.training
    assert encoder.training_method == "supervised"
    assert encoder.metadata["training"] == "supervised"
    assert (encoder.architecture, encoder.latent_dim) == ("vgg-small", 256)
    assert next(encoder.parameters()).device.type == "cpu"
    assert encoder.weights_hash != initial.weights_hash

    assert history.colnames == COLUMNS
    assert history["step"][-1] == 60 and len(history) == 20  # 36 training images
    assert np.isfinite(history["train_loss"]).all()
    meta = history.meta
    assert (meta["CLASSES"], meta["NCLASS"], meta["ENCARCH"]) == ("bar,blob", 2, "vgg-small")
    assert (meta["NTRAIN"], meta["NVAL"], meta["NTEST"]) == (36, 12, 0)
    assert (meta["INSIZE"], meta["LATDIM"], meta["INMODE"]) == (32, 256, "rgb")
    assert meta["BALANCED"] and meta["AUGMENT"] and meta["OPTIM"] == "adam"
    assert sum(map(int, meta["TRCOUNTS"].split(","))) == 36
    assert math.isnan(meta["TESTACC"]) and math.isnan(meta["TESTLOSS"])
    # The final validation accuracy is a fraction of the 12 validation images. Its
    # value is not asserted: after so few steps batch normalisation's running
    # statistics lag the weights, and the eval-mode head is not reliable (see Notes).
    assert 0 <= meta["VALACC"] <= 1 and (meta["VALACC"] * 12) % 1 < 1e-9
    assert np.isfinite(meta["VALLOSS"])
    assert np.isfinite(history["train_accuracy"]).all()
    assert ((history["train_accuracy"] >= 0) & (history["train_accuracy"] <= 1)).all()
    assert history["train_accuracy"][-3:].mean() > 0.8

    # The penultimate layer separates the classes far better than the random start
    # (measured over 16 seeds: 1.3-1.9 untrained, 3.3-10 trained).
    after = encoder.encode(images)
    assert separation(after, labels) > max(2.5, 1.5 * separation(before, labels))
    assert knn_accuracy(after, labels, k=1)["accuracy"][0] >= 0.9

    # save/load keeps the weights and the provenance
    path = tmp_path / "supervised.safetensors"
    encoder.save(path)
    back = Encoder.load(path)
    assert back.training_method == "supervised"
    assert back.metadata == encoder.metadata
    np.testing.assert_array_equal(back.encode(images[:4]), after[:4])


def test_checkpoint_resume_and_test_set(tmp_path):
    images, labels = blobs_and_bars(24, seed=1)
    codes = np.where(labels == "blob", 10, 3)  # integer labels, sorted numerically
    settings = {"input_size": 32, "latent_dim": 16,
                "batch_size": 8, "test_fraction": 0.25, **CPU}
    ckpt = tmp_path / "ckpt"
    encoder, history = train_classifier(images, codes, max_epochs=1, checkpoint_dir=ckpt,
                                        **settings)
    assert history.meta["CLASSES"] == "3,10"
    assert (encoder.architecture, encoder.latent_dim) == ("vgg-small", 16)
    assert isinstance(encoder.projection, torch.nn.Linear)  # a real hidden layer
    assert len(history) == 1 and history["step"][0] == 2  # 12 training images
    assert np.isfinite(history["val_accuracy"]).all()
    assert 0 <= history.meta["TESTACC"] <= 1 and np.isfinite(history.meta["TESTLOSS"])
    assert (ckpt / "last.ckpt").is_file() and len(list(ckpt.glob("best-*.ckpt"))) == 1
    on_disk = Table.read(ckpt / HISTORY_FILENAME)
    assert on_disk.colnames == COLUMNS and on_disk.meta["CLASSES"] == "3,10"

    encoder2, history2 = train_classifier(images, codes, max_epochs=2, checkpoint_dir=ckpt,
                                          resume="last", **settings)
    assert len(history2) == 2 and history2["step"][-1] == 4
    np.testing.assert_allclose(history2["train_accuracy"][0], history["train_accuracy"][0])
    assert encoder2.weights_hash != encoder.weights_hash
    # the resumed run continues exactly as an uninterrupted one
    encoder3, history3 = train_classifier(images, codes, max_epochs=2, **settings)
    assert encoder3.weights_hash == encoder2.weights_hash
    np.testing.assert_allclose(history3["train_loss"], history2["train_loss"])
    np.testing.assert_allclose(history3["val_accuracy"], history2["val_accuracy"])

    # the checkpoint gives the classifier back, or safely just its encoder (head left out)
    module = ClassifierModule.load_from_checkpoint(ckpt / "last.ckpt", map_location="cpu")
    assert module.classes == ["3", "10"]
    assert module.encoder.weights_hash == encoder2.weights_hash
    assert module(torch.rand(2, 3, 32, 32)).shape == (2, 2)
    enc = Encoder.from_state_dict_file(ckpt / "last.ckpt", architecture="vgg-small",
                                       input_size=32, latent_dim=16)
    assert enc.weights_hash == encoder2.weights_hash


def test_latent_database_from_cutouts(tmp_path):
    from galmorphsearch import GalaxyCutout
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.datasets import make_synthetic_sample

    truth, fields = make_synthetic_sample(n_per_type=2, types=["Er", "Sb"], seed=0)
    cutouts = [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=64) for f in fields]
    encoder, history = train_classifier(cutouts, truth["morphology"], input_size=32,
                                        max_steps=2, batch_size=2, val_fraction=0, **CPU)
    assert history.meta["CLASSES"] == "Er,Sb" and np.isnan(history.meta["VALACC"])
    # the preprocessing of the cutouts is recorded, so the database build does not warn
    assert encoder.preprocessing == cutouts[0].header_keywords()
    db = LatentDatabase.build(truth, cutouts, encoder, scheme="gz2")
    assert db.latents.shape == (4, 256)
    assert db.meta["ENCTRAIN"] == "supervised"
    assert db.meta["ENCHASH"] == encoder.weights_hash
    db.check_encoder(encoder)


def test_options_resnet(easy):
    images, labels = easy[0][:8], easy[1][:8]
    encoder, history = train_classifier(
        images, labels, architecture="resnet18", classes=["blob", "bar", "ring"],
        input_mode="grey", input_size=32,
        max_steps=1, batch_size=4, balanced=False, augment=False, dropout=0.0,
        learning_rate=1e-4, val_fraction=0, **CPU)
    assert history.meta["CLASSES"] == "blob,bar,ring" and history.meta["NCLASS"] == 3
    assert history.meta["TRCOUNTS"] == "4,4,0"
    assert not history.meta["BALANCED"] and history.meta["LR"] == 1e-4
    assert encoder.input_mode == "grey" and encoder.training_method == "supervised"
    assert (encoder.architecture, encoder.latent_dim, history.meta["LATDIM"]) == (
        "resnet18", 512, 512)
    assert encoder.encode(images[:2]).shape == (2, 512)
    assert np.isnan(history["val_accuracy"]).all()


@pytest.mark.parametrize(("labels", "match"), [
    (["a", "b"], "one label per image"),
    (["a"] * 8, "at least 2 classes"),
    (["a", "b", None, "a", "b", "a", "b", "a"], "have no label.*: 2"),
    (["a", "b", "", "a", "b", "a", "  ", "a"], "2 images have no label"),
    ([1.0, 2.0, np.nan, 1.0, 2.0, 1.0, 2.0, 1.0], "have no label"),
    (np.ma.MaskedArray(["a", "b"] * 4, mask=[0, 0, 0, 1, 0, 0, 0, 0]), "have no label.*: 3"),
    (["a", "b,c"] * 4, "may not contain commas"),
    ([True, False] * 4, "strings or integers"),
    ([0.5, 1.5] * 4, "strings or integers"),
    (None, "labels are required"),
])
def test_label_errors(easy, labels, match):
    with pytest.raises(ValueError, match=match):
        train_classifier(easy[0][:8], labels, input_size=32, **CPU)


@pytest.mark.parametrize(("classes", "match"), [
    (["blob"], "at least 2 classes"),
    (["blob", "blob", "bar"], "distinct"),
    (["blob", "ring"], r"labels \['bar'\] are not among classes"),
    ("blob,bar", "sequence of class names"),
])
def test_classes_errors(easy, classes, match):
    with pytest.raises(ValueError, match=match):
        train_classifier(easy[0][:8], easy[1][:8], classes=classes, input_size=32, **CPU)


def test_module_errors():
    with pytest.raises(ValueError, match="learning_rate"):
        ClassifierModule(["a", "b"], learning_rate=0)
    with pytest.raises(ValueError, match="dropout"):
        ClassifierModule(["a", "b"], dropout=1.0)
    with pytest.raises(ValueError, match="unknown architecture"):
        ClassifierModule(["a", "b"], architecture="nope")
    with pytest.raises(ValueError, match="batch_size"):
        train_classifier(np.zeros((4, 32, 32, 3), np.uint8), ["a", "b"] * 2, input_size=32,
                         batch_size=0)
