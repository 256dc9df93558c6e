# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""`galmorphsearch.visualization.make_report`: the report verb, callable from a notebook."""

import warnings

import matplotlib
import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.catalogs import GZ2_SCHEME
from galmorphsearch.database import LatentDatabase
from galmorphsearch.preprocessing import CutoutSet
from galmorphsearch.search import SimilaritySearcher
from galmorphsearch.utils import GalMorphSearchWarning
from galmorphsearch.visualization import make_report

matplotlib.use("Agg")

TYPES = ["Er", "Ec", "Sb", "SBc"]


class ArrayEncoder:
    """A deterministic stand-in encoding (N, H, W, 3) uint8 arrays."""

    name = "stub-32px"
    architecture = "resnet18"
    input_size = 32
    latent_dim = 8
    weights_hash = "0123456789abcdef"
    metadata = {"name": name, "architecture": architecture, "input_size": 32,
                "latent_dim": 8, "weights_hash": weights_hash}
    calls = 0

    def encode(self, images, *, batch_size=64, background=False, progress_bar=False,
               device=None):
        type(self).calls += 1
        pix = np.asarray(images, dtype=float) / 255
        stats = np.stack([pix.mean(axis=(1, 2, 3)), pix.std(axis=(1, 2, 3)),
                          pix[..., 0].mean(axis=(1, 2)), pix[..., 2].mean(axis=(1, 2))], 1)
        return np.stack([np.cos((k + 1) * stats[:, k % 4]) * (k + 1)
                         for k in range(self.latent_dim)], 1).astype(np.float32)


def _cutout_set(n, objids=True):
    rng = np.random.default_rng(3)
    size = 32
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    images = []
    for index in range(n):
        kind = index % len(TYPES)
        blob = np.exp(-(x**2 + ((1.0 + kind) * y) ** 2) / (2 * 5.0**2))
        colour = np.array([1.0, 0.5 + 0.1 * kind, 0.2 + 0.2 * kind])
        image = 230 * blob[..., None] * colour + rng.normal(0, 4, (size, size, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    images = np.stack(images)
    backgrounds = np.clip(rng.normal(10, 4, images.shape), 0, 255).astype(np.uint8)
    types = [TYPES[i % 4] for i in range(n)]
    table = Table({"ra": np.linspace(10, 11, n), "dec": np.zeros(n), "morphology": types,
                   "type_index": [GZ2_SCHEME.index(t) for t in types]})
    if objids:
        table.add_column(np.arange(1000, 1000 + n), name="objid", index=0)
    table["ra"].unit = table["dec"].unit = "deg"
    return CutoutSet(table, images, backgrounds)


@pytest.fixture(scope="module")
def setup():
    references = _cutout_set(16)
    database = LatentDatabase.build(references.table, references, ArrayEncoder(),
                                    scheme="gz2")
    return {"references": references, "searcher": SimilaritySearcher(database, ArrayEncoder()),
            "targets": CutoutSet(references.table[:4], references.images[:4],
                                 references.backgrounds[:4])}


def test_make_report_returns_what_the_page_shows(setup, tmp_path):
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    out = tmp_path / "report.html"
    report = make_report(setup["searcher"], setup["targets"], out, k=3,
                         database_images=setup["references"], evaluate=True, fraction=0.25,
                         title="Toy")
    assert report["path"] == out
    assert report["n_targets"] == 4
    assert report["n_figures"] == 4  # confusion matrix, two H-similarity figures, the map
    assert report["n_no_similar"] == int(np.sum(report["classification"]["no_similar"]))
    summary = report["summary"]
    assert summary["targets"] == 4 and summary["targets of known type"] == 4
    assert summary["database galaxies"] == 16
    assert "MC/MD test: best rate" in summary
    assert len(report["results"]) == 4 * 3
    text = out.read_text()
    assert "<h1>Toy</h1>" in text
    assert text.count('<article class="card') == 4
    assert text.count("<figure>") == 4
    assert "no image" not in text
    # The figures are closed once written.
    assert plt.get_fignums() == open_before


def test_make_report_reads_files_and_warns_of_missing_thumbnails(setup, tmp_path):
    others = _cutout_set(2)
    others.table["objid"] = [1, 2]
    path = tmp_path / "others.fits"
    others.write(path)
    history = Table({"epoch": [0, 1], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7]})
    history_path = tmp_path / "loss.ecsv"
    history.write(history_path)
    out = tmp_path / "report.htm"
    with pytest.warns(GalMorphSearchWarning, match=f"None of the matched galaxies is in {path}"):
        report = make_report(setup["searcher"], setup["targets"], out, k=50,
                             database_images=path, history=history_path)
    assert report["n_figures"] == 4  # two H-similarity figures, the map, the loss curve
    assert len(report["results"]) == 4 * 15  # k capped at the database size, self skipped
    with pytest.raises(FileExistsError, match="overwrite"):
        make_report(setup["searcher"], setup["targets"], out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_report(setup["searcher"], setup["targets"], out, overwrite=True)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"path": "report.txt"}, ValueError, r"\.html or \.htm"),
        ({"history": "nope.ecsv"}, FileNotFoundError, "nope.ecsv does not exist"),
        ({"database_images": "nope.fits"}, OSError, "nope.fits"),
        ({"database_images": "no-objid"}, ValueError, "database_images has no objid column"),
        ({"searcher": "no-encoder"}, ValueError, "give the searcher the encoder"),
    ],
)
def test_make_report_refuses_before_encoding(setup, tmp_path, monkeypatch, change, error,
                                             match):
    monkeypatch.chdir(tmp_path)
    kwargs = {"searcher": setup["searcher"], "path": "report.html"}
    kwargs.update(change)
    if kwargs.get("database_images") == "no-objid":
        kwargs["database_images"] = _cutout_set(2, objids=False)
    if kwargs["searcher"] == "no-encoder":
        kwargs["searcher"] = SimilaritySearcher(setup["searcher"].database)
    calls = ArrayEncoder.calls
    with pytest.raises(error, match=match):
        make_report(kwargs.pop("searcher"), setup["targets"], kwargs.pop("path"), **kwargs)
    assert ArrayEncoder.calls == calls
    assert list(tmp_path.iterdir()) == []
