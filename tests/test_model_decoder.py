# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of galmorphsearch.model.Decoder and Autoencoder."""

import pytest
import torch

from galmorphsearch.model import Autoencoder, Decoder, Encoder


@pytest.mark.parametrize(("size", "n_up"), [(32, 0), (64, 1), (128, 2)])
def test_decoder_shape_and_range(size, n_up):
    channels = tuple(16 for _ in range(n_up + 1))
    dec = Decoder(input_size=size, latent_dim=24, channels=channels, fc_channels=32)
    with torch.no_grad():
        out = dec(torch.randn(2, 24) * 10)
    assert out.shape == (2, 3, size, size)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert len(dec.blocks) == n_up + 1


def test_decoder_default_channels():
    assert Decoder(input_size=256).channels == (256, 128, 64, 32)
    assert Decoder(input_size=64).channels == (256, 128)
    assert Decoder(input_size=64).fc[-2].out_features == 4 * 4 * 512


def test_decoder_errors():
    with pytest.raises(ValueError, match="power of two"):
        Decoder(input_size=100)
    with pytest.raises(ValueError, match="channels must be 2"):
        Decoder(input_size=64, channels=(8,))
    with pytest.raises(ValueError, match=r"\(B, 512\)"):
        Decoder(input_size=32, channels=(8,))(torch.zeros(1, 10))


def test_autoencoder():
    enc = Encoder(input_size=64, latent_dim=16)
    ae = Autoencoder(enc, Decoder(input_size=64, latent_dim=16, channels=(16, 8),
                                  fc_channels=16))
    assert ae.encoder is enc
    assert ae.input_size == 64
    out = ae(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="do not match"):
        Autoencoder(enc, Decoder(input_size=32, latent_dim=16, channels=(8,)))
    with pytest.raises(TypeError, match="must be an Encoder"):
        Autoencoder("resnet")
    assert Autoencoder(decoder=Decoder(input_size=32, channels=(8,))).encoder.input_size == 32
