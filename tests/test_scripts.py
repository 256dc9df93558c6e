# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the ``galmorphsearch`` command line (run in-process)."""

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from PIL import Image

from galmorphsearch import GalaxyCutout
from galmorphsearch.database import LatentDatabase
from galmorphsearch.datasets import (
    get_sample_field_paths,
    load_gz2_gallery,
    load_hcg88_members,
    make_synthetic_sample,
)
from galmorphsearch.model import Encoder
from galmorphsearch.preprocessing import CutoutSet
from galmorphsearch.scripts.main import main
from galmorphsearch.utils import (
    CatalogWarning,
    CutoutWarning,
    GalMorphSearchWarning,
    StaleIndexWarning,
)

DATA = Path(__file__).parent / "data"


def test_demo_uses_the_default_pretrained_encoder(tmp_path, capsys):
    out = tmp_path / "demo"
    # The shipped encoders were trained on cutouts of colour images; the demo's
    # galaxies are cut from gri FITS bands, and the database build says so.
    with pytest.warns(GalMorphSearchWarning, match="made from 'fits' input"):
        assert main(["demo", "--output", str(out), "--n-per-type", "2", "--n-query", "1",
                     "-k", "2"]) == 0
    database = LatentDatabase.read(out / "database.fits")
    assert database.meta["ENCODER"] == "vgg-supervised"
    assert database.meta["ENCHASH"] == Encoder.pretrained().weights_hash
    # Nothing trained, so no encoder or loss history written.
    assert not (out / "encoder.safetensors").exists()
    assert not (out / "loss_history.ecsv").exists()
    assert (out / "report.html").stat().st_size > 0
    assert "from the shipped pretrained weights" in capsys.readouterr().out
    # Or a shipped encoder by name.
    with pytest.warns(GalMorphSearchWarning, match="made from 'fits' input"):
        assert main(["demo", "--output", str(out), "--n-per-type", "2", "--n-query", "1",
                     "--encoder", "tsgicas-ae", "--overwrite"]) == 0
    assert LatentDatabase.read(out / "database.fits").meta["ENCODER"] == "tsgicas-ae"
    assert main(["demo", "--output", str(out), "--encoder", "tsgicas-ae", "--train"]) == 1
    assert "not both" in capsys.readouterr().err


def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    out = tmp_path / "demo"
    status = main(["demo", "--output", str(out), "--size", "32", "--n-per-type", "3",
                   "--n-query", "1", "--train", "--epochs", "1", "-k", "3"])
    assert status == 0
    for name in ("encoder.safetensors", "loss_history.ecsv", "database.fits",
                 "search_results.ecsv", "classification.ecsv", "retrieval_gallery.png",
                 "hcg88_cutouts.png", "report.html"):
        assert (out / name).stat().st_size > 0, name
    page = (out / "report.html").read_text()
    assert "NGC 6977" in page and page.count("data:image/png;base64,") > 15
    database = LatentDatabase.read(out / "database.fits")
    assert len(database) == 12 * 2  # 3 per type, 1 held out
    classification = Table.read(out / "classification.ecsv")
    # The three HCG 88 spirals and one held-out galaxy per type.
    assert len(classification) == 3 + 12
    assert list(classification["target"][:3]) == ["NGC 6978", "NGC 6977", "NGC 6976"]
    assert set(classification["predicted_morphology"]) <= set(database.table["morphology"])
    results = Table.read(out / "search_results.ecsv")
    assert len(results) == 15 * 3
    assert "held-out synthetic galaxies" in capsys.readouterr().out


def test_demo_refuses_to_overwrite_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "database.fits").write_text("precious")
    assert main(["demo", "--output", str(out), "--size", "32", "--n-per-type", "3",
                 "--n-query", "1", "--train", "--epochs", "1"]) == 1
    assert "overwrite" in capsys.readouterr().err
    assert (out / "database.fits").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["database.fits"]


@pytest.fixture(scope="module")
def reference_set(tmp_path_factory):
    """A cutout set of synthetic galaxies of four types, written to disk."""
    truth, fields = make_synthetic_sample(n_per_type=3, types=["Er", "Ec", "Sb", "SBc"],
                                          seed=1)
    cutouts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CutoutWarning)
        cutouts.extend(GalaxyCutout(field["g"], field["r"], field["i"], field.position,
                                    size=32, rotate=True, seed=0) for field in fields)
    path = tmp_path_factory.mktemp("ref") / "reference.fits"
    CutoutSet.from_cutouts(cutouts, truth["objid", "ra", "dec", "morphology",
                                          "type_index"]).write(path)
    return path


def test_preprocess_train_build_search_classify_info(reference_set, tmp_path, capsys):
    encoder = tmp_path / "encoder.safetensors"
    assert main(["train", str(reference_set), "-o", str(encoder), "--input-size", "32",
                 "--epochs", "1", "--labels", "morphology"]) == 0
    assert (tmp_path / "encoder.loss.ecsv").exists()
    database = tmp_path / "db.fits"
    assert main(["build-db", str(reference_set), "--encoder", str(encoder), "-o",
                 str(database), "--scheme", "gz2"]) == 0
    targets = tmp_path / "hcg88.fits"
    assert main(["preprocess", "--sample", "--size", "32", "--rotate", "-o", str(targets),
                 "--png-dir", str(tmp_path / "png")]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 3
    results = tmp_path / "results.ecsv"
    assert main(["search", str(targets), "--database", str(database), "--encoder",
                 str(encoder), "-k", "4", "-o", str(results)]) == 0
    predictions = tmp_path / "predictions.fits"
    assert main(["classify", str(targets), "--database", str(database), "--encoder",
                 str(encoder), "--vote", "3", "-o", str(predictions)]) == 0
    capsys.readouterr()
    assert main(["info", str(database)]) == 0
    info = capsys.readouterr().out
    assert "latent database of 12 galaxies" in info and "ENCHASH=" in info

    # Sp in the results is the formula recomputed from the stored latents and
    # the targets' own latents (Seo et al. 2023, eqs. 1-3).
    db = LatentDatabase.read(database)
    model = Encoder.load(encoder)
    target_set = CutoutSet.read(targets)
    t_lat = model.encode(target_set.images)
    b_lat = model.encode(target_set.backgrounds)
    table = Table.read(results)
    objids = list(db.table["objid"])
    for row in table:
        q = list(target_set.table["objid"]).index(row["target"])
        d = db.latents[objids.index(row["objid"])]
        expected = (1 - np.linalg.norm(t_lat[q] - d) / np.linalg.norm(t_lat[q] - b_lat[q]))
        assert row["Sp"] == pytest.approx(100 * expected, rel=1e-4)
    votes = Table.read(predictions)
    assert len(votes) == 3
    vote_columns = [c for c in votes.colnames if c.startswith("vote_")]
    np.testing.assert_allclose(sum(votes[c] for c in vote_columns), 1.0)


@pytest.mark.parametrize(("method", "extra", "architecture", "training"), [
    ("contrastive", ["--architecture", "vit-small", "--batch-size", "4", "--val-fraction",
                     "0.25"], "vit-small",
     "contrastive"),
    ("supervised", ["--labels", "morphology", "--input-mode", "grey"], "vgg-small",
     "supervised"),
])
def test_train_other_methods_then_build_a_database(reference_set, tmp_path, capsys, method,
                                                   extra, architecture, training):
    encoder = tmp_path / "encoder.safetensors"
    assert main(["train", str(reference_set), "-o", str(encoder), "--method", method,
                 "--input-size", "32", "--max-steps", "1", *extra]) == 0
    assert f"{method} encoder" in capsys.readouterr().out
    model = Encoder.load(encoder)
    assert (model.architecture, model.training_method) == (architecture, training)
    database = tmp_path / "db.fits"
    assert main(["build-db", str(reference_set), "--encoder", str(encoder), "-o",
                 str(database), "--scheme", "gz2"]) == 0
    db = LatentDatabase.read(database)
    assert db.meta["ENCTRAIN"] == training and db.meta["ENCARCH"] == architecture
    assert db.latents.shape == (12, model.latent_dim)


def test_train_supervised_needs_labels(reference_set, tmp_path, capsys):
    assert main(["train", str(reference_set), "-o", str(tmp_path / "e.safetensors"),
                 "--method", "supervised"]) == 1
    assert "needs --labels" in capsys.readouterr().err
    assert main(["train", str(reference_set), "-o", str(tmp_path / "e.safetensors"),
                 "--method", "contrastive", "--labels", "morphology"]) == 1
    assert "does not use labels" in capsys.readouterr().err


def test_search_with_another_encoder_is_refused(reference_set, tmp_path, capsys):
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for path, seed in ((first, "0"), (second, "1")):
        assert main(["train", str(reference_set), "-o", str(path), "--input-size", "32",
                     "--max-steps", "1", "--seed", seed]) == 0
    database = tmp_path / "db.fits"
    assert main(["build-db", str(reference_set), "--encoder", str(first), "-o",
                 str(database), "--scheme", "gz2"]) == 0
    capsys.readouterr()
    assert main(["search", str(reference_set), "--database", str(database), "--encoder",
                 str(second)]) == 1
    err = capsys.readouterr().err
    assert "weights" in err and "Traceback" not in err


def test_preprocess_colour_images_and_positions(tmp_path):
    gallery = load_gz2_gallery()
    out = tmp_path / "gallery.fits"
    # Two of these SDSS JPEGs have a saturated core or a crop that overflows
    # the image: they are cut all the same, flagged, with a warning.
    with pytest.warns(CutoutWarning):
        assert main(["preprocess", *gallery["file"][:3], "--size", "32", "-o", str(out)]) == 0
    assert len(CutoutSet.read(out)) == 3
    paths = get_sample_field_paths()
    member = load_hcg88_members()[1]
    out = tmp_path / "one.fits"
    assert main(["preprocess", paths["g"], paths["r"], paths["i"], "--radec",
                 str(member["ra"]), str(member["dec"]), "--size", "32", "-o", str(out)]) == 0
    assert CutoutSet.read(out).table["flag"][0] == 0


def test_cutout_from_fits_bands(tmp_path):
    paths = get_sample_field_paths()
    member = load_hcg88_members()[1]
    out = tmp_path / "b.png"
    status = main(["cutout", paths["g"], paths["r"], paths["i"],
                   "--radec", str(member["ra"]), str(member["dec"]),
                   "--size", "64", "--rotate", "--output", str(out),
                   "--plot", str(tmp_path / "steps.png")])
    assert status == 0
    with Image.open(out) as png:
        assert png.size == (64, 64)
    assert (tmp_path / "steps.png").exists()


def test_cutout_from_colour_image(tmp_path):
    gallery = load_gz2_gallery()
    path = gallery["file"][list(gallery["gz2_class"]).index("Ei")]
    for name, fmt in (("ei.png", "PNG"), ("ei.jpg", "JPEG")):
        out = tmp_path / name
        assert main(["cutout", path, "--size", "64", "--output", str(out)]) == 0
        with Image.open(out) as image:
            assert image.size == (64, 64)
            assert image.format == fmt  # the extension decides the format


def test_cutout_bad_output_formats_fail_before_writing(tmp_path, capsys):
    gallery = load_gz2_gallery()
    path = gallery["file"][0]
    out = tmp_path / "c.png"
    assert main(["cutout", path, "--output", str(out), "--plot", str(tmp_path / "p.xyz")]) == 1
    assert "figure format" in capsys.readouterr().err
    assert main(["cutout", path, "--output", str(tmp_path / "c.txt")]) == 1
    assert "image format" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cutout", "a.fits", "b.fits", "--output", "x.png"], "three FITS files"),
        (["cutout", "a.jpg", "--radec", "1", "2", "--output", "x.png"], "--radec needs"),
    ],
)
def test_cutout_bad_arguments_are_one_line_errors(argv, message, capsys, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_catalog_converts_gz2_table5(tmp_path, capsys):
    out = tmp_path / "gz2.fits"
    source = DATA / "catalogs" / "gz2_table5_stripe82_subset.csv.gz"
    with pytest.warns(CatalogWarning):  # star/artifact rows in the subset get no type
        status = main(["catalog", "gz2", str(source), "--output", str(out)])
    assert status == 0
    table = Table.read(out)
    assert table.colnames[:5] == ["objid", "ra", "dec", "morphology", "type_index"]
    printed = capsys.readouterr().out
    n_none = int(table["morphology"].mask.sum())
    assert n_none > 0 and printed.rstrip().endswith(f"no type: {n_none}")
    assert "--=" not in printed


@pytest.mark.parametrize(("suffix", "fmt"), [(".ecsv", "ascii.ecsv"), (".h5", "hdf5")])
def test_catalog_formats_keep_units_and_masks(tmp_path, suffix, fmt):
    out = tmp_path / f"gz2{suffix}"
    source = DATA / "catalogs" / "gz2_table5_stripe82_subset.csv.gz"
    with pytest.warns(CatalogWarning):
        assert main(["catalog", "gz2", str(source), "--output", str(out)]) == 0
    kwargs = {"path": "table"} if fmt == "hdf5" else {}
    table = Table.read(out, format=fmt, **kwargs)
    assert table["ra"].unit == "deg"
    assert table["morphology"].mask.sum() > 0
    assert table.meta["SCHEME"] == "gz2"


def test_catalog_unknown_extension_is_refused(tmp_path, capsys):
    source = DATA / "catalogs" / "gz2_table5_stripe82_subset.csv.gz"
    assert main(["catalog", "gz2", str(source), "--output", str(tmp_path / "x.txt")]) == 1
    assert "table format" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_catalog_missing_file_is_an_error(tmp_path, capsys):
    status = main(["catalog", "efigi", str(tmp_path / "nope.txt"),
                   "--output", str(tmp_path / "x.fits")])
    assert status == 1
    assert "nope.txt" in capsys.readouterr().err


def test_search_warns_when_targets_were_preprocessed_differently(reference_set, tmp_path):
    encoder = tmp_path / "encoder.safetensors"
    assert main(["train", str(reference_set), "-o", str(encoder), "--input-size", "32",
                 "--max-steps", "1"]) == 0
    database = tmp_path / "db.fits"
    assert main(["build-db", str(reference_set), "--encoder", str(encoder), "-o",
                 str(database), "--scheme", "gz2"]) == 0
    targets = tmp_path / "targets.fits"
    assert main(["preprocess", "--sample", "--size", "48", "-o", str(targets)]) == 0
    with pytest.warns(GalMorphSearchWarning, match="not preprocessed like") as record:
        assert main(["search", str(targets), "--database", str(database), "--encoder",
                     str(encoder), "-k", "2"]) == 0
    message = str(record[0].message)
    assert "cutout size 48 px" in message and "ROTATE" in message


def test_evaluate_prints_the_paper_measures(tmp_path, capsys):
    # Four types as well-separated clusters in latent space: retrieval is exact.
    rng = np.random.default_rng(3)
    types = ["Er", "Ec", "Sb", "SBc"]
    n_per_type = 10
    centres = rng.normal(scale=20, size=(4, 16))
    latents = np.concatenate([c + rng.normal(size=(n_per_type, 16)) for c in centres])
    table = Table({"objid": np.arange(40), "ra": np.linspace(0, 1, 40), "dec": np.zeros(40),
                   "morphology": np.repeat(types, n_per_type),
                   "type_index": np.repeat([0, 2, 5, 10], n_per_type),
                   "catalog": ["test"] * 40, "latent": latents.astype(np.float32),
                   "background_latent": np.zeros((40, 16), np.float32)})
    table.meta.update({"ENCODER": "test", "ENCARCH": "none", "ENCHASH": "0" * 16,
                       "INSIZE": 32, "LATDIM": 16, "SCHEME": "gz2"})
    path = tmp_path / "db.fits"
    LatentDatabase(table).write(path)
    out = tmp_path / "predictions.ecsv"
    assert main(["evaluate", str(path), "--fraction", "0.2", "--balanced", "50",
                 "--n-per-type", "3", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "best 100.0%" in printed and "type correlation r = 1.000" in printed
    assert "balanced-database vote (50 iterations, 3 per type)" in printed
    predictions = Table.read(out)
    assert len(predictions) == 4 * 2 and np.all(predictions["best"])


def test_cli_uses_the_shipped_encoders_by_default_and_by_name(reference_set, tmp_path,
                                                               capsys):
    database = tmp_path / "db.fits"
    with pytest.warns(GalMorphSearchWarning, match="made from 'fits' input.*CUTSIZE 32"):
        assert main(["build-db", str(reference_set), "-o", str(database),
                     "--scheme", "gz2"]) == 0
    assert "using the pretrained encoder 'vgg-supervised'" in capsys.readouterr().out
    db = LatentDatabase.read(database)
    assert db.meta["ENCHASH"] == Encoder.pretrained().weights_hash
    # search finds the encoder that built the database by its weights hash.
    results = tmp_path / "results.ecsv"
    with pytest.warns(GalMorphSearchWarning, match="cutout size 32 px"):
        assert main(["search", str(reference_set), "--database", str(database), "-k", "2",
                     "-o", str(results)]) == 0
    assert "that built the database" in capsys.readouterr().out
    assert main(["info", str(database)]) == 0
    assert "the shipped pretrained encoder 'vgg-supervised'" in capsys.readouterr().out
    assert len(Table.read(results)) == 2 * 12
    # A shipped encoder by name; the wrong one is refused by the database check.
    assert main(["search", str(reference_set), "--database", str(database),
                 "--encoder", "tsgicas-ae"]) == 1
    assert "weights hash" in capsys.readouterr().err


def test_cli_asks_for_the_encoder_of_a_database_it_does_not_ship(reference_set, tmp_path,
                                                                  capsys):
    import torch

    torch.manual_seed(0)
    encoder = tmp_path / "own.safetensors"
    Encoder(input_size=32).save(encoder)
    database = tmp_path / "db.fits"
    assert main(["build-db", str(reference_set), "--encoder", str(encoder), "-o",
                 str(database), "--scheme", "gz2"]) == 0
    capsys.readouterr()
    assert main(["classify", str(reference_set), "--database", str(database)]) == 1
    err = capsys.readouterr().err
    assert "not one of the shipped pretrained encoders" in err and "--encoder" in err


def test_build_db_float16_hdf5_then_search_out_of_core_with_an_index(reference_set, tmp_path,
                                                                   capsys):
    pytest.importorskip("faiss")
    encoder = tmp_path / "encoder.safetensors"
    assert main(["train", str(reference_set), "-o", str(encoder), "--input-size", "32",
                 "--max-steps", "1"]) == 0
    fits_db, hdf5_db = tmp_path / "db.fits", tmp_path / "db.h5"
    for path in (fits_db, hdf5_db):
        assert main(["build-db", str(reference_set), "--encoder", str(encoder), "-o",
                     str(path), "--scheme", "gz2", "--dtype", "float16"]) == 0
    a, b = LatentDatabase.read(fits_db, memmap=True), LatentDatabase.read(hdf5_db, memmap=True)
    assert a.latent_dtype == b.latent_dtype == np.float16
    assert a.lathash == b.lathash
    capsys.readouterr()
    assert main(["info", str(hdf5_db)]) == 0
    assert f"float16 in the file; LATHASH {a.lathash}" in capsys.readouterr().out

    # The exact search of the file read in memory and chunk by chunk, and an
    # IVF index (every list probed on 12 rows) all give the same table.
    tables = {}
    for name, extra in (("memory", []), ("memmap", ["--memmap"]),
                        ("ivf", ["--memmap", "--backend", "faiss-ivf", "--threads", "1"])):
        out = tmp_path / f"{name}.ecsv"
        assert main(["search", str(reference_set), "--database", str(hdf5_db), "--encoder",
                     str(encoder), "-k", "3", "-o", str(out)]
                    + extra) == 0
        tables[name] = Table.read(out)
    index = Path(f"{hdf5_db}.faiss-ivf.index")
    assert index.exists()
    assert f"with the index file {index}" in capsys.readouterr().out
    for name in ("memmap", "ivf"):
        assert list(tables[name]["objid"]) == list(tables["memory"]["objid"])
        np.testing.assert_allclose(tables[name]["Sp"], tables["memory"]["Sp"], rtol=1e-6)

    # A rebuilt database (another encoder) makes the index stale: refused
    # with --stale-index raise, rebuilt by default.
    other = tmp_path / "other.safetensors"
    assert main(["train", str(reference_set), "-o", str(other), "--input-size", "32",
                 "--max-steps", "1", "--seed", "1"]) == 0
    assert main(["build-db", str(reference_set), "--encoder", str(other), "-o",
                 str(hdf5_db), "--scheme", "gz2", "--overwrite"]) == 0
    capsys.readouterr()
    argv = ["classify", str(reference_set), "--database", str(hdf5_db), "--encoder", str(other),
            "--backend", "faiss-ivf"]
    assert main([*argv, "--stale-index", "raise"]) == 1
    err = capsys.readouterr().err
    assert "index" in err and "Traceback" not in err
    with pytest.warns(StaleIndexWarning, match="stale"):
        assert main(argv) == 0


def test_build_db_on_a_local_dask_cluster_matches_in_process(reference_set, tmp_path):
    pytest.importorskip("distributed")
    encoder = tmp_path / "encoder.safetensors"
    assert main(["train", str(reference_set), "-o", str(encoder), "--input-size", "32",
                 "--max-steps", "1"]) == 0
    here, there = tmp_path / "here.fits", tmp_path / "dask.fits"
    assert main(["build-db", str(reference_set), "--encoder", str(encoder), "-o", str(here),
                 "--scheme", "gz2"]) == 0
    assert main(["build-db", str(reference_set), "--encoder", str(encoder), "-o", str(there),
                 "--scheme", "gz2", "--workers", "1", "--partition-size", "5"]) == 0
    a, b = LatentDatabase.read(here), LatentDatabase.read(there)
    assert list(a.table["objid"]) == list(b.table["objid"])
    np.testing.assert_allclose(b.latents, a.latents, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.h_similarity, a.h_similarity, rtol=1e-4, atol=1e-3)
    assert not [p.name for p in tmp_path.iterdir() if ".parts-" in p.name or ".tmp" in p.name]


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "0"], "--workers: must be at least 1, not 0"),
    (["--partition-size", "0"], "--partition-size: must be at least 1, not 0"),
])
def test_build_db_bad_dask_options(reference_set, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main(["build-db", str(reference_set), "-o", str(tmp_path / "db.fits"), *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "db.fits").exists()
