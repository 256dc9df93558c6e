# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the similarity Sp and of exact nearest-neighbour search."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from galmorphsearch.search import database_h_similarity, exact_neighbours, similarity_percent
from galmorphsearch.search.similarity import database_h_similarity as dhs_direct


def brute_force(queries, database, k, exclude=None):
    q = np.asarray(queries, dtype=np.float32).astype(np.float64)
    db = np.asarray(database, dtype=np.float32).astype(np.float64)
    dist = np.sqrt(((q[:, None, :] - db[None, :, :]) ** 2).sum(axis=-1))
    if exclude is not None:
        for i, e in enumerate(exclude):
            if e >= 0:
                dist[i, e] = np.inf
    idx = np.argsort(dist, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(dist, idx, axis=1)


@pytest.fixture
def rng():
    return np.random.default_rng(20230801)


def test_import_path():
    assert dhs_direct is database_h_similarity


@pytest.mark.parametrize("chunk_rows", [1, 7, 50, 64, 65, 1000])
@pytest.mark.parametrize("k", [1, 5, 30])
def test_exact_matches_brute_force(rng, chunk_rows, k):
    db = rng.normal(size=(130, 12)).astype(np.float32)
    q = rng.normal(size=(9, 12)).astype(np.float32)
    idx, dist = exact_neighbours(q, db, k, chunk_rows=chunk_rows)
    bidx, bdist = brute_force(q, db, k)
    assert idx.shape == (9, k) and idx.dtype == np.int64
    assert dist.shape == (9, k) and dist.dtype == np.float64
    assert_array_equal(idx, bidx)
    assert_allclose(dist, bdist, rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_exact_k_equals_n(rng):
    db = rng.normal(size=(20, 4))
    idx, dist = exact_neighbours(db[:3], db, 20, chunk_rows=6)
    bidx, bdist = brute_force(db[:3], db, 20)
    assert_array_equal(idx, bidx)
    assert_allclose(dist, bdist)
    assert_array_equal(idx[:, 0], [0, 1, 2])
    assert_array_equal(dist[:, 0], 0.0)


def test_exact_many_query_blocks(rng, monkeypatch):
    from galmorphsearch.latents import kernel

    monkeypatch.setattr(kernel, "_MAX_BLOCK_ELEMENTS", 40)
    db = rng.normal(size=(50, 6)).astype(np.float32)
    q = rng.normal(size=(23, 6)).astype(np.float32)
    idx, dist = exact_neighbours(q, db, 3, chunk_rows=10)
    bidx, bdist = brute_force(q, db, 3)
    assert_array_equal(idx, bidx)
    assert_allclose(dist, bdist)


def test_exact_identical_vector_has_zero_distance(rng):
    # Large norms make ||a||^2 - 2ab + ||b||^2 cancel badly in float32; the
    # float64 re-ranking must still give exactly 0.
    db = (rng.normal(size=(40, 64)) * 100 + 500).astype(np.float32)
    idx, dist = exact_neighbours(db[[3, 17]], db, 2)
    assert_array_equal(idx[:, 0], [3, 17])
    assert_array_equal(dist[:, 0], 0.0)
    assert np.all(dist[:, 1] > 0)


@pytest.mark.parametrize("chunk_rows", [1, 4, 100])
def test_exact_exclude(rng, chunk_rows):
    db = rng.normal(size=(30, 5)).astype(np.float32)
    q = db[[0, 5, 29, 7]]
    exclude = np.array([0, 5, 29, -1])
    idx, dist = exact_neighbours(q, db, 4, chunk_rows=chunk_rows, exclude=exclude)
    bidx, bdist = brute_force(q, db, 4, exclude=exclude)
    assert_array_equal(idx, bidx)
    assert_allclose(dist, bdist)
    assert not np.any(idx[:3] == exclude[:3, None])
    assert idx[3, 0] == 7 and dist[3, 0] == 0


def test_exact_exclude_all_but_one():
    db = np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]])
    idx, dist = exact_neighbours(db, db, 2, exclude=[0, 1, 2], chunk_rows=1)
    assert_array_equal(idx, [[1, 2], [0, 2], [1, 0]])
    with pytest.raises(ValueError, match="larger than"):
        exact_neighbours(db, db, 3, exclude=[0, 1, 2])


def test_exact_single_query_vector(rng):
    db = rng.normal(size=(10, 3))
    idx, dist = exact_neighbours(db[4], db, 1)
    assert idx.shape == (1, 1) and idx[0, 0] == 4


def test_exact_errors(rng):
    db = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match="at least 1"):
        exact_neighbours(db, db, 0)
    with pytest.raises(ValueError, match="larger than"):
        exact_neighbours(db, db, 11)
    with pytest.raises(TypeError, match="integer"):
        exact_neighbours(db, db, 2.5)
    with pytest.raises(ValueError, match="Latent dimensions differ"):
        exact_neighbours(db[:, :2], db, 1)
    bad = db.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        exact_neighbours(bad, db, 1)
    with pytest.raises(ValueError, match="NaN"):
        exact_neighbours(db, bad, 1)
    with pytest.raises(ValueError, match="2-D"):
        exact_neighbours(db[None], db, 1)
    with pytest.raises(ValueError, match="exclude"):
        exact_neighbours(db, db, 1, exclude=[0, 1])
    with pytest.raises(ValueError, match="outside"):
        exact_neighbours(db[:2], db, 1, exclude=[0, 10])
    with pytest.raises(ValueError, match="chunk_rows"):
        exact_neighbours(db, db, 1, chunk_rows=0)
    with pytest.raises(TypeError, match="chunk_rows"):
        exact_neighbours(db, db, 1, chunk_rows=2.5)
    with pytest.raises(ValueError, match="empty"):
        exact_neighbours(db, db[:0], 1)


def test_similarity_percent_values():
    assert similarity_percent(0.0, 3.0) == 100.0
    assert similarity_percent(3.0, 3.0) == 0.0
    assert similarity_percent(6.0, 3.0) == -100.0
    assert_allclose(similarity_percent([1.0, 2.0], [4.0, 8.0]), [75.0, 75.0])
    assert isinstance(similarity_percent(1.0, 2.0), float)


def test_similarity_percent_errors():
    with pytest.raises(ValueError, match="undefined"):
        similarity_percent(1.0, 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        similarity_percent(-1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        similarity_percent(np.nan, 1.0)


def brute_h_similarity(lat, bkg):
    lat = np.asarray(lat, dtype=np.float32).astype(np.float64)
    bkg = np.asarray(bkg, dtype=np.float32).astype(np.float64)
    n = len(lat)
    out = np.full(n, np.nan)
    for i in range(n):
        back = np.linalg.norm(lat[i] - bkg[i])
        d = np.linalg.norm(lat - lat[i], axis=1)
        d[i] = np.inf
        d[d == 0] = np.inf
        if np.isfinite(d.min()) and back > 0:
            out[i] = (1 - d.min() / back) * 100
    return out


def test_database_h_similarity_brute_force(rng):
    lat = rng.normal(size=(60, 8)).astype(np.float32)
    bkg = lat + rng.normal(size=(60, 8)).astype(np.float32) * 3
    h = database_h_similarity(lat, bkg, chunk_rows=16)
    assert h.dtype == np.float64 and h.shape == (60,)
    assert_allclose(h, brute_h_similarity(lat, bkg), rtol=1e-10)


def test_database_h_similarity_skips_identical(rng):
    lat = rng.normal(size=(12, 4)).astype(np.float32)
    # Row 0 has 6 identical copies: more than the first k neighbours.
    lat[1:7] = lat[0]
    bkg = lat + 5.0
    h = database_h_similarity(lat, bkg)
    assert np.all(h < 100)
    assert_allclose(h, brute_h_similarity(lat, bkg), rtol=1e-10)


def test_database_h_similarity_negative_and_nan():
    lat = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 0.0]])
    bkg = np.array([[1.0, 0.0], [10.0, 0.0], [10.0, 1.0]])
    h = database_h_similarity(lat, bkg)
    # Row 0: nearest other galaxy 10 away, background 1 away: Sp = -900.
    assert h[0] == pytest.approx(-900.0)
    # Row 1: background equals the latent (undefined).
    assert np.isnan(h[1])
    # Row 2: its only identical copy is skipped, nearest distinct is row 0.
    assert h[2] == pytest.approx(-900.0)
    # All identical: nothing to compare with.
    assert np.all(np.isnan(database_h_similarity(np.ones((3, 2)), np.zeros((3, 2)))))
    assert np.isnan(database_h_similarity(np.ones((1, 2)), np.zeros((1, 2))))[0]


def test_database_h_similarity_errors(rng):
    lat = rng.normal(size=(5, 3))
    with pytest.raises(ValueError, match="same shape"):
        database_h_similarity(lat, lat[:4])
    bad = lat.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        database_h_similarity(lat, bad)
