# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of `galmorphsearch.database.LatentDatabase` with a stand-in encoder."""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galmorphsearch.catalogs import GZ2_SCHEME
from galmorphsearch.database import REQUIRED_KEYWORDS, LatentDatabase
from galmorphsearch.search.similarity import database_h_similarity
from galmorphsearch.utils import (
    CatalogFormatError,
    DatabaseFormatError,
    EncoderMismatchError,
    GalMorphSearchWarning,
)

LATDIM = 16


class StubCutout:
    """Just what the database uses of a cutout: image, background, keywords."""

    def __init__(self, seed, size=8):
        rng = np.random.default_rng(seed)
        self.image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        self.background = (rng.random((size, size, 3)) * 40).astype(np.uint8)

    def header_keywords(self):
        return {"BKGBOX": 64, "KRONFACT": 3.0, "PREPVERS": "0.1"}


class StubEncoder:
    """A deterministic stand-in with the contract's attributes only."""

    def __init__(self, weights_hash="0123456789abcdef", latent_dim=LATDIM, input_size=64,
                 architecture="resnet18", nan_row=None):
        self.name = f"{architecture}-{input_size}px"
        self.architecture = architecture
        self.input_size = input_size
        self.latent_dim = latent_dim
        self.weights_hash = weights_hash
        self.metadata = {"name": self.name, "architecture": architecture,
                         "input_size": input_size, "latent_dim": latent_dim,
                         "weights_hash": weights_hash, "BKGBOX": 64}
        self.nan_row = nan_row

    def encode(self, images, *, batch_size=64, background=False, progress_bar=False,
               device=None):
        out = []
        for cutout in images:
            pix = np.asarray(cutout.background if background else cutout.image, float) / 255
            stats = np.array([pix.mean(), pix.std(), pix[..., 0].mean(), pix[..., 2].mean()])
            out.append([np.cos((k + 1) * stats[k % 4]) * (k + 1) for k in range(self.latent_dim)])
        out = np.asarray(out, dtype=np.float32)
        if self.nan_row is not None:
            out[self.nan_row] = np.nan
        return out


def make_catalog(n=6, start=0):
    types = [GZ2_SCHEME.types[i % len(GZ2_SCHEME.types)] for i in range(n)]
    ra = np.ma.masked_array(np.linspace(150, 151, n), mask=[i == 1 for i in range(n)])
    table = Table({
        "objid": np.arange(start, start + n, dtype=np.int64) + 587722981741363200,
        "ra": ra,
        "dec": np.linspace(1, 2, n),
        "morphology": types,
        "type_index": [GZ2_SCHEME.index(t) for t in types],
        "mag_r": np.linspace(14, 16, n),
    })
    table["ra"].unit = table["dec"].unit = "deg"
    table.meta.update(CATALOG="GZ2", SCHEME="gz2")
    return table


def make_db(n=6, start=0, encoder=None, **kwargs):
    catalog = make_catalog(n, start)
    cutouts = [StubCutout(seed) for seed in range(start, start + n)]
    return LatentDatabase.build(catalog, cutouts, encoder or StubEncoder(), **kwargs)


@pytest.fixture
def db():
    return make_db(carry=["mag_r"])


def test_build_columns_and_meta(db):
    assert db.table.colnames == ["objid", "ra", "dec", "morphology", "type_index", "catalog",
                                 "mag_r", "h_similarity", "latent", "background_latent"]
    assert len(db) == 6
    assert db.latents.shape == (6, LATDIM)
    assert db.latents.dtype == np.float32
    assert db.table["catalog"][0] == "GZ2"
    assert db.table["ra"].unit == "deg"
    assert db.table["ra"].mask[1]
    for key in REQUIRED_KEYWORDS:
        assert key in db.meta
    assert db.meta["ENCHASH"] == "0123456789abcdef"
    assert db.meta["LATDIM"] == LATDIM
    assert db.meta["KRONFACT"] == 3.0
    assert db.meta["NROWS"] == 6
    assert db.encoder_info["input_size"] == 64
    assert "6 galaxies" in repr(db)


def test_h_similarity_matches_recomputation(db):
    expected = database_h_similarity(db.latents, db.background_latents)
    np.testing.assert_array_equal(db.h_similarity, expected)
    assert db.h_similarity_mean == pytest.approx(np.nanmean(expected))
    assert db.h_similarity_std == pytest.approx(np.nanstd(expected))
    assert db.meta["HSIMMEAN"] == db.h_similarity_mean


def test_round_trip(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)
    back = LatentDatabase.read(path)
    assert back.table.colnames == db.table.colnames
    assert back.meta == db.meta
    assert back.latents.tobytes() == db.latents.tobytes()
    assert back.background_latents.tobytes() == db.background_latents.tobytes()
    for latents in (back.latents, back.background_latents, back.table["latent"]):
        assert latents.dtype == np.float32
        assert latents.dtype.byteorder in "=|<"
    np.testing.assert_array_equal(back.table["ra"].mask, db.table["ra"].mask)
    np.testing.assert_array_equal(back.table["objid"], db.table["objid"])
    np.testing.assert_array_equal(back.table["morphology"], db.table["morphology"])
    np.testing.assert_array_equal(back.h_similarity, db.h_similarity)
    assert back.h_similarity_mean == db.h_similarity_mean


def test_memmap_read(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)
    back = LatentDatabase.read(path, memmap=True)
    assert back.latents.dtype.byteorder in "=|<"
    np.testing.assert_array_equal(back.latents, db.latents)
    del back


def test_file_is_standard_fits(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)
    table = Table.read(path, hdu="LATENTS")
    assert table["ra"].unit == "deg"
    assert table["latent"].shape == (6, LATDIM)
    with fits.open(path, checksum=True) as hdul:
        header = hdul["LATENTS"].header
        assert hdul["LATENTS"].verify_checksum() == 1
        assert hdul["LATENTS"].verify_datasum() == 1
        hdul.verify("exception")
    assert header["HDUVERS"] == "1.0"
    assert header["ORIGIN"] == "galmorphsearch"
    assert header["TUNIT2"] == "deg"
    assert header["TFORM" + str(table.colnames.index("latent") + 1)] == f"{LATDIM}E"
    assert all(len(key) <= 8 for key in header)
    assert "HIERARCH" not in header.tostring()


def test_corrupted_file(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)
    raw = bytearray(path.read_bytes())
    with fits.open(path) as hdul:
        offset = hdul["LATENTS"].fileinfo()["datLoc"]
    raw[offset + 100] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DatabaseFormatError, match=r"db\.fits.*checksum"):
        LatentDatabase.read(path)


def test_not_a_database(tmp_path):
    path = tmp_path / "other.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": [1, 2]}), name="X")]).writeto(
        path, checksum=True)
    with pytest.raises(DatabaseFormatError, match="LATENTS"):
        LatentDatabase.read(path)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"not a fits file at all" * 200)
    with pytest.raises(DatabaseFormatError, match="garbage.fits"):
        LatentDatabase.read(garbage)
    with pytest.raises(FileNotFoundError):
        LatentDatabase.read(tmp_path / "absent.fits")


@pytest.mark.parametrize("drop", ["column", "keyword"])
def test_missing_column_or_keyword(db, tmp_path, drop):
    table = db.table.copy()
    if drop == "column":
        table.remove_column("type_index")
    else:
        del table.meta["ENCHASH"]
    path = tmp_path / "bad.fits"
    hdu = fits.table_to_hdu(table)
    hdu.name = "LATENTS"
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, checksum=True)
    match = "type_index" if drop == "column" else "ENCHASH"
    with pytest.raises(DatabaseFormatError, match=match):
        LatentDatabase.read(path)


def test_overwrite_and_interrupted_write(db, tmp_path, monkeypatch):
    path = tmp_path / "db.fits"
    db.write(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        db.write(path)

    def broken_writeto(self, *args, **kwargs):
        msg = "disk full"
        raise OSError(msg)

    monkeypatch.setattr(fits.HDUList, "writeto", broken_writeto)
    bigger = make_db(n=8)
    with pytest.raises(OSError, match="disk full"):
        bigger.write(path, overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.fits"]
    bigger.write(path, overwrite=True)
    assert len(LatentDatabase.read(path)) == 8


def test_append_and_merge(db, tmp_path):
    other = make_db(n=3, start=100)
    merged = LatentDatabase.merge([db, other])
    assert len(merged) == 9
    assert merged.table["mag_r"].mask[-1]  # carried only by the first
    expected = database_h_similarity(merged.latents, merged.background_latents)
    np.testing.assert_array_equal(merged.h_similarity, expected)
    assert merged.h_similarity_mean == pytest.approx(np.nanmean(expected))
    assert merged.meta["NROWS"] == 9

    db.append(other)
    assert len(db) == 9
    np.testing.assert_array_equal(db.latents, merged.latents)

    cat = make_catalog(2, start=200)
    db.append(cat, [StubCutout(s) for s in (200, 201)], StubEncoder())
    assert len(db) == 11

    path = tmp_path / "db.fits"
    make_db(n=4).write(path)
    out = LatentDatabase.append_to_file(path, make_db(n=2, start=50))
    back = LatentDatabase.read(path)
    assert len(back) == len(out) == 6
    assert back.meta["HSIMMEAN"] == out.meta["HSIMMEAN"]


def test_duplicate_objids(db):
    with pytest.raises(ValueError, match="Duplicated objid"):
        LatentDatabase.merge([db, make_db(n=2)])
    catalog = make_catalog(4)
    catalog["objid"][3] = catalog["objid"][0]
    with pytest.raises(ValueError, match=str(catalog["objid"][0])):
        LatentDatabase.build(catalog, [StubCutout(s) for s in range(4)], StubEncoder(),
                             scheme="gz2")


def test_encoder_mismatch(db):
    db.check_encoder(StubEncoder())
    with pytest.raises(EncoderMismatchError, match="weights hash"):
        db.check_encoder(StubEncoder(weights_hash="ffffffffffffffff"))
    with pytest.raises(EncoderMismatchError, match="input size 64 vs 128"):
        db.check_encoder(StubEncoder(input_size=128))
    with pytest.raises(EncoderMismatchError, match="architecture"):
        db.check_encoder(StubEncoder(architecture="resnet50"))
    with pytest.raises(EncoderMismatchError, match="weights hash"):
        db.append(make_catalog(1, 300), [StubCutout(0)], StubEncoder(weights_hash="f" * 16))


def test_latent_dim_mismatch(db):
    other = make_db(n=2, start=100, encoder=StubEncoder(latent_dim=8))
    with pytest.raises(EncoderMismatchError, match="latent size 16 vs 8"):
        db.append(other)
    with pytest.raises(EncoderMismatchError, match="latent size"):
        db.check_encoder(StubEncoder(latent_dim=8))


def test_bad_build_input():
    catalog = make_catalog(4)
    cutouts = [StubCutout(s) for s in range(4)]
    with pytest.raises(ValueError, match="4 rows but 3 images"):
        LatentDatabase.build(catalog, cutouts[:3], StubEncoder())
    with pytest.raises(CatalogFormatError, match="morphology"):
        LatentDatabase.build(catalog[["objid", "ra", "dec", "type_index"]], cutouts,
                             StubEncoder(), scheme="gz2")
    with pytest.raises(CatalogFormatError, match="nope"):
        LatentDatabase.build(catalog, cutouts, StubEncoder(), carry=["nope"])
    with pytest.raises(ValueError, match="NaN"):
        LatentDatabase.build(catalog, cutouts, StubEncoder(nan_row=2))
    catalog.meta.pop("SCHEME")
    with pytest.raises(ValueError, match="scheme"):
        LatentDatabase.build(catalog, cutouts, StubEncoder())
    db = LatentDatabase.build(catalog, cutouts, StubEncoder(), scheme=GZ2_SCHEME)
    assert db.scheme == "gz2"


def test_nan_latents_in_table(db):
    table = db.table.copy()
    table["latent"][2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LatentDatabase(table)


def test_preprocessing_mismatch_warns():
    encoder = StubEncoder()
    encoder.metadata["BKGBOX"] = 32
    with pytest.warns(GalMorphSearchWarning, match="BKGBOX"):
        make_db(n=3, encoder=encoder)


def test_no_warnings_on_write_read(db, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        db.write(tmp_path / "db.fits")
        LatentDatabase.read(tmp_path / "db.fits")
        LatentDatabase.read(tmp_path / "db.fits", memmap=True)


def test_single_galaxy_has_undefined_statistics(tmp_path):
    db = make_db(n=1)
    assert np.isnan(db.h_similarity_mean)
    assert db.meta["HSIMMEAN"] is None
    db.write(tmp_path / "one.fits")
    back = LatentDatabase.read(tmp_path / "one.fits")
    assert back.meta["HSIMMEAN"] is None
    assert np.isnan(back.h_similarity[0])


def test_string_objids_merge_after_read(tmp_path):
    first = make_catalog(3)
    first["objid"] = [f"PGC{i:06d}" for i in range(3)]
    db = LatentDatabase.build(first, [StubCutout(s) for s in range(3)], StubEncoder())
    db.write(tmp_path / "efigi.fits")
    back = LatentDatabase.read(tmp_path / "efigi.fits")
    assert back.table["objid"][0] == "PGC000000"
    memmapped = LatentDatabase.read(tmp_path / "efigi.fits", memmap=True)
    with pytest.raises(ValueError, match="PGC000001"):
        LatentDatabase.merge([memmapped, db])
    second = make_catalog(2, start=10)
    second["objid"] = ["PGC000010", "PGC000011"]
    more = LatentDatabase.build(second, [StubCutout(s) for s in (10, 11)], StubEncoder())
    merged = LatentDatabase.merge([memmapped, more])
    assert list(merged.table["objid"][-2:]) == ["PGC000010", "PGC000011"]
    del memmapped
