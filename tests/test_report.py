# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the static HTML report (`write_report`) and ``galmorphsearch report``."""

import base64
import io
import re

import matplotlib.pyplot as plt
import numpy as np
import pytest
from astropy.table import Table
from PIL import Image

from galmorphsearch.preprocessing import CutoutSet
from galmorphsearch.visualization.report import write_report

TYPES = ["Er", "Ec", "Sb", "SBc"]


def _square(colour, size=32):
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = colour
    return image


@pytest.fixture
def inputs():
    """Three targets, five matches each, their classification and database images."""
    ids = ["NGC 6977", "<b>bold</b> & co", "g3"]
    targets = [_square((255, 0, 0)), _square((0, 255, 0)), _square((0, 0, 255))]
    rows = [(t, rank, 100 + rank, ["Sb", "Sc", "Er"][rank % 3], 95.0 - 5 * rank, 0.1 * rank)
            for t in ids for rank in range(5, 0, -1)]  # ranks out of order on purpose
    results = Table(rows=rows, names=["target", "rank", "objid", "morphology", "Sp",
                                      "distance"])
    results.meta.update({"ENCODER": "tiny-<enc>", "ENCHASH": "0123abcd", "SCHEME": "gz2",
                         "K": 5, "HSIMTHR": 61.25})
    classification = Table({
        "target": ids, "predicted_morphology": ["Sb", "Sc", "Er"],
        "H_similarity": [90.0, 55.5, 70.0], "no_similar": [False, True, False],
        "reason": ["", "H-similarity 55.50 is below <threshold>", ""],
        "matched_objid": [101, 101, 101]})
    database_images = {101: _square((255, 255, 0)), 102: _square((0, 255, 255)),
                       103: _square((255, 0, 255))}  # 104 and 105 have no image
    return {"ids": ids, "targets": targets, "results": results,
            "classification": classification, "database_images": database_images}


def _img_sources(text):
    return re.findall(r'<img [^>]*src="([^"]*)"', text)


def _decode(uri):
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):]))) as image:
        image.load()
        return image.copy()


def test_report_has_cards_matches_summary_and_figures(inputs, tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = tmp_path / "figure.png"
    fig.savefig(png)
    out = tmp_path / "report.html"
    returned = write_report(out, inputs["results"], inputs["targets"],
                            database_images=inputs["database_images"],
                            classification=inputs["classification"], target_ids=inputs["ids"],
                            true_types=["Sb", "Sb", None], k=4, title="Test <report>",
                            figures={"a line": fig, "from a file": png},
                            summary={"n": 3, "best_rate": 0.5, "correlation": 0.25,
                                     "confusion": np.eye(2), "types": ["Sb", "Sc"],
                                     "scheme": "gz2"})
    assert returned == out
    assert plt.fignum_exists(fig.number)  # the caller's figure is left open
    plt.close(fig)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<title>Test &lt;report&gt;</title>" in text
    # One card per target, in order, with ids escaped.
    cards = re.findall(r'<article class="card[^"]*" id="target-(\d)" data-target="([^"]*)"',
                       text)
    assert cards == [("0", "NGC 6977"), ("1", "&lt;b&gt;bold&lt;/b&gt; &amp; co"),
                     ("2", "g3")]
    assert "<b>bold</b>" not in text and "<threshold>" not in text and "<enc>" not in text
    # Provenance from results.meta.
    assert "tiny-&lt;enc&gt;" in text and "0123abcd" in text and "61.250" in text
    # Summary: scalars only, rates as percentages.
    summary = text[text.index('id="summary"'):text.index('id="targets"')]
    assert "50.0%" in summary and "0.25" in summary and "gz2" in summary
    assert "confusion" not in summary and "types" not in summary
    # k = 4 of the 5 matches, in rank order; 104 has no image.
    for body in text.split("<article")[1:]:
        ranks = re.findall(r"<div>#(\d) Sp", body)
        assert ranks == ["1", "2", "3", "4"]
    assert text.count('<div class="noimage">no image</div>') == 3  # objid 104, per target
    # Flags: the second target has no similar galaxy and is misclassified.
    second = text.split("<article")[2]
    assert 'data-miss="1"' in second and "no similar galaxy" in second
    assert "misclassified" in second
    first = text.split("<article")[1]
    assert 'data-miss="0"' in first and "similar galaxy found" in first
    assert 'id="filter-miss"' in text
    assert '<option value="Sc">Sc</option>' in text
    # Figures.
    assert text.count("<figure>") == 2 and "<figcaption>a line</figcaption>" in text
    # Images: 3 targets + 3 x 3 matches with images + 2 figures, all PNG.
    sources = _img_sources(text)
    assert len(sources) == 3 + 9 + 2
    target = _decode(sources[0])
    assert target.size == (32, 32)
    assert np.asarray(target.convert("RGB"))[16, 16].tolist() == [255, 0, 0]


def test_report_inputs_in_other_forms(inputs, tmp_path):
    """A cutout set as targets and database images; ids from the cutout set."""
    images = np.stack(inputs["targets"])
    targets = CutoutSet(Table({"objid": inputs["ids"]}), images, images.copy())
    database = CutoutSet(Table({"objid": list(inputs["database_images"])}),
                         np.stack(list(inputs["database_images"].values())),
                         np.stack(list(inputs["database_images"].values())))
    out = tmp_path / "report.htm"
    write_report(out, inputs["results"], targets, database_images=database)
    text = out.read_text()
    assert text.count('<article class="card') == 3
    assert len(_img_sources(text)) == 3 + 3 * 3
    assert 'id="filter-miss"' not in text  # no true types
    # Without classification, the best match gives the type.
    assert "best match type" in text


def test_report_single_target_large_and_float_images(tmp_path):
    results = Table({"rank": [1], "objid": ["a"], "morphology": ["Er"], "Sp": [88.0]})
    big = np.random.default_rng(0).random((300, 200, 3))  # floats in [0, 1]
    out = tmp_path / "one.html"
    write_report(out, results, big, database_images={"a": np.zeros((40, 40), np.uint8)})
    sources = _img_sources(out.read_text())
    assert len(sources) == 2
    assert max(_decode(sources[0]).size) == 128  # reduced for the page
    assert _decode(sources[1]).size == (40, 40)


def test_report_default_ids_from_classification(inputs, tmp_path):
    out = tmp_path / "report.html"
    write_report(out, inputs["results"], inputs["targets"],
                 classification=inputs["classification"])
    assert 'data-target="g3"' in out.read_text()


def test_report_refuses_to_overwrite(inputs, tmp_path):
    out = tmp_path / "report.html"
    out.write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_report(out, inputs["results"], inputs["targets"], target_ids=inputs["ids"])
    assert out.read_text() == "precious"
    write_report(out, inputs["results"], inputs["targets"], target_ids=inputs["ids"],
                 overwrite=True)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary left


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"path": "report.txt"}, ValueError, r"\.html or \.htm"),
        ({"results": Table({"rank": [1], "objid": [1]})}, ValueError, "morphology, Sp"),
        ({"results": [1, 2]}, TypeError, "astropy Table"),
        ({"target_ids": ["a", "b"]}, ValueError, "target_ids has 2 entries for 3 targets"),
        ({"target_ids": ["x", "y", "z"]}, ValueError, "not among the target ids"),
        ({"target_ids": ["a", "a", "b"]}, ValueError, "not unique"),
        ({"true_types": ["Sb"]}, ValueError, "true_types has 1 entries"),
        ({"classification": Table({"target": [1]})}, ValueError, "predicted_morphology"),
        ({"figures": {"x": 3}}, TypeError, "matplotlib Figure or the path"),
        ({"figures": {"x": "missing.png"}}, ValueError, "not a file"),
        ({"figures": [1]}, TypeError, "figures must be a dict"),
        ({"k": 0}, ValueError, "positive integer"),
        ({"targets": "image.png"}, TypeError, "targets must be"),
        ({"targets": [np.zeros((4, 4, 5))] * 3}, ValueError, "shape"),
        ({"database_images": [1, 2]}, TypeError, "database_images must be"),
        ({"summary": [1]}, TypeError, "summary must be a dict"),
    ],
)
def test_report_bad_inputs_are_clear_errors(inputs, tmp_path, change, error, match):
    kwargs = {"path": "report.html", "results": inputs["results"],
              "targets": inputs["targets"], "target_ids": inputs["ids"]}
    kwargs.update(change)
    kwargs["path"] = tmp_path / kwargs["path"]
    with pytest.raises(error, match=match):
        write_report(**kwargs)
    assert list(tmp_path.iterdir()) == []


def test_report_results_without_target_column_need_one_target(inputs, tmp_path):
    results = inputs["results"].copy()
    results.remove_column("target")
    with pytest.raises(ValueError, match="no 'target' column"):
        write_report(tmp_path / "r.html", results, inputs["targets"])


# ----------------------------------------------------------------------
# The command line
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A cutout set of 16 coloured blobs of 4 types, an encoder and a database."""
    from galmorphsearch.scripts.main import main

    rng = np.random.default_rng(2)
    size = 32
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    images = []
    for index in range(len(TYPES) * 4):
        kind = index % len(TYPES)
        axis = 1.0 + kind  # elongation grows with the type
        blob = np.exp(-(x**2 + (axis * y) ** 2) / (2 * 5.0**2))
        colour = np.array([1.0, 0.5 + 0.1 * kind, 0.2 + 0.2 * kind])
        image = 230 * blob[..., None] * colour + rng.normal(0, 4, (size, size, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    images = np.stack(images)
    backgrounds = np.clip(rng.normal(10, 4, images.shape), 0, 255).astype(np.uint8)
    n = len(images)
    table = Table({"objid": np.arange(1000, 1000 + n), "ra": np.linspace(10, 11, n),
                   "dec": np.zeros(n), "morphology": [TYPES[i % 4] for i in range(n)],
                   "type_index": [[0, 2, 5, 10][i % 4] for i in range(n)]})
    folder = tmp_path_factory.mktemp("report")
    cutouts = folder / "references.fits"
    CutoutSet(table, images, backgrounds).write(cutouts)
    # Targets: the first of each type, as a separate cutout set.
    targets = folder / "targets.fits"
    CutoutSet(table[:4], images[:4], backgrounds[:4]).write(targets)
    encoder = folder / "encoder.safetensors"
    assert main(["train", str(cutouts), "-o", str(encoder), "--input-size", "32",
                 "--max-steps", "1"]) == 0
    database = folder / "db.fits"
    assert main(["build-db", str(cutouts), "--encoder", str(encoder), "-o", str(database),
                 "--scheme", "gz2"]) == 0
    return {"cutouts": cutouts, "targets": targets, "encoder": encoder,
            "database": database, "history": folder / "encoder.loss.ecsv"}


def test_cli_report_writes_a_complete_page(pipeline, tmp_path, capsys):
    from galmorphsearch.scripts.main import main

    out = tmp_path / "report.html"
    capsys.readouterr()
    status = main(["report", str(pipeline["targets"]), "--database", str(pipeline["database"]),
                   "--encoder", str(pipeline["encoder"]), "--database-cutouts",
                   str(pipeline["cutouts"]), "-k", "3", "--evaluate", "--fraction", "0.25",
                   "--history", str(pipeline["history"]), "--title", "HCG & friends",
                   "-o", str(out)])
    assert status == 0
    assert "wrote a report of 4 target(s)" in capsys.readouterr().out
    text = out.read_text()
    assert "<h1>HCG &amp; friends</h1>" in text
    assert text.count('<article class="card') == 4
    for objid in ("1000", "1001", "1002", "1003"):
        assert f'data-target="{objid}"' in text
    # The targets are in the database: their own image is skipped as identical.
    assert len(re.findall(r"<div>#\d Sp", text)) == 4 * 3
    assert "no image" not in text  # every match has a thumbnail
    # Confusion matrix, two H-similarity figures, the latent map, the loss curve.
    assert text.count("<figure>") == 5
    assert "Confusion matrix" in text and "Training loss" in text
    assert "MC/MD test: best rate" in text
    assert 'id="filter-miss"' in text  # the targets' morphology column gives true types
    assert len(_img_sources(text)) == 4 + 4 * 3 + 5
    # ... and the same page again only with --overwrite.
    argv = ["report", str(pipeline["targets"]), "--database", str(pipeline["database"]),
            "--encoder", str(pipeline["encoder"]), "-o", str(out)]
    assert main(argv) == 1
    assert "overwrite" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    text = out.read_text()
    assert text.count('<div class="noimage">no image</div>') == 4 * 5  # no --database-cutouts
    assert text.count("<figure>") == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-o", "report.txt"], ".html or .htm"),
        (["-o", "r.html", "-k", "0"], "-k: must be at least 1, not 0"),
        (["-o", "r.html", "--history", "nope.ecsv"], "nope.ecsv does not exist"),
    ],
)
def test_cli_report_bad_arguments_fail_before_work(extra, message, tmp_path, capsys,
                                                   monkeypatch):
    from galmorphsearch.scripts.main import main

    monkeypatch.chdir(tmp_path)
    argv = ["report", "missing.fits", "--database", "db.fits", "--encoder", "e.safetensors",
            *extra]
    if "-k" in extra:
        # Refused by the argument parser itself (exit status 2).
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
    else:
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
