# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""A database galaxy searched on its own finds others, not itself (regression tests)."""

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.database import LatentDatabase
from galmorphsearch.model import Encoder
from galmorphsearch.search import SimilaritySearcher


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(12, 32, 32, 3), dtype=np.uint8)
    backgrounds = rng.integers(0, 20, size=(12, 32, 32, 3), dtype=np.uint8)
    encoder = Encoder(input_size=32)
    table = Table({"objid": np.arange(100, 112), "ra": np.linspace(1, 2, 12),
                   "dec": np.zeros(12), "morphology": ["Er", "Sb", "Sc"] * 4,
                   "type_index": [0, 5, 6] * 4, "catalog": ["test"] * 12,
                   "latent": encoder.encode(images),
                   "background_latent": encoder.encode(backgrounds)})
    table.meta.update({"ENCODER": encoder.name, "ENCARCH": encoder.architecture,
                       "ENCHASH": encoder.weights_hash, "INSIZE": 32, "LATDIM": 512,
                       "SCHEME": "gz2"})
    return LatentDatabase(table), encoder, images, backgrounds


def test_same_image_encoded_alone_is_skipped(setup):
    database, encoder, images, backgrounds = setup
    alone = encoder.encode(images[5])
    # Encoding one image alone or in a batch differs by float32 rounding...
    assert 0 < np.abs(alone - database.latents[5]).max() < 1e-4
    searcher = SimilaritySearcher(database, encoder)
    result = searcher.search_latents(alone, encoder.encode(backgrounds[5]), k=3)
    # ...and the database copy of the target is still recognised and skipped.
    assert 105 not in list(result["objid"])
    assert np.all(result["Sp"] < 99)
    predicted = searcher.classify_latents(alone, encoder.encode(backgrounds[5]))
    assert predicted["matched_objid"][0] != 105


def test_statistics_follow_the_rows_of_the_table(setup):
    database = setup[0]
    part = LatentDatabase(database.table[:6])
    recomputed = LatentDatabase(_without_statistics(database.table[:6]))
    assert part.meta["NROWS"] == 6
    assert part.h_similarity_mean == pytest.approx(recomputed.h_similarity_mean)
    np.testing.assert_allclose(part.h_similarity, recomputed.h_similarity)


def test_long_header_values_write_without_warnings(setup, tmp_path):
    database = setup[0]
    table = database.table.copy()
    table.meta["GMSVERS"] = "0.1.dev24+ge6339c2ed.d20261123"
    path = tmp_path / "db.fits"
    LatentDatabase(table).write(path)  # filterwarnings=error: no VerifyWarning
    assert LatentDatabase.read(path).meta["GMSVERS"] == "0.1.dev24+ge6339c2ed.d20261123"


def _without_statistics(table):
    table = table.copy()
    table.remove_column("h_similarity")
    for key in ("HSIMMEAN", "HSIMSTD", "HSIMN"):
        table.meta.pop(key, None)
    return table
