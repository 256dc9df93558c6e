# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
End to end: databases written by the storage code, read out of core
(``memmap=True``) and searched by the backends: the latents are read chunk by
chunk and never loaded whole, index files beside the database are checked
against its LATHASH, and float16 databases recognise a target's own entry.
"""

import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from numpy.testing import assert_allclose, assert_array_equal

from galmorphsearch.database import FITSLatents, HDF5Latents, LatentDatabase, LatentSource
from galmorphsearch.search import (
    IDENTICAL_RTOL,
    AutoBackend,
    ExactBackend,
    SimilaritySearcher,
)
from galmorphsearch.utils import StaleIndexError, StaleIndexWarning

LATDIM = 16


def make_db(n=400, seed=0, start=0):
    """A small database with clustered latents and distant backgrounds."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, LATDIM)) * 4
    labels = rng.integers(0, 12, n)
    latent = (centres[labels] + rng.normal(size=(n, LATDIM)) * 0.6).astype(np.float32)
    types = np.array(["Er", "Sb", "Sc", "SBb"])
    table = Table({
        "objid": np.arange(start, start + n, dtype=np.int64) + 1000,
        "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-30, 30, n),
        "morphology": types[labels % 4],
        "type_index": np.array([0, 5, 6, 9])[labels % 4],
        "catalog": ["test"] * n,
        "latent": latent,
        "background_latent": (latent + rng.normal(size=latent.shape) * 5).astype(np.float32),
    })
    table.meta.update(ENCODER="stub", ENCARCH="resnet18", ENCHASH="0123456789abcdef",
                      INSIZE=64, LATDIM=LATDIM, SCHEME="gz2")
    return LatentDatabase(table)


@pytest.fixture
def faiss():
    return pytest.importorskip("faiss")


@pytest.fixture
def passes(monkeypatch):
    """
    Count the passes over file sources, and fail if anything reads a whole
    latent column into memory (``latents``, ``LatentSource.read``).
    """
    counts = []

    def counting(cls):
        original = cls.iter_chunks

        def iter_chunks(self, chunk_rows=None):
            counts.append(chunk_rows)
            yield from original(self, chunk_rows)

        monkeypatch.setattr(cls, "iter_chunks", iter_chunks)

    counting(FITSLatents)
    counting(HDF5Latents)

    def refuse(*args, **kwargs):
        msg = "the whole latent column was read"
        raise AssertionError(msg)

    monkeypatch.setattr(LatentSource, "read", refuse)
    monkeypatch.setattr(LatentDatabase, "latents", property(refuse))
    monkeypatch.setattr(LatentDatabase, "background_latents", property(refuse))
    return counts


def sidecar(path):
    return json.loads(Path(f"{path}.json").read_text())


def targets(db, rows):
    table = db.table
    return (np.asarray(table["latent"], np.float32)[rows],
            np.asarray(table["background_latent"], np.float32)[rows])


# ----------------------------------------------------------------------
# exact search of an out-of-core database
@pytest.mark.parametrize("suffix", [".fits", ".h5"])
def test_memmap_exact_search_streams_the_file(tmp_path, passes, suffix, monkeypatch):
    from galmorphsearch.latents import sources

    monkeypatch.setattr(sources, "DEFAULT_CHUNK_BYTES", 4096)  # chunks of a few rows
    db = make_db()
    path = tmp_path / f"db{suffix}"
    db.write(path)
    q, bkg = targets(db, [5, 77, 200])
    q = q + 0.05
    reference = SimilaritySearcher(db).search_latents(q, bkg, k=6)
    reference_cls = SimilaritySearcher(db).classify_latents(q, bkg, k=5, vote=True)

    mem = LatentDatabase.read(path, memmap=True)
    assert mem.out_of_core and "latent" not in mem.table.colnames
    rows = mem.latent_source._default_rows(None)  # the file's own chunk size
    assert 1 < rows < len(mem) // 4
    del passes[:]
    searcher = SimilaritySearcher(mem)
    assert searcher.backend.source is mem.latent_source
    assert len(passes) == 1  # the squared norms (and the NaN check), once
    result = searcher.search_latents(q, bkg, k=6)
    assert len(passes) == 2  # one pass per search, whatever the number of targets
    assert passes == [rows, rows]
    assert_array_equal(result["objid"], reference["objid"])
    assert_allclose(result["Sp"], reference["Sp"], rtol=1e-12)
    assert_allclose(result["distance"], reference["distance"], rtol=1e-12)
    cls = searcher.classify_latents(q, bkg, k=5, vote=True)
    assert_array_equal(cls["matched_objid"], reference_cls["matched_objid"])
    assert_allclose(cls["H_similarity"], reference_cls["H_similarity"], rtol=1e-12)

    # The norms are kept with the file source: a second searcher reads nothing to fit.
    again = SimilaritySearcher(mem, backend=ExactBackend(chunk_rows=64))
    assert len(passes) == 3
    assert_array_equal(again.search_latents(q, bkg, k=6)["objid"], reference["objid"])
    assert passes[-1] == 64
    # Pickled (for other processes) without the cached norms.
    assert mem.latent_source._sqnorms.shape == (len(mem),)
    assert not hasattr(pickle.loads(pickle.dumps(mem.latent_source)), "_sqnorms")


def test_auto_is_exact_out_of_core(tmp_path, faiss):
    db = make_db(600)
    path = tmp_path / "db.fits"
    db.write(path)
    mem = LatentDatabase.read(path, memmap=True)
    auto = SimilaritySearcher(mem, backend=AutoBackend(max_exact_rows=100))
    assert mem.out_of_core and auto.backend.name == "exact"
    assert "not in memory" in auto.backend.reason and auto.index_path is None
    assert not list(tmp_path.glob("*.index"))
    # The same file read into memory gets the IVF index.
    full = LatentDatabase.read(path)
    ivf = SimilaritySearcher(full, backend=AutoBackend(max_exact_rows=100, seed=1))
    assert not full.out_of_core and ivf.backend.name == "faiss-ivf"
    assert ivf.index_path == tmp_path / "db.fits.faiss-ivf.index"


# ----------------------------------------------------------------------
# a faiss IVF index beside a memory-mapped FITS database
def ivf():
    from galmorphsearch.search import FaissBackend

    return FaissBackend("ivf", nlist=8, nprobe=8)  # all lists probed: the exact neighbours


def test_fits_memmap_ivf_index_saved_reloaded_and_stale(tmp_path, faiss, monkeypatch):
    from galmorphsearch.search import _faiss

    db = make_db(600)
    path = tmp_path / "db.fits"
    db.write(path)
    index = tmp_path / "db.fits.faiss-ivf.index"
    q, bkg = targets(db, [3, 300])
    q = q + 0.05
    reference = SimilaritySearcher(db).search_latents(q, bkg, k=5)

    mem = LatentDatabase.read(path, memmap=True)
    searcher = SimilaritySearcher(mem, backend=ivf())
    assert searcher.index_path == index and searcher.backend.index_state == "saved"
    info = sidecar(index)["database"]
    lathash = fits.getheader(path, "LATENTS")["LATHASH"]
    assert info["LATHASH"] == mem.lathash == db.lathash == lathash
    assert info["LATHSRC"] == "keyword" and info["LATTYPE"] == "float32"
    assert info["NROWS"] == 600 and info["FILE"] == "db.fits"
    result = searcher.search_latents(q, bkg, k=5)
    assert result.meta["BACKEND"] == "faiss-ivf"
    assert_array_equal(result["objid"], reference["objid"])
    assert_allclose(result["Sp"], reference["Sp"], rtol=1e-12)

    # Reloaded, out of core or in memory, checked against the file's LATHASH
    # without hashing the latents again.
    with monkeypatch.context() as m:
        m.setattr(_faiss, "latent_hash", None)
        for memmap in (True, False):
            again = SimilaritySearcher(LatentDatabase.read(path, memmap=memmap), backend=ivf())
            assert again.backend.index_state == "loaded"
            assert_array_equal(again.search_latents(q, bkg, k=5)["objid"], reference["objid"])
        assert SimilaritySearcher(LatentDatabase.read(path, memmap=True),
                                  backend="faiss-ivf").backend.index_state == "loaded"
        # The same latents written again (a new file, the same LATHASH): still up to date.
        LatentDatabase.read(path).write(path, overwrite=True)
        same = SimilaritySearcher(LatentDatabase.read(path, memmap=True), backend=ivf(),
                                  on_stale="raise")
        assert same.backend.index_state == "loaded"

    # append_to_file: more rows, another LATHASH; refused or rebuilt, never used.
    more = make_db(20, seed=4, start=5000)
    LatentDatabase.append_to_file(path, more, memmap=True)
    grown = LatentDatabase.read(path, memmap=True)
    with pytest.raises(StaleIndexError, match="rows 600 in the index, 620"):
        SimilaritySearcher(grown, backend=ivf(), on_stale="raise")
    with pytest.warns(StaleIndexWarning, match="rebuilding"):
        rebuilt = SimilaritySearcher(grown, backend=ivf())
    assert rebuilt.backend.index_state == "rebuilt"
    info = sidecar(index)["database"]
    assert info["NROWS"] == 620 and info["LATHASH"] == grown.lathash != lathash
    assert rebuilt.search_latents(q, bkg, k=1)["objid"][0] == reference["objid"][0]

    # Rewritten with the same rows in another order: the latents differ.
    table = LatentDatabase.read(path).table
    table.reverse()
    LatentDatabase(table).write(path, overwrite=True)
    reordered = LatentDatabase.read(path, memmap=True)
    with pytest.raises(StaleIndexError, match="the latents differ"):
        SimilaritySearcher(reordered, backend=ivf(), on_stale="raise")

    # Rewritten as float16: other stored latents.
    LatentDatabase.read(path).write(path, overwrite=True, dtype="float16")
    half = LatentDatabase.read(path, memmap=True)
    with pytest.raises(StaleIndexError, match="latents stored as 'float32' in the index"):
        SimilaritySearcher(half, backend=ivf(), on_stale="raise")
    with pytest.warns(StaleIndexWarning):
        SimilaritySearcher(half, backend=ivf())
    info = sidecar(index)["database"]
    assert info["LATTYPE"] == "float16" and info["LATHASH"] == half.lathash


# ----------------------------------------------------------------------
# float16 databases: a target's own entry is recognised
@pytest.mark.parametrize("suffix", [".fits", ".h5"])
def test_float16_memmap_recognises_the_target_itself(tmp_path, passes, suffix):
    db = make_db()
    path = tmp_path / f"half{suffix}"
    db.write(path, dtype="float16")
    mem = LatentDatabase.read(path, memmap=True)
    assert mem.out_of_core and mem.latent_dtype == np.float16
    rows = np.array([3, 50, 123, 321])
    own = np.asarray(db.table["objid"])[rows]
    q32, bkg = targets(db, rows)  # the float32 latents the file rounded
    q16 = mem.latent_source.take(rows)  # the latents as stored
    # The rounding moves a latent further than the float32 tolerance allows.
    moved = np.linalg.norm(q32.astype(float) - q16.astype(float), axis=1)
    assert np.any(moved > IDENTICAL_RTOL * np.linalg.norm(q32, axis=1))
    assert np.all(moved <= 2.0**-11 * np.linalg.norm(q32, axis=1))

    searcher = SimilaritySearcher(mem)
    reference = SimilaritySearcher(db)  # float32, in memory
    expected = reference.search_latents(q32, bkg, k=5)
    stored = mem.latent_source
    for q in (q16, q32):
        back = np.linalg.norm(q.astype(float) - bkg.astype(float), axis=1)
        result = searcher.search_latents(q, bkg, k=5)
        assert not np.any(result["objid"] == np.repeat(own, 5))
        assert np.all(result["Sp"] < 100)
        assert_array_equal(result["objid"], expected["objid"])
        # Sp as for float32: the formula on the float64 distance to the stored latent.
        which = np.repeat(np.arange(rows.size), 5)
        index = np.searchsorted(np.asarray(db.table["objid"]), result["objid"])
        distance = np.linalg.norm(stored.take(index).astype(float)
                                  - q[which].astype(float), axis=1)
        assert_allclose(result["distance"], distance, rtol=1e-12)
        assert_allclose(result["Sp"], (1 - distance / back[which]) * 100, rtol=1e-12)
        assert_allclose(result["Sp"], expected["Sp"], atol=0.1)
        cls = searcher.classify_latents(q, bkg)
        assert not np.any(cls["matched_objid"] == own)
        assert_array_equal(cls["matched_objid"], result["objid"][::5])
        assert_allclose(cls["H_similarity"], result["Sp"][::5], rtol=1e-12)
        # Kept when asked, the target's own entry comes first at Sp about 100.
        kept = searcher.search_latents(q, bkg, k=2, skip_identical=False)
        assert_array_equal(kept["objid"][::2], own)
        assert np.all(kept["Sp"][::2] > 99.9)
        # Excluded by objid instead, as for float32.
        excluded = searcher.search_latents(q, bkg, k=5, skip_identical=False,
                                           exclude_objids=own.tolist())
        assert_array_equal(excluded["objid"], expected["objid"])


def test_float16_in_memory_uses_the_float16_tolerance(tmp_path):
    """The same tolerance when the float16 file is read into memory."""
    db = make_db(200)
    path = tmp_path / "half.fits"
    db.write(path, dtype="float16")
    half = LatentDatabase.read(path)
    assert not half.out_of_core and half.latent_dtype == np.float16
    q32, bkg = targets(db, [7, 8])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = SimilaritySearcher(half).classify_latents(q32, bkg)
    assert not np.any(result["matched_objid"] == np.asarray(db.table["objid"])[[7, 8]])
