# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of SimilaritySearcher, search backends and classification by retrieval."""

import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table
from numpy.testing import assert_allclose, assert_array_equal

from galmorphsearch.catalogs import GZ2_SCHEME
from galmorphsearch.search import (
    ExactBackend,
    SearchBackend,
    SimilaritySearcher,
    available_backends,
    database_h_similarity,
    get_backend,
    match_coordinates,
    register_backend,
)
from galmorphsearch.utils import EncoderMismatchError

DIM = 16


def make_table(n_per_type=10, seed=1):
    rng = np.random.default_rng(seed)
    types = GZ2_SCHEME.types
    centres = rng.normal(size=(len(types), DIM)) * 5
    type_index = np.repeat(np.arange(len(types)), n_per_type)
    n = type_index.size
    latent = (centres[type_index] + rng.normal(size=(n, DIM))).astype(np.float32)
    background = (latent + rng.normal(size=(n, DIM)) * 4).astype(np.float32)
    table = Table()
    table["objid"] = np.arange(1000, 1000 + n, dtype=np.int64)
    table["ra"] = rng.uniform(0, 360, n) * u.deg
    table["dec"] = rng.uniform(-30, 30, n) * u.deg
    table["morphology"] = np.array(types)[type_index]
    table["type_index"] = type_index
    table["catalog"] = "gz2"
    table["redshift"] = rng.uniform(0, 0.1, n)
    table["latent"] = latent
    table["background_latent"] = background
    h = database_h_similarity(latent, background)
    table.meta.update(
        {"ENCODER": "fake", "ENCHASH": "0123abcd", "SCHEME": "gz2",
         "HSIMMEAN": float(np.nanmean(h)), "HSIMSTD": float(np.nanstd(h))}
    )
    return table


class StandInDatabase:
    """The attributes of LatentDatabase that the searcher uses."""

    def __init__(self, table):
        self.table = table
        self.meta = table.meta
        self.latents = np.asarray(table["latent"], dtype=np.float32)
        self.background_latents = np.asarray(table["background_latent"], dtype=np.float32)

    @property
    def h_similarity_mean(self):
        return self.meta["HSIMMEAN"]

    @property
    def h_similarity_std(self):
        return self.meta["HSIMSTD"]

    def __len__(self):
        return len(self.table)

    def check_encoder(self, encoder):
        if encoder.weights_hash != self.meta["ENCHASH"]:
            msg = f"weights hash {encoder.weights_hash} != {self.meta['ENCHASH']}"
            raise EncoderMismatchError(msg)


class FakeEncoder:
    """Encodes a cutout as the mean of 16 slices of its pixels."""

    weights_hash = "0123abcd"

    def encode(self, images, background=False):
        images = images if isinstance(images, list) else [images]
        out = [
            (c.background if background else c.image).astype(np.float32).reshape(DIM, -1).mean(1)
            for c in images
        ]
        return np.array(out, dtype=np.float32)


@pytest.fixture
def table():
    return make_table()


@pytest.fixture
def database(table):
    return StandInDatabase(table)


@pytest.fixture
def searcher(database):
    return SimilaritySearcher(database)


def targets(database, rows, seed=5, scale=0.3):
    rng = np.random.default_rng(seed)
    lat = database.latents[rows] + rng.normal(size=(len(rows), DIM)).astype(np.float32) * scale
    bkg = lat + rng.normal(size=(len(rows), DIM)).astype(np.float32) * 4
    return lat.astype(np.float32), bkg.astype(np.float32)


def test_search_sp_matches_formula(searcher, database):
    lat, bkg = targets(database, [3])
    result = searcher.search_latents(lat[0], bkg[0], k=7)
    assert result.colnames[:8] == [
        "rank", "objid", "ra", "dec", "morphology", "type_index", "Sp", "distance",
    ]
    assert "target" not in result.colnames
    assert len(result) == 7
    rows = result["objid"] - 1000
    t = lat[0].astype(np.float64)
    en_gal = np.linalg.norm(database.latents[rows].astype(np.float64) - t, axis=1)
    en_back = np.linalg.norm(t - bkg[0].astype(np.float64))
    assert_allclose(result["distance"], en_gal, rtol=1e-12)
    assert_allclose(result["Sp"], (1 - en_gal / en_back) * 100, rtol=1e-12)
    # Brute force: these are the 7 nearest galaxies, in order.
    d_all = np.linalg.norm(database.latents.astype(np.float64) - t, axis=1)
    assert_array_equal(rows, np.argsort(d_all)[:7])


def test_search_ranks_sorted(searcher, database):
    lat, bkg = targets(database, [0, 50, 100])
    result = searcher.search_latents(lat, bkg, k=10)
    for tid in range(3):
        sub = result[result["target"] == tid]
        assert_array_equal(sub["rank"], np.arange(1, 11))
        assert np.all(np.diff(sub["distance"]) >= 0)
        assert np.all(np.diff(sub["Sp"]) <= 0)


def test_search_columns_units_and_carried(searcher, table):
    lat, bkg = targets(StandInDatabase(table), [7])
    result = searcher.search_latents(lat[0], bkg[0], k=3, coord=True)
    assert result["ra"].unit == u.deg and result["dec"].unit == u.deg
    row = result["objid"][0] - 1000
    assert result["ra"][0] == pytest.approx(table["ra"][row])
    assert result["redshift"][0] == table["redshift"][row]
    assert result["catalog"][0] == "gz2"
    assert "latent" not in result.colnames and "background_latent" not in result.colnames
    assert isinstance(result["coord"], SkyCoord)
    coords = match_coordinates(result)
    assert coords.separation(result["coord"]).max() < 1e-10 * u.deg
    assert result.meta["K"] == 3 and result.meta["BACKEND"] == "exact"


def test_search_cross_match(searcher, table):
    lat, bkg = targets(StandInDatabase(table), [7])
    result = searcher.search_latents(lat[0], bkg[0], k=5)
    other = SkyCoord(table["ra"][[100, 7]], table["dec"][[100, 7]])
    idx, sep, _ = match_coordinates(result).match_to_catalog_sky(other)
    assert idx[0] == 1 and sep[0] < 1 * u.arcsec


def test_match_coordinates_plain_degrees_and_errors():
    coords = match_coordinates(Table({"ra": [10.0], "dec": [20.0]}))
    assert coords.ra.deg[0] == 10.0
    with pytest.raises(ValueError, match="'dec'"):
        match_coordinates(Table({"ra": [10.0]}))


def test_identical_image_skipped(searcher, database):
    lat = database.latents[[5]]
    bkg = database.background_latents[[5]]
    result = searcher.search_latents(lat, bkg, k=3)
    assert 1005 not in result["objid"]
    assert np.all(result["Sp"] < 100)
    kept = searcher.search_latents(lat, bkg, k=3, skip_identical=False)
    assert kept["objid"][0] == 1005 and kept["Sp"][0] == 100.0 and kept["distance"][0] == 0


def test_identical_duplicates_all_skipped(table):
    table["latent"][1:8] = table["latent"][0]
    searcher = SimilaritySearcher(StandInDatabase(table))
    result = searcher.search_latents(table["latent"][0], table["background_latent"][0], k=5)
    assert not set(result["objid"]) & set(range(1000, 1008))
    assert len(result) == 5
    cls = searcher.classify_latents(table["latent"][0], table["background_latent"][0])
    assert cls["H_similarity"][0] < 100 and cls["matched_objid"][0] >= 1008


def test_same_objid_exclusion(searcher, database):
    lat, bkg = targets(database, [5, 6], scale=1e-3)
    plain = searcher.search_latents(lat, bkg, k=4)
    assert plain["objid"][plain["target"] == 0][0] == 1005
    result = searcher.search_latents(lat, bkg, k=4, exclude_objids=[1005, None],
                                     target_ids=["a", "b"])
    assert 1005 not in result["objid"][result["target"] == "a"]
    assert result["objid"][result["target"] == "b"][0] == 1006
    assert len(result) == 8
    # an objid that is not in the database changes nothing
    other = searcher.search_latents(lat[0], bkg[0], k=4, exclude_objids=99999)
    assert other["objid"][0] == 1005
    with pytest.raises(ValueError, match="one entry"):
        searcher.search_latents(lat, bkg, k=4, exclude_objids=[1005])
    with pytest.raises(ValueError, match="one entry"):
        searcher.search_latents(lat, bkg, k=4, exclude_objids=1005)


def test_multi_target_table(searcher, database):
    lat, bkg = targets(database, [0, 20, 40, 60])
    result = searcher.search_latents(lat, bkg, k=5)
    assert result.colnames[0] == "target"
    assert len(result) == 20
    assert_array_equal(result["target"], np.repeat(np.arange(4), 5))
    named = searcher.search_latents(lat, bkg, k=5, target_ids=["w", "x", "y", "z"])
    assert_array_equal(named["target"], np.repeat(["w", "x", "y", "z"], 5))
    # one row of a 2-D array is still a batch
    assert "target" in searcher.search_latents(lat[:1], bkg[:1], k=2).colnames
    with pytest.raises(ValueError, match="one entry per target"):
        searcher.search_latents(lat, bkg, k=5, target_ids=[1, 2])


def test_classify_h_similarity(searcher, database):
    lat, bkg = targets(database, np.arange(0, 120, 10))
    search = searcher.search_latents(lat, bkg, k=1)
    cls = searcher.classify_latents(lat, bkg)
    assert cls.colnames == [
        "target", "predicted_morphology", "predicted_type_index", "H_similarity",
        "no_similar", "reason", "matched_objid",
    ]
    assert_allclose(cls["H_similarity"], search["Sp"])
    assert_array_equal(cls["matched_objid"], search["objid"])
    assert_array_equal(cls["predicted_morphology"], search["morphology"])
    assert_array_equal(cls["predicted_morphology"], np.array(GZ2_SCHEME.types))
    assert_array_equal(cls["predicted_type_index"], np.arange(12))


def test_no_similar_rule(database):
    searcher = SimilaritySearcher(database)
    threshold = database.h_similarity_mean - database.h_similarity_std
    assert searcher.h_similarity_threshold == pytest.approx(threshold)
    near_lat, near_bkg = targets(database, [10], scale=0.01)
    rng = np.random.default_rng(9)
    far_lat = (rng.normal(size=(1, DIM)) * 50).astype(np.float32)
    far_bkg = far_lat + 1.0
    cls = searcher.classify_latents(
        np.vstack([near_lat, far_lat]), np.vstack([near_bkg, far_bkg])
    )
    assert_array_equal(cls["no_similar"], [False, True])
    assert cls["H_similarity"][1] < threshold < cls["H_similarity"][0]
    assert cls["reason"][0] == ""
    assert "below the database threshold" in cls["reason"][1]
    assert cls["H_similarity"][1] < 0  # farther than its own background


def test_no_similar_without_statistics(table):
    db = StandInDatabase(table)
    db.meta["HSIMMEAN"] = np.nan
    searcher = SimilaritySearcher(db)
    lat = (np.ones((1, DIM)) * 100).astype(np.float32)
    cls = searcher.classify_latents(lat, lat + 1)
    assert not cls["no_similar"][0]


def test_vote(searcher, database):
    lat, bkg = targets(database, [0, 15, 33, 119])
    cls = searcher.classify_latents(lat, bkg, k=7, vote=True, target_ids=[1, 2, 3, 4])
    vote_cols = [f"vote_{t}" for t in GZ2_SCHEME.types]
    assert cls.colnames[-12:] == vote_cols
    fractions = np.array([cls[c] for c in vote_cols]).T
    assert_allclose(fractions.sum(axis=1), 1.0)
    assert_array_equal(cls["target"], [1, 2, 3, 4])
    search = searcher.search_latents(lat, bkg, k=7)
    for i in range(4):
        morph = search["morphology"][search["target"] == i]
        values, counts = np.unique(morph, return_counts=True)
        assert cls["predicted_morphology"][i] in values[counts == counts.max()]
        assert fractions[i, GZ2_SCHEME.index(cls["predicted_morphology"][i])] == counts.max() / 7
        assert cls["predicted_type_index"][i] == GZ2_SCHEME.index(cls["predicted_morphology"][i])
    assert_array_equal(cls["predicted_morphology"], ["Er", "Ei", "Edge-on", "SBd"])


def test_vote_tie_goes_to_nearest():
    table = Table()
    table["objid"] = [1, 2, 3, 4]
    table["ra"] = [0.0] * 4
    table["dec"] = [0.0] * 4
    table["morphology"] = ["Sc", "Er", "Er", "Sc"]
    table["type_index"] = [6, 0, 0, 6]
    table["latent"] = np.array([[1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    table["background_latent"] = table["latent"] + 10
    table.meta.update({"HSIMMEAN": 50.0, "HSIMSTD": 10.0})
    searcher = SimilaritySearcher(StandInDatabase(table))
    cls = searcher.classify_latents([0.0], [-20.0], k=4, vote=True)
    # no scheme recorded: the types present, by type_index
    assert cls.colnames[-2:] == ["vote_Er", "vote_Sc"]
    assert cls["predicted_morphology"][0] == "Sc"
    assert cls["predicted_type_index"][0] == 6
    assert_allclose([cls["vote_Er"][0], cls["vote_Sc"][0]], [0.5, 0.5])


def test_errors(searcher, database):
    lat, bkg = targets(database, [1, 2])
    with pytest.raises(ValueError, match="at least 1"):
        searcher.search_latents(lat, bkg, k=0)
    with pytest.raises(ValueError, match="larger than"):
        searcher.search_latents(lat, bkg, k=len(database) + 1)
    with pytest.raises(ValueError, match="larger than"):
        searcher.classify_latents(lat, bkg, k=len(database) + 1, vote=True)
    with pytest.raises(TypeError, match="integer"):
        searcher.search_latents(lat, bkg, k=2.0)
    with pytest.raises(ValueError, match="Latent dimensions differ"):
        searcher.search_latents(lat[:, :8], bkg[:, :8], k=2)
    with pytest.raises(ValueError, match="shape"):
        searcher.search_latents(lat, bkg[:1], k=2)
    bad = lat.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        searcher.search_latents(bad, bkg, k=2)
    with pytest.raises(ValueError, match="NaN"):
        searcher.classify_latents(lat, bad)
    with pytest.raises(ValueError, match=r"background latent equal.*undefined"):
        searcher.search_latents(lat, lat, k=2)
    with pytest.raises(ValueError, match="undefined"):
        searcher.classify_latents(lat[0], lat[0])
    with pytest.raises(TypeError, match="search_latents"):
        searcher.search(lat)
    with pytest.raises(ValueError, match="needs the encoder"):
        searcher.search(_cutouts()[0])


def test_database_consistency_errors(table):
    db = StandInDatabase(table)
    db.latents = db.latents[:-1]
    with pytest.raises(ValueError, match="rows"):
        SimilaritySearcher(db)
    db = StandInDatabase(table)
    db.latents = db.latents.copy()
    db.latents[3, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        SimilaritySearcher(db)
    del table["morphology"]
    with pytest.raises(ValueError, match="lacks"):
        SimilaritySearcher(StandInDatabase(table))


def test_encoder_mismatch(database):
    class Other(FakeEncoder):
        weights_hash = "ffff"

    with pytest.raises(EncoderMismatchError, match="ffff"):
        SimilaritySearcher(database, Other())


_CUTOUT_CACHE = []


def _cutouts():
    if not _CUTOUT_CACHE:
        from galmorphsearch import GalaxyCutout

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name in ("Sc", "Er"):
                from importlib.resources import files

                path = files("galmorphsearch") / "data" / "gz2_gallery" / f"{name}.jpeg"
                _CUTOUT_CACHE.append(GalaxyCutout.from_image(str(path), size=32, seed=0))
    return _CUTOUT_CACHE


def test_search_and_classify_cutouts(database):
    encoder = FakeEncoder()
    cutouts = _cutouts()
    # Put the first cutout in the database under objid 1003.
    database.latents = database.latents.copy()
    database.latents[3] = encoder.encode(cutouts[0])[0]
    searcher = SimilaritySearcher(database, encoder)
    single = searcher.search(cutouts[0], k=3, skip_identical=False)
    assert "target" not in single.colnames
    assert single["objid"][0] == 1003 and single["Sp"][0] == 100
    lat = encoder.encode(cutouts)
    bkg = encoder.encode(cutouts, background=True)
    many = searcher.search(cutouts, k=3, exclude_objids=[1003, None])
    assert_array_equal(many["target"], [0, 0, 0, 1, 1, 1])
    expected = searcher.search_latents(lat, bkg, k=3, exclude_objids=[1003, None])
    assert_array_equal(many["objid"], expected["objid"])
    assert_allclose(many["Sp"], expected["Sp"])
    cls = searcher.classify(cutouts, target_ids=["Sc", "Er"])
    assert_array_equal(cls["target"], ["Sc", "Er"])
    assert cls["matched_objid"][0] == 1003 or cls["H_similarity"][0] < 100
    assert 1003 not in searcher.classify(cutouts[0])["matched_objid"]


def test_backends_registry():
    assert available_backends() == ["auto", "exact", "faiss", "faiss-flat", "faiss-hnsw",
                                    "faiss-ivf"]
    backend = get_backend("EXACT", chunk_rows=5)
    assert isinstance(backend, ExactBackend) and backend.chunk_rows == 5
    assert get_backend(backend) is backend
    with pytest.raises(ValueError, match="Unknown search backend"):
        get_backend("annoy")
    with pytest.raises(ValueError, match="already registered"):
        register_backend("exact", ExactBackend)
    with pytest.raises(ValueError, match="chunk_rows"):
        ExactBackend(chunk_rows=0)
    with pytest.raises(RuntimeError, match="fit"):
        ExactBackend().search(np.zeros((1, 2)), 1)
    with pytest.raises(TypeError):
        SearchBackend()


def test_custom_backend(database):
    class Recording(ExactBackend):
        name = "recording"
        calls = 0

        def search(self, queries, k, exclude=None):
            Recording.calls += 1
            return super().search(queries, k, exclude)

    from galmorphsearch.search import backends

    register_backend("recording", Recording)
    try:
        searcher = SimilaritySearcher(database, backend="recording")
        lat, bkg = targets(database, [2])
        result = searcher.search_latents(lat, bkg, k=2)
        assert Recording.calls >= 1 and result.meta["BACKEND"] == "recording"
        small = SimilaritySearcher(database, backend=ExactBackend(chunk_rows=7))
        assert_array_equal(small.search_latents(lat, bkg, k=5)["objid"],
                           searcher.search_latents(lat, bkg, k=5)["objid"])
    finally:
        backends._BACKENDS.pop("recording")


def test_backend_exclude(database):
    backend = ExactBackend(chunk_rows=13).fit(database.latents)
    assert backend.n_rows == len(database) and backend.latent_dim == DIM
    idx, dist = backend.search(database.latents[:3], 2, exclude=[0, 1, 2])
    assert not np.any(idx == np.arange(3)[:, None])
    with pytest.raises(ValueError, match="Latent dimensions"):
        backend.search(np.zeros((1, 3)), 1)


def test_repr(searcher):
    assert "120 galaxies" in repr(searcher)
    assert "ExactBackend" in repr(searcher.backend)


def test_real_latent_database(table):
    database = pytest.importorskip("galmorphsearch.database")
    table.meta.update({"ENCARCH": "fake", "INSIZE": 32, "LATDIM": DIM})
    db = database.LatentDatabase(table)
    searcher = SimilaritySearcher(db)
    lat, bkg = targets(StandInDatabase(table), [3, 44])
    result = searcher.search_latents(lat, bkg, k=4, exclude_objids=[1003, None])
    expected = SimilaritySearcher(StandInDatabase(table)).search_latents(
        lat, bkg, k=4, exclude_objids=[1003, None]
    )
    assert_array_equal(result["objid"], expected["objid"])
    assert_allclose(result["Sp"], expected["Sp"])
    assert "h_similarity" not in result.colnames
    cls = searcher.classify_latents(lat, bkg, k=5, vote=True)
    assert_allclose(np.array([cls[f"vote_{t}"] for t in GZ2_SCHEME.types]).sum(axis=0), 1.0)
    assert searcher.h_similarity_threshold == pytest.approx(
        db.h_similarity_mean - db.h_similarity_std
    )
