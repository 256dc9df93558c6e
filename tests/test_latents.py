# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Tests of `galmorphsearch.latents` as the one home of latent sources and of
the exact search: the names it took over from `galmorphsearch.database`
and `galmorphsearch.search` are the same objects there, and the deprecated
entry points (``exact_neighbours(chunk_size=)``, ``database_h_similarity
(chunk_size=)``, ``database.chunked_neighbours``, ``database.build_database``,
``database.local_cluster``) warn and give what the new calls give.
"""

import numpy as np
import pytest
from astropy.utils.exceptions import AstropyDeprecationWarning
from numpy.testing import assert_array_equal

import galmorphsearch.database
import galmorphsearch.latents
import galmorphsearch.pipeline
import galmorphsearch.search
from galmorphsearch.latents import (
    ArrayLatents,
    FileLatentSource,
    LatentSource,
    database_h_similarity,
    exact_neighbours,
)
from galmorphsearch.latents import kernel as kernel_module


@pytest.fixture
def data():
    rng = np.random.default_rng(14)
    # Small integers: many exact ties, where a different block size or
    # candidate merge would show first.
    ties = rng.integers(0, 3, size=(700, 6)).astype(np.float32)
    gauss = rng.normal(size=(40000, 8)).astype(np.float32)  # more than 32768 rows
    return {"ties": ties, "qties": rng.integers(0, 3, size=(37, 6)).astype(np.float32),
            "gauss": gauss, "qgauss": rng.normal(size=(9, 8)).astype(np.float32)}


def same(a, b):
    assert_array_equal(a[0], b[0])
    assert_array_equal(a[1], b[1])


@pytest.mark.parametrize("name", ["LatentSource", "ArrayLatents", "as_latent_source",
                                  "is_latent_source", "latent_hash"])
def test_database_reexports_latents(name):
    assert getattr(galmorphsearch.database, name) is getattr(galmorphsearch.latents, name)


@pytest.mark.parametrize("name", ["similarity_percent", "exact_neighbours",
                                  "database_h_similarity", "identical_mask",
                                  "IDENTICAL_RTOL", "IDENTICAL_RTOL_FLOAT16"])
def test_search_reexports_latents(name):
    assert name in galmorphsearch.search.__all__
    assert getattr(galmorphsearch.search, name) is getattr(galmorphsearch.latents, name)
    from galmorphsearch.search import similarity

    assert getattr(similarity, name) is getattr(galmorphsearch.latents, name)


def test_file_sources_share_the_file_base():
    from galmorphsearch.database import FITSLatents, HDF5Latents

    for cls in (FITSLatents, HDF5Latents):
        assert issubclass(cls, FileLatentSource) and cls.cache_derived
    assert not ArrayLatents.cache_derived and not LatentSource.cache_derived


def test_default_blocks_are_those_of_the_old_entry_points(data):
    # exact_neighbours of an array compared 32768 rows at a time; of a
    # source (the old chunked_neighbours) the source's own default.
    q, db = data["qgauss"], data["gauss"]
    same(exact_neighbours(q, db, 5), exact_neighbours(q, db, 5, chunk_rows=32768))
    source = ArrayLatents(db)
    same(exact_neighbours(q, source, 5),
         exact_neighbours(q, source, 5, chunk_rows=source._default_rows(None)))


@pytest.mark.parametrize("chunk", [1, 7, 64, 32768])
def test_chunk_size_is_a_deprecated_chunk_rows(data, chunk):
    q, db = data["qties"], data["ties"]
    new = exact_neighbours(q, db, 20, chunk_rows=chunk)
    with pytest.warns(AstropyDeprecationWarning, match="use chunk_rows"):
        old = exact_neighbours(q, db, 20, chunk_size=chunk)
    same(old, new)
    with pytest.warns(AstropyDeprecationWarning, match="use chunk_rows"):
        old = exact_neighbours(q, ArrayLatents(db), 20, chunk_size=chunk)
    same(old, exact_neighbours(q, ArrayLatents(db), 20, chunk_rows=chunk))


def test_chunk_size_errors():
    db = np.eye(4, dtype=np.float32)
    with pytest.warns(AstropyDeprecationWarning), pytest.raises(ValueError, match="chunk_size"):
        exact_neighbours(db, db, 1, chunk_size=0)
    with pytest.warns(AstropyDeprecationWarning), pytest.raises(TypeError, match="not both"):
        exact_neighbours(db, db, 1, chunk_size=2, chunk_rows=2)


def test_h_similarity_chunk_size_is_deprecated(data):
    lat = data["ties"][:200]
    bkg = lat[::-1] + 0.5
    new = database_h_similarity(lat, bkg, chunk_rows=9)
    with pytest.warns(AstropyDeprecationWarning, match="use chunk_rows"):
        old = database_h_similarity(lat, bkg, chunk_size=9)
    assert_array_equal(old, new)
    assert_array_equal(database_h_similarity(lat, bkg),
                       database_h_similarity(lat, bkg, chunk_rows=32768))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_chunked_neighbours_is_a_deprecated_exact_neighbours(data, dtype):
    q, db = data["qties"], data["ties"].astype(dtype)
    exclude = np.arange(len(q)) - 1
    for kwargs in ({}, {"chunk_rows": 7}, {"exclude": exclude}):
        # An array was wrapped in an ArrayLatents (and checked) and searched
        # as a source, with the source's default block.
        new = exact_neighbours(q, ArrayLatents(db), 20, **kwargs)
        with pytest.warns(AstropyDeprecationWarning,
                          match="galmorphsearch.latents.exact_neighbours"):
            same(galmorphsearch.database.chunked_neighbours(q, db, 20, **kwargs), new)
        with pytest.warns(AstropyDeprecationWarning):
            same(galmorphsearch.database.chunked_neighbours(q, ArrayLatents(db), 20, **kwargs),
                 new)
    bad = np.where(db > 1, np.nan, db)
    with pytest.warns(AstropyDeprecationWarning), pytest.raises(ValueError, match="NaN"):
        galmorphsearch.database.chunked_neighbours(q, bad, 1)


def test_array_and_source_give_the_same_neighbours(data):
    q, db = data["qgauss"], data["gauss"]
    for rows in (None, 1000):
        same(exact_neighbours(q, db, 5, chunk_rows=rows),
             exact_neighbours(q, ArrayLatents(db), 5, chunk_rows=rows))


def test_exact_neighbours_of_anything_with_a_latent_source():
    # A LatentDatabase is searched through its latent_source, as
    # chunked_neighbours did (test_database_storage searches real ones).
    class Holder:
        def __init__(self, source):
            self.latent_source = source

    db = np.random.default_rng(3).normal(size=(50, 4)).astype(np.float32)
    same(exact_neighbours(db[:3], Holder(ArrayLatents(db)), 2),
         exact_neighbours(db[:3], ArrayLatents(db), 2))


def test_kernel_block_limit_is_one_module_constant(monkeypatch, data):
    # The one kernel: the block limit of neighbours is the one the search uses.
    from galmorphsearch.search import ExactBackend

    monkeypatch.setattr(kernel_module, "_MAX_BLOCK_ELEMENTS", 40)
    q, db = data["qties"], data["ties"]
    backend = ExactBackend(chunk_rows=10).fit(db)
    same(backend.search(q, 5), exact_neighbours(q, db, 5, chunk_rows=10))


@pytest.mark.parametrize("name", ["build_database", "local_cluster"])
def test_pipeline_names_in_database_are_deprecated(name):
    with pytest.warns(AstropyDeprecationWarning, match=f"galmorphsearch.pipeline.{name}"):
        moved = getattr(galmorphsearch.database, name)
    assert moved is getattr(galmorphsearch.pipeline, name)
    assert name not in galmorphsearch.database.__all__
    with pytest.raises(AttributeError, match="no attribute"):
        galmorphsearch.database.no_such_name  # noqa: B018


def test_kernel_is_the_public_surface_of_the_exact_search(data):
    # The building blocks the search backends use are public, documented
    # names of galmorphsearch.latents.kernel, and give exact_neighbours.
    for name in kernel_module.__all__:
        obj = getattr(kernel_module, name)
        assert not callable(obj) or "Parameters" in obj.__doc__, name
    q, db = data["qties"], data["ties"]
    queries = kernel_module.as_latents(q, "queries")
    database = kernel_module.as_latents(db, "database")
    kernel_module.check_finite(database, "database")
    k = kernel_module.check_k(np.int64(7), len(database))
    exclude = kernel_module.check_exclude(-1, len(queries), len(database))
    same(kernel_module.checked_neighbours(queries, database, k, None, 64, exclude),
         exact_neighbours(q, db, 7, chunk_rows=64))
    with pytest.raises(ValueError, match="k=3 is larger than the 2 latents"):
        kernel_module.check_k(3, 2, "latents")
