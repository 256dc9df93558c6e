# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Hostile and careless command lines: every verb answers a user error with one
line on standard error and exit status 1 (2 for options argparse refuses),
never a traceback; file names made from data stay inside their folder.
"""

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.catalogs import GZ2_SCHEME
from galmorphsearch.database import LatentDatabase
from galmorphsearch.datasets import get_sample_field_paths
from galmorphsearch.preprocessing import CutoutSet
from galmorphsearch.scripts import main as cli
from galmorphsearch.scripts.main import main


def _one_line_error(capsys, verb):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"galmorphsearch {verb}: error:")]
    assert len(errors) == 1, err
    return errors[0]


def _small_database(path, n_per_type=3, types=("Er", "Ec", "Sb", "SBc")):
    rng = np.random.default_rng(5)
    n = n_per_type * len(types)
    table = Table({"objid": np.arange(n), "ra": np.linspace(0, 1, n), "dec": np.zeros(n),
                   "morphology": np.repeat(types, n_per_type),
                   "type_index": np.repeat([GZ2_SCHEME.index(t) for t in types], n_per_type),
                   "catalog": ["test"] * n,
                   "latent": rng.normal(size=(n, 8)).astype(np.float32),
                   "background_latent": np.zeros((n, 8), np.float32)})
    table.meta.update({"ENCODER": "test", "ENCARCH": "none", "ENCHASH": "0" * 16,
                       "INSIZE": 32, "LATDIM": 8, "SCHEME": "gz2"})
    LatentDatabase(table).write(path)
    return path


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """A valid cutout set of the three HCG 88 spirals, 32 px."""
    path = tmp_path_factory.mktemp("targets") / "targets.fits"
    assert main(["preprocess", "--sample", "--size", "32", "-o", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def field_paths():
    paths = get_sample_field_paths()
    return [str(paths[band]) for band in "gri"]


# ---------------------------------------------------------------------------
# file names made from objids
def test_png_names_from_hostile_objids_stay_in_the_folder(tmp_path, field_paths):
    outside = tmp_path / "outside"
    outside.mkdir()
    evil_absolute = str(outside / "abs")
    positions = Table({"objid": ["../x", evil_absolute, "a/b", "a_b", "..", "CON"],
                       "ra": [313.12377] * 6, "dec": [-5.74610] * 6})
    table_path = tmp_path / "positions.ecsv"
    positions.write(table_path)
    png_dir = tmp_path / "png"
    assert main(["preprocess", *field_paths, "--positions", str(table_path), "--size", "32",
                 "-o", str(tmp_path / "set.fits"), "--png-dir", str(png_dir)]) == 0
    written = sorted(p.name for p in png_dir.iterdir())
    # One file per galaxy, all inside the folder, none overwriting another.
    assert len(written) == 6
    assert not (tmp_path / "x.png").exists()
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside", "png", "positions.ecsv",
                                                          "set.fits"]
    for name in written:
        assert "/" not in name and not name.startswith(".")
    # 'a/b' and 'a_b' reduce to the same name: kept apart by their row.
    assert "a_b.png" in written and "a_b_row3.png" in written
    assert cli._png_names(["CON", ""]) == ["row0_CON.png", "row1.png"]


@pytest.mark.parametrize("source", ["positions", "images"])
def test_duplicated_objids_are_refused_before_anything_is_written(tmp_path, capsys,
                                                                   field_paths, source):
    out = tmp_path / "set.fits"
    png_dir = tmp_path / "png"
    if source == "positions":
        positions = Table({"objid": ["a", "b", "a"], "ra": [313.12377] * 3,
                           "dec": [-5.74610] * 3})
        positions.write(tmp_path / "positions.csv")
        argv = [*field_paths, "--positions", str(tmp_path / "positions.csv")]
    else:
        (tmp_path / "one").mkdir()
        (tmp_path / "two").mkdir()
        # Same stem in two folders: the same objid.
        argv = [str(tmp_path / "one" / "gal.jpg"), str(tmp_path / "two" / "gal.jpg")]
    assert main(["preprocess", *argv, "-o", str(out), "--png-dir", str(png_dir)]) == 1
    line = _one_line_error(capsys, "preprocess")
    assert "repeats objids" in line
    assert ("'a' in rows 0, 2" if source == "positions" else "'gal' in rows 0, 1") in line
    assert not out.exists() and not png_dir.exists()


def test_png_dir_that_is_a_file_is_refused(tmp_path, capsys, field_paths):
    not_a_folder = tmp_path / "png"
    not_a_folder.write_text("mine")
    assert main(["preprocess", *field_paths, "--radec", "313.12377", "-5.7461", "--size",
                 "32", "-o", str(tmp_path / "set.fits"), "--png-dir", str(not_a_folder)]) == 1
    assert "is not a folder" in _one_line_error(capsys, "preprocess")
    assert not_a_folder.read_text() == "mine"


# ---------------------------------------------------------------------------
# options that were accepted and ignored, or recorded as nonsense
@pytest.mark.parametrize(("argv", "message"), [
    (["classify", "t.fits", "--database", "d.fits", "--vote", "0"], "--vote: must be at least 1"),
    (["search", "t.fits", "--database", "d.fits", "-k", "0"], "-k: must be at least 1"),
    (["build-db", "c.fits", "-o", "d.fits", "--scheme", "nonsense"],
     "--scheme: invalid choice: 'nonsense'"),
    (["train", "c.fits", "-o", "e.safetensors", "--epochs", "0"], "--epochs: must be at least 1"),
    (["train", "c.fits", "-o", "e.safetensors", "--learning-rate", "nan"],
     "--learning-rate: must be a finite number above 0"),
    (["train", "c.fits", "-o", "e.safetensors", "--val-fraction", "1"],
     "--val-fraction: must be at least 0 and below 1"),
    (["evaluate", "d.fits", "--fraction", "0"], "--fraction: must be between 0 and 1"),
    (["evaluate", "d.fits", "--balanced", "-4"], "--balanced: must be at least 1"),
    (["preprocess", "--sample", "-o", "s.fits", "--size", "x"], "--size: 'x' is not an integer"),
    (["preprocess", "--sample", "-o", "s.fits", "--seed", "-1"], "--seed: must be at least 0"),
    (["cutout", "a.jpg", "-o", "a.png", "--xy", "nan", "3"], "--xy: must be a finite number"),
    (["search", "t.fits", "--database", "d.fits", "--threads", "0"],
     "--threads: must be at least 1"),
])
def test_nonsense_options_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    # One line, like every other error (no usage block).
    assert len(err.strip().splitlines()) == 1 and "--help" in err


def test_train_with_epochs_zero_writes_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "missing.fits", "-o", str(tmp_path / "e.safetensors"), "--epochs", "0"])
    assert list(tmp_path.iterdir()) == []


def test_evaluate_refuses_a_database_too_small_to_evaluate(tmp_path, capsys):
    path = _small_database(tmp_path / "db.fits", n_per_type=2, types=("Er", "Sb"))
    # Two types of two galaxies: 10 % per type gives one target each, two in all.
    assert main(["evaluate", str(path)]) == 0
    capsys.readouterr()
    single = _small_database(tmp_path / "single.fits", n_per_type=1)
    assert main(["evaluate", str(single)]) == 1
    line = _one_line_error(capsys, "evaluate")
    assert "too small to evaluate" in line and "0 morphology-check target(s)" in line
    one_type = _small_database(tmp_path / "one.fits", n_per_type=2, types=("Er",))
    assert main(["evaluate", str(one_type)]) == 1
    assert "1 morphology-check target(s)" in _one_line_error(capsys, "evaluate")


def test_evaluate_says_when_the_correlation_is_undefined(tmp_path, capsys):
    path = _small_database(tmp_path / "db.fits", n_per_type=4, types=("Er",))
    assert main(["evaluate", str(path), "--fraction", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "type correlation r undefined" in out and "nan" not in out.splitlines()[0]


# ---------------------------------------------------------------------------
# every verb: one line, exit 1, never a traceback
@pytest.fixture
def garbage(tmp_path):
    """Files that claim to be what they are not."""
    text = tmp_path / "notes.fits"
    text.write_text("these are my notes, not a FITS file\n" * 20)
    empty = tmp_path / "empty.fits"
    empty.write_bytes(b"")
    folder = tmp_path / "folder.fits"
    folder.mkdir()
    return {"text": text, "empty": empty, "folder": folder}


@pytest.mark.parametrize("kind", ["text", "empty", "folder", "missing"])
@pytest.mark.parametrize("verb", ["train", "build-db", "search", "classify", "report",
                                  "evaluate", "info", "catalog", "cutout", "preprocess"])
def test_every_verb_turns_a_bad_input_file_into_one_line(verb, kind, garbage, tmp_path,
                                                         capsys, targets):
    bad = garbage[kind] if kind != "missing" else tmp_path / "missing.fits"
    database = _small_database(tmp_path / "db.fits")
    out = tmp_path / "out"
    argv = {
        "train": ["train", str(bad), "-o", f"{out}.safetensors", "--epochs", "1"],
        "build-db": ["build-db", str(bad), "-o", f"{out}.fits"],
        "search": ["search", str(bad), "--database", str(database)],
        "classify": ["classify", str(targets), "--database", str(bad)],
        "report": ["report", str(targets), "--database", str(bad), "-o",
                   f"{out}.html"],
        "evaluate": ["evaluate", str(bad)],
        "info": ["info", str(bad)],
        "catalog": ["catalog", "efigi", str(bad), "-o", f"{out}.fits"],
        "cutout": ["cutout", str(bad), "--xy", "10", "10", "-o", f"{out}.png"],
        "preprocess": ["preprocess", str(bad), "-o", f"{out}.fits"],
    }[verb]
    assert main(argv) == 1
    line = _one_line_error(capsys, verb)
    # A user error, named as such (not reported as a bug of the package).
    assert "unexpected" not in line, line
    assert bad.name in line, line
    assert not list(tmp_path.glob("out*"))


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("something inside broke")

    monkeypatch.setattr(cli, "_run_info", broken)
    assert main(["info", "db.fits"]) == 1
    line = _one_line_error(capsys, "info")
    assert "unexpected RuntimeError: something inside broke" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="inside broke"):
        main(["--debug", "info", "db.fits"])
    with pytest.raises(RuntimeError, match="inside broke"):
        main(["info", "db.fits", "--debug"])
    monkeypatch.setenv("GALMORPHSEARCH_DEBUG", "1")
    with pytest.raises(RuntimeError, match="inside broke"):
        main(["info", "db.fits"])


def test_interrupt_is_one_line(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_info", interrupted)
    assert main(["info", "db.fits"]) == 130
    assert capsys.readouterr().err.strip() == "galmorphsearch info: interrupted"


def test_preprocess_positions_given_an_image(tmp_path, capsys, field_paths):
    out = tmp_path / "set.fits"
    assert main(["preprocess", *field_paths, "--positions", field_paths[0], "-o",
                 str(out)]) == 1
    line = _one_line_error(capsys, "preprocess")
    assert "could not be read as a table of positions" in line and field_paths[0] in line
    assert not out.exists()


def test_preprocess_positions_out_of_range(tmp_path, capsys, field_paths):
    Table({"ra": [313.1], "dec": [95.0]}).write(tmp_path / "p.csv")
    assert main(["preprocess", *field_paths, "--positions", str(tmp_path / "p.csv"), "-o",
                 str(tmp_path / "set.fits")]) == 1
    assert "not valid sky coordinates" in _one_line_error(capsys, "preprocess")


def test_a_cutout_set_read_back_after_hostile_objids(tmp_path, field_paths):
    positions = Table({"objid": ["../x", "ok"], "ra": [313.12377] * 2, "dec": [-5.7461] * 2})
    positions.write(tmp_path / "p.ecsv")
    out = tmp_path / "set.fits"
    assert main(["preprocess", *field_paths, "--positions", str(tmp_path / "p.ecsv"),
                 "--size", "32", "-o", str(out)]) == 0
    # The objids themselves are data and are kept as given.
    assert list(CutoutSet.read(out).table["objid"]) == ["../x", "ok"]


def test_png_names_are_unique_whatever_the_objids():
    # A name made to keep two galaxies apart cannot be another galaxy's own.
    names = cli._png_names(["x_row2", "x", "x/", "X", "x_row3"])
    assert len({n.lower() for n in names}) == 5
    assert names[0] == "x_row2.png" and names[1] == "x.png"


@pytest.mark.parametrize("argv", [
    ["cutout", "{img}", "-o", "{tmp}/same.png", "--plot", "{tmp}/same.png", "--overwrite"],
    ["preprocess", "{img}", "-o", "{tmp}/set", "--png-dir", "{tmp}/set"],
])
def test_outputs_that_would_overwrite_each_other_are_refused(argv, tmp_path, capsys):
    image = tmp_path / "gal.png"
    image.write_bytes(b"")
    argv = [a.format(img=image, tmp=tmp_path) for a in argv]
    assert main(argv) == 1
    line = _one_line_error(capsys, argv[0])
    assert "of this run" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gal.png"]


def test_train_does_not_start_over_an_earlier_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.ckpt").write_bytes(b"earlier run")
    argv = ["train", "missing.fits", "-o", str(tmp_path / "e.safetensors"),
            "--checkpoint-dir", str(run)]
    assert main(argv) == 1
    line = _one_line_error(capsys, "train")
    assert "already holds a training run (last.ckpt)" in line and "--resume last" in line
    assert (run / "last.ckpt").read_bytes() == b"earlier run"
    # Without a checkpoint folder, the loss history beside the encoder is an output too.
    (tmp_path / "e.loss.ecsv").write_text("mine")
    assert main(["train", "missing.fits", "-o", str(tmp_path / "e.safetensors")]) == 1
    assert "e.loss.ecsv already exist" in _one_line_error(capsys, "train")


def test_non_ascii_text_is_refused_before_any_work(tmp_path, capsys, field_paths):
    Table({"objid": ["ok", "Café"], "ra": [313.12377] * 2,
           "dec": [-5.7461] * 2}).write(tmp_path / "p.ecsv")
    out = tmp_path / "set.fits"
    assert main(["preprocess", *field_paths, "--positions", str(tmp_path / "p.ecsv"),
                 "--png-dir", str(tmp_path / "png"), "-o", str(out)]) == 1
    line = _one_line_error(capsys, "preprocess")
    assert "column 'objid' holds text that is not ASCII (rows 1" in line
    assert not out.exists() and not (tmp_path / "png").exists()
