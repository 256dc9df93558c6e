# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of galmorphsearch.visualization.plots (the matplotlib figures)."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from astropy.table import Table
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch
from numpy.testing import assert_allclose, assert_array_equal

from galmorphsearch.catalogs import GZ2_SCHEME
from galmorphsearch.database import LatentDatabase
from galmorphsearch.evaluation import evaluate_retrieval, h_similarity_statistics, knn_accuracy
from galmorphsearch.model import Autoencoder, Decoder, Encoder
from galmorphsearch.preprocessing import CutoutSet
from galmorphsearch.visualization import (
    plot_confusion_matrix,
    plot_h_similarity_by_type,
    plot_h_similarity_histogram,
    plot_knn_accuracy,
    plot_latent_map,
    plot_loss_history,
    plot_reconstructions,
    plot_retrieval_gallery,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def draw(fig):
    """Render the figure (layout warnings would fail the test) and return it."""
    fig.canvas.draw()
    return fig


def make_database(counts, *, dim=4, seed=0, separation=30.0):
    """A LatentDatabase whose GZ2 types are Gaussian clusters (as test_evaluation_paper)."""
    rng = np.random.default_rng(seed)
    names = list(counts)
    morph = np.repeat(names, [counts[name] for name in names])
    n = morph.size
    centres = rng.normal(size=(len(names), dim)) * separation
    code = np.repeat(np.arange(len(names)), [counts[name] for name in names])
    lat = centres[code] + rng.normal(size=(n, dim))
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


def image_axes(fig):
    return [ax for ax in fig.axes if ax.get_images()]


# ----------------------------------------------------------------------
# retrieval gallery
@pytest.fixture
def gallery_inputs():
    rng = np.random.default_rng(1)
    targets = rng.integers(0, 256, (2, 12, 12, 3), dtype=np.uint8)
    # rows deliberately out of rank order for target 'b'
    results = Table({"target": ["a", "a", "a", "b", "b", "b"], "rank": [1, 2, 3, 2, 1, 3],
                     "objid": [10, 11, 12, 13, 11, 10],
                     "morphology": ["Er", "Ei", "Sb", "Sc", "Ei", "Er"],
                     "Sp": [91.34, 80.06, 70.0, 62.449, 75.55, 50.0]})
    images = {o: rng.integers(0, 256, (12, 12, 3), dtype=np.uint8) for o in (10, 11, 12, 13)}
    return targets, results, images


def test_gallery_layout_titles_and_images(gallery_inputs):
    targets, results, images = gallery_inputs
    fig = draw(plot_retrieval_gallery(targets, results, images, k=2,
                                      true_types=["Er", None]))
    assert isinstance(fig, Figure)
    axes = np.array(fig.axes).reshape(2, 3)
    # targets, with their ids and (when known) true type
    assert axes[0, 0].get_title() == "target\na\ntrue Er"
    assert axes[1, 0].get_title() == "target\nb"
    assert_array_equal(axes[0, 0].get_images()[0].get_array(), targets[0])
    # matches: morphology and Sp as displayed (one decimal), sorted by rank
    assert [ax.get_title() for ax in axes[0, 1:]] == ["Er  Sp=91.3", "Ei  Sp=80.1"]
    assert [ax.get_title() for ax in axes[1, 1:]] == ["Ei  Sp=75.5", "Sc  Sp=62.4"]
    assert_array_equal(axes[1, 1].get_images()[0].get_array(), images[11])
    assert_array_equal(axes[1, 2].get_images()[0].get_array(), images[13])


def test_gallery_string_keys_cutout_set_and_no_images(gallery_inputs):
    targets, results, images = gallery_inputs
    # keys as strings (as the demo makes them)
    fig = plot_retrieval_gallery(targets, results, {str(k): v for k, v in images.items()},
                                 k=3)
    assert len(fig.axes) == 2 * 4
    # a CutoutSet of the database galaxies
    objids = sorted(images)
    cube = np.stack([images[o] for o in objids])
    cutout_set = CutoutSet(Table({"objid": objids}), cube, cube.copy())
    fig = plot_retrieval_gallery(targets, results, cutout_set, k=3)
    assert_array_equal(fig.axes[1].get_images()[0].get_array(), images[10])
    # no images: empty panels with the objid, titled with type and Sp
    fig = draw(plot_retrieval_gallery(targets, results, None, k=3, max_targets=1))
    assert len(fig.axes) == 4
    assert len(image_axes(fig)) == 1  # only the target
    assert fig.axes[3].get_title() == "Sb  Sp=70.0"
    assert fig.axes[3].texts[0].get_text() == "objid\n12"


def test_gallery_single_target_and_fewer_matches(gallery_inputs):
    targets, results, images = gallery_inputs
    single = results[results["target"] == "a"]
    single.remove_column("target")
    fig = plot_retrieval_gallery(targets[0], single, images, k=5)
    assert len(fig.axes) == 4  # the target and its only three matches
    assert fig.axes[0].get_title() == "target\n0"
    # a target with fewer matches than the others leaves its last panels empty
    fig = plot_retrieval_gallery(targets, results[:5], images, k=5)
    axes = np.array(fig.axes).reshape(2, 4)
    assert axes[1, 2].get_title() == "Sc  Sp=62.4"
    assert not axes[1, 3].axison and not axes[1, 3].get_images()


def test_gallery_target_ids_and_fig(gallery_inputs):
    targets, results, images = gallery_inputs
    fig = plt.figure()
    out = plot_retrieval_gallery(targets[::-1], results, images, k=1, target_ids=["b", "a"],
                                 fig=fig)
    assert out is fig
    assert fig.axes[0].get_title() == "target\nb"
    assert fig.axes[1].get_title() == "Ei  Sp=75.5"


def test_gallery_errors(gallery_inputs):
    targets, results, images = gallery_inputs
    with pytest.raises(ValueError, match="lacks the column.*'Sp'"):
        plot_retrieval_gallery(targets, results["target", "objid", "morphology"], images)
    with pytest.raises(TypeError, match="astropy Table"):
        plot_retrieval_gallery(targets, dict(results), images)
    with pytest.raises(ValueError, match="matches of 2 targets but 1 target"):
        plot_retrieval_gallery(targets[:1], results, images)
    with pytest.raises(ValueError, match="target_ids has 1 entries"):
        plot_retrieval_gallery(targets, results, images, target_ids=["a"])
    with pytest.raises(ValueError, match="no matches for the target 'c'"):
        plot_retrieval_gallery(targets, results, images, target_ids=["a", "c"])
    with pytest.raises(ValueError, match="no image for the objid.* 13"):
        plot_retrieval_gallery(targets, results, {k: v for k, v in images.items() if k != 13})
    with pytest.raises(TypeError, match="mapping objid -> image"):
        plot_retrieval_gallery(targets, results, [images[10]])
    with pytest.raises(ValueError, match=r"targets\[0\] must be an \(H, W, 3\)"):
        plot_retrieval_gallery(np.zeros((2, 4, 4, 5)), results, images)
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        plot_retrieval_gallery(np.full((2, 4, 4, 3), 2.0), results, images)
    with pytest.raises(ValueError, match="true_types has 1 entries"):
        plot_retrieval_gallery(targets, results, images, true_types=["Er"])
    with pytest.raises(ValueError, match="k must be a positive integer"):
        plot_retrieval_gallery(targets, results, images, k=0)
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure"):
        plot_retrieval_gallery(targets, results, images, fig=plt.gca())


# ----------------------------------------------------------------------
# reconstructions
@pytest.fixture(scope="module")
def tiny_autoencoder():
    torch.manual_seed(0)
    return Autoencoder(Encoder(input_size=32, latent_dim=8),
                       Decoder(input_size=32, latent_dim=8, channels=(8,), fc_channels=8))


def test_reconstructions_residual_is_input_minus_reconstruction(tiny_autoencoder):
    model = tiny_autoencoder
    model.train()
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    fig = draw(plot_reconstructions(model, images, n=3))
    assert model.training  # restored
    assert len(fig.axes) == 3 * 3 + 1  # three rows of three, and the colour bar
    axes = np.array(fig.axes[:9]).reshape(3, 3)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["input", "reconstruction", "residual"]
    # independently: the model in eval mode on the float images
    x = torch.from_numpy(images[:3]).permute(0, 3, 1, 2).float() / 255.0
    model.eval()
    with torch.no_grad():
        recon = model(x)
    model.train()
    expected = (x - recon).mean(dim=1).numpy()
    limit = np.abs(expected).max()
    for i in range(3):
        assert_allclose(axes[0, i].get_images()[0].get_array(), images[i] / 255.0, rtol=1e-6)
        assert_allclose(axes[1, i].get_images()[0].get_array(),
                        recon[i].permute(1, 2, 0).numpy(), rtol=1e-5, atol=1e-6)
        residual = axes[2, i].get_images()[0]
        assert_allclose(residual.get_array(), expected[i], rtol=1e-5, atol=1e-6)
        assert_allclose(residual.get_clim(), (-limit, limit), rtol=1e-5)
        mse = float(((x[i] - recon[i]) ** 2).mean())
        assert axes[1, i].get_title() == f"MSE {mse:.4f}"


def test_reconstructions_inputs_and_errors(tiny_autoencoder):
    model = tiny_autoencoder.eval()
    # fewer images than n, a single (H, W, 3) image, resized from 40 px
    image = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    fig = plot_reconstructions(model, image, n=6)
    assert len(fig.axes) == 3 + 1
    assert fig.axes[0].get_images()[0].get_array().shape == (32, 32, 3)
    assert not model.training
    with pytest.raises(TypeError, match="must be an Autoencoder"):
        plot_reconstructions(model.encoder, image)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        plot_reconstructions(model, image, n=0)
    with pytest.raises(ValueError, match="3 colour channels"):
        plot_reconstructions(model, np.zeros((2, 32, 32, 4), np.uint8))


# ----------------------------------------------------------------------
# loss history
def history_table(val=True):
    history = Table({"epoch": [0, 1, 2, 3], "step": [2, 4, 6, 8],
                     "train_loss": [0.2, 0.1, 0.07, 0.05],
                     "val_loss": [0.25, 0.12, 0.09, 0.08] if val else [np.nan] * 4})
    history.meta["TESTLOSS"] = 0.085
    return history


def test_loss_history_curves(tmp_path):
    history = history_table()
    fig = draw(plot_loss_history(history))
    ax = fig.axes[0]
    train, val, test = ax.get_lines()
    assert_array_equal(train.get_xdata(), history["epoch"])
    assert_array_equal(train.get_ydata(), history["train_loss"])
    assert_array_equal(val.get_ydata(), history["val_loss"])
    assert test.get_ydata()[0] == 0.085
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "epoch"
    # from the ECSV file, on given axes, linear, without validation loss
    path = tmp_path / "loss_history.ecsv"
    history_table(val=False).write(path, format="ascii.ecsv")
    fig, ax = plt.subplots()
    assert plot_loss_history(path, ax=ax, log=False) is fig
    assert [line.get_label() for line in ax.get_lines()] == ["training", "test (0.085)"]
    assert ax.get_yscale() == "linear"


def test_loss_history_names_the_loss_of_each_training_method():
    history = history_table()
    assert "MSE" in draw(plot_loss_history(history)).axes[0].get_ylabel()
    supervised = history_table()
    supervised["train_accuracy"] = 0.5
    assert "cross-entropy" in draw(plot_loss_history(supervised)).axes[0].get_ylabel()
    contrastive = history_table()
    contrastive.meta["METHOD"] = "contrastive"
    assert "InfoNCE" in draw(plot_loss_history(contrastive)).axes[0].get_ylabel()
    # One epoch: its tick is the epoch itself, not fractions around it.
    one = history_table()[:1]
    ticks = draw(plot_loss_history(one)).axes[0].get_xticks()
    assert_array_equal(ticks, one["epoch"])
    plt.close("all")


def test_knn_accuracy_lines_can_be_labelled_for_comparisons():
    table = Table({"k": [1, 5], "accuracy": [0.8, 0.85], "balanced_accuracy": [0.7, 0.75]})
    fig, ax = plt.subplots()
    plot_knn_accuracy(table, ax=ax, label="trained")
    plot_knn_accuracy(Table({"k": [1, 5], "accuracy": [0.6, 0.62]}), ax=ax, label="random")
    assert [line.get_label() for line in ax.get_lines()] == ["trained", "trained (balanced)",
                                                             "random"]
    plt.close(fig)


def test_loss_history_errors(tmp_path):
    with pytest.raises(ValueError, match="lacks the column.*'train_loss'"):
        plot_loss_history(Table({"epoch": [0]}))
    with pytest.raises(ValueError, match="empty"):
        plot_loss_history(history_table()[:0])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_loss_history(tmp_path / "missing.ecsv")
    with pytest.raises(TypeError, match="astropy Table"):
        plot_loss_history([0.1, 0.2])
    bad = history_table()
    bad["train_loss"][0] = 0.0
    with pytest.raises(ValueError, match="log=True needs positive losses"):
        plot_loss_history(bad)
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        plot_loss_history(history_table(), ax=plt.figure())


# ----------------------------------------------------------------------
# confusion matrix
def test_confusion_matrix_image_and_annotations():
    m = np.array([[50.0, 0.0, np.nan],
                  [50.0, 75.0, np.nan],
                  [0.0, 25.0, np.nan]])
    fig = draw(plot_confusion_matrix(m, ["E", "S", "Irr"]))
    ax, colorbar = fig.axes
    image = ax.get_images()[0]
    assert_array_equal(image.get_array().filled(np.nan), m)
    assert image.get_clim() == (0.0, 100.0)
    assert colorbar.get_ylabel() == "per cent of the true type"
    assert ax.get_xlabel() == "true type" and ax.get_ylabel() == "predicted type"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["E", "S", "Irr"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["E", "S", "Irr"]
    # one annotation per non-zero finite cell, at (true, predicted)
    cells = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert cells == {((0, 0), "50"), ((0, 1), "50"), ((1, 1), "75"), ((1, 2), "25")}
    assert not ax.get_title()
    # no annotations on request; counts get their own scale
    counts = np.array([[3.0, 1.0], [0.0, 250.0]])
    fig, ax = plt.subplots()
    assert plot_confusion_matrix(counts, ax=ax, annotate=False, cmap="viridis") is fig
    assert not ax.texts
    assert ax.get_images()[0].get_clim() == (0.0, 250.0)
    assert fig.axes[1].get_ylabel() == "galaxies"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1"]


def test_confusion_matrix_from_summary():
    db = make_database({"Er": 20, "Sb": 20, "SBc": 10})
    _, summary = evaluate_retrieval(db, seed=0)
    fig = draw(plot_confusion_matrix(summary))
    ax = fig.axes[0]
    assert_array_equal(ax.get_images()[0].get_array().filled(np.nan), summary["confusion"])
    assert [t.get_text() for t in ax.get_xticklabels()] == list(GZ2_SCHEME.types)
    title = ax.get_title()
    assert title.startswith("gz2:")
    assert f"best {100 * summary['best_rate']:.1f}%" in title
    assert f"good {100 * summary['good_rate']:.1f}%" in title
    assert f"r = {summary['correlation']:.3f}" in title
    assert plot_confusion_matrix(summary, title="mine").axes[0].get_title() == "mine"


def test_confusion_matrix_errors():
    with pytest.raises(ValueError, match=r"square \(T, T\) array; got shape \(2, 3\)"):
        plot_confusion_matrix(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="types has 2 names but the matrix is 3 x 3"):
        plot_confusion_matrix(np.eye(3) * 100, ["E", "S"])
    with pytest.raises(ValueError, match="negative"):
        plot_confusion_matrix(-np.eye(2))
    with pytest.raises(ValueError, match="must hold 'confusion'"):
        plot_confusion_matrix({"types": ["E"]})
    with pytest.raises(ValueError, match="unknown colormap"):
        plot_confusion_matrix(np.eye(2) * 100, cmap="no-such-map")
    with pytest.raises(TypeError, match="numbers"):
        plot_confusion_matrix([["a", "b"], ["c", "d"]])


# ----------------------------------------------------------------------
# H-similarity
def test_h_similarity_histogram_of_values():
    values = np.array([60.0, 65.0, 70.0, 72.0, 80.0, 81.0, 90.0, np.nan, np.nan])
    fig = draw(plot_h_similarity_histogram(values, bins=4))
    ax = fig.axes[0]
    (stairs,) = [p for p in ax.patches if isinstance(p, StepPatch)]
    counts, edges, _ = stairs.get_data()
    assert counts.sum() == 7  # the finite values
    assert stairs.get_label() == "H-similarity (7 galaxies)"
    assert_allclose(edges, np.linspace(60, 90, 5))
    mean_line, threshold_line = ax.get_lines()
    finite = values[np.isfinite(values)]
    assert_allclose(mean_line.get_xdata(), [finite.mean()] * 2)
    assert_allclose(threshold_line.get_xdata(), [finite.mean() - finite.std()] * 2)
    # without the threshold
    fig = plot_h_similarity_histogram(values, show_threshold=False)
    assert len(fig.axes[0].get_lines()) == 1


def test_h_similarity_histogram_of_databases():
    db1 = make_database({"Er": 15, "Sb": 15}, seed=1)
    db2 = make_database({"Er": 10, "SBc": 12}, seed=2)
    fig, ax = plt.subplots()
    assert plot_h_similarity_histogram([db1, db2], labels=["one", "two"], ax=ax) is fig
    draw(fig)
    stairs = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert [s.get_data().values.sum() for s in stairs] == [30, 22]
    assert [s.get_label() for s in stairs] == ["one (30 galaxies)", "two (22 galaxies)"]
    assert_array_equal(stairs[0].get_data().edges, stairs[1].get_data().edges)  # shared bins
    lines = ax.get_lines()
    assert len(lines) == 4
    assert_allclose(lines[0].get_xdata()[0], db1.h_similarity_mean)
    assert_allclose(lines[1].get_xdata()[0], db1.h_similarity_mean - db1.h_similarity_std)
    assert_allclose(lines[3].get_xdata()[0], db2.h_similarity_mean - db2.h_similarity_std)
    assert lines[2].get_label().startswith("two: mean")


def test_h_similarity_histogram_errors():
    with pytest.raises(ValueError, match="labels has 1 entries but 2 samples"):
        plot_h_similarity_histogram([[1.0, 2.0], [3.0, 4.0]], labels=["a"])
    with pytest.raises(ValueError, match="no finite H-similarity"):
        plot_h_similarity_histogram([np.nan, np.nan])
    with pytest.raises(ValueError, match="one-dimensional"):
        plot_h_similarity_histogram(np.ones((3, 3)))
    with pytest.raises(TypeError, match="LatentDatabase or an array"):
        plot_h_similarity_histogram("abc")
    with pytest.raises(ValueError, match="invalid bins"):
        plot_h_similarity_histogram([1.0, 2.0], bins=-3)


def test_h_similarity_by_type():
    db = make_database({"Er": 12, "Sb": 10, "SBc": 8})
    stats = h_similarity_statistics(db)
    fig = draw(plot_h_similarity_by_type(stats))
    ax = fig.axes[0]
    typed = stats[stats["type_index"] >= 0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(typed["type"])
    (container,) = ax.containers
    points = container.lines[0]
    assert_allclose(points.get_ydata(), typed["mean"])
    # the error bars span mean +- std
    segments = container.lines[2][0].get_segments()
    assert_allclose([seg[:, 1] for seg in segments],
                    np.c_[typed["mean"] - typed["std"], typed["mean"] + typed["std"]])
    # the 'all' row is a horizontal line, not a point
    errorbar_lines = [points, *container.lines[1]]
    (all_line,) = [line for line in ax.get_lines() if line not in errorbar_lines]
    assert_allclose(all_line.get_ydata(), [stats["mean"][-1]] * 2)
    assert "all" not in [t.get_text() for t in ax.get_xticklabels()]
    # from the database directly, on given axes
    fig, ax = plt.subplots()
    assert plot_h_similarity_by_type(db, ax=ax) is fig
    assert_allclose(ax.containers[0].lines[0].get_ydata(), typed["mean"])


def test_h_similarity_by_type_errors():
    with pytest.raises(ValueError, match="lacks the column.*'std'"):
        plot_h_similarity_by_type(Table({"type": ["Er"], "mean": [1.0]}))
    with pytest.raises(ValueError, match="no row of a type"):
        plot_h_similarity_by_type(Table({"type": ["all"], "type_index": [-1],
                                         "mean": [1.0], "std": [0.5]}))
    with pytest.raises(TypeError, match="astropy Table"):
        plot_h_similarity_by_type({"type": ["Er"]})


# ----------------------------------------------------------------------
# latent map and k-NN accuracy
def test_latent_map_colours_legend_and_outliers():
    rng = np.random.default_rng(3)
    xy = rng.normal(size=(9, 2))
    labels = np.array(["Sb", "Er", "Sb", "SBc", "Er", "Sb", "Er", "Sb", "SBc"])
    fig = draw(plot_latent_map(xy, labels, types=GZ2_SCHEME, outliers=[1, 3],
                               title="PCA"))
    ax = fig.axes[0]
    collections = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(collections) == 4  # three types present and the outliers
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Er (3)", "Sb (4)", "SBc (2)", "label outliers (2)"]
    for collection, name in zip(collections, ["Er", "Sb", "SBc"], strict=False):
        assert_allclose(collection.get_offsets(), xy[labels == name])
    assert_allclose(collections[-1].get_offsets(), xy[[1, 3]])
    assert_allclose(collections[-1].get_edgecolor()[0], [0, 0, 0, 1])
    assert ax.get_title() == "PCA"
    # a boolean mask gives the same outliers; default order is sorted labels
    mask = np.zeros(9, bool)
    mask[[1, 3]] = True
    fig, ax = plt.subplots()
    assert plot_latent_map(xy, labels, ax=ax, outliers=mask) is fig
    assert [t.get_text() for t in ax.get_legend().get_texts()][:3] == [
        "Er (3)", "SBc (2)", "Sb (4)"]
    assert_allclose(ax.collections[-1].get_offsets(), xy[[1, 3]])


def test_latent_map_errors():
    xy = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"\(N, 2\) array; got shape \(3, 3\)"):
        plot_latent_map(np.zeros((3, 3)), ["a"] * 3)
    with pytest.raises(ValueError, match=r"one entry per point \(3\)"):
        plot_latent_map(xy, ["a", "b"])
    with pytest.raises(ValueError, match="not in types"):
        plot_latent_map(xy, ["a", "b", "c"], types=["a", "b"])
    with pytest.raises(ValueError, match="outliers mask has 2 entries"):
        plot_latent_map(xy, ["a"] * 3, outliers=[True, False])
    with pytest.raises(ValueError, match="outside 0..2"):
        plot_latent_map(xy, ["a"] * 3, outliers=[5])
    with pytest.raises(ValueError, match="NaN"):
        plot_latent_map([[0.0, np.nan]], ["a"])


def test_knn_accuracy_plot():
    rng = np.random.default_rng(0)
    latents = np.r_[rng.normal(size=(10, 2)), rng.normal(size=(10, 2)) + 4]
    labels = np.repeat(["E", "S"], 10)
    table = knn_accuracy(latents, labels, k=(1, 3, 5))
    fig = draw(plot_knn_accuracy(table))
    ax = fig.axes[0]
    accuracy, balanced = ax.get_lines()
    assert_array_equal(accuracy.get_xdata(), [1, 3, 5])
    assert_allclose(accuracy.get_ydata(), 100 * table["accuracy"])
    assert_allclose(balanced.get_ydata(), 100 * table["balanced_accuracy"])
    assert "leave-one-out" in ax.get_title()
    with pytest.raises(ValueError, match="lacks the column.*'accuracy'"):
        plot_knn_accuracy(table["k", "balanced_accuracy"])



@pytest.mark.parametrize(("mode", "channels"), [("grey", 1), ("rgb+residual", 4)])
def test_reconstructions_of_other_input_modes(mode, channels):
    """The rows compare what the autoencoder reconstructs: grey level, or colour + residual."""
    import torch

    from galmorphsearch.model import Autoencoder, Decoder, Encoder

    torch.manual_seed(0)
    model = Autoencoder(Encoder(input_size=32, latent_dim=8, input_mode=mode),
                        Decoder(input_size=32, latent_dim=8, channels=(8,), fc_channels=8,
                                out_channels=channels))
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    fig = plot_reconstructions(model, images, n=2)
    x = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    model.eval()  # as plot_reconstructions runs it
    with torch.no_grad():
        target = model.target(x).permute(0, 2, 3, 1).numpy()
        recon = model(x).permute(0, 2, 3, 1).numpy()
    panels = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    shown_input = np.asarray(panels[0])
    if channels == 1:
        np.testing.assert_allclose(shown_input, target[0, ..., 0], atol=1e-6)
    else:
        np.testing.assert_allclose(shown_input, target[0, ..., :3], atol=1e-6)
    residual = np.asarray(panels[2 * 2])  # third row, first panel
    np.testing.assert_allclose(residual, (target[0] - recon[0]).mean(axis=-1), atol=1e-5)
