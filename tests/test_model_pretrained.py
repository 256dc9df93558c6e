# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The pretrained encoders shipped in the package, and how they are written."""

import json
import struct
import warnings

import numpy as np
import pytest
import torch
from astropy.table import Table

from galmorphsearch import GalaxyCutout
from galmorphsearch.catalogs import GZ2_SCHEME
from galmorphsearch.catalogs.gz2 import parse_gz2_class
from galmorphsearch.database import LatentDatabase
from galmorphsearch.datasets import load_gz2_gallery, make_synthetic_sample
from galmorphsearch.model import (
    DEFAULT_PRETRAINED,
    PRETRAINED,
    Encoder,
    available_pretrained,
    export_pretrained,
    identify_pretrained,
    load_weights,
    pretrained_path,
)
from galmorphsearch.utils import GalMorphSearchWarning


def _header(path):
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(n))


@pytest.fixture(scope="module")
def gallery_cutouts():
    """The 12 real GZ2 class examples bundled with the package, cut at 64 px."""
    gallery = load_gz2_gallery()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cutouts = [GalaxyCutout.from_image(f, size=64, rotate=True, seed=0)
                   for f in gallery["file"]]
    return gallery, cutouts


def test_both_encoders_ship_and_load_without_network():
    assert set(PRETRAINED) == {"vgg-supervised", "tsgicas-ae"}
    default = Encoder.pretrained()
    assert default.name == DEFAULT_PRETRAINED == "vgg-supervised"
    assert (default.architecture, default.input_size, default.latent_dim) == ("vgg-small", 64,
                                                                              256)
    assert default.training_method == "supervised"
    ae = Encoder.pretrained("tsgicas-ae")
    assert (ae.architecture, ae.input_size, ae.latent_dim) == ("resnet18", 64, 512)
    assert ae.training_method == "autoencoder"
    assert not default.training and not ae.training  # eval mode


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_weight_files_are_half_precision_safetensors_under_25_mb(name):
    path = pretrained_path(name)
    assert path.stat().st_size < 25e6
    header = _header(path)
    meta = header.pop("__metadata__")
    floats = {v["dtype"] for v in header.values() if v["dtype"].startswith(("F", "BF"))}
    assert floats == {"F16"}
    assert meta["format"] == "galmorphsearch-weights" and meta["kind"] == "encoder"
    # The hash recorded in the file is the loaded encoder's: what databases record.
    encoder = Encoder.pretrained(name)
    assert meta["weights_hash"] == encoder.weights_hash
    assert identify_pretrained(encoder.weights_hash) == name
    # The preprocessing keywords of the training cutouts travel with the weights.
    assert encoder.preprocessing["CUTSIZE"] == 64 and encoder.preprocessing["ROTATE"] is True
    assert "CHECKSUM" not in encoder.preprocessing and "EXTNAME" not in encoder.preprocessing


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_training_record_is_kept_with_the_weights(name):
    info = Encoder.pretrained(name).info
    assert info["pretrained"] == name
    assert info["epochs"] >= 1 and info["steps"] >= 1
    assert np.isfinite(info["train_loss"])
    assert "SDSS" in info["training_data"] and info["hardware"]
    # The loss history of the whole run ships beside the weights, which are
    # those of its last epoch or of a selected earlier one.
    history = Table.read(pretrained_path(name).with_suffix(".history.ecsv"))
    assert len(history) >= info["epochs"]
    assert history["step"][info["epochs"] - 1] == info["steps"]
    if len(history) > info["epochs"]:
        assert "epoch" in info["selection"]


def test_loading_never_unpickles(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("torch.load must not be used for shipped weights")

    monkeypatch.setattr(torch, "load", refuse)
    assert Encoder.pretrained().latent_dim == 256


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="tsgicas-ae.*vgg-supervised"):
        Encoder.pretrained("resnet50-imagenet")
    with pytest.raises(ValueError, match="no pretrained encoder"):
        pretrained_path(3)


def test_available_pretrained_table():
    table = available_pretrained()
    assert sorted(table["name"]) == sorted(PRETRAINED)
    assert list(table["name"][table["default"]]) == [DEFAULT_PRETRAINED]
    assert table["input_size"].unit == "pix"
    for row in table:
        assert row["weights_hash"] == Encoder.pretrained(row["name"]).weights_hash
        assert 0 < row["file_size"] < 25


def test_identify_unknown_weights_is_none():
    assert identify_pretrained(Encoder(input_size=64).weights_hash) is None
    assert identify_pretrained("not-a-hash") is None


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_real_galaxies_encode_to_finite_deterministic_latents(name, gallery_cutouts):
    _, cutouts = gallery_cutouts
    encoder = Encoder.pretrained(name)
    first = encoder.encode(cutouts)
    assert first.shape == (12, encoder.latent_dim) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, encoder.encode(cutouts))
    # Trained weights tell the galaxies apart: no two latent vectors coincide.
    distances = np.linalg.norm(first[:, None] - first[None], axis=-1)
    assert distances[~np.eye(12, dtype=bool)].min() > 0
    # Larger cutouts are resized to the encoder's 64 px.
    assert encoder.encode(np.zeros((1, 128, 128, 3), dtype=np.uint8)).shape == (1,
                                                                                 encoder.latent_dim)


def test_database_records_the_shipped_weights(gallery_cutouts, tmp_path):
    gallery, cutouts = gallery_cutouts
    encoder = Encoder.pretrained()
    catalog = Table({"objid": np.arange(12), "ra": gallery["ra"], "dec": gallery["dec"],
                     "morphology": [str(t) for t in parse_gz2_class(gallery["gz2_class"])]})
    catalog["type_index"] = [GZ2_SCHEME.index(t) for t in catalog["morphology"]]
    db = LatentDatabase.build(catalog, cutouts, encoder, catalog_name="GZ2 gallery",
                              scheme="gz2")
    db.write(tmp_path / "db.fits")
    back = LatentDatabase.read(tmp_path / "db.fits")
    assert back.meta["ENCODER"] == "vgg-supervised"
    assert back.meta["ENCTRAIN"] == "supervised"
    assert identify_pretrained(back.meta["ENCHASH"]) == "vgg-supervised"
    back.check_encoder(Encoder.pretrained())
    with pytest.raises(Exception, match="weights hash"):
        back.check_encoder(Encoder.pretrained("tsgicas-ae"))


def test_fits_cutouts_get_one_plain_warning_about_the_input_kind():
    truth, fields = make_synthetic_sample(n_per_type=1, types=["Er", "Sb"], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cutouts = [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=64, rotate=True)
                   for f in fields]
    with pytest.warns(GalMorphSearchWarning, match="made from 'fits' input") as record:
        LatentDatabase.build(truth, cutouts, Encoder.pretrained(), scheme="gz2")
    messages = [str(w.message) for w in record if issubclass(w.category, GalMorphSearchWarning)]
    assert len(messages) == 1
    # Keywords that only follow from the input kind, and the target search radius,
    # are not listed one by one.
    assert "BKGMODE" not in messages[0] and "TOLPIX" not in messages[0]


def test_save_in_half_precision_keeps_the_hash_of_what_is_loaded(tmp_path):
    torch.manual_seed(0)
    encoder = Encoder(architecture="vgg-small", input_size=32)
    digest = encoder.save(tmp_path / "half.safetensors", dtype="float16",
                          info={"epochs": 3, "note": "test"})
    tensors, meta = load_weights(tmp_path / "half.safetensors")
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    back = Encoder.load(tmp_path / "half.safetensors")
    assert back.weights_hash == digest == meta["weights_hash"]
    assert back.info == {"epochs": 3, "note": "test"}
    # Half precision: close to, not equal to, the original weights.
    weight = encoder.state_dict()["backbone.features.0.weight"]
    assert torch.allclose(back.state_dict()["backbone.features.0.weight"], weight, atol=1e-3)
    encoder.save(tmp_path / "full.safetensors")
    half_size = (tmp_path / "half.safetensors").stat().st_size
    assert half_size < 0.6 * (tmp_path / "full.safetensors").stat().st_size
    with pytest.raises(ValueError, match="dtype"):
        encoder.save(tmp_path / "x.safetensors", dtype="int8")
    with pytest.raises(ValueError, match="clash"):
        encoder.save(tmp_path / "x.safetensors", info={"architecture": "resnet18"})


def test_export_pretrained_records_the_training(tmp_path):
    torch.manual_seed(0)
    encoder = Encoder(architecture="vgg-small", input_size=32, training="supervised")
    history = Table({"epoch": [0, 1], "step": [10, 20], "train_loss": [0.7, 0.5],
                     "val_loss": [0.8, 0.6], "val_accuracy": [0.6, 0.7]})
    path = tmp_path / "w.safetensors"
    digest = export_pretrained(encoder, "my-encoder", history, path, training_data="SDSS x",
                               hardware="2-core CPU", wall_time=12.34)
    back = Encoder.load(path)
    assert back.name == "my-encoder" and encoder.name != "my-encoder"  # input not modified
    assert back.weights_hash == digest
    assert back.info == {"pretrained": "my-encoder", "epochs": 2, "steps": 20,
                         "train_loss": 0.5, "val_loss": 0.6, "training_data": "SDSS x",
                         "hardware": "2-core CPU", "wall_time_s": 12.3, "val_accuracy": 0.7}
    with pytest.raises(FileExistsError):
        export_pretrained(encoder, "my-encoder", history, path, training_data="SDSS x",
                          hardware="2-core CPU", wall_time=1.0)
