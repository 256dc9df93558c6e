# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the ``galmorphsearch`` command line (run in-process)."""

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from PIL import Image

from galmorphsearch.datasets import get_sample_field_paths, load_gz2_gallery, load_hcg88_members
from galmorphsearch.scripts.main import main
from galmorphsearch.utils import CatalogWarning

DATA = Path(__file__).parent / "data"


def test_demo_writes_cutouts_figures_and_table(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--size", "64"]) == 0
    members = load_hcg88_members()
    table = Table.read(out / "hcg88_cutouts.fits")
    assert list(table["name"]) == list(members["name"])
    # Every member was found and cut cleanly, with a Kron radius of a few
    # arcsec or more (the group's spirals are about 1 arcmin across).
    assert np.all(table["flag"] == 0)
    assert np.all(table["kron_radius"] > 5)
    assert table["kron_radius"].unit == "pix"
    assert table.meta["CUTSIZE"] == 64
    assert table.meta["CREATOR"].startswith("galmorphsearch ")
    # Values that differ between galaxies are columns, not a misleading header.
    for key, value in table.meta.items():
        if key.lower() in table.colnames:
            raise AssertionError(f"{key} is both a header keyword ({value}) and a column")
    for stem in ("ngc6976", "ngc6977", "ngc6978"):
        with Image.open(out / f"{stem}.png") as png:
            assert png.size == (64, 64) and png.mode == "RGB"
            assert np.asarray(png).max() > 50  # not blank
        assert (out / f"{stem}_steps.png").stat().st_size > 0
    assert (out / "hcg88_gallery.png").exists()
    assert "wrote 3 cutouts" in capsys.readouterr().out


def test_demo_refuses_to_overwrite_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "hcg88_cutouts.fits").write_text("precious")
    assert main(["demo", "--output", str(out), "--size", "64"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "hcg88_cutouts.fits").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["hcg88_cutouts.fits"]


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
