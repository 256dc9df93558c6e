# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Tests of database storage at scale: out-of-core reading, latent sources,
chunked search, float16 latents, HDF5 files and the LATHASH keyword.
"""

import hashlib
import os
import pickle

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galmorphsearch.database import (
    ArrayLatents,
    FITSLatents,
    HDF5Latents,
    LatentDatabase,
    _fits,
    as_latent_source,
    latent_hash,
)
from galmorphsearch.database.database import _COMMENTS
from galmorphsearch.latents import exact_neighbours
from galmorphsearch.search import SimilaritySearcher
from galmorphsearch.utils import DatabaseFormatError, EncoderMismatchError

LATDIM = 16
HASH_KEYS = ("ENCODER", "ENCARCH", "ENCHASH", "INSIZE", "LATDIM", "SCHEME", "GMSVERS", "DATE",
             "HSIMMEAN", "HSIMSTD", "HSIMN", "NROWS", "KRONFACT")


class StubEncoder:
    """The attributes `check_encoder` compares."""

    def __init__(self, weights_hash="0123456789abcdef", latent_dim=LATDIM):
        self.name = "stub"
        self.architecture = "resnet18"
        self.input_size = 64
        self.latent_dim = latent_dim
        self.weights_hash = weights_hash


def make_table(n=40, dim=LATDIM, seed=0, start=0):
    rng = np.random.default_rng(seed)
    ra = np.ma.masked_array(np.linspace(150, 151, n), mask=np.arange(n) % 7 == 1)
    table = Table({
        "objid": np.arange(start, start + n, dtype=np.int64) + 587722981741363200,
        "ra": ra,
        "dec": np.linspace(1, 2, n),
        "morphology": [("Er", "Sb", "SBc", "Sc")[i % 4] for i in range(n)],
        "type_index": np.array([0, 5, 10, 6])[np.arange(n) % 4],
        "catalog": ["GZ2"] * n,
        "tag": [f"t{i % 3}x" for i in range(n)],  # rows of an odd number of bytes
        "latent": rng.normal(size=(n, dim)).astype(np.float32),
        "background_latent": rng.normal(size=(n, dim)).astype(np.float32),
    })
    table["ra"].unit = table["dec"].unit = "deg"
    table.meta.update(ENCODER="stub", ENCARCH="resnet18", ENCHASH="0123456789abcdef",
                      INSIZE=64, LATDIM=dim, SCHEME="gz2", KRONFACT=3.0)
    return table


@pytest.fixture(scope="module")
def db():
    return LatentDatabase(make_table())


@pytest.fixture
def small_chunks(monkeypatch):
    """Make the chunked FITS reader and writer use pieces of a few rows."""
    monkeypatch.setattr(_fits, "CHUNK_BYTES", 300)


def brute_force(queries, latents, k):
    d = np.sqrt(((queries[:, None, :].astype(np.float64)
                  - latents[None, :, :].astype(np.float64)) ** 2).sum(-1))
    idx = np.argsort(d, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def cards(header, skip=()):
    """The cards of a header, but the checksums' values and dates."""
    return [(c.keyword, c.value, c.comment) if c.keyword not in ("CHECKSUM", "DATASUM")
            else (c.keyword, c.value if c.keyword == "DATASUM" else None)
            for c in header.cards if c.keyword not in skip]


def assert_same_table(a, b):
    assert a.colnames == b.colnames
    for name in a.colnames:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)
        assert np.array_equal(np.ma.getmaskarray(a[name]), np.ma.getmaskarray(b[name])), name
        assert a[name].unit == b[name].unit, name
        assert a[name].description == b[name].description, name


# ----------------------------------------------------------------------
# latent sources and chunked search
@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 333, 1000, 5000])
def test_neighbours_of_a_source_equal_brute_force(chunk_rows):
    rng = np.random.default_rng(1)
    latents = rng.normal(size=(1000, 24)).astype(np.float32)
    queries = rng.normal(size=(9, 24)).astype(np.float32)
    idx, dist = exact_neighbours(queries, ArrayLatents(latents), 6, chunk_rows=chunk_rows)
    ref_idx, ref_dist = brute_force(queries, latents, 6)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)
    exact_idx, exact_dist = exact_neighbours(queries, latents, 6)
    np.testing.assert_array_equal(idx, exact_idx)
    np.testing.assert_array_equal(dist, exact_dist)


def test_neighbours_of_a_source_edge_cases():
    rng = np.random.default_rng(2)
    latents = rng.normal(size=(50, 8)).astype(np.float32)
    source = ArrayLatents(latents)
    idx, dist = exact_neighbours(latents[:5], source, 50, chunk_rows=8)
    ref_idx, _ = brute_force(latents[:5], latents, 50)
    np.testing.assert_array_equal(idx, ref_idx)
    assert np.all(dist[:, 0] == 0)
    # Excluding each query's own row, as for the H-similarity.
    exclude = np.arange(5)
    idx, _ = exact_neighbours(latents[:5], source, 3, chunk_rows=8, exclude=exclude)
    assert not np.any(idx == exclude[:, None])
    np.testing.assert_array_equal(idx, exact_neighbours(latents[:5], latents, 3,
                                                        exclude=exclude)[0])
    one, _ = exact_neighbours(latents[3], source, 1)
    assert one.tolist() == [[3]]
    with pytest.raises(ValueError, match="larger than"):
        exact_neighbours(latents[:2], source, 50, exclude=[0, 1])
    with pytest.raises(ValueError, match="dimensions differ"):
        exact_neighbours(np.zeros((1, 3)), source, 1)
    with pytest.raises(ValueError, match="NaN"):
        exact_neighbours(np.full((1, 8), np.nan), source, 1)
    with pytest.raises(ValueError, match="chunk_rows"):
        exact_neighbours(latents[:1], source, 1, chunk_rows=0)
    with pytest.raises(ValueError, match="NaN"):
        exact_neighbours(latents[:1], as_latent_source(np.where(latents > 2, np.nan, latents)),
                         1)


def test_array_latents_protocol():
    values = np.arange(60, dtype=np.float64).reshape(20, 3)
    source = ArrayLatents(values)
    assert (len(source), source.dim, source.dtype, source.shape) == (20, 3, np.float32, (20, 3))
    chunks = [(start, chunk.copy()) for start, chunk in source.iter_chunks(6)]
    assert [start for start, _ in chunks] == [0, 6, 12, 18]
    assert all(chunk.dtype == np.float32 and chunk.flags.c_contiguous for _, chunk in chunks)
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), values)
    taken = source.take([19, 0, 19])
    assert taken.dtype == np.float32
    np.testing.assert_array_equal(taken, values[[19, 0, 19]])
    assert source.take([]).shape == (0, 3)
    with pytest.raises(IndexError):
        source.take([20])
    with pytest.raises(IndexError):
        source.take([-1])
    half = ArrayLatents(values.astype(np.float16))
    assert half.dtype == np.float16
    np.testing.assert_array_equal(half.read(), values.astype(np.float16).astype(np.float32))
    big_endian = ArrayLatents(values.astype(">f4"))
    np.testing.assert_array_equal(next(big_endian.iter_chunks())[1], values)
    with pytest.raises(ValueError, match="2-D"):
        ArrayLatents(np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        ArrayLatents(np.array([[0.0, np.inf]]))
    assert as_latent_source(source) is source
    assert repr(source) == "<ArrayLatents: 20 x 3 float32>"


@pytest.mark.parametrize("suffix", [".fits", ".h5"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_file_sources(db, tmp_path, suffix, dtype):
    path = tmp_path / f"db{suffix}"
    db.write(path, dtype=dtype)
    cls = FITSLatents if suffix == ".fits" else HDF5Latents
    source = cls(path)
    expected = db.latents.astype(dtype).astype(np.float32)
    assert (len(source), source.dim, source.dtype) == (len(db), LATDIM, np.dtype(dtype))
    for rows in (1, 3, 7, 40, 1000, None):
        starts, parts = [], []
        for start, chunk in source.iter_chunks(rows):
            assert chunk.dtype == np.float32 and chunk.shape[1] == LATDIM
            starts.append(start)
            parts.append(chunk.copy())
        np.testing.assert_array_equal(np.concatenate(parts), expected)
        assert starts == sorted(starts) and starts[0] == 0
    np.testing.assert_array_equal(source.read(), expected)
    rows = [39, 0, 5, 6, 7, 5]
    np.testing.assert_array_equal(source.take(rows), expected[rows])
    with pytest.raises(IndexError):
        source.take([40])
    background = cls(path, "background_latent")
    np.testing.assert_array_equal(background.read(),
                                  db.background_latents.astype(dtype).astype(np.float32))
    assert source.lathash == latent_hash(db.latents, dtype)
    # Sources hold no open file or memory map, so they pickle (for Dask).
    again = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(again.take([3]), expected[[3]])
    assert str(path.name) in repr(source)


# ----------------------------------------------------------------------
# FITS: float32 unchanged, float16 as int16 bits
def test_float32_fits_is_todays_layout_plus_lathash(db, tmp_path):
    path, old = tmp_path / "new.fits", tmp_path / "old.fits"
    db.write(path)
    _fits.write_fits(db.table, old, comments=_COMMENTS)  # what write() did before LATHASH
    with fits.open(path) as new_hdul, fits.open(old) as old_hdul:
        new, before = new_hdul["LATENTS"], old_hdul["LATENTS"]
        assert new.data.tobytes() == before.data.tobytes()
        assert new.header["LATHASH"] == db.lathash
        assert "LATTYPE" not in new.header
        assert cards(new.header, skip="LATHASH") == cards(before.header)
        form = new.header[f"TFORM{new.columns.names.index('latent') + 1}"]
        assert form == f"{LATDIM}E"


def test_float16_fits_round_trip(db, tmp_path):
    path = tmp_path / "half.fits"
    db.write(path, dtype="float16")
    half = db.latents.astype(np.float16)
    with fits.open(path, checksum=True) as hdul:
        hdu = hdul["LATENTS"]
        assert hdu.verify_checksum() == 1
        assert hdu.header["LATTYPE"] == "float16"
        i = hdu.columns.names.index("latent") + 1
        assert hdu.header[f"TFORM{i}"] == f"{LATDIM}I"
        assert f"TZERO{i}" not in hdu.header and f"TSCAL{i}" not in hdu.header
        raw = np.asarray(hdu.data["latent"])
        np.testing.assert_array_equal(raw.view(">f2"), half)
    assert os.path.getsize(path) < os.path.getsize(_write(db, tmp_path / "full.fits"))
    for memmap in (False, True):
        back = LatentDatabase.read(path, memmap=memmap)
        assert back.latent_dtype == np.float16
        assert back.latents.dtype == np.float32
        np.testing.assert_array_equal(back.latents, half.astype(np.float32))
        np.testing.assert_array_equal(back.background_latents,
                                      db.background_latents.astype(np.float16))
        assert back.meta == db.meta
        assert back.lathash == latent_hash(half)
        assert back.lathash != db.lathash
    back = LatentDatabase.read(path)
    assert back.table["latent"].dtype == np.float16
    np.testing.assert_array_equal(back.h_similarity, db.h_similarity)
    # The stored precision is kept on rewrite unless another is asked for.
    back.write(tmp_path / "again.fits")
    assert LatentDatabase.read(tmp_path / "again.fits").latent_dtype == np.float16
    back.write(tmp_path / "wide.fits", dtype="float32")
    wide = LatentDatabase.read(tmp_path / "wide.fits")
    assert wide.latent_dtype == np.float32
    np.testing.assert_array_equal(wide.latents, half.astype(np.float32))
    with pytest.raises(ValueError, match="float16"):
        db.write(tmp_path / "x.fits", dtype="float64")
    with pytest.raises(ValueError, match="format"):
        db.write(tmp_path / "x.fits", format="parquet")


def _write(db, path, **kwargs):
    db.write(path, **kwargs)
    return path


# ----------------------------------------------------------------------
# HDF5
def test_hdf5_round_trip_and_provenance(db, tmp_path):
    path = tmp_path / "db.h5"
    db.write(path)
    back = LatentDatabase.read(path)
    assert back.meta == db.meta
    assert_same_table(back.table, db.table)
    assert back.latents.tobytes() == db.latents.tobytes()
    assert back.lathash == db.lathash
    back.check_encoder(StubEncoder())
    with pytest.raises(EncoderMismatchError, match="weights hash"):
        back.check_encoder(StubEncoder(weights_hash="f" * 16))
    with pytest.raises(EncoderMismatchError, match="latent size"):
        back.check_encoder(StubEncoder(latent_dim=8))
    # The same keywords, with the same values, as the FITS header.
    fits_path = _write(db, tmp_path / "db.fits")
    header = fits.getheader(fits_path, "LATENTS")
    with h5py.File(path) as f:
        attrs = dict(f.attrs)
        assert f.attrs["format"] == "galmorphsearch-latents"
        assert f["latent"].fletcher32 and f["latent"].chunks[1] == LATDIM
        assert f["latent"].dtype == np.float32
    for key in (*HASH_KEYS, "LATHASH", "HDUVERS", "ORIGIN"):
        assert attrs[key] == header[key], key
    # The format follows the name, or format=, and reading tells by content.
    odd = _write(db, tmp_path / "db.fits.data", format="hdf5")
    assert h5py.is_hdf5(odd)
    assert LatentDatabase.read(odd).meta == db.meta
    assert not h5py.is_hdf5(_write(db, tmp_path / "plain.h5", format="fits"))
    assert LatentDatabase.read(tmp_path / "plain.h5").lathash == db.lathash


def test_hdf5_float16_and_odd_columns(tmp_path):
    table = make_table(n=3)
    table["objid"] = ["PGC000001", "PGC000002", "PGC000003"]  # EFIGI-like strings
    table["tag"] = ["t0", "té", "t2"]  # non-ASCII survives as UTF-8
    table["flags"] = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int16)
    db = LatentDatabase(table[:1])  # one galaxy: undefined H-similarity statistics
    assert db.meta["HSIMMEAN"] is None
    path = _write(db, tmp_path / "one.hdf5", dtype="float16")
    back = LatentDatabase.read(path)
    assert back.meta["HSIMMEAN"] is None
    assert back.latent_dtype == np.float16
    np.testing.assert_array_equal(back.latents, db.latents.astype(np.float16))
    full = LatentDatabase(table)
    back = LatentDatabase.read(_write(full, tmp_path / "str.h5"))
    assert list(back.table["objid"]) == list(table["objid"])
    assert back.table["tag"][1] == "té"
    np.testing.assert_array_equal(back.table["flags"], table["flags"])
    assert back.lathash == full.lathash
    bad = Table(table, copy=True)
    bad["what"] = np.array([{}, {}, {}], dtype=object)
    with pytest.raises(ValueError, match="what"):
        LatentDatabase(bad).write(tmp_path / "objects.h5")
    assert not (tmp_path / "objects.h5").exists()


# ----------------------------------------------------------------------
# out-of-core reading
@pytest.mark.parametrize("suffix", [".fits", ".h5"])
def test_memmap_read_keeps_latents_in_the_file(db, tmp_path, small_chunks, suffix):
    path = _write(db, tmp_path / f"db{suffix}")
    if suffix == ".fits":
        assert fits.getheader(path, "LATENTS")["NAXIS1"] % 4  # pieces not word-aligned
    mem = LatentDatabase.read(path, memmap=True)
    full = LatentDatabase.read(path)
    assert mem.out_of_core and not full.out_of_core
    assert mem.path == path
    assert "latent" not in mem.table.colnames
    assert mem.table.colnames == [c for c in full.table.colnames
                                  if c not in ("latent", "background_latent")]
    assert_same_table(mem.table, full.table[mem.table.colnames])
    assert mem.meta == full.meta == db.meta
    assert isinstance(mem.latent_source, FITSLatents if suffix == ".fits" else HDF5Latents)
    assert isinstance(full.latent_source, ArrayLatents)
    assert mem.lathash == full.lathash == db.lathash
    np.testing.assert_array_equal(mem.latents, db.latents)
    np.testing.assert_array_equal(mem.background_latents, db.background_latents)
    queries = db.latents[::5] + 0.05
    ref = exact_neighbours(queries, db.latents, 4)
    for chunk_rows in (3, 13, None):
        got = exact_neighbours(queries, mem, 4, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    # The searcher gives the same results on both.
    targets, backgrounds = db.latents[:3] + 0.1, db.background_latents[:3]
    a = SimilaritySearcher(mem).search_latents(targets, backgrounds, k=3)
    b = SimilaritySearcher(full).search_latents(targets, backgrounds, k=3)
    assert_same_table(a, b)
    # Merging and appending read the latents from the file.
    other = LatentDatabase(make_table(n=5, start=1000, seed=3))
    merged = LatentDatabase.merge([mem, other])
    np.testing.assert_array_equal(merged.latents[:len(db)], db.latents)
    assert not merged.out_of_core


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_out_of_core_write_streams(db, tmp_path, small_chunks, dtype):
    source = _write(db, tmp_path / "db.fits", dtype=dtype)
    mem = LatentDatabase.read(source, memmap=True)
    copy = _write(mem, tmp_path / "copy.fits")
    with fits.open(copy, checksum=True) as new_hdul, fits.open(source) as old_hdul:
        new, old = new_hdul["LATENTS"], old_hdul["LATENTS"]
        assert new.verify_checksum() == 1 and new.verify_datasum() == 1
        assert new_hdul[0].verify_checksum() == 1
        assert new.data.tobytes() == old.data.tobytes()
        assert cards(new.header) == cards(old.header)
    back = LatentDatabase.read(copy)
    assert back.lathash == mem.lathash and back.latent_dtype == np.dtype(dtype)
    h5 = LatentDatabase.read(_write(mem, tmp_path / "copy.h5"), memmap=True)
    assert h5.lathash == mem.lathash
    np.testing.assert_array_equal(h5.latents, mem.latents)
    assert h5.meta == db.meta
    # Written over its own file, a database goes on reading the new file.
    expected = mem.latents
    mem.write(source, overwrite=True, dtype="float32")
    assert mem.latent_dtype == np.float32 and mem.lathash == latent_hash(expected)
    np.testing.assert_array_equal(mem.latents, expected)


def test_append_to_file_keeps_format_and_precision(db, tmp_path):
    path = _write(db, tmp_path / "db.data", format="hdf5", dtype="float16")
    more = LatentDatabase(make_table(n=4, start=500, seed=5))
    out = LatentDatabase.append_to_file(path, more, memmap=True)
    assert h5py.is_hdf5(path)
    back = LatentDatabase.read(path)
    assert len(back) == len(out) == len(db) + 4
    assert back.latent_dtype == np.float16
    np.testing.assert_array_equal(back.latents[-4:], more.latents.astype(np.float16))


# ----------------------------------------------------------------------
# LATHASH
def test_lathash(db, tmp_path):
    expected = hashlib.sha256(db.latents.astype("<f4").tobytes()).hexdigest()[:16]
    assert db.lathash == expected == latent_hash(db.latents)
    half = hashlib.sha256(db.latents.astype("<f2").tobytes()).hexdigest()[:16]
    assert latent_hash(db.latents, "float16") == half
    # Any change of order changes it (unlike DATASUM, a sum of words).
    table = Table(db.table, copy=True)
    table.reverse()
    assert LatentDatabase(table).lathash != db.lathash
    # A file written before LATHASH existed reads, and the hash is computed.
    old = tmp_path / "old.fits"
    _fits.write_fits(db.table, old)
    for memmap in (False, True):
        back = LatentDatabase.read(old, memmap=memmap)
        assert back.lathash == expected


# ----------------------------------------------------------------------
# overwriting and broken files
@pytest.mark.parametrize("suffix", [".fits", ".h5"])
def test_overwrite_refused_and_interrupted_write(db, tmp_path, monkeypatch, suffix):
    path = _write(db, tmp_path / f"db{suffix}")
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        db.write(path)
    mem = LatentDatabase.read(path, memmap=True)
    with pytest.raises(FileExistsError):
        mem.write(path)

    def broken(*args, **kwargs):
        msg = "disk full"
        raise OSError(msg)

    from galmorphsearch.database import _hdf5

    monkeypatch.setattr(_hdf5, "_write_column", broken)
    monkeypatch.setattr(_fits, "_hdu_data_bytes", broken)
    with pytest.raises(OSError, match="disk full"):
        mem.write(path, overwrite=True)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def _flip_byte(path, offset):
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_corrupted_fits(db, tmp_path):
    path = _write(db, tmp_path / "db.fits")
    with fits.open(path) as hdul:
        offset = hdul["LATENTS"].fileinfo()["datLoc"]
    _flip_byte(path, offset + 100)
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match=r"db\.fits.*checksum"):
            LatentDatabase.read(path, memmap=memmap)
    # A header edited without updating its CHECKSUM.
    path = _write(db, tmp_path / "edited.fits")
    raw = path.read_bytes().replace(b"'gz2     '", b"'efigi   '", 1)
    path.write_bytes(raw)
    with pytest.raises(DatabaseFormatError, match="CHECKSUM"):
        LatentDatabase.read(path, memmap=True)
    # Truncated.
    path = _write(db, tmp_path / "cut.fits")
    path.write_bytes(path.read_bytes()[:-3000])
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match=r"cut\.fits"):
            LatentDatabase.read(path, memmap=memmap)


def test_odd_fits_files(db, tmp_path):
    table = _fits_table(db)
    table.meta["LATTYPE"] = "float16"  # but the columns are float32
    path = _raw_fits(table, tmp_path / "liar.fits")
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match="LATTYPE"):
            LatentDatabase.read(path, memmap=memmap)
    table.meta["LATTYPE"] = "bfloat16"
    path = _raw_fits(table, tmp_path / "bf16.fits")
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match="bfloat16"):
            LatentDatabase.read(path, memmap=memmap)
    table = _fits_table(db)
    table["latent"][3, 2] = np.nan
    path = _raw_fits(table, tmp_path / "nan.fits")
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match="NaN"):
            LatentDatabase.read(path, memmap=memmap)
    table = _fits_table(db)
    table.remove_column("background_latent")
    path = _raw_fits(table, tmp_path / "nobg.fits")
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match="lacks the column.*background_latent"):
            LatentDatabase.read(path, memmap=memmap)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a fits file at all" * 200)
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match="garbage.fits"):
            LatentDatabase.read(garbage, memmap=memmap)
    with pytest.raises(FileNotFoundError):
        LatentDatabase.read(tmp_path / "absent.h5", memmap=True)
    with pytest.raises(ValueError, match="format"):
        LatentDatabase.read(garbage, format="csv")


def _fits_table(db):
    table = Table(db.table, copy=True)
    table.meta["LATHASH"] = db.lathash
    return table


def _raw_fits(table, path):
    hdu = fits.table_to_hdu(table)
    hdu.name = "LATENTS"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, checksum=True)
    return path


def test_broken_hdf5_files(db, tmp_path):
    path = _write(db, tmp_path / "db.h5")
    with h5py.File(path) as f:
        offset = f["latent"].id.get_chunk_info(0).byte_offset
    _flip_byte(path, offset + 10)
    with pytest.raises(DatabaseFormatError, match=r"db\.h5.*corrupted"):
        LatentDatabase.read(path)
    mem = LatentDatabase.read(path, memmap=True)  # the latents are checked as read
    with pytest.raises(DatabaseFormatError, match=r"db\.h5.*rows 0\.\..*corrupted"):
        exact_neighbours(db.latents[:1], mem, 1)
    with pytest.raises(DatabaseFormatError, match="corrupted"):
        mem.latent_source.take([0])

    path = _write(db, tmp_path / "nan.h5")
    with h5py.File(path, "r+") as f:
        f["latent"][5, 0] = np.inf
    with pytest.raises(DatabaseFormatError, match="NaN"):
        LatentDatabase.read(path)
    mem = LatentDatabase.read(path, memmap=True)
    with pytest.raises(DatabaseFormatError, match=r"NaN or infinite.*\[5\]"):
        mem.latents  # noqa: B018

    path = _write(db, tmp_path / "gap.h5")
    with h5py.File(path, "r+") as f:
        del f["type_index"]
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match="type_index"):
            LatentDatabase.read(path, memmap=memmap)

    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["latent"] = np.zeros((3, 4))
    with pytest.raises(DatabaseFormatError, match="galmorphsearch-latents"):
        LatentDatabase.read(foreign)
    with pytest.raises(DatabaseFormatError, match="galmorphsearch-latents"):
        HDF5Latents(foreign)

    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 3000)
    with pytest.raises(DatabaseFormatError, match=r"fake\.h5.*HDF5"):
        LatentDatabase.read(fake)

    path = _write(db, tmp_path / "cut.h5")
    path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(DatabaseFormatError, match=r"cut\.h5"):
        LatentDatabase.read(path)


@pytest.mark.parametrize("suffix", [".fits", ".h5"])
def test_replaced_file_is_noticed(db, tmp_path, suffix):
    path = _write(db, tmp_path / f"db{suffix}")
    mem = LatentDatabase.read(path, memmap=True)
    LatentDatabase(make_table(n=12, seed=9)).write(path, overwrite=True)
    with pytest.raises(DatabaseFormatError, match="replaced or modified"):
        mem.latents  # noqa: B018
    with pytest.raises(DatabaseFormatError, match="replaced or modified"):
        mem.latent_source.take([0])


@pytest.mark.parametrize("suffix", [".fits", ".h5"])
def test_float16_overflow_is_refused(tmp_path, suffix):
    table = make_table(n=6)
    table["latent"][2, 3] = 1e5  # beyond float16's 65504
    db = LatentDatabase(table)
    with pytest.raises(ValueError, match=r"1 row\(s\) \(first: \[2\]\).*float16 range"):
        db.write(tmp_path / f"db{suffix}", dtype="float16")
    assert list(tmp_path.iterdir()) == []
    mem = LatentDatabase.read(_write(db, tmp_path / f"ok{suffix}"), memmap=True)
    with pytest.raises(ValueError, match="float16 range"):
        mem.write(tmp_path / "half.fits", dtype="float16")
    assert not (tmp_path / "half.fits").exists()
