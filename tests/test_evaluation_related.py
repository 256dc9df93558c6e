# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of galmorphsearch.evaluation.related (evaluations of related work)."""

import importlib.util
import sys

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.evaluation.related import (
    cluster_scores,
    knn_accuracy,
    label_outliers,
    latent_correlations,
    latent_map,
    nonparametric_morphology,
)


def _blobs(n_per=30, dim=10, n_classes=3, scale=0.2, seed=0):
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.eye(n_classes, dim)
    labels = np.repeat(np.arange(n_classes), n_per)
    return centres[labels] + rng.normal(scale=scale, size=(len(labels), dim)), labels


# --- knn_accuracy -----------------------------------------------------------

TRAIN_1D = np.array([[0.0], [1.0], [2.0], [4.0], [7.0]])
LABELS_1D = np.array(["a", "a", "b", "b", "b"])


def test_knn_hand_computed():
    # Neighbours of 1.4 by distance: 1 (a), 2 (b), 0 (a), 4 (b), 7 (b).
    t = knn_accuracy(TRAIN_1D, LABELS_1D, [[1.4]], ["a"], k=(1, 3, 5))
    assert t.colnames == ["k", "accuracy", "balanced_accuracy"]
    assert t["k"].tolist() == [1, 3, 5]
    assert t["accuracy"].tolist() == [1.0, 1.0, 0.0]
    assert t.meta["n_test"] == 1
    assert t.meta["leave_one_out"] is False


def test_knn_tie_goes_to_nearest():
    # k = 2: one a and one b; the nearer one wins.
    t = knn_accuracy(TRAIN_1D, LABELS_1D, [[1.4], [1.6]], ["a", "b"], k=2)
    assert t["accuracy"].tolist() == [1.0]


def test_knn_balanced_accuracy():
    train = np.array([[0.0], [10.0]])
    t = knn_accuracy(train, ["a", "b"], [[0.0], [0.1], [0.2], [0.3]],
                     ["a", "a", "a", "b"], k=1)
    assert t["accuracy"][0] == pytest.approx(0.75)
    assert t["balanced_accuracy"][0] == pytest.approx(0.5)


def test_knn_leave_one_out():
    x = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 12.0])
    lab = np.array([0, 0, 0, 1, 1, 1])
    t = knn_accuracy(x, lab, k=(1, 5))
    # k = 1: the nearest other point shares the label; k = 5: the two others
    # of the own class are outvoted by the three of the other class.
    assert t["accuracy"].tolist() == [1.0, 0.0]
    assert t.meta["leave_one_out"] is True
    with pytest.raises(ValueError, match="larger than the 5"):
        knn_accuracy(x, lab, k=6)


def test_knn_leave_one_out_with_duplicates():
    x = np.array([[0.0], [0.0], [5.0], [5.0]])
    t = knn_accuracy(x, ["a", "a", "b", "b"], k=1)
    assert t["accuracy"][0] == 1.0


def test_knn_blobs_and_metric():
    x, lab = _blobs()
    for metric in ("euclidean", "cosine"):
        t = knn_accuracy(x[::2], lab[::2], x[1::2], lab[1::2], metric=metric)
        assert np.all(t["accuracy"] == 1.0)


def test_knn_errors():
    with pytest.raises(ValueError, match="train_labels has 4 entries"):
        knn_accuracy(TRAIN_1D, LABELS_1D[:4], k=1)
    with pytest.raises(ValueError, match="test_labels has 1 entries"):
        knn_accuracy(TRAIN_1D, LABELS_1D, [[0.0], [1.0]], ["a"], k=1)
    with pytest.raises(ValueError, match="larger than the 5 training"):
        knn_accuracy(TRAIN_1D, LABELS_1D, [[0.0]], ["a"], k=6)
    with pytest.raises(ValueError, match="at least 1"):
        knn_accuracy(TRAIN_1D, LABELS_1D, [[0.0]], ["a"], k=0)
    with pytest.raises(TypeError, match="integer"):
        knn_accuracy(TRAIN_1D, LABELS_1D, [[0.0]], ["a"], k=1.5)
    with pytest.raises(ValueError, match="test_labels are required"):
        knn_accuracy(TRAIN_1D, LABELS_1D, [[0.0]], k=1)
    with pytest.raises(ValueError, match="dimensions"):
        knn_accuracy(TRAIN_1D, LABELS_1D, [[0.0, 1.0]], ["a"], k=1)


# --- cluster_scores ---------------------------------------------------------

@pytest.mark.parametrize("threshold", [None, "auto"])
def test_cluster_scores_perfect(threshold):
    x, lab = _blobs()
    t = cluster_scores(x, lab, distance_threshold=threshold)
    assert t["method"].tolist() == ["kmeans", "agglomerative"]
    assert t["n_clusters"].tolist() == [3, 3]
    np.testing.assert_allclose(t["ARI"], 1.0)
    np.testing.assert_allclose(t["NMI"], 1.0)
    assert t.meta["pca_components"] == 10
    if threshold == "auto":
        assert t.meta["distance_threshold"] > 0


def test_cluster_scores_random_labels():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5))
    lab = rng.integers(0, 3, 300)
    t = cluster_scores(x, lab, pca_components=2)
    assert t.meta["pca_components"] == 2
    assert np.all(np.abs(t["ARI"]) < 0.05)


def test_cluster_scores_errors():
    x, lab = _blobs()
    with pytest.raises(ValueError, match="labels has 89 entries"):
        cluster_scores(x, lab[:-1])
    with pytest.raises(ValueError, match="distance_threshold"):
        cluster_scores(x, lab, distance_threshold="median")
    with pytest.raises(ValueError, match="positive"):
        cluster_scores(x, lab, distance_threshold=-1.0)
    with pytest.raises(ValueError, match="larger than the 90"):
        cluster_scores(x, lab, n_clusters=91)


# --- latent_map -------------------------------------------------------------

@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_latent_map_shape_and_determinism(method):
    x, _ = _blobs(n_per=10)
    a = latent_map(x, method, seed=1)
    b = latent_map(x, method, seed=1)
    assert a.shape == (30, 2)
    np.testing.assert_array_equal(a, b)


def test_latent_map_tsne_small_sample():
    x = np.random.default_rng(0).normal(size=(6, 4))
    assert latent_map(x, "tsne").shape == (6, 2)


def test_latent_map_umap_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)
    x, _ = _blobs(n_per=5)
    with pytest.raises(ImportError, match="pip install umap-learn"):
        latent_map(x, "umap")


def test_latent_map_errors():
    x, _ = _blobs(n_per=5)
    with pytest.raises(ValueError, match="Unknown method"):
        latent_map(x, "isomap")
    with pytest.raises(ValueError, match="at least 2"):
        latent_map(x[:1], "pca")


# --- label_outliers ---------------------------------------------------------

def test_label_outliers_planted():
    x, lab = _blobs()
    lab = lab.copy()
    lab[7] = 2  # a galaxy of class 0 mislabelled as class 2
    ids = np.array([f"gal{i}" for i in range(len(lab))])
    t = label_outliers(x, lab, k=10, ids=ids)
    assert t.colnames == ["id", "label", "majority_label", "disagreement"]
    assert t["id"].tolist() == ["gal7"]
    assert t["label"][0] == 2
    assert t["majority_label"][0] == 0
    assert t["disagreement"][0] == 1.0


def test_label_outliers_sorted_and_threshold():
    x, lab = _blobs()
    t = label_outliers(x, lab, k=5, threshold=0.0)
    assert len(t) == 0
    lab = lab.copy()
    lab[[3, 40]] = [1, 0]
    t = label_outliers(x, lab, k=5, threshold=0.0)
    assert set(t["id"].tolist()) >= {3, 40}
    assert np.all(np.diff(t["disagreement"]) <= 0)


def test_label_outliers_errors():
    x, lab = _blobs(n_per=3)
    with pytest.raises(ValueError, match="larger than the 8"):
        label_outliers(x, lab, k=9)
    with pytest.raises(ValueError, match="threshold"):
        label_outliers(x, lab, k=2, threshold=1.5)
    with pytest.raises(ValueError, match="ids has 2 entries"):
        label_outliers(x, lab, k=2, ids=[1, 2])


# --- latent_correlations ----------------------------------------------------

def test_latent_correlations_planted():
    rng = np.random.default_rng(4)
    n = 200
    colour = rng.normal(size=n)
    size = rng.uniform(1, 10, n)
    noise = rng.normal(scale=0.1, size=(n, 6))
    latents = noise.copy()
    latents[:, 0] += 5 * colour  # dominant direction: the first PC
    latents[:, 1] += 0.5 * size
    props = Table({"colour": colour, "size": size, "name": ["x"] * n})
    t = latent_correlations(latents, props, n_components=3)
    assert t.colnames == ["component", "property", "pearson_r", "spearman_r", "n"]
    assert set(t["property"]) == {"colour", "size"}  # strings are skipped
    assert len(t) == 6
    row = t[(t["component"] == "PC1") & (t["property"] == "colour")][0]
    assert abs(row["pearson_r"]) > 0.9
    assert abs(row["spearman_r"]) > 0.9
    raw = latent_correlations(latents, {"size": size}, n_components=None)
    assert len(raw) == 6
    assert raw["component"][1] == "z1"
    assert raw["pearson_r"][1] > 0.9


def test_latent_correlations_missing_values():
    rng = np.random.default_rng(5)
    p = rng.normal(size=50)
    latents = np.column_stack([p, rng.normal(size=50)])
    p_nan = p.copy()
    p_nan[:5] = np.nan
    t = latent_correlations(latents, {"p": p_nan, "const": np.ones(50)}, n_components=None)
    assert t["n"][0] == 45
    assert t["pearson_r"][0] == pytest.approx(1.0)
    assert np.isnan(t["pearson_r"][1])


def test_latent_correlations_errors():
    latents = np.random.default_rng(6).normal(size=(5, 3))
    with pytest.raises(ValueError, match="4 rows but latents has 5"):
        latent_correlations(latents, {"a": np.arange(4.0)})
    with pytest.raises(ValueError, match="no numeric"):
        latent_correlations(latents, {"a": ["x"] * 5})
    with pytest.raises(ValueError, match="n_components"):
        latent_correlations(latents, {"a": np.arange(5.0)}, n_components=0)


# --- nonparametric_morphology -----------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("statmorph") is not None,
                    reason="statmorph is installed")
def test_nonparametric_morphology_without_statmorph():
    with pytest.raises(ImportError, match="pip install statmorph"):
        nonparametric_morphology(np.zeros((11, 11)))


def test_nonparametric_morphology_with_statmorph():
    pytest.importorskip("statmorph", reason="the optional package statmorph is not installed")
    yy, xx = np.mgrid[:61, :61]
    image = 100 * np.exp(-np.hypot(xx - 30, yy - 30) / 4)
    image += np.random.default_rng(0).normal(scale=0.5, size=image.shape)
    t = nonparametric_morphology(np.stack([image, image]))
    assert len(t) == 2
    assert 0 < t["gini"][0] < 1
