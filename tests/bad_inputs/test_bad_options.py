# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Library calls with nonsense settings: refused with a message naming the
setting, never recorded in a file or silently ignored.
"""

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.catalogs import GZ2_SCHEME, MorphologyScheme
from galmorphsearch.database import LatentDatabase
from galmorphsearch.evaluation import evaluate_retrieval
from galmorphsearch.model import Encoder
from galmorphsearch.preprocessing import CutoutSet


def _catalog(n=4, scheme=None):
    table = Table({"objid": np.arange(n), "ra": np.linspace(1, 2, n), "dec": np.zeros(n),
                   "morphology": ["Er", "Sb"] * (n // 2), "type_index": [0, 5] * (n // 2)})
    if scheme is not None:
        table.meta["SCHEME"] = scheme
    return table


def _database(n_per_type, types=("Er", "Sb")):
    rng = np.random.default_rng(0)
    n = n_per_type * len(types)
    table = Table({"objid": np.arange(n), "ra": np.zeros(n), "dec": np.zeros(n),
                   "morphology": np.repeat(types, n_per_type),
                   "type_index": np.repeat([GZ2_SCHEME.index(t) for t in types], n_per_type),
                   "catalog": ["test"] * n,
                   "latent": rng.normal(size=(n, 4)).astype(np.float32),
                   "background_latent": np.zeros((n, 4), np.float32)})
    table.meta.update({"ENCODER": "test", "ENCARCH": "none", "ENCHASH": "0" * 16,
                       "INSIZE": 8, "LATDIM": 4, "SCHEME": "gz2"})
    return LatentDatabase(table)


@pytest.fixture(scope="module")
def encoder():
    return Encoder(input_size=32)


@pytest.fixture(scope="module")
def images():
    pixels = np.random.default_rng(1).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    return CutoutSet(_catalog(), pixels, pixels[:, ::-1])


@pytest.mark.parametrize(("scheme", "meta"), [("nonsense", None), (None, "nonsense")])
def test_build_refuses_an_unknown_scheme_name(scheme, meta, encoder, images):
    with pytest.raises(ValueError, match="'nonsense' is not a morphology scheme"):
        LatentDatabase.build(_catalog(scheme=meta), images, encoder, scheme=scheme)


def test_build_records_known_and_own_schemes(encoder, images):
    db = LatentDatabase.build(_catalog(), images, encoder, scheme="GZ2")
    assert db.scheme == "gz2"
    own = MorphologyScheme("mine", ("Er", "Sb"))
    assert LatentDatabase.build(_catalog(), images, encoder, scheme=own).scheme == "mine"


def test_evaluate_retrieval_refuses_a_database_too_small():
    # One galaxy per type: no type can give a target.
    with pytest.raises(ValueError, match="too small to evaluate.*0 morphology-check"):
        evaluate_retrieval(_database(1))
    # Two of one type: one target, and r needs two.
    with pytest.raises(ValueError, match="1 morphology-check target"):
        evaluate_retrieval(_database(2, types=("Er",)))
    _, summary = evaluate_retrieval(_database(2))
    assert summary["n"] == 2


@pytest.mark.parametrize("setting", [{"max_epochs": 0}, {"max_epochs": -1},
                                     {"max_epochs": 1.5}, {"max_steps": 0}])
@pytest.mark.parametrize("trainer", ["autoencoder", "classifier", "contrastive"])
def test_trainers_refuse_to_train_nothing(trainer, setting, tmp_path):
    from galmorphsearch import model

    pixels = np.random.default_rng(2).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    train = getattr(model, f"train_{trainer}")
    args = (pixels, ["Er", "Sb"] * 4) if trainer == "classifier" else (pixels,)
    kwargs = {"max_epochs": 1, **setting, "checkpoint_dir": tmp_path}
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        train(*args, **kwargs)
    assert list(tmp_path.iterdir()) == []


def _table(morphology, type_index, ra=None, dec=None):
    n = len(morphology)
    table = Table({"objid": np.arange(n), "ra": np.zeros(n) if ra is None else ra,
                   "dec": np.zeros(n) if dec is None else dec, "morphology": morphology,
                   "type_index": type_index, "catalog": ["t"] * n,
                   "latent": np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32),
                   "background_latent": np.zeros((n, 4), np.float32)})
    table.meta.update({"ENCODER": "test", "ENCARCH": "none", "ENCHASH": "0" * 16,
                       "INSIZE": 8, "LATDIM": 4, "SCHEME": "gz2"})
    return table


@pytest.mark.parametrize(("morphology", "type_index", "message"), [
    (["Er", "Sc"], [0, 99], "type_index' holds 99, outside the 12 types"),
    (["Er", "Sc"], [10, 6], "disagree in 1 row.*'Er' with type_index 10, which is 'SBc'"),
    (["Er", "Nonsense"], [0, 1], "disagree in 1 row.*'Nonsense' with type_index 1"),
])
def test_database_refuses_contradictory_types(morphology, type_index, message):
    with pytest.raises(ValueError, match=message):
        LatentDatabase(_table(morphology, type_index))


def test_database_refuses_impossible_positions(tmp_path):
    with pytest.raises(ValueError, match="'ra' holds 999.*outside \\[0, 360\\]"):
        LatentDatabase(_table(["Er", "Sc"], [0, 6], ra=[10.0, 999.0]))
    with pytest.raises(ValueError, match="'dec' holds -91"):
        LatentDatabase(_table(["Er", "Sc"], [0, 6], dec=[-91.0, 0.0]))
    # Unknown positions are allowed.
    db = LatentDatabase(_table(["Er", "Sc"], [0, 6], ra=[np.nan, 10.0]))
    assert len(db) == 2


def test_edited_types_in_a_file_are_refused_on_read(tmp_path):
    from astropy.io import fits

    path = tmp_path / "db.fits"
    LatentDatabase(_table(["Er", "Sc"], [0, 6])).write(path)
    with fits.open(path) as hdul:
        hdul["LATENTS"].data["type_index"][1] = 10
        # Checksums recomputed, as a careless editor's tool would.
        hdul.writeto(tmp_path / "edited.fits", checksum=True)
    with pytest.raises(ValueError, match="disagree in 1 row"):
        LatentDatabase.read(tmp_path / "edited.fits")
