# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the search backends: exact over latent sources, faiss, 'auto', index files."""

import hashlib
import json
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Table
from astropy.utils.exceptions import AstropyDeprecationWarning
from numpy.testing import assert_allclose, assert_array_equal

from galmorphsearch.database import ArrayLatents, as_latent_source, is_latent_source, latent_hash
from galmorphsearch.latents import kernel as kernel_module
from galmorphsearch.search import (
    AUTO_EXACT_MAX_ROWS,
    AutoBackend,
    ExactBackend,
    SimilaritySearcher,
    database_h_similarity,
    exact_neighbours,
    get_backend,
)
from galmorphsearch.utils import StaleIndexError, StaleIndexWarning

DIM = 16


# ----------------------------------------------------------------------
# references and data
def reference_neighbours(queries, database, k, exclude=None):
    """
    The exact search as implemented before the backends were added
    (``similarity._neighbours`` of commit aaac1ec), kept verbatim in
    substance: query blocks outside, database chunks inside, float32
    candidates re-ranked in float64, ties by row number.
    """
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    database = np.ascontiguousarray(database, dtype=np.float32)
    chunk_size = 32768
    n_q, n_db = queries.shape[0], database.shape[0]
    n_cand = min(k + 8, n_db)
    db_sqnorms32 = np.einsum("ij,ij->i", database, database, dtype=np.float64).astype(np.float32)
    exclude = None if exclude is None else np.asarray(exclude, dtype=np.int64)
    out_idx = np.empty((n_q, k), dtype=np.int64)
    out_dist = np.empty((n_q, k), dtype=np.float64)
    q = queries
    rows = np.arange(n_q)
    best_idx = best_score = None
    for d0 in range(0, n_db, chunk_size):
        d1 = min(d0 + chunk_size, n_db)
        scores = q @ database[d0:d1].T
        scores *= -2.0
        scores += db_sqnorms32[np.newaxis, d0:d1]
        if exclude is not None:
            hit = (exclude >= d0) & (exclude < d1)
            scores[rows[hit], exclude[hit] - d0] = np.inf
        nc = d1 - d0
        if nc > n_cand:
            part = np.argpartition(scores, n_cand - 1, axis=1)[:, :n_cand]
        else:
            part = np.broadcast_to(np.arange(nc), (n_q, nc))
        cand_score = np.take_along_axis(scores, part, axis=1)
        cand_idx = part + d0
        if best_idx is None:
            best_idx, best_score = cand_idx, cand_score
        else:
            best_idx = np.concatenate([best_idx, cand_idx], axis=1)
            best_score = np.concatenate([best_score, cand_score], axis=1)
            if best_idx.shape[1] > n_cand:
                part = np.argpartition(best_score, n_cand - 1, axis=1)[:, :n_cand]
                best_idx = np.take_along_axis(best_idx, part, axis=1)
                best_score = np.take_along_axis(best_score, part, axis=1)
    diff = database[best_idx].astype(np.float64)
    diff -= q[:, np.newaxis, :].astype(np.float64)
    dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    if exclude is not None:
        dist[best_idx == exclude[:, np.newaxis]] = np.inf
    order = np.lexsort((best_idx, dist), axis=1)[:, :k]
    out_idx[:] = np.take_along_axis(best_idx, order, axis=1)
    out_dist[:] = np.take_along_axis(dist, order, axis=1)
    return out_idx, out_dist


def clustered(n=2000, dim=DIM, n_clusters=40, seed=0, spread=0.5):
    """Latents in Gaussian clusters, like the types of a morphology scheme."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim)) * 4
    labels = rng.integers(0, n_clusters, n)
    return (centres[labels] + rng.normal(size=(n, dim)) * spread).astype(np.float32)


def queries_near(latents, n=50, seed=1, scale=0.2):
    rng = np.random.default_rng(seed)
    rows = rng.choice(latents.shape[0], n, replace=False)
    noise = rng.normal(size=(n, latents.shape[1])) * scale
    return (latents[rows] + noise).astype(np.float32), rows


def recall(found, truth):
    return np.mean([np.intersect1d(f, t).size / t.size for f, t in zip(found, truth, strict=True)])


class CountingSource:
    """A latent source that reuses one buffer and counts the passes over it."""

    def __init__(self, array, dtype=np.float32):
        self._array = np.asarray(array, dtype=dtype)
        self.passes = 0
        self.taken = 0

    def __len__(self):
        return self._array.shape[0]

    @property
    def dim(self):
        return self._array.shape[1]

    @property
    def dtype(self):
        return self._array.dtype

    def iter_chunks(self, chunk_rows):
        self.passes += 1
        buf = np.empty((chunk_rows, self.dim), dtype=np.float32)
        for start in range(0, len(self), chunk_rows):
            n = min(chunk_rows, len(self) - start)
            buf[:n] = self._array[start:start + n]
            yield start, buf[:n]
            buf[:n] = np.nan  # a reused buffer: nothing may keep a reference

    def take(self, indices):
        idx = np.asarray(indices)
        assert np.all(np.diff(idx) > 0), "take() is asked for sorted, unique rows"
        self.taken += idx.size
        return self._array[idx].astype(np.float32)


def make_table(latent, seed=2, first_objid=5000):
    rng = np.random.default_rng(seed)
    n = latent.shape[0]
    types = np.array(["Er", "Sb", "Sc", "SBb"])
    type_index = rng.integers(0, 4, n)
    background = (latent + rng.normal(size=latent.shape) * 4).astype(np.float32)
    table = Table()
    table["objid"] = np.arange(first_objid, first_objid + n, dtype=np.int64)
    table["ra"] = rng.uniform(0, 360, n) * u.deg
    table["dec"] = rng.uniform(-30, 30, n) * u.deg
    table["morphology"] = types[type_index]
    table["type_index"] = np.array([0, 5, 6, 9])[type_index]  # their places in GZ2
    table["catalog"] = "gz2"
    table["latent"] = latent
    table["background_latent"] = background
    table.meta.update({"ENCODER": "fake", "ENCARCH": "fake", "ENCHASH": "0123abcd",
                       "INSIZE": 32, "LATDIM": latent.shape[1], "SCHEME": "gz2"})
    return table


class StandIn:
    """The attributes of LatentDatabase that the searcher uses."""

    def __init__(self, table, path=None, source=None):
        self.table = table
        self.meta = table.meta
        self.latents = np.asarray(table["latent"], dtype=np.float32)
        self.path = path
        if source is not None:
            self.latent_source = source
        bkg = np.asarray(table["background_latent"])
        h = database_h_similarity(self.latents, bkg)
        self.h_similarity_mean = float(np.nanmean(h))
        self.h_similarity_std = float(np.nanstd(h))

    def check_encoder(self, encoder):
        pass


@pytest.fixture
def faiss():
    return pytest.importorskip("faiss")


# ----------------------------------------------------------------------
# latent sources
def test_array_latents_protocol():
    """The one protocol: ArrayLatents (galmorphsearch.database) and duck-typed sources."""
    arr = np.arange(20, dtype=np.float16).reshape(5, 4)
    src = ArrayLatents(arr)
    assert len(src) == 5 and src.dim == 4 and src.dtype == np.float16 and src.in_memory
    blocks = list(src.iter_chunks(2))
    assert [s for s, _ in blocks] == [0, 2, 4]
    assert all(b.dtype == np.float32 for _, b in blocks)
    assert_array_equal(src.take([1, 4]), arr[[1, 4]].astype(np.float32))
    assert ArrayLatents(np.ones((2, 3), ">f4")).dtype == np.dtype("<f4")
    assert ArrayLatents(np.ones((2, 3))).dtype == np.float32
    assert as_latent_source(src) is src
    counting = CountingSource(arr)
    assert is_latent_source(counting) and not is_latent_source(arr)
    assert as_latent_source(counting) is counting
    with pytest.raises(ValueError, match="2-D"):
        ArrayLatents(np.ones(3))
    with pytest.raises(ValueError, match="D > 0"):
        ArrayLatents(np.ones((3, 0)))
    with pytest.raises(ValueError, match="real numbers"):
        ArrayLatents(np.ones((3, 2), complex))


def test_latent_hash_is_lathash():
    """One definition: the sha256 of the latents as stored (the LATHASH keyword)."""
    lat = clustered(300)
    h = latent_hash(lat)
    assert h == hashlib.sha256(lat.astype("<f4").tobytes()).hexdigest()[:16]
    assert latent_hash(CountingSource(lat)) == h
    assert latent_hash(lat.astype(np.float64)) == h
    assert latent_hash(lat[::-1]) != h  # row order counts
    changed = lat.copy()
    changed[123, 4] += 1e-3
    assert latent_hash(changed) != h
    assert latent_hash(lat[:-1]) != h
    half = lat.astype(np.float16)
    assert latent_hash(CountingSource(half, dtype=np.float16)) == latent_hash(half) == \
        hashlib.sha256(half.astype("<f2").tobytes()).hexdigest()[:16]


# ----------------------------------------------------------------------
# exact backend
@pytest.mark.parametrize("chunk_size", [7, 100, 32768])
def test_exact_backend_matches_reference(chunk_size):
    lat = clustered(1500)
    q, rows = queries_near(lat, 40)
    ref_idx, ref_dist = reference_neighbours(q, lat, 12, exclude=rows)
    for latents in (lat, CountingSource(lat)):
        backend = ExactBackend(chunk_rows=chunk_size).fit(latents)
        idx, dist = backend.search(q, 12, exclude=rows)
        assert_array_equal(idx, ref_idx)
        assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)
    idx, dist = exact_neighbours(q, lat, 12, chunk_rows=chunk_size, exclude=rows)
    assert_array_equal(idx, ref_idx)
    assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)
    brute = np.sqrt(((q[:, None, :].astype(float) - lat[None].astype(float)) ** 2).sum(-1))
    brute[np.arange(len(rows)), rows] = np.inf
    assert_allclose(dist, np.sort(brute, axis=1)[:, :12], rtol=1e-12)


@pytest.mark.parametrize("chunk", [None, 7, 32768])
def test_backend_chunk_size_is_a_deprecated_chunk_rows(chunk):
    # chunk_size, the old name of chunk_rows, still works (with a warning)
    # and gives the same results; so does the attribute, and get_backend.
    lat = clustered(300)
    q, rows = queries_near(lat, 10)
    new = ExactBackend(chunk_rows=chunk).fit(lat)
    with pytest.warns(AstropyDeprecationWarning, match="use chunk_rows"):
        old = ExactBackend(chunk_size=chunk).fit(lat)
    assert old.chunk_rows == new.chunk_rows == chunk
    for got, expected in zip(old.search(q, 6, exclude=rows), new.search(q, 6, exclude=rows),
                             strict=True):
        assert_array_equal(got, expected)
    assert repr(new).startswith(f"<ExactBackend chunk_rows={chunk or 'default'},")
    with pytest.warns(AstropyDeprecationWarning, match="chunk_size attribute"):
        assert new.chunk_size == chunk
    with pytest.warns(AstropyDeprecationWarning, match="use chunk_rows"):
        old = get_backend("exact", chunk_size=chunk)
    assert old.chunk_rows == chunk
    with pytest.warns(AstropyDeprecationWarning, match="use chunk_rows"):
        auto = AutoBackend(chunk_size=chunk).fit(lat)
    assert auto.chunk_rows == chunk and auto.backend.chunk_rows == chunk
    for got, expected in zip(auto.search(q, 6, exclude=rows), new.search(q, 6, exclude=rows),
                             strict=True):
        assert_array_equal(got, expected)


def test_backend_chunk_size_errors():
    with pytest.warns(AstropyDeprecationWarning), pytest.raises(ValueError, match="chunk_size"):
        ExactBackend(chunk_size=0)
    with pytest.warns(AstropyDeprecationWarning), pytest.raises(TypeError, match="not both"):
        ExactBackend(chunk_rows=2, chunk_size=2)
    with pytest.warns(AstropyDeprecationWarning), pytest.raises(TypeError, match="not both"):
        AutoBackend(chunk_rows=2, chunk_size=2)
    with pytest.raises(ValueError, match="chunk_rows must be at least 1"):
        AutoBackend(chunk_rows=0)


def test_faiss_chunk_size_is_a_deprecated_chunk_rows(faiss):
    from galmorphsearch.search import FaissBackend

    lat = clustered(200)
    q, rows = queries_near(lat, 10)
    new = FaissBackend("flat", chunk_rows=16).fit(lat)
    with pytest.warns(AstropyDeprecationWarning, match="use chunk_rows"):
        old = FaissBackend("flat", chunk_size=16).fit(lat)
    assert old.chunk_rows == new.chunk_rows == 16
    assert FaissBackend("flat").chunk_rows == 32768
    for got, expected in zip(old.search(q, 6, exclude=rows), new.search(q, 6, exclude=rows),
                             strict=True):
        assert_array_equal(got, expected)


def test_exact_backend_default_blocks_grow_for_few_queries(monkeypatch):
    # With the default chunk size, an in-memory float32 array is compared
    # with few queries in larger blocks (views), as long as the scores of a
    # block stay within _MAX_BLOCK_ELEMENTS; float16 arrays, converted block
    # by block, and an explicit chunk_rows keep their blocks. The results
    # are those of the reference either way.
    from galmorphsearch.search import backends as backends_module

    monkeypatch.setattr(backends_module, "DEFAULT_CHUNK_ROWS", 100)
    monkeypatch.setattr(kernel_module, "_MAX_BLOCK_ELEMENTS", 2000)
    blocks = []
    real_iter = ArrayLatents.iter_chunks

    def counting_iter(self, rows=None):
        for start, chunk in real_iter(self, rows):
            blocks.append(len(chunk))
            yield start, chunk

    monkeypatch.setattr(ArrayLatents, "iter_chunks", counting_iter)
    lat = clustered(3000)
    for latents, chunk_size, n_q, expected in ((lat, None, 1, 2000), (lat, None, 40, 100),
                                               (lat, 100, 1, 100),
                                               (lat.astype(np.float16), None, 1, 100)):
        backend = ExactBackend(chunk_size).fit(latents)
        q, rows = queries_near(lat, n_q)
        blocks.clear()
        idx, dist = backend.search(q, 6, exclude=rows)
        assert max(blocks) == expected
        ref_idx, ref_dist = reference_neighbours(q, latents, 6, exclude=rows)
        assert_array_equal(idx, ref_idx)
        assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)


def test_exact_backend_streams_source_once(monkeypatch):
    lat = clustered(1000)
    src = CountingSource(lat)
    backend = ExactBackend(chunk_rows=64).fit(src)
    assert src.passes == 1 and backend.n_rows == 1000 and backend.latent_dim == DIM
    assert backend.source is src
    # Many query blocks per database chunk: still one pass per search.
    monkeypatch.setattr(kernel_module, "_MAX_BLOCK_ELEMENTS", 64 * 3)
    q, _ = queries_near(lat, 20)
    idx, dist = backend.search(q, 5)
    assert src.passes == 2
    assert src.taken <= 20 * (5 + 8)
    ref_idx, ref_dist = reference_neighbours(q, lat, 5)
    assert_array_equal(idx, ref_idx)
    assert_allclose(dist, ref_dist, rtol=1e-12)


def test_exact_backend_source_errors():
    lat = clustered(100)
    lat[[3, 70]] = np.nan
    with pytest.raises(ValueError, match=r"2 row\(s\) \(first: \[3, 70\]\)"):
        ExactBackend(chunk_rows=16).fit(CountingSource(lat))
    with pytest.raises(ValueError, match="empty"):
        ExactBackend().fit(CountingSource(np.empty((0, 4))))
    backend = ExactBackend().fit(CountingSource(clustered(50)))
    with pytest.raises(ValueError, match="Latent dimensions"):
        backend.search(np.zeros((1, 3)), 1)
    with pytest.raises(ValueError, match="at least 1"):
        backend.search(np.zeros((1, DIM)), 0)
    with pytest.raises(ValueError, match="larger than"):
        backend.search(np.zeros((1, DIM)), 51)
    with pytest.raises(TypeError, match="threads"):
        ExactBackend(threads=1.5)
    with pytest.raises(ValueError, match="threads"):
        ExactBackend(threads=0)


def test_exact_backend_threads():
    lat = clustered(300)
    q, _ = queries_near(lat, 5)
    idx, dist = ExactBackend(threads=1).fit(lat).search(q, 4)
    assert_array_equal(idx, reference_neighbours(q, lat, 4)[0])


def test_searcher_with_source_and_float16():
    """A float16 store: the searcher streams it and still skips the identical image."""
    lat = clustered(400).astype(np.float16).astype(np.float32)
    table = make_table(lat)
    src = CountingSource(lat, dtype=np.float16)
    searcher = SimilaritySearcher(StandIn(table, source=src))
    assert src.passes == 1
    exact = SimilaritySearcher(StandIn(table))
    q = clustered(400)[[10, 20]]  # the float32 latents whose float16 copies are stored
    bkg = q + 3
    res = searcher.search_latents(q, bkg, k=3)
    assert 5010 not in res["objid"][:3] and 5020 not in res["objid"][3:]
    assert np.all(res["Sp"] < 100)
    # Searched as float32 latents (the float32 tolerance), the stored copy comes first.
    full = exact.search_latents(q, bkg, k=4)
    assert list(full["objid"][[0, 4]]) == [5010, 5020]
    assert_array_equal(res["objid"], np.r_[full["objid"][1:4], full["objid"][5:8]])
    assert_allclose(res["Sp"], np.r_[full["Sp"][1:4], full["Sp"][5:8]], rtol=1e-12)


# ----------------------------------------------------------------------
# registry, errors and the optional dependency
def test_faiss_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    for name in ("faiss", "faiss-flat", "faiss-ivf", "faiss-hnsw"):
        with pytest.raises(ImportError, match=r'pip install "galmorphsearch\[scale\]"'):
            get_backend(name)
    lat = clustered(200)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend = AutoBackend(max_exact_rows=10).fit(lat)
    assert backend.name == "exact" and "not installed" in backend.reason
    searcher = SimilaritySearcher(StandIn(make_table(lat)), backend="auto")
    assert searcher.backend.name == "exact"


def test_backend_option_errors(faiss):
    from galmorphsearch.search import FaissBackend

    with pytest.raises(ValueError, match=r"choose one of \['flat', 'ivf', 'hnsw'\]"):
        FaissBackend("pq")
    with pytest.raises(ValueError, match="nlist does not apply"):
        FaissBackend("flat", nlist=4)
    with pytest.raises(ValueError, match="ef_search does not apply"):
        get_backend("faiss-ivf", ef_search=4)
    with pytest.raises(ValueError, match="at least 1"):
        FaissBackend("ivf", nprobe=0)
    with pytest.raises(ValueError, match="target_recall"):
        FaissBackend("ivf", target_recall=1.5)
    with pytest.raises(TypeError, match="kind="):
        get_backend("faiss-ivf", kind="hnsw")
    assert get_backend("faiss", kind="hnsw").name == "faiss-hnsw"
    with pytest.raises(ValueError, match="nlist=64 is larger than the 50"):
        FaissBackend("ivf", nlist=64).fit(clustered(50))
    with pytest.raises(ValueError, match="on_stale"):
        FaissBackend("flat").fit(clustered(50), on_stale="ignore")
    with pytest.raises(TypeError, match="Unknown option"):
        AutoBackend(M=4)
    with pytest.raises(RuntimeError, match="fit"):
        FaissBackend("flat").search(np.zeros((1, DIM)), 1)
    lat = clustered(60)
    lat[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"NaN or infinite values in 1 row\(s\) \(first: \[5\]\)"):
        FaissBackend("flat", chunk_rows=16).fit(lat)
    table = make_table(clustered(60))
    with pytest.raises(ValueError, match="threads applies"):
        SimilaritySearcher(StandIn(table), backend=ExactBackend(), threads=1)
    with pytest.raises(ValueError, match="index_path applies"):
        SimilaritySearcher(StandIn(table), index_path="x.index")
    with pytest.raises(ValueError, match="Unknown search backend 'annoy'; choose one of"):
        SimilaritySearcher(StandIn(table), backend="annoy")


def test_scale_extra_declared():
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not pyproject.exists():
        pytest.skip("not run from a source checkout")
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    names = {req.split(">")[0].split("[")[0] for req in extras["scale"]}
    assert names == {"faiss-cpu", "dask", "psutil"}
    assert set(extras["scale"]) <= set(extras["all"])


# ----------------------------------------------------------------------
# faiss backends
def test_faiss_flat_matches_exact(faiss):
    lat = clustered(1500)
    q, rows = queries_near(lat, 40)
    ref_idx, ref_dist = reference_neighbours(q, lat, 10, exclude=rows)
    backend = get_backend("faiss-flat").fit(lat)
    assert backend.exact and backend.search_parameter is None
    idx, dist = backend.search(q, 10, exclude=rows)
    assert_array_equal(idx, ref_idx)
    assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)
    assert dist.dtype == np.float64 and idx.dtype == np.int64
    # An identical vector is at distance exactly 0, as with the exact backend.
    idx, dist = backend.search(lat[[3, 9]], 1)
    assert_array_equal(idx[:, 0], [3, 9]) and np.all(dist == 0)


def test_searcher_faiss_flat_same_table_as_exact(faiss):
    lat = clustered(800)
    table = make_table(lat)
    q, rows = queries_near(lat, 6)
    q[0] = lat[rows[0]]  # the same image: skipped
    bkg = q + np.random.default_rng(3).normal(size=q.shape).astype(np.float32) * 4
    db = StandIn(table)
    exclude = [None, int(table["objid"][rows[1]]), None, None, None, None]
    results = {}
    for name in ("exact", "faiss-flat"):
        searcher = SimilaritySearcher(db, backend=name)
        results[name] = (searcher.search_latents(q, bkg, k=7, exclude_objids=exclude),
                         searcher.classify_latents(q, bkg, k=5, vote=True,
                                                   exclude_objids=exclude))
    (a, ca), (b, cb) = results["exact"], results["faiss-flat"]
    assert_array_equal(a["objid"], b["objid"])
    assert_allclose(b["Sp"], a["Sp"], rtol=1e-12)
    assert_allclose(b["distance"], a["distance"], rtol=1e-12)
    assert a.meta["BACKEND"] == "exact" and b.meta["BACKEND"] == "faiss-flat"
    assert a.meta["EXACTNN"] and b.meta["EXACTNN"]
    assert_allclose(cb["H_similarity"], ca["H_similarity"], rtol=1e-12)
    assert_array_equal(ca["matched_objid"], cb["matched_objid"])
    # Sp as the formula gives it from the reference distances.
    ref_idx, ref_dist = reference_neighbours(q[2:], lat, 7)
    back = np.linalg.norm(q[2:].astype(float) - bkg[2:].astype(float), axis=1)
    sp = (1 - ref_dist / back[:, None]) * 100
    assert_allclose(b["Sp"][14:], sp.ravel(), rtol=1e-12)
    assert_array_equal(b["objid"][14:], table["objid"][ref_idx.ravel()])
    assert rows[0] + 5000 not in b["objid"][:7] and np.all(b["Sp"][:7] < 100)
    assert rows[1] + 5000 not in b["objid"][7:14]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_recall_and_exact_distances(faiss, kind):
    lat = clustered(3000, dim=32, n_clusters=30)
    q, _ = queries_near(lat, 100)
    backend = get_backend(f"faiss-{kind}", seed=3).fit(lat)
    assert not backend.exact and backend.search_parameter >= 1
    assert backend.recall >= 0.95
    idx, dist = backend.search(q, 10)
    ref_idx, ref_dist = reference_neighbours(q, lat, 10)
    assert recall(idx, ref_idx) >= 0.95
    # Every returned distance is the exact float64 distance of that row.
    exact = np.linalg.norm(lat[idx].astype(float) - q[:, None, :].astype(float), axis=2)
    assert_allclose(dist, exact, rtol=1e-12)
    assert np.all(np.diff(dist, axis=1) >= 0)
    # Where the row agrees with the exact result, so does the distance.
    same = idx == ref_idx
    assert_allclose(dist[same], ref_dist[same], rtol=1e-12)


def test_ivf_padding_labels_fall_back_to_exact(faiss):
    from galmorphsearch.search import FaissBackend

    lat = clustered(400, n_clusters=10)
    backend = FaissBackend("ivf", nlist=10, nprobe=1).fit(lat)
    q, rows = queries_near(lat, 20)
    _, labels = backend.index.search(q, 120)
    assert np.any(labels == -1)  # short probed lists are padded with -1
    idx, dist = backend.search(q, 110, exclude=rows)
    ref_idx, ref_dist = reference_neighbours(q, lat, 110, exclude=rows)
    assert np.all(idx >= 0)
    assert_array_equal(idx, ref_idx)
    assert_allclose(dist, ref_dist, rtol=1e-12)


def test_ivf_identical_image_and_h_similarity(faiss):
    lat = clustered(2000, dim=32)
    table = make_table(lat)
    db = StandIn(table)
    rows = np.arange(0, 2000, 97)
    q = lat[rows]  # the database's own images
    bkg = q + 5
    exact = SimilaritySearcher(db, backend="exact").classify_latents(q, bkg)
    for name in ("faiss-ivf", "faiss-hnsw"):
        searcher = SimilaritySearcher(db, backend=name)
        res = searcher.search_latents(q, bkg, k=3)
        assert not np.any(res["objid"] == np.repeat(table["objid"][rows], 3))
        assert np.all(res["Sp"] < 100) and res.meta["EXACTNN"] is False
        cls = searcher.classify_latents(q, bkg)
        same = cls["matched_objid"] == exact["matched_objid"]
        assert same.mean() >= 0.9
        assert_allclose(cls["H_similarity"][same], exact["H_similarity"][same], rtol=1e-12)


def test_faiss_threads_restored(faiss):
    from galmorphsearch.search import FaissBackend

    before = faiss.omp_get_max_threads()
    lat = clustered(500)
    backend = FaissBackend("hnsw", threads=1).fit(lat)
    backend.search(lat[:3], 2)
    assert faiss.omp_get_max_threads() == before
    searcher = SimilaritySearcher(StandIn(make_table(lat)), backend="faiss-flat", threads=1)
    assert searcher.backend.threads == 1


# ----------------------------------------------------------------------
# backend='auto'
def test_auto_rule(faiss):
    lat = clustered(1000)
    small = AutoBackend().fit(lat)
    assert small.name == "exact" and small.exact and "max_exact_rows" in small.reason
    assert AUTO_EXACT_MAX_ROWS == 250_000
    big = AutoBackend(max_exact_rows=500, seed=1).fit(lat)
    assert big.name == "faiss-ivf" and big.exact is False
    q, _ = queries_near(lat, 5)
    assert big.search(q, 3)[0].shape == (5, 3)
    streamed = AutoBackend(max_exact_rows=500).fit(CountingSource(lat))
    assert streamed.name == "exact" and "not in memory" in streamed.reason
    searcher = SimilaritySearcher(StandIn(make_table(lat)), backend="auto")
    assert searcher.backend.name == "exact"
    assert "exact" in repr(searcher)


# ----------------------------------------------------------------------
# index files
def sidecar(path):
    return json.loads(Path(f"{path}.json").read_text())


def test_index_file_saved_loaded_and_checked(faiss, tmp_path, monkeypatch):
    from galmorphsearch.search import FaissBackend

    lat = clustered(1200)
    path = tmp_path / "db.fits.faiss-ivf.index"
    prov = {"ENCHASH": "0123abcd", "FILE": "db.fits"}
    first = FaissBackend("ivf", seed=2).fit(lat, index_path=path, provenance=prov)
    assert first.index_state == "saved" and path.exists()
    info = sidecar(path)
    assert info["format"] == "galmorphsearch-index" and info["backend"] == "faiss-ivf"
    db = info["database"]
    assert db["NROWS"] == 1200 and db["LATDIM"] == DIM and db["ENCHASH"] == "0123abcd"
    assert db["LATHASH"] == latent_hash(lat) and db["LATHSRC"] == "computed"
    assert db["LATTYPE"] == "float32" and db["FILE"] == "db.fits"
    assert info["params"]["nlist"] == first.index.nlist
    assert info["params"]["nprobe"] == first.search_parameter
    assert info["index_size"] == path.stat().st_size
    assert path.read_bytes()[:4] == b"IwFl"  # faiss's own binary format, no pickle

    # An up-to-date index is loaded, not rebuilt.
    def no_build(self, source):
        raise AssertionError("rebuilt")

    with monkeypatch.context() as m:
        m.setattr(FaissBackend, "_build", no_build)
        second = FaissBackend("ivf").fit(lat, index_path=path, provenance=prov)
    assert second.index_state == "loaded"
    assert second.search_parameter == first.search_parameter
    q, _ = queries_near(lat, 10)
    for a, b in zip(first.search(q, 5), second.search(q, 5), strict=True):
        assert_array_equal(a, b)
    # A LATHASH keyword carried by the database is recorded instead.
    keyword_path = tmp_path / "k.index"
    FaissBackend("ivf").fit(lat, index_path=keyword_path,
                            provenance={"LATHASH": "feedfacefeedface"})
    assert sidecar(keyword_path)["database"]["LATHSRC"] == "keyword"
    assert sidecar(keyword_path)["database"]["LATHASH"] == "feedfacefeedface"
    with pytest.warns(StaleIndexWarning, match="the latents differ"):
        FaissBackend("ivf").fit(lat, index_path=keyword_path,
                                provenance={"LATHASH": "0000000000000000"})


@pytest.mark.parametrize("change", ["value", "order", "rows", "encoder", "nlist", "damaged"])
def test_stale_index_rebuilt_or_refused(faiss, tmp_path, change):
    from galmorphsearch.search import FaissBackend

    lat = clustered(1200)
    path = tmp_path / "db.index"
    FaissBackend("ivf").fit(lat, index_path=path, provenance={"ENCHASH": "aaaa"})
    new, prov, kwargs = lat.copy(), {"ENCHASH": "aaaa"}, {}
    expected = "the latents differ"
    if change == "value":
        new[100, 3] += 0.5
    elif change == "order":
        new = new[np.r_[1, 0, 2:1200]]
    elif change == "rows":
        new, expected = new[:-1], "rows 1200 in the index, 1199"
    elif change == "encoder":
        prov, expected = {"ENCHASH": "bbbb"}, "encoder hash"
    elif change == "nlist":
        kwargs, expected = {"nlist": 8}, "nlist="
    else:
        with open(path, "ab") as f:
            f.write(b"\0")
        expected = "does not match its sidecar"
    old_bytes = path.read_bytes()
    with pytest.raises(StaleIndexError, match=expected):
        FaissBackend("ivf", **kwargs).fit(new, index_path=path, provenance=prov,
                                          on_stale="raise")
    assert path.read_bytes() == old_bytes  # refused: nothing touched
    with pytest.warns(StaleIndexWarning, match=expected):
        backend = FaissBackend("ivf", **kwargs).fit(new, index_path=path, provenance=prov)
    assert backend.index_state == "rebuilt"
    assert sidecar(path)["database"]["LATHASH"] == latent_hash(new)
    assert backend.index.ntotal == new.shape[0]
    # The rebuilt files are up to date.
    again = FaissBackend("ivf", **kwargs).fit(new, index_path=path, provenance=prov,
                                              on_stale="raise")
    assert again.index_state == "loaded"


def test_foreign_file_never_overwritten(faiss, tmp_path):
    from galmorphsearch.search import FaissBackend

    lat = clustered(300)
    path = tmp_path / "mine.index"
    path.write_bytes(b"not an index")
    with pytest.raises(FileExistsError, match="not a galmorphsearch index"):
        FaissBackend("hnsw").fit(lat, index_path=path)
    assert path.read_bytes() == b"not an index"
    other = tmp_path / "other.index"
    Path(f"{other}.json").write_text('{"format": "something else"}')
    with pytest.raises(FileExistsError, match="not a galmorphsearch sidecar"):
        FaissBackend("hnsw").fit(lat, index_path=other)


def test_save_overwrite(faiss, tmp_path):
    from galmorphsearch.search import FaissBackend

    lat = clustered(300)
    backend = FaissBackend("hnsw", M=8)
    with pytest.raises(RuntimeError, match="fit"):
        backend.save(tmp_path / "x.index")
    backend.fit(lat)
    path = tmp_path / "x.index"
    backend.save(path, provenance={"ENCHASH": "abc"})
    assert sidecar(path)["params"]["M"] == 8
    assert sidecar(path)["database"]["LATHASH"] == latent_hash(lat)  # from the index itself
    with pytest.raises(FileExistsError, match="overwrite=True"):
        backend.save(path)
    backend.save(path, overwrite=True)
    loaded = FaissBackend("hnsw").fit(lat, index_path=path)
    assert loaded.index_state == "loaded"
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left


def test_searcher_index_beside_database_file(faiss, tmp_path):
    database = pytest.importorskip("galmorphsearch.database")
    lat = clustered(600)
    db_path = tmp_path / "db.fits"
    database.LatentDatabase(make_table(lat)).write(db_path)
    db = database.LatentDatabase.read(db_path)
    assert db.path == db_path
    searcher = SimilaritySearcher(db, backend="faiss-ivf")
    index = tmp_path / "db.fits.faiss-ivf.index"
    assert searcher.index_path == index and index.exists()
    assert searcher.backend.index_state == "saved"
    info = sidecar(index)["database"]
    assert info["FILE"] == "db.fits" and info["ENCHASH"] == "0123abcd"
    again = SimilaritySearcher(database.LatentDatabase.read(db_path), backend="faiss-ivf")
    assert again.backend.index_state == "loaded"
    q, _ = queries_near(lat, 3)
    assert_array_equal(searcher.search_latents(q, q + 4, k=4)["objid"],
                       again.search_latents(q, q + 4, k=4)["objid"])
    # No file for the exact backends, nor without index_path.
    assert SimilaritySearcher(db, backend="faiss-flat").index_path is None
    assert SimilaritySearcher(db, backend="faiss-hnsw", index_path=None).index_path is None
    assert not (tmp_path / "db.fits.faiss-hnsw.index").exists()
    # The database file is replaced by other latents: the index is rebuilt.
    changed = lat.copy()
    changed[0] += 1
    database.LatentDatabase(make_table(changed)).write(db_path, overwrite=True)
    with pytest.raises(StaleIndexError):
        SimilaritySearcher(database.LatentDatabase.read(db_path), backend="faiss-ivf",
                           on_stale="raise")
    with pytest.warns(StaleIndexWarning, match="rebuilding"):
        rebuilt = SimilaritySearcher(database.LatentDatabase.read(db_path), backend="faiss-ivf")
    assert rebuilt.backend.index_state == "rebuilt"
    # After append() the database no longer matches its file: no index is saved.
    db.append(database.LatentDatabase(make_table(clustered(5, seed=9), first_objid=1)))
    assert db.path is None


def test_searcher_auto_uses_index_beside_database(faiss, tmp_path):
    lat = clustered(700)
    table = make_table(lat)
    db = StandIn(table, path=tmp_path / "big.fits")
    searcher = SimilaritySearcher(db, backend=AutoBackend(max_exact_rows=100))
    assert searcher.backend.name == "faiss-ivf"
    assert (tmp_path / "big.fits.faiss-ivf.index").exists()
    again = SimilaritySearcher(db, backend=AutoBackend(max_exact_rows=100))
    assert again.backend.backend.index_state == "loaded"
    assert again.search_latents(lat[0] + 0.1, lat[0] + 4, k=2).meta["BACKEND"] == "faiss-ivf"


def test_index_kept_in_memory_when_it_cannot_be_saved(faiss, tmp_path, monkeypatch):
    from galmorphsearch.search import backends
    from galmorphsearch.utils import GalMorphSearchWarning

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(backends, "write_index_files", read_only)
    lat = clustered(300)
    db = StandIn(make_table(lat), path=tmp_path / "shared.fits")
    with pytest.warns(GalMorphSearchWarning, match="kept in memory only"):
        searcher = SimilaritySearcher(db, backend="faiss-hnsw")
    assert searcher.index_path is None and searcher.backend.index_state == "built"
    assert searcher.search_latents(lat[1] + 0.1, lat[1] + 4, k=2)["objid"][0] == 5001
    with pytest.raises(PermissionError):
        searcher.backend.save(tmp_path / "x.index")
    assert not list(tmp_path.iterdir())


def test_index_records_latents_as_stored(faiss, tmp_path):
    """The sidecar holds LATHASH of the latents as stored (float16 here), as the database does."""
    from galmorphsearch.search import FaissBackend

    lat = clustered(500).astype(np.float16)
    path = tmp_path / "h.index"
    FaissBackend("hnsw").fit(CountingSource(lat, dtype=np.float16), index_path=path)
    info = sidecar(path)["database"]
    assert info["LATTYPE"] == "float16" and info["LATHASH"] == latent_hash(lat)
    # The same stored latents, from another source (a float16 table in memory).
    again = FaissBackend("hnsw").fit(lat, index_path=path, on_stale="raise")
    assert again.index_state == "loaded"
    # The values widened to float32 are other stored latents (another LATHASH).
    with pytest.raises(StaleIndexError, match="latents stored as 'float16' in the index"):
        FaissBackend("hnsw").fit(lat.astype(np.float32), index_path=path, on_stale="raise")


def test_faiss_after_torch(faiss):
    """torch and faiss each bring an OpenMP runtime: both work in one process."""
    torch = pytest.importorskip("torch")
    from galmorphsearch.search import FaissBackend

    lat = clustered(800)
    backend = FaissBackend("ivf", threads=1).fit(lat)
    x = torch.from_numpy(lat[:4]) @ torch.from_numpy(lat[:4]).T
    idx, _ = backend.search(lat[:4], 1)
    assert_array_equal(idx[:, 0], np.arange(4)) and x.shape == (4, 4)
