# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Backbones, input modes and starting weights of `~galmorphsearch.model.Encoder`."""

import numpy as np
import pytest
import torch

from galmorphsearch.database import LatentDatabase
from galmorphsearch.model import Autoencoder, Encoder, train_autoencoder
from galmorphsearch.model.backbones import (
    BACKBONES,
    INPUT_MODES,
    prepare_input,
    register_backbone,
    residual_channel,
)
from galmorphsearch.utils import EncoderMismatchError

FEATURES = {"resnet18": 512, "resnet18-trimmed": 256, "vit-small": 256, "hybrid": 512,
            "vgg-small": 256}


@pytest.mark.parametrize("architecture", sorted(FEATURES))
@pytest.mark.parametrize("mode", sorted(INPUT_MODES))
def test_every_backbone_and_mode_gives_latents(architecture, mode):
    torch.manual_seed(0)
    encoder = Encoder(architecture, input_size=48, input_mode=mode)
    assert encoder.latent_dim == FEATURES[architecture]
    assert encoder.in_channels == INPUT_MODES[mode]
    latents = encoder.encode(np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3),
                                                                 dtype=np.uint8))
    assert latents.shape == (3, FEATURES[architecture])
    assert np.all(np.isfinite(latents))
    # Distinct images give distinct latents (the backbone is not degenerate).
    assert not np.allclose(latents[0], latents[1])


def test_latent_dim_projection_and_names():
    encoder = Encoder("vit-small", input_size=48, latent_dim=32, input_mode="grey")
    assert encoder.latent_dim == 32 and encoder.n_features == 256
    assert encoder.name == "vit-small-grey-48px"
    assert encoder.metadata["input_mode"] == "grey"
    assert encoder.metadata["training"] == "untrained"
    assert "input_mode='grey'" in repr(encoder)


def test_prepare_input_channels():
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(prepare_input(x, "rgb"), x)
    grey = prepare_input(x, "grey")
    assert torch.allclose(grey[:, 0], x.mean(dim=1))
    both = prepare_input(x, "rgb+residual")
    assert both.shape == (2, 4, 32, 32)
    assert torch.equal(both[:, :3], x)
    assert torch.equal(both[:, 3:], residual_channel(x))
    assert prepare_input(x, "grey+residual").shape == (2, 2, 32, 32)
    with pytest.raises(ValueError, match="unknown input mode 'cmyk'"):
        prepare_input(x, "cmyk")


def test_residual_channel_removes_the_smooth_profile():
    yy, xx = torch.meshgrid(torch.arange(48.0) - 23.5, torch.arange(48.0) - 23.5,
                            indexing="ij")
    # A disc inclined at position angle 30 degrees.
    ang = np.deg2rad(30)
    u = xx * np.cos(ang) + yy * np.sin(ang)
    v = -xx * np.sin(ang) + yy * np.cos(ang)
    r = torch.sqrt(u ** 2 + (v / 0.4) ** 2)
    disc = torch.exp(-r / 5).expand(1, 3, 48, 48)
    flat = residual_channel(disc) - 0.5
    # The residual is far flatter than the grey level itself: the elliptical
    # model, found at the right angle and axis ratio, did the work.
    structure = float((disc.mean(dim=1) - disc.mean()).abs().mean())
    assert float(flat.abs().mean()) < 0.1 * structure
    # A bright knot on one side survives in the residual, where it is.
    knot = disc.clone()
    knot[..., 10, 30] += 0.5
    res = residual_channel(knot)[0, 0] - 0.5
    assert tuple(np.unravel_index(int(res.abs().argmax()), res.shape)) == (10, 30)
    assert float(residual_channel(torch.rand(2, 3, 32, 32)).min()) >= 0.0


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown architecture 'resnet19'.*hybrid"):
        Encoder("resnet19")
    with pytest.raises(ValueError, match="unknown input_mode 'gray'"):
        Encoder(input_size=32, input_mode="gray")
    with pytest.raises(ValueError, match="unknown training method"):
        Encoder(input_size=32, training="magic")


def test_register_backbone():
    @register_backbone("test-linear", "flatten and project")
    def _build(in_channels, input_size):
        return torch.nn.Sequential(torch.nn.Flatten(),
                                   torch.nn.Linear(in_channels * input_size ** 2, 5)), 5

    try:
        encoder = Encoder("test-linear", input_size=32)
        assert encoder(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    finally:
        del BACKBONES["test-linear"]


def test_grey_autoencoder_reconstructs_the_grey_level(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    model, history = train_autoencoder(images, input_size=32, input_mode="grey",
                                       decoder_channels=(8,), fc_channels=8, max_steps=2,
                                       batch_size=4, val_fraction=0.25, test_fraction=0.0)
    assert model.decoder.out_channels == 1
    x = torch.rand(2, 3, 32, 32)
    assert model(x).shape == (2, 1, 32, 32)
    assert torch.allclose(model.target(x), x.mean(dim=1, keepdim=True))
    assert history.meta["INMODE"] == "grey"
    encoder = model.encoder
    assert encoder.training_method == "autoencoder"
    path = tmp_path / "grey.safetensors"
    encoder.save(path)
    back = Encoder.load(path)
    assert (back.input_mode, back.training_method) == ("grey", "autoencoder")
    assert back.weights_hash == encoder.weights_hash
    np.testing.assert_array_equal(back.encode(images[:2]), encoder.encode(images[:2]))


def test_autoencoder_channels_must_match():
    from galmorphsearch.model import Decoder

    with pytest.raises(ValueError, match="1-channel images but the encoder"):
        Autoencoder(Encoder(input_size=32, latent_dim=8),
                    Decoder(input_size=32, latent_dim=8, channels=(8,), fc_channels=8,
                            out_channels=1))


def test_database_records_mode_and_training():
    from astropy.table import Table

    encoder = Encoder("vgg-small", input_size=32, input_mode="rgb+residual")
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    lat = encoder.encode(images)
    table = Table({"objid": [1, 2, 3, 4], "ra": np.zeros(4), "dec": np.zeros(4),
                   "morphology": ["Er", "Er", "Sb", "Sb"], "type_index": [0, 0, 5, 5],
                   "catalog": ["t"] * 4, "latent": lat, "background_latent": lat[::-1] + 1})
    table.meta.update(ENCODER=encoder.name, ENCARCH=encoder.architecture,
                      ENCHASH=encoder.weights_hash, INSIZE=32, LATDIM=256, SCHEME="gz2",
                      ENCMODE="rgb+residual", ENCTRAIN="untrained")
    db = LatentDatabase(table)
    assert db.encoder_info["input_mode"] == "rgb+residual"
    db.check_encoder(encoder)
    # A database of an older version (no ENCMODE) is taken to be colour.
    del table.meta["ENCMODE"]
    with pytest.raises(EncoderMismatchError, match="input mode 'rgb' vs 'rgb\\+residual'"):
        LatentDatabase(table).check_encoder(encoder)


def test_load_backbone_weights_from_a_torchvision_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(3)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "imagenet-like.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in
                               reference.state_dict().items()}}, path)

    grey = Encoder("resnet18-trimmed", input_size=32, input_mode="grey+residual")
    report = grey.load_backbone_weights(path)
    assert report["adapted"] == ["conv1.weight"]
    assert "layer3.0.conv1.weight" in report["loaded"]
    assert any(k.startswith("module.layer4.") for k in report["unused"])
    assert any(k.startswith("module.fc.") for k in report["unused"])
    assert not report["missing"]
    state = grey.backbone.state_dict()
    torch.testing.assert_close(state["layer3.0.conv1.weight"],
                               reference.state_dict()["layer3.0.conv1.weight"])
    # The grey channel gets the sum of the colour kernels, so a grey image
    # (R = G = B) gives the first layer the response the colour weights gave it;
    # the residual channel starts at zero.
    sum_kernel = reference.state_dict()["conv1.weight"].sum(dim=1)
    torch.testing.assert_close(state["conv1.weight"][:, 0], sum_kernel)
    assert not state["conv1.weight"][:, 1].any()
    assert grey.training_method == "external"
    grey_image = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(grey.backbone.conv1(torch.cat([grey_image, grey_image * 0], 1)),
                               reference.conv1(grey_image.repeat(1, 3, 1, 1)))

    colour = Encoder("resnet18", input_size=32, input_mode="rgb+residual")
    colour.load_backbone_weights(path)
    torch.testing.assert_close(colour.backbone.state_dict()["conv1.weight"][:, :3],
                               reference.state_dict()["conv1.weight"])
    assert not colour.backbone.state_dict()["conv1.weight"][:, 3].any()


def test_from_state_dict_file_of_a_grey_encoder_with_projection(tmp_path):
    torch.manual_seed(6)
    trained = Encoder("vgg-small", input_size=32, latent_dim=16, input_mode="grey")
    path = tmp_path / "grey.pt"
    torch.save(trained.state_dict(), path)
    back = Encoder.from_state_dict_file(path, architecture="vgg-small", input_size=32,
                                        input_mode="grey")
    assert back.latent_dim == 16 and back.input_mode == "grey"
    assert back.weights_hash == trained.weights_hash


def test_load_backbone_weights_errors(tmp_path):
    encoder = Encoder("vit-small", input_size=32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        encoder.load_backbone_weights(tmp_path / "nothing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a weight file")
    with pytest.raises(ValueError, match="cannot read"):
        encoder.load_backbone_weights(bad)
    unrelated = tmp_path / "unrelated.pth"
    torch.save({"some.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(ValueError, match="no tensor of .* fits the vit-small backbone"):
        encoder.load_backbone_weights(unrelated)


def test_autoencoder_starts_from_init_weights(tmp_path):
    torch.manual_seed(4)
    start = Encoder(input_size=32, latent_dim=512)
    path = tmp_path / "start.pth"
    torch.save(start.backbone.state_dict(), path)
    images = np.random.default_rng(5).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    model, _ = train_autoencoder(images, input_size=32, decoder_channels=(8,), fc_channels=8,
                                 max_steps=1, batch_size=3, learning_rate=1e-12,
                                 val_fraction=0.0, test_fraction=0.0, init_weights=path,
                                 augment=False)
    # With a vanishing learning rate the trained convolutions are the start's.
    torch.testing.assert_close(model.encoder.backbone.state_dict()["layer1.0.conv1.weight"],
                               start.backbone.state_dict()["layer1.0.conv1.weight"])
