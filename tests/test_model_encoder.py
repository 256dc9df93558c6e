# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of galmorphsearch.model.Encoder: shapes, inputs, determinism, provenance."""

import numpy as np
import pytest
import torch
from PIL import Image

from galmorphsearch import __version__
from galmorphsearch.model import Encoder


@pytest.fixture(scope="module")
def encoder64():
    torch.manual_seed(0)
    return Encoder(input_size=64)


@pytest.fixture(scope="module")
def cutout():
    from galmorphsearch.datasets import make_synthetic_galaxy
    from galmorphsearch.preprocessing import GalaxyCutout

    field = make_synthetic_galaxy("Sb", seed=0)
    return GalaxyCutout(field["g"], field["r"], field["i"], field.position, size=64, seed=0)


@pytest.mark.parametrize("size", [64, 128])
def test_forward_shape(size):
    enc = Encoder(input_size=size)
    out = enc(torch.rand(2, 3, size, size))
    assert out.shape == (2, 512)
    assert enc.name == f"resnet18-{size}px"


def test_forward_256_once():
    enc = Encoder()
    assert enc.input_size == 256
    assert enc.encode(np.zeros((1, 256, 256, 3), dtype=np.uint8)).shape == (1, 512)


def test_latent_projection():
    enc = Encoder(input_size=64, latent_dim=32)
    assert isinstance(enc.projection, torch.nn.Linear)
    z = enc.encode(np.zeros((3, 64, 64, 3), dtype=np.uint8))
    assert z.shape == (3, 32)
    assert Encoder(input_size=64).projection.__class__ is torch.nn.Identity


def test_resize_other_sizes(encoder64):
    z = encoder64.encode(torch.rand(2, 3, 80, 80))
    assert z.shape == (2, 512)


def test_encode_output_and_determinism(encoder64):
    images = np.random.default_rng(1).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    encoder64.train()
    z1 = encoder64.encode(images, batch_size=2)
    assert encoder64.training  # mode restored
    z2 = encoder64.encode(images, batch_size=5)
    assert z1.dtype == np.float32 and z1.flags.c_contiguous and z1.dtype.isnative
    assert z1.shape == (5, 512)
    np.testing.assert_allclose(z1, z2, rtol=1e-5, atol=1e-6)
    # uint8 channels-last, float channels-first array and tensor agree
    floats = np.moveaxis(images, -1, 1).astype(np.float32) / 255
    np.testing.assert_allclose(encoder64.encode(floats), z1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encoder64.encode(torch.from_numpy(floats)), z1,
                               rtol=1e-5, atol=1e-6)
    # one (H, W, 3) image and a list of arrays
    np.testing.assert_allclose(encoder64.encode(images[0]), z1[:1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(encoder64.encode(list(images[:2])), z1[:2], rtol=1e-5,
                               atol=1e-6)
    encoder64.eval()


def test_encode_cutouts(encoder64, cutout):
    z = encoder64.encode(cutout)
    assert z.shape == (1, 512)
    np.testing.assert_allclose(z, encoder64.encode(cutout.image), rtol=1e-5, atol=1e-6)
    zb = encoder64.encode([cutout, cutout], background=True)
    np.testing.assert_allclose(zb[0], encoder64.encode(cutout.background)[0], rtol=1e-5,
                               atol=1e-6)
    assert not np.allclose(zb[0], z[0])


def test_encode_files(encoder64, tmp_path):
    images = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    paths = []
    for k, img in enumerate(images):
        paths.append(tmp_path / f"g{k}.png")
        Image.fromarray(img).save(paths[-1])
    Image.fromarray(images[0]).resize((100, 100)).save(tmp_path / "big.png")
    z = encoder64.encode(paths)
    np.testing.assert_allclose(z, encoder64.encode(images), rtol=1e-5, atol=1e-6)
    assert encoder64.encode([str(tmp_path / "big.png")]).shape == (1, 512)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        encoder64.encode([tmp_path / "missing.png"])
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image file"):
        encoder64.encode([tmp_path / "bad.png"])


@pytest.mark.parametrize(("images", "match"), [
    (np.zeros((2, 64, 64, 4), dtype=np.uint8), "3 colour channels"),
    (np.zeros((2, 1, 64, 64, 3), dtype=np.uint8), "3 .one image. or 4"),
    (np.zeros((64, 64), dtype=np.uint8), "3 .one image. or 4"),
    (np.zeros((0, 64, 64, 3), dtype=np.uint8), "empty"),
    ([], "empty"),
    (np.full((1, 64, 64, 3), np.nan, dtype=np.float32), "non-finite"),
    (np.full((1, 64, 64, 3), 255.0, dtype=np.float32), r"\[0, 1\]"),
    (np.zeros((1, 64, 64, 3), dtype=np.int32), "uint8"),
    (np.zeros((1, 4, 4, 3), dtype=np.uint8), "too small"),
])
def test_encode_bad_inputs(encoder64, images, match):
    with pytest.raises(ValueError, match=match):
        encoder64.encode(images)


def test_encode_bad_types(encoder64):
    with pytest.raises(TypeError, match="cannot encode"):
        encoder64.encode(42)
    with pytest.raises(TypeError, match="cannot encode a list"):
        encoder64.encode([1, 2])
    with pytest.raises(ValueError, match="background=True needs GalaxyCutout"):
        encoder64.encode(np.zeros((1, 64, 64, 3), dtype=np.uint8), background=True)
    with pytest.raises(ValueError, match="batch_size"):
        encoder64.encode(np.zeros((1, 64, 64, 3), dtype=np.uint8), batch_size=0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        encoder64(torch.zeros(1, 64, 64))


def test_constructor_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        Encoder(architecture="vgg")
    with pytest.raises(ValueError, match="input_size"):
        Encoder(input_size=16)
    with pytest.raises(ValueError, match="latent_dim"):
        Encoder(latent_dim=0)
    with pytest.raises(ValueError, match="clashes"):
        Encoder(input_size=64, preprocessing={"name": "x"})


def test_metadata(cutout):
    enc = Encoder(input_size=64, name="test", preprocessing=cutout.header_keywords())
    meta = enc.metadata
    assert meta["name"] == "test"
    assert meta["architecture"] == "resnet18"
    assert meta["input_size"] == 64 and meta["latent_dim"] == 512
    assert meta["version"] == __version__
    assert meta["weights_hash"] == enc.weights_hash
    assert len(enc.weights_hash) == 16
    assert meta["PREPVERS"] == cutout.header_keywords()["PREPVERS"]
    assert all(isinstance(v, (str, int, float, bool, type(None))) for v in meta.values())
    assert "test" in repr(enc)


def test_weights_hash_changes_with_training():
    torch.manual_seed(0)
    enc = Encoder(input_size=64, latent_dim=8)
    before = enc.weights_hash
    assert enc.weights_hash == before  # stable
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    enc.train()
    enc(torch.rand(2, 3, 64, 64)).sum().backward()
    opt.step()
    assert enc.weights_hash != before
