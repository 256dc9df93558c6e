# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the Galaxy Zoo 2 reader, the gz2_class parser and the clean samples."""

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.catalogs import (
    CLEAN_SAMPLE_THRESHOLDS,
    GZ2_SCHEME,
    clean_sample_masks,
    gz2_types_from_fractions,
    parse_gz2_class,
    read_gz2,
    select_clean_sample,
)
from galmorphsearch.utils.exceptions import (
    CatalogFormatError,
    CatalogWarning,
    UnknownMorphologyError,
)

DATA = Path(__file__).parent / "data" / "catalogs"
SUBSET = DATA / "gz2_table5_stripe82_subset.csv.gz"
REPO = Path(__file__).resolve().parents[1]
GALLERY = REPO / "galmorphsearch" / "data" / "gz2_gallery" / "labels.csv"



# An independent, row-by-row reading of the GZ2 decision tree used to check
# the vectorised one: plurality at each task, first answer on ties.
T01 = "t01_smooth_or_features_a0{}_{}"
_T01 = [("1", "smooth"), ("2", "features_or_disk"), ("3", "star_or_artifact")]
_T07 = ["a16_completely_round", "a17_in_between", "a18_cigar_shaped"]
_T05 = ["a13_dominant", "a12_obvious", "a11_just_noticeable", "a10_no_bulge"]


def _expected(row, kind="debiased"):
    def pick(names):
        values = [float(row[f"{n}_{kind}"]) for n in names]
        return int(np.argmax(values))

    t01 = pick([T01.format(*a) for a in _T01])
    if t01 == 2:
        return None
    if t01 == 0:
        return ["Er", "Ei", "Ec"][pick([f"t07_rounded_{a}" for a in _T07])]
    if pick(["t02_edgeon_a04_yes", "t02_edgeon_a05_no"]) == 0:
        return "Edge-on"
    barred = pick(["t03_bar_a06_bar", "t03_bar_a07_no_bar"]) == 0
    # _T05 lists dominant first, so ties would differ from the tree's order
    # (no bulge first); fractions are compared reversed to keep its order.
    values = [float(row[f"t05_bulge_prominence_{a}_{kind}"]) for a in reversed(_T05)]
    letter = "dcba"[int(np.argmax(values))]
    return ("SB" if barred else "S") + letter


@pytest.fixture(scope="module")
def subset():
    with pytest.warns(CatalogWarning, match="star_or_artifact"):
        return read_gz2(SUBSET)


def test_read_subset_columns_and_meta(subset):
    assert subset.colnames[:5] == ["objid", "ra", "dec", "morphology", "type_index"]
    assert "t01_smooth_or_features_a01_smooth_debiased" in subset.colnames
    assert subset["ra"].unit == "deg" and subset["dec"].unit == "deg"
    assert subset["objid"].dtype.kind == "i"
    assert subset.meta["CATALOG"] == "GZ2"
    assert subset.meta["SCHEME"] == "gz2"
    assert subset.meta["FRACKIND"] == "debiased"
    assert subset.meta["MORPHSRC"] == "fractions"
    assert all(len(k) <= 8 for k in subset.meta)


def test_subset_matches_independent_walk(subset):
    raw = Table.read(SUBSET, format="ascii.csv")
    found = set()
    for row, morph in zip(raw, subset["morphology"], strict=True):
        expected = _expected(row)
        if expected is None:
            assert morph is np.ma.masked
        else:
            assert morph == expected
            found.add(expected)
    assert found == set(GZ2_SCHEME.types)
    ok = ~subset["morphology"].mask
    idx = [GZ2_SCHEME.index(m) for m in subset["morphology"][ok]]
    assert subset["type_index"][ok].tolist() == idx
    assert subset["type_index"].mask.sum() == subset.meta["NOMORPH"] > 0


@pytest.mark.parametrize("kind", ["fraction", "weighted_fraction"])
def test_fraction_kind_option(kind):
    raw = Table.read(SUBSET, format="ascii.csv")
    with pytest.warns(CatalogWarning):
        cat = read_gz2(raw, fraction=kind)
    assert cat.meta["FRACKIND"] == kind
    for row, morph in zip(raw[:60], cat["morphology"][:60], strict=True):
        expected = _expected(row, kind)
        assert (morph is np.ma.masked) if expected is None else morph == expected


def test_fraction_kind_changes_columns_used():
    raw = Table.read(SUBSET, format="ascii.csv")[:1]
    raw["t01_smooth_or_features_a01_smooth_fraction"] = 0.9
    raw["t01_smooth_or_features_a02_features_or_disk_fraction"] = 0.05
    raw["t01_smooth_or_features_a01_smooth_debiased"] = 0.05
    raw["t01_smooth_or_features_a02_features_or_disk_debiased"] = 0.9
    raw["t01_smooth_or_features_a03_star_or_artifact_debiased"] = 0.0
    raw["t02_edgeon_a04_yes_debiased"] = 0.9
    raw["t02_edgeon_a05_no_debiased"] = 0.1
    assert read_gz2(raw)["morphology"][0] == "Edge-on"
    assert read_gz2(raw, fraction="fraction")["morphology"][0] in ("Er", "Ei", "Ec")
    with pytest.raises(ValueError, match="fraction kind"):
        read_gz2(raw, fraction="count")


def test_table_input_not_modified():
    raw = Table.read(SUBSET, format="ascii.csv")[:20]
    names = list(raw.colnames)
    read_gz2(raw)
    assert raw.colnames == names


def test_fits_input_and_output(tmp_path, subset):
    raw = Table.read(SUBSET, format="ascii.csv")
    path = tmp_path / "t5.fits"
    raw.write(path)
    with pytest.warns(CatalogWarning):
        cat = read_gz2(path)
    assert cat["morphology"].tolist() == subset["morphology"].tolist()
    # The output writes to FITS without any warning (short, flat meta).
    cat.write(tmp_path / "out.fits")
    back = Table.read(tmp_path / "out.fits")
    assert back.meta["SCHEME"] == "gz2"


def test_min_fraction_masks_weak_rows():
    raw = Table.read(SUBSET, format="ascii.csv")
    with pytest.warns(CatalogWarning, match="below_min_fraction"):
        cat = read_gz2(raw, min_fraction=0.6)
    assert cat.meta["MINFRAC"] == 0.6
    assert cat.meta["NOMORPH"] > 10


def test_no_votes_at_node():
    raw = Table.read(SUBSET, format="ascii.csv")[:2]
    for col in raw.colnames:
        if col.startswith("t07_rounded"):
            raw[col] = 0.0
    raw["t01_smooth_or_features_a01_smooth_debiased"] = 0.9
    with pytest.warns(CatalogWarning, match="2 t07:no_votes"):
        cat = read_gz2(raw)
    assert cat["morphology"].mask.all()


# --- main tables with gz2_class strings ----------------------------------------------

GALLERY_STRINGS = ["Ec", "Ei", "Er", "Sb", "SbB", "Sc", "Sc2m", "Sc?t", "ScB", "Sd", "Sen", "Ser"]
GALLERY_TYPES = ["Ec", "Ei", "Er", "Sb", "SBb", "Sc", "Sc", "Sc", "SBc", "Sd", "Edge-on", "Edge-on"]


def test_parse_gallery_strings():
    assert parse_gz2_class(GALLERY_STRINGS).tolist() == GALLERY_TYPES
    if GALLERY.exists():
        labels = Table.read(GALLERY, format="ascii.csv")
        parsed = parse_gz2_class(labels["gz2_class"])
        assert not parsed.mask.any()
        assert set(parsed) <= set(GZ2_SCHEME.types)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Er", "Er"),
        ("Ei(m)", "Ei"),
        ("Ec(d)(m)", "Ec"),
        ("Seb", "Edge-on"),
        ("Sen(u)", "Edge-on"),
        ("Sa", "Sa"),
        ("Sd+l", "Sd"),
        ("SBa", "SBa"),
        ("SBc2m", "SBc"),
        ("SBb4t(r)", "SBb"),
        ("Sb1l(i)", "Sb"),
        ("SdB", "SBd"),
        (" Sc?t ", "Sc"),
        (b"SBd", "SBd"),
    ],
)
def test_parse_one(text, expected):
    assert parse_gz2_class(text) == expected


def test_parse_artifact_masked():
    assert parse_gz2_class("A") is np.ma.masked
    out = parse_gz2_class(np.ma.MaskedArray(["Er", "A", "Sb"], mask=[False, False, True]))
    assert out.mask.tolist() == [False, True, True]


@pytest.mark.parametrize("text", ["Sx", "E", "SBbB", "Sb(z)", "Elliptical", "", "S0"])
def test_parse_unknown_string(text):
    with pytest.raises(UnknownMorphologyError, match=re.escape(repr(text))):
        parse_gz2_class(text)
    assert parse_gz2_class([text], strict=False).mask.all()


def _main_table():
    strings = GALLERY_STRINGS + ["SBa2l(r)", "A", "Ei(m)", "SBd?t"]
    n = len(strings)
    rng = np.random.default_rng(2013)
    t = Table()
    t["dr7objid"] = 587722981741363200 + np.arange(n, dtype=np.int64)
    t["ra"] = rng.uniform(0, 360, n)
    t["dec"] = rng.uniform(-10, 70, n)
    t["rastring"] = [f"{r / 15:011.8f}" for r in t["ra"]]
    t["decstring"] = [f"{d:+012.7f}" for d in t["dec"]]
    t["sample"] = "original"
    t["gz2_class"] = strings
    t["total_classifications"] = rng.integers(20, 60, n)
    t["total_votes"] = t["total_classifications"] * 6
    frac = rng.dirichlet([1, 1, 0.1], n)
    for k, (a, name) in enumerate(_T01):
        t[f"t01_smooth_or_features_a0{a}_{name}_fraction"] = frac[:, k]
        t[f"t01_smooth_or_features_a0{a}_{name}_debiased"] = frac[:, k]
    return t, GALLERY_TYPES + ["SBa", None, "Ei", "SBd"]


@pytest.mark.parametrize("ext", ["csv", "fits", "ecsv"])
def test_read_main_table_file(tmp_path, ext):
    table, expected = _main_table()
    path = tmp_path / f"gz2_main.{ext}"
    table.write(path)
    with pytest.warns(CatalogWarning, match="1 of 16 .* gz2_class:A"):
        cat = read_gz2(path)
    assert cat.meta["MORPHSRC"] == "gz2_class"
    assert [None if m is np.ma.masked else m for m in cat["morphology"]] == expected
    assert cat["objid"].tolist() == table["dr7objid"].tolist()
    assert "gz2_class" in cat.colnames and "rastring" in cat.colnames
    np.testing.assert_allclose(cat["ra"], table["ra"])


def test_main_table_use_fractions_needs_tree_columns():
    table, _ = _main_table()
    with pytest.raises(CatalogFormatError, match="t07_rounded_a16_completely_round_debiased"):
        read_gz2(table, use="fractions")
    with pytest.raises(ValueError, match="use must be"):
        read_gz2(table, use="votes")


def test_main_table_unknown_class_string():
    table, _ = _main_table()
    table["gz2_class"][3] = "Sz9"
    with pytest.raises(UnknownMorphologyError, match="'Sz9'"):
        read_gz2(table)


def test_missing_columns_and_bad_files(tmp_path):
    raw = Table.read(SUBSET, format="ascii.csv")[:5]
    raw.remove_column("t05_bulge_prominence_a12_obvious_debiased")
    with pytest.raises(CatalogFormatError, match="t05_bulge_prominence_a12_obvious_debiased"):
        read_gz2(raw)
    raw = Table.read(SUBSET, format="ascii.csv")[:5]
    raw.remove_column("objid")
    with pytest.raises(CatalogFormatError, match="object id"):
        read_gz2(raw)
    bad = tmp_path / "notes.fits"
    bad.write_text("this is not a FITS file\n")
    with pytest.raises(CatalogFormatError, match="notes.fits"):
        read_gz2(bad)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_gz2(tmp_path / "missing.csv")
    with pytest.raises(TypeError, match="list"):
        read_gz2([1, 2, 3])


# --- clean samples --------------------------------------------------------------------


def test_clean_sample_defaults(subset):
    clean = select_clean_sample(subset)
    assert set(clean["clean_class"]) <= set(CLEAN_SAMPLE_THRESHOLDS)
    assert len(clean) > 50
    for row in clean:
        for stem, minimum in CLEAN_SAMPLE_THRESHOLDS[row["clean_class"]].items():
            assert row[f"{stem}_debiased"] >= minimum
    masks = clean_sample_masks(subset)
    nclass = np.sum(list(masks.values()), axis=0)
    assert len(clean) == int((nclass == 1).sum())
    assert clean.meta["CLEANAMB"] == int((nclass > 1).sum())
    assert "spiral: " in clean.meta["CLEANTHR"]
    # Clean smooth galaxies mostly carry the matching tree type.
    round_types = clean["morphology"][clean["clean_class"] == "round"]
    assert np.mean(round_types == "Er") > 0.8


def test_clean_sample_custom_thresholds(subset):
    strict = {
        "elliptical": {"t01_smooth_or_features_a01_smooth": 0.8},
        "spiral": {
            "t01_smooth_or_features_a02_features_or_disk_fraction": 0.8,
            "t02_edgeon_a05_no": 0.8,
        },
    }
    clean = select_clean_sample(subset, strict, fraction="fraction")
    ell = clean[clean["clean_class"] == "elliptical"]
    assert np.all(ell["t01_smooth_or_features_a01_smooth_fraction"] >= 0.8)
    assert clean.meta["FRACKIND"] == "fraction"
    with pytest.raises(CatalogFormatError, match="t09_bulge_shape_a25_rounded"):
        clean_sample_masks(subset, {"x": {"t09_bulge_shape_a25_rounded": 0.5}})


# --- the full Stripe 82 Table 5 -------------------------------------------------------


def test_full_table5_counts(shared_data):
    path = shared_data / "gz2-table5-stripe82" / "table5.fits.gz"
    raw = Table.read(path)
    with pytest.warns(CatalogWarning, match="star_or_artifact"):
        cat = read_gz2(raw)
    assert len(cat) == len(raw) == 19761
    morph = cat["morphology"]
    names, counts = np.unique(morph.compressed(), return_counts=True)
    counts = dict(zip(names, counts, strict=True))
    assert set(counts) == set(GZ2_SCHEME.types)
    assert sum(counts.values()) + morph.mask.sum() == len(cat)
    # Totals per branch recomputed with plain numpy on the fraction columns.
    f = np.column_stack([np.asarray(raw[T01.format(*a) + "_debiased"]) for a in _T01])
    t01 = np.argmax(f, axis=1)
    assert morph.mask.sum() == (t01 == 2).sum() == cat.meta["NOMORPH"]
    smooth = sum(counts[t] for t in ("Er", "Ei", "Ec"))
    assert smooth == (t01 == 0).sum()
    assert sum(counts[t] for t in GZ2_SCHEME.types[3:]) == (t01 == 1).sum()
    edge = np.asarray(raw["t02_edgeon_a04_yes_debiased"]) >= np.asarray(
        raw["t02_edgeon_a05_no_debiased"]
    )
    assert counts["Edge-on"] == ((t01 == 1) & edge).sum()
    barred = sum(counts[t] for t in ("SBa", "SBb", "SBc", "SBd"))
    bar = np.asarray(raw["t03_bar_a06_bar_debiased"]) >= np.asarray(
        raw["t03_bar_a07_no_bar_debiased"]
    )
    assert barred == ((t01 == 1) & ~edge & bar).sum()
    # A random sample of rows walked independently.
    rng = np.random.default_rng(5)
    for i in rng.choice(len(raw), 200, replace=False):
        expected = _expected(raw[i])
        assert (morph[i] is np.ma.masked) if expected is None else morph[i] == expected


def test_full_table5_csv_matches_fits(shared_data):
    fits_path = shared_data / "gz2-table5-stripe82" / "table5.fits.gz"
    csv_path = shared_data / "gz2-table5-stripe82" / "table5.csv.gz"
    with pytest.warns(CatalogWarning):
        a = read_gz2(fits_path)
    with pytest.warns(CatalogWarning):
        b = read_gz2(csv_path)
    assert np.all(a["objid"] == b["objid"])
    agree = np.mean(a["morphology"].filled("") == b["morphology"].filled(""))
    # The CSV prints fractions with fewer digits; ties may break differently.
    assert agree > 0.999


# --- argument and file checks ------------------------------------------------------


@pytest.mark.parametrize("bad", ["a", None, 2, 1.0, -0.1, float("nan"), True])
def test_min_fraction_must_be_in_unit_interval(bad):
    raw = Table.read(SUBSET, format="ascii.csv")[:5]
    with pytest.raises(ValueError, match=r"min_fraction must be a number in \[0, 1\)"):
        read_gz2(raw, min_fraction=bad)
    with pytest.raises(ValueError, match="min_fraction"):
        gz2_types_from_fractions(raw, min_fraction=bad)


def test_min_fraction_limits_accepted():
    raw = Table.read(SUBSET, format="ascii.csv")[:20]
    assert read_gz2(raw, min_fraction=0).meta["MINFRAC"] == 0.0
    with pytest.warns(CatalogWarning, match="below_min_fraction"):
        cat = read_gz2(raw, min_fraction=np.float32(0.99))
    assert cat["morphology"].mask.all()


def test_out_of_range_coordinates_are_masked_with_a_warning():
    raw = Table.read(SUBSET, format="ascii.csv")[:6]
    raw["ra"][1] = 400.0
    raw["ra"][2] = -3.0
    raw["dec"][3] = 100.0
    with pytest.warns(CatalogWarning) as record:
        cat = read_gz2(raw)
    messages = " | ".join(str(w.message) for w in record)
    assert "2 of 6 GZ2 rows have ra outside [0, 360] deg" in messages
    assert "1 of 6 GZ2 rows have dec outside [-90, 90] deg" in messages
    assert cat["ra"].mask.tolist() == [False, True, True, False, False, False]
    assert cat["dec"].mask.tolist() == [False, False, False, True, False, False]
    # The catalog's own columns are kept as they were.
    assert cat["morphology"].tolist() == read_gz2(Table.read(SUBSET, format="ascii.csv")[:6])[
        "morphology"
    ].tolist()


def test_unreadable_file_gives_short_message(tmp_path):
    text = tmp_path / "table5.txt"
    text.write_text(gzip.decompress(SUBSET.read_bytes()).decode())
    with pytest.raises(CatalogFormatError) as info:
        read_gz2(text)
    message = str(info.value)
    assert "table5.txt" in message
    assert "Galaxy Zoo 2 table" in message and "format=" in message
    assert "\n" not in message and len(message) < 400  # not astropy's format table
    # With the format given, the same file reads.
    with pytest.warns(CatalogWarning):
        assert len(read_gz2(text, format="ascii.csv")) == 304
