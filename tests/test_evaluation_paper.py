# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of galmorphsearch.evaluation.paper (the evaluation of Seo et al. 2023)."""

import numpy as np
import pytest
from astropy.table import Table
from numpy.testing import assert_allclose, assert_array_equal

from galmorphsearch.catalogs import GZ2_SCHEME, MorphologyScheme
from galmorphsearch.database import LatentDatabase
from galmorphsearch.evaluation import (
    balanced_vote,
    confusion_matrix,
    evaluate_retrieval,
    h_similarity_statistics,
    mc_md_split,
    rates,
    type_correlation,
)


def make_database(counts, *, spread=1.0, separation=50.0, dim=8, seed=0, random=False):
    """A LatentDatabase whose GZ2 types are Gaussian clusters (or pure noise)."""
    rng = np.random.default_rng(seed)
    names = list(counts)
    morph = np.repeat(names, [counts[n] for n in names])
    n = morph.size
    if random:
        lat = rng.normal(size=(n, dim))
    else:
        centres = rng.normal(size=(len(names), dim)) * separation
        code = np.repeat(np.arange(len(names)), [counts[m] for m in names])
        lat = centres[code] + rng.normal(scale=spread, size=(n, dim))
    table = Table({
        "objid": np.arange(1000, 1000 + n), "ra": rng.uniform(0, 360, n),
        "dec": rng.uniform(-10, 10, n), "morphology": morph,
        "type_index": [GZ2_SCHEME.index(m) for m in morph], "catalog": ["test"] * n,
        "latent": lat.astype(np.float32),
        "background_latent": (lat + rng.normal(scale=20.0, size=(n, dim))).astype(np.float32),
    })
    table.meta.update(ENCODER="test", ENCARCH="none", ENCHASH="0" * 16, INSIZE=64,
                      LATDIM=dim, SCHEME="gz2")
    return LatentDatabase(table)


# ----------------------------------------------------------------------
# confusion matrix
def test_confusion_matrix_by_hand():
    true = ["A", "A", "B", "B", "B"]
    pred = ["A", "B", "B", "B", "C"]
    m = confusion_matrix(true, pred, ["A", "B", "C"])
    expected = np.array([[50.0, 0.0, np.nan],
                         [50.0, 200 / 3, np.nan],
                         [0.0, 100 / 3, np.nan]])
    assert_allclose(m, expected, equal_nan=True)
    assert_allclose(np.nansum(m, axis=0)[:2], [100.0, 100.0])
    counts = confusion_matrix(true, pred, ["A", "B", "C"], normalize=False)
    assert_array_equal(counts, [[1, 0, 0], [1, 2, 0], [0, 1, 0]])
    # integer positions give the same matrix
    assert_allclose(confusion_matrix([0, 0, 1, 1, 1], [0, 1, 1, 1, 2], ["A", "B", "C"]),
                    expected, equal_nan=True)


def test_confusion_matrix_scheme_axes():
    m = confusion_matrix(["Er", "Sb"], ["Er", "Sc"], "gz2")
    assert m.shape == (12, 12)
    assert m[0, 0] == 100.0
    assert m[GZ2_SCHEME.index("Sc"), GZ2_SCHEME.index("Sb")] == 100.0
    assert np.isnan(m[:, 1]).all()


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match="unknown type"):
        confusion_matrix(["A", "X"], ["A", "A"], ["A", "B"])
    with pytest.raises(ValueError, match="same length"):
        confusion_matrix(["A", "B"], ["A"], ["A", "B"])
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 5], [0, 1], ["A", "B"])
    with pytest.raises(ValueError, match="duplicate"):
        confusion_matrix(["A"], ["A"], ["A", "A"])


# ----------------------------------------------------------------------
# correlation and rates
def test_type_correlation_by_hand():
    assert type_correlation([0, 1, 2, 3], [0, 2, 1, 3]) == pytest.approx(0.8)
    assert type_correlation([0, 1, 2], [2, 1, 0]) == pytest.approx(-1.0)
    rng = np.random.default_rng(3)
    t, p = rng.integers(0, 10, 50), rng.integers(0, 10, 50)
    assert type_correlation(t, p) == pytest.approx(np.corrcoef(t, p)[0, 1])
    assert np.isnan(type_correlation([1, 1, 1], [0, 1, 2]))


def test_type_correlation_errors():
    with pytest.raises(ValueError, match="same length"):
        type_correlation([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="at least two"):
        type_correlation([0], [0])


def test_rates_gz2_adjacency():
    # Er->Er best; Er->Ec two steps (good); Sb->Sd two steps (good);
    # SBd->Er far (miss); Sd->SBa neighbours by the scheme's convention (good).
    true = ["Er", "Er", "Sb", "SBd", "Sd"]
    pred = ["Er", "Ec", "Sd", "Er", "SBa"]
    r = rates(true, pred, GZ2_SCHEME)
    assert r == {"n": 5, "best": 0.2, "good": 0.8, "miss": pytest.approx(0.2)}
    assert r["good"] == np.mean(GZ2_SCHEME.is_good(true, pred))
    r0 = rates(true, pred, "gz2", width=0)
    assert r0["good"] == r0["best"] == 0.2


def test_rates_made_up_scheme():
    scheme = MorphologyScheme("toy", ["a", "b", "c", "d", "e"])
    r = rates(["a", "a", "a", "e"], ["a", "c", "d", "b"], scheme, width=1)
    assert (r["best"], r["good"], r["miss"]) == (0.25, 0.25, 0.75)
    r = rates(["a", "a", "a", "e"], ["a", "c", "d", "b"], scheme, width=3)
    assert (r["best"], r["good"], r["miss"]) == (0.25, 1.0, 0.0)


def test_rates_errors():
    with pytest.raises(ValueError, match="unknown type"):
        rates(["Er"], ["Zz"], "gz2")
    with pytest.raises(ValueError, match="same length"):
        rates(["Er", "Er"], ["Er"], "gz2")
    with pytest.raises(ValueError, match="width"):
        rates(["Er"], ["Er"], "gz2", width=-1)
    with pytest.raises(ValueError, match="Unknown morphology scheme"):
        rates(["Er"], ["Er"], "nope")


# ----------------------------------------------------------------------
# split
def test_split_proportions_and_determinism():
    t = Table({"morphology": ["Er"] * 100 + ["Sb"] * 25 + ["Sc"] * 3 + ["Sd"] * 2 + ["SBa"]})
    mc, md = mc_md_split(t, fraction=0.1, seed=4)
    morph = np.asarray(t["morphology"])
    counts = {m: int(np.sum(morph[mc] == m)) for m in ["Er", "Sb", "Sc", "Sd", "SBa"]}
    assert counts == {"Er": 10, "Sb": 3, "Sc": 1, "Sd": 1, "SBa": 0}  # 2.5 rounds up
    assert_array_equal(np.sort(np.concatenate([mc, md])), np.arange(len(t)))
    assert np.all(np.diff(mc) > 0) and np.all(np.diff(md) > 0)
    mc2, md2 = mc_md_split(t, fraction=0.1, seed=4)
    assert_array_equal(mc, mc2)
    assert_array_equal(md, md2)
    mc3, _ = mc_md_split(t, fraction=0.1, seed=5)
    assert not np.array_equal(mc, mc3)
    # a large fraction keeps at least one galaxy of each type in MD
    mc4, md4 = mc_md_split(t, fraction=0.99, seed=0)
    assert set(morph[md4]) == {"Er", "Sb", "Sc", "Sd", "SBa"}


def test_split_accepts_database():
    db = make_database({"Er": 20, "Sb": 30})
    mc, md = mc_md_split(db)
    assert mc.size == 5 and md.size == 45


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        mc_md_split(Table({"morphology": ["Er", "Er"]}), fraction=fraction)


def test_split_needs_morphology():
    with pytest.raises(ValueError, match="morphology"):
        mc_md_split(Table({"objid": [1, 2]}))


# ----------------------------------------------------------------------
# retrieval
def test_evaluate_retrieval_separated_clusters():
    db = make_database({"Er": 40, "Edge-on": 30, "Sb": 30, "SBd": 20})
    result, summary = evaluate_retrieval(db, seed=1)
    assert summary["n"] == len(result) == 12
    assert summary["best_rate"] == 1.0
    assert summary["good_rate"] == 1.0
    assert summary["miss_rate"] == 0.0
    assert summary["correlation"] == pytest.approx(1.0)
    assert summary["scheme"] == "gz2"
    assert summary["n_md"] == 108
    conf = summary["confusion"]
    assert conf.shape == (12, 12)
    for name in ["Er", "Edge-on", "Sb", "SBd"]:
        i = GZ2_SCHEME.index(name)
        assert conf[i, i] == 100.0
    assert np.isnan(conf[:, GZ2_SCHEME.index("Sa")]).all()
    assert result.colnames == ["objid", "true_morphology", "true_type_index",
                               "predicted_morphology", "predicted_type_index",
                               "H_similarity", "no_similar", "best", "good"]
    assert result["best"].all() and result["good"].all()
    assert_array_equal(result["true_morphology"], result["predicted_morphology"])
    # the MC galaxies are not in MD, so none is matched to itself (Sp < 100)
    assert np.all(result["H_similarity"] < 100)
    # deterministic
    result2, _ = evaluate_retrieval(db, seed=1)
    assert_array_equal(result["objid"], result2["objid"])


def test_evaluate_retrieval_random_latents_near_chance():
    db = make_database({"Er": 100, "Sb": 100, "SBb": 100, "Edge-on": 100}, random=True)
    _, summary = evaluate_retrieval(db, seed=0)
    assert summary["n"] == 40
    # chance is 0.25; 40 targets give a standard error of about 0.07
    assert 0.0 <= summary["best_rate"] < 0.55
    assert abs(summary["correlation"]) < 0.6


def test_evaluate_retrieval_single_members():
    db = make_database({"Er": 1, "Sb": 1})
    with pytest.raises(ValueError, match="too small to evaluate.*0 morphology-check"):
        evaluate_retrieval(db)


# ----------------------------------------------------------------------
# balanced vote
def test_balanced_vote_separated_clusters():
    db = make_database({"Er": 60, "Sb": 30, "SBc": 15})
    mc, md = mc_md_split(db, seed=2)
    result, summary = balanced_vote(db, mc, md, n_per_type=5, n_iterations=100, seed=0)
    assert summary["n"] == len(result) == mc.size
    assert summary["best_rate"] == 1.0
    assert summary["mean_agreement"] == 1.0
    assert summary["n_per_type"] == 5 and summary["n_iterations"] == 100
    assert_array_equal(result["objid"], np.asarray(db.table["objid"])[mc])
    assert np.all(result["H_similarity"] < 100)


def test_balanced_vote_matches_brute_force():
    db = make_database({"Er": 30, "Sb": 30, "Sc": 30}, random=True, seed=5)
    mc, md = mc_md_split(db, seed=0)
    result, _ = balanced_vote(db, mc, md, n_per_type=1, n_iterations=1, seed=7)
    # one iteration with one galaxy per type: reproduce the draw by hand
    rng = np.random.default_rng(7)
    codes = np.array([GZ2_SCHEME.index(m) for m in np.asarray(db.table["morphology"])])
    md_codes = codes[md]
    drawn = [rng.choice(np.flatnonzero(md_codes == c), size=1, replace=False)[0]
             for c in np.unique(md_codes)]
    lat = db.latents.astype(np.float64)
    d = np.linalg.norm(lat[mc][:, None, :] - lat[md[drawn]][None, :, :], axis=2)
    expected = md_codes[np.array(drawn)[np.argmin(d, axis=1)]]
    assert_array_equal(result["predicted_type_index"], expected)
    back = np.linalg.norm(lat[mc] - db.background_latents[mc].astype(np.float64), axis=1)
    assert_allclose(result["H_similarity"], (1 - d.min(axis=1) / back) * 100, rtol=1e-9)


def test_balanced_vote_deterministic_and_fast_enough():
    db = make_database({"Er": 400, "Sb": 400, "Sc": 400, "SBb": 400}, random=True, dim=16)
    mc, md = mc_md_split(db, seed=0)
    r1, s1 = balanced_vote(db, mc, md, n_per_type=20, n_iterations=400, seed=3)
    r2, s2 = balanced_vote(db, mc, md, n_per_type=20, n_iterations=400, seed=3)
    assert_array_equal(r1["predicted_type_index"], r2["predicted_type_index"])
    assert_array_equal(r1["agreement"], r2["agreement"])
    assert s1["best_rate"] == s2["best_rate"]
    assert np.all((r1["agreement"] > 0) & (r1["agreement"] <= 1))


def test_balanced_vote_default_n_per_type():
    db = make_database({"Er": 40, "Sb": 12})
    mc, md = mc_md_split(db, seed=0)
    _, summary = balanced_vote(db, mc, md, n_iterations=3)
    assert summary["n_per_type"] == 11  # Sb in MD: 12 - 1


def test_balanced_vote_errors():
    db = make_database({"Er": 40, "Sb": 12})
    mc, md = mc_md_split(db, seed=0)
    with pytest.raises(ValueError, match="larger than the smallest type"):
        balanced_vote(db, mc, md, n_per_type=12)
    with pytest.raises(ValueError, match="n_per_type"):
        balanced_vote(db, mc, md, n_per_type=0)
    with pytest.raises(ValueError, match="n_iterations"):
        balanced_vote(db, mc, md, n_per_type=2, n_iterations=0)
    with pytest.raises(ValueError, match="overlap"):
        balanced_vote(db, mc, np.concatenate([md, mc[:1]]), n_per_type=2)
    with pytest.raises(ValueError, match="outside"):
        balanced_vote(db, mc, [0, 1000], n_per_type=1)
    with pytest.raises(ValueError, match="integer"):
        balanced_vote(db, mc, [0.5, 1.5], n_per_type=1)


# ----------------------------------------------------------------------
# H-similarity statistics
def test_h_similarity_statistics_by_hand():
    db = make_database({"Er": 15, "Sb": 10, "SBd": 7}, random=True)
    stats = h_similarity_statistics(db)
    assert list(stats["type"]) == ["Er", "Sb", "SBd", "all"]
    assert list(stats["type_index"]) == [0, 5, 11, -1]
    morph = np.asarray(db.table["morphology"])
    h = db.h_similarity
    for row in stats[:-1]:
        sel = h[morph == row["type"]]
        assert row["n"] == sel.size
        assert row["mean"] == pytest.approx(np.mean(sel))
        assert row["std"] == pytest.approx(np.std(sel))
    assert stats["n"][-1] == len(db)
    assert stats["mean"][-1] == pytest.approx(db.h_similarity_mean)
    assert stats["std"][-1] == pytest.approx(db.h_similarity_std)
