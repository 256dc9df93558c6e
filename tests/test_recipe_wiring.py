# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The one recipe comparison, as its callers use it: the database build, the
searcher (a notebook user searching with cutouts) and the command line.
"""

import warnings

import pytest

from galmorphsearch import GalaxyCutout
from galmorphsearch.database import LatentDatabase
from galmorphsearch.datasets import make_synthetic_sample
from galmorphsearch.model import Encoder
from galmorphsearch.search import SimilaritySearcher
from galmorphsearch.utils import CutoutWarning, GalMorphSearchWarning


def _cutouts(fields, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CutoutWarning)
        return [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=32, seed=0, **settings)
                for f in fields]


@pytest.fixture(scope="module")
def setup():
    truth, fields = make_synthetic_sample(n_per_type=2, types=["Er", "Sb"], seed=3)
    encoder = Encoder(input_size=32, preprocessing=_cutouts(fields[:1])[0].header_keywords())
    database = LatentDatabase.build(truth[2:], _cutouts(fields[2:]), encoder, scheme="gz2")
    return fields, encoder, database


def test_search_with_targets_of_another_recipe_warns(setup):
    fields, encoder, database = setup
    searcher = SimilaritySearcher(database, encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        searcher.search(_cutouts(fields[:2]), k=1)  # the same recipe: silent
    other = _cutouts(fields[:2], kron_factor=2.5)
    with pytest.warns(GalMorphSearchWarning,
                      match="targets were not preprocessed like the database.*KRONFACT 2.5") \
            as record:
        searcher.classify(other)
    # Pointed at the caller's line, not inside the package.
    assert record[0].filename == __file__


def test_build_with_cutouts_of_another_recipe_warns(setup):
    fields, encoder, _ = setup
    truth, _ = make_synthetic_sample(n_per_type=2, types=["Er", "Sb"], seed=3)
    with pytest.warns(GalMorphSearchWarning,
                      match="not preprocessed like the encoder's training images.*KRONFACT"):
        LatentDatabase.build(truth, _cutouts(fields, kron_factor=2.5), encoder, scheme="gz2")
