# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Hostile and careless inputs to the catalog readers (issue 13).

Every reader (`read_gz2`, `read_efigi`, `read_na10`) must refuse, or read
with a `CatalogWarning` and a masked value, anything it cannot turn into a
morphology honestly, and say where: the file (or "the given table"), the
column, and the table rows, which are counted from 0 over the data rows
(header and comment lines not counted) and said to be so.
"""

from pathlib import Path

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from galmorphsearch.catalogs import (
    GZ2_DECISION_TREE,
    gz2_types_from_fractions,
    read_efigi,
    read_gz2,
    read_na10,
)
from galmorphsearch.utils.exceptions import (
    CatalogFormatError,
    CatalogWarning,
    UnknownMorphologyError,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "catalogs"
GZ2_SUBSET = DATA / "gz2_table5_stripe82_subset.csv.gz"
EFIGI_SUBSET = DATA / "efigi_attributes_subset.txt"
NA10_DAT = DATA / "na10" / "table2.dat"
NA10_README = DATA / "na10" / "ReadMe"
ROWS_NOTE = "0-based"


# --- small tables of each catalog -----------------------------------------------------


def _gz2_votes(n=4):
    """A vote-fraction table: every row a clean 'Er'."""
    cols = GZ2_DECISION_TREE.required_columns("debiased")
    t = Table({c: np.zeros(n) for c in cols})
    t["t01_smooth_or_features_a01_smooth_debiased"] = 0.9
    t["t07_rounded_a16_completely_round_debiased"] = 0.8
    t["objid"] = 587722981741363200 + np.arange(n, dtype=np.int64)
    t["ra"] = np.linspace(10.0, 20.0, n)
    t["dec"] = np.linspace(-5.0, 5.0, n)
    return t


def _gz2_main(n=4):
    return Table({"dr7objid": 587722981741363200 + np.arange(n, dtype=np.int64),
                  "ra": np.linspace(10.0, 20.0, n), "dec": np.linspace(-5.0, 5.0, n),
                  "gz2_class": ["Ei", "Sc", "SBb", "Er", "Ec", "Sa"][:n]})  # fmt: skip


def _efigi(n=4):
    return Table({"PGCname": [f"PGC{212 + k:07d}" for k in range(n)],
                  "T": [1, -5, 4, -1, 9, 0][:n], "T_inf": [0, -5, 3, -2, 8, 0][:n],
                  "T_sup": [2, -5, 5, 0, 10, 1][:n]})  # fmt: skip


def _na10(n=4):
    return Table({"JID": [f"J08000{k}.00-013000.0" for k in range(n)],
                  "RAdeg": np.linspace(120.0, 130.0, n), "DEdeg": np.linspace(-1.0, 1.0, n),
                  "TType": [-5, 4, 2, 6, 0, 1][:n]})  # fmt: skip


def _write(table, path, fmt="ascii.csv"):
    table.write(path, format=fmt, overwrite=True)
    return path


def _read(kind, source):
    return {"gz2": read_gz2, "efigi": read_efigi, "na10": read_na10}[kind](source)


def _assert_names(message, *parts):
    for part in parts:
        assert str(part) in message, f"{part!r} not in {message!r}"
    assert "\n" not in message


# --- duplicated ids ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "make", "idcol"),
    [("gz2", _gz2_votes, "objid"), ("gz2", _gz2_main, "dr7objid"),
     ("efigi", _efigi, "PGCname"), ("na10", _na10, "JID")],  # fmt: skip
)
@pytest.mark.parametrize("as_file", [False, True])
def test_duplicated_ids_are_refused(tmp_path, kind, make, idcol, as_file):
    t = make(4)
    t[idcol][3] = t[idcol][1]
    source = _write(t, tmp_path / f"dup_{kind}.csv") if as_file else t
    with pytest.raises(CatalogFormatError) as info:
        _read(kind, source)
    message = str(info.value)
    where = f"dup_{kind}.csv" if as_file else "the given table"
    _assert_names(message, where, repr(idcol), "duplicated", str(t[idcol][1]), "1, 3",
                  ROWS_NOTE)  # fmt: skip


def test_duplicated_pgc_written_two_ways_is_refused():
    t = _efigi(3)
    t["PGCname"] = ["PGC0000212", "PGC0000213", "PGC 212"]
    with pytest.raises(CatalogFormatError, match=r"PGC0000212.*rows 0, 2"):
        read_efigi(t)


def test_many_duplicates_are_listed_briefly():
    t = Table({"JID": ["a"] * 40 + [f"b{k}" for k in range(20)] * 2, "TType": [4] * 80})
    with pytest.raises(CatalogFormatError) as info:
        read_na10(t)
    message = str(info.value)
    assert "21 duplicated" in message and len(message) < 500


def test_duplicated_pgc_in_efigi_coordinates_is_refused():
    coords = Table({"PGC": [212, 213, 212], "ra": [1.0, 2.0, 3.0], "dec": [0.0, 0.0, 0.0]})
    with pytest.raises(CatalogFormatError) as info:
        read_efigi(_efigi(2), coordinates=coords)
    _assert_names(str(info.value), "coordinates", "'PGC'", "212", "0, 2", ROWS_NOTE)


@pytest.mark.parametrize(
    ("kind", "make", "idcol"),
    [("gz2", _gz2_votes, "objid"), ("efigi", _efigi, "PGCname"), ("na10", _na10, "JID")],
)
def test_blank_ids_are_refused(kind, make, idcol):
    t = make(3)
    t[idcol] = MaskedColumn(t[idcol], mask=[False, True, False])
    with pytest.raises(CatalogFormatError) as info:
        _read(kind, t)
    _assert_names(str(info.value), repr(idcol), "blank", "row 1", ROWS_NOTE)
    if t[idcol].dtype.kind in "US":
        t = make(3)
        t[idcol][2] = "  "
        with pytest.raises(CatalogFormatError, match="row 2"):
            _read(kind, t)


def test_blank_objid_in_a_gz2_csv_is_refused(tmp_path):
    path = tmp_path / "gz2.csv"
    path.write_text("dr7objid,ra,dec,gz2_class\n587722981741363200,1,1,Ei\n,2,2,Sc\n")
    with pytest.raises(CatalogFormatError) as info:
        read_gz2(path)
    _assert_names(str(info.value), "gz2.csv", "'dr7objid'", "blank", "row 1", ROWS_NOTE)


def test_floating_point_gz2_objids_are_refused():
    t = _gz2_main(2)
    t["dr7objid"] = t["dr7objid"].astype(float)  # 64-bit SDSS ids do not survive
    with pytest.raises(CatalogFormatError, match="'dr7objid'.*floating"):
        read_gz2(t)
    t = _gz2_main(2)
    t["dr7objid"] = [12.0, 13.5]
    with pytest.raises(CatalogFormatError, match=r"13\.5.*row 1"):
        read_gz2(t)
    t["dr7objid"] = [12.0, 13.0]  # small integral floats are exact ids
    assert read_gz2(t)["objid"].tolist() == [12, 13]


# --- non-integer, non-numeric, infinite and out-of-range codes ----------------------------


@pytest.mark.parametrize("col", ["T", "T_inf", "T_sup"])
def test_non_integer_efigi_t_is_refused(tmp_path, col):
    t = _efigi(3)
    t[col] = t[col].astype(float)
    t[col][1] = t[col][1] + 0.5
    with pytest.raises(CatalogFormatError) as info:
        read_efigi(t)
    _assert_names(str(info.value), "the given table", repr(col), "non-integer", "row 1",
                  ROWS_NOTE)  # fmt: skip
    path = tmp_path / "efigi_attributes.txt"
    path.write_text("# EFIGI\nPGCname T T_inf T_sup\nPGC0000212 1 0 2\nPGC0001309 3.5 2 4\n")
    with pytest.raises(CatalogFormatError) as info:
        read_efigi(path)
    _assert_names(str(info.value), "efigi_attributes.txt", "'T'", "3.5", "row 1", ROWS_NOTE)


def test_non_integer_na10_ttype_is_refused(tmp_path):
    t = _na10(3)
    t["TType"] = [4.0, 3.5, 2.0]
    with pytest.raises(CatalogFormatError) as info:
        read_na10(t)
    _assert_names(str(info.value), "'TType'", "non-integer", "3.5", "row 1", ROWS_NOTE)
    path = _write(t, tmp_path / "na10.csv")
    with pytest.raises(CatalogFormatError, match="na10.csv"):
        read_na10(path)


@pytest.mark.parametrize(
    ("kind", "make", "col"),
    [("efigi", _efigi, "T"), ("efigi", _efigi, "T_sup"), ("na10", _na10, "TType")],
)
def test_strings_in_code_columns_are_refused(tmp_path, kind, make, col):
    t = make(3)
    t[col] = [str(v) for v in t[col]]
    t[col][2] = "Sb"
    path = _write(t, tmp_path / f"{kind}.csv")
    with pytest.raises(CatalogFormatError) as info:
        _read(kind, path)
    _assert_names(str(info.value), f"{kind}.csv", repr(col), "non-numeric", "'Sb'", "row 2",
                  ROWS_NOTE)  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "make", "col"), [("efigi", _efigi, "T"), ("na10", _na10, "TType")]
)
@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinite_codes_are_refused(kind, make, col, value):
    t = make(3)
    t[col] = t[col].astype(float)
    t[col][0] = value
    with pytest.raises(CatalogFormatError) as info:
        _read(kind, t)
    _assert_names(str(info.value), repr(col), "infinite", "row 0", ROWS_NOTE)


def test_out_of_range_codes_name_the_file_and_rows(tmp_path):
    t = _efigi(3)
    t["T"][2] = 12
    path = _write(t, tmp_path / "efigi.csv")
    with pytest.raises(UnknownMorphologyError) as info:
        read_efigi(path)
    _assert_names(str(info.value), "efigi.csv", "'T'", "[12]", "-6..11", "row 2", ROWS_NOTE)
    t = _na10(3)
    t["TType"] = [4.0, 1e30, -7.0]
    with pytest.raises(UnknownMorphologyError) as info:
        read_na10(t)
    message = str(info.value)
    _assert_names(message, "'TType'", "1e+30", "-7", "rows 1, 2", ROWS_NOTE)
    assert "9223372036854775808" not in message


@pytest.mark.parametrize("bad", ["x", np.inf, 7.0, -0.5, 100.0])
def test_bad_gz2_vote_fractions_are_refused(tmp_path, bad):
    t = _gz2_votes(3)
    col = "t02_edgeon_a04_yes_debiased"
    if isinstance(bad, str):
        t[col] = [str(v) for v in t[col]]
    t[col][2] = bad
    with pytest.raises(CatalogFormatError) as info:
        read_gz2(t)
    _assert_names(str(info.value), repr(col), "row 2", ROWS_NOTE)
    with pytest.raises(CatalogFormatError, match=col):
        gz2_types_from_fractions(t)
    path = _write(t, tmp_path / "votes.csv")
    with pytest.raises(CatalogFormatError, match="votes.csv"):
        read_gz2(path)
    # Blank fractions (masked or NaN) are not refused: they still mean "no votes".
    t = _gz2_votes(3)
    col = "t07_rounded_a16_completely_round_debiased"
    t[col] = MaskedColumn(t[col], mask=[False, False, True])
    t["t07_rounded_a17_in_between_debiased"][2] = np.nan
    with pytest.warns(CatalogWarning, match="t07:no_votes"):
        cat = read_gz2(t)
    assert cat["morphology"].mask.tolist() == [False, False, True]


def test_unknown_gz2_class_names_file_column_and_rows(tmp_path):
    t = _gz2_main(4)
    t["gz2_class"][1] = "Sz9"
    t["gz2_class"][3] = "Sz9"
    path = _write(t, tmp_path / "gz2_main.csv")
    with pytest.raises(UnknownMorphologyError) as info:
        read_gz2(path)
    _assert_names(str(info.value), "gz2_main.csv", "'gz2_class'", "'Sz9'", "rows 1, 3",
                  ROWS_NOTE)  # fmt: skip


# --- blank codes: no type, with a warning naming file, column and rows ----------------------


def test_blank_efigi_t_gives_no_type_with_a_warning():
    t = _efigi(3)
    t["T"] = t["T"].astype(float)
    t["T"][1] = np.nan
    with pytest.warns(CatalogWarning) as record:
        cat = read_efigi(t)
    message = " | ".join(str(w.message) for w in record)
    _assert_names(message, "1 of 3 EFIGI rows", "'T'", "blank", "row 1", ROWS_NOTE)
    assert cat["morphology"].mask.tolist() == [False, True, False]
    assert cat["type_index"].mask.tolist() == [False, True, False]
    assert cat.meta["NOMORPH"] == 1
    assert cat["morphology"][0] == "Sa"


def test_blank_efigi_t_in_a_file(tmp_path):
    path = tmp_path / "efigi.csv"
    path.write_text("PGCname,T,T_inf,T_sup\nPGC0000212,1,0,2\nPGC0001309,,-5,\n")
    with pytest.warns(CatalogWarning) as record:
        cat = read_efigi(path)
    messages = [str(w.message) for w in record]
    assert any("'T'" in m and "efigi.csv" in m and "row 1" in m for m in messages)
    assert any("'T_sup'" in m and "row 1" in m for m in messages)
    assert cat["morphology"].mask.tolist() == [False, True]
    assert cat["morphology_sup"].mask.tolist() == [False, True]
    assert cat["morphology_inf"].tolist() == ["S0a", "E"]


def test_masked_efigi_t_warns_too():
    t = _efigi(2)
    t["T"] = MaskedColumn(t["T"], mask=[True, False])
    with pytest.warns(CatalogWarning, match="row 0"):
        cat = read_efigi(t)
    assert cat["morphology"].mask.tolist() == [True, False]


def test_blank_na10_ttype_names_column_and_rows(tmp_path):
    t = _na10(4)
    t["TType"] = MaskedColumn([4, 4, 12, 4], mask=[False, True, False, True])
    path = _write(t, tmp_path / "na10.csv")
    with pytest.warns(CatalogWarning) as record:
        cat = read_na10(path)
    message = " | ".join(str(w.message) for w in record)
    _assert_names(message, "3 of 4", "na10.csv", "'TType'", "rows 1, 3", ROWS_NOTE)
    assert cat["morphology"].mask.tolist() == [False, True, True, True]
    t["TType"] = [4.0, np.nan, 2.0, 2.0]
    with pytest.warns(CatalogWarning, match="row 1"):
        read_na10(t)


def test_blank_na10_ttype_in_the_cds_file():
    with pytest.warns(CatalogWarning) as record:
        read_na10(NA10_DAT, readme=NA10_README)
    message = " | ".join(str(w.message) for w in record)
    _assert_names(message, "table2.dat", "'TType'", "row 17", ROWS_NOTE)


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_gz2_class_gives_no_type_with_a_warning(blank):
    t = _gz2_main(3)
    t["gz2_class"][1] = blank
    with pytest.warns(CatalogWarning) as record:
        cat = read_gz2(t)
    message = " | ".join(str(w.message) for w in record)
    _assert_names(message, "1 of 3", "blank", "'gz2_class'", "row 1", ROWS_NOTE)
    assert cat["morphology"].mask.tolist() == [False, True, False]


def test_masked_gz2_class_is_reported_as_blank_not_as_its_hidden_value():
    t = _gz2_main(3)
    t["gz2_class"] = MaskedColumn(t["gz2_class"], mask=[False, True, False])
    with pytest.warns(CatalogWarning) as record:
        read_gz2(t)
    message = " | ".join(str(w.message) for w in record)
    assert "gz2_class:Sc" not in message
    _assert_names(message, "blank", "row 1")


# --- coordinates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "make", "racol"),
    [("gz2", _gz2_votes, "ra"), ("na10", _na10, "RAdeg")],
)
def test_non_numeric_ra_names_file_column_and_row(tmp_path, kind, make, racol):
    t = make(3)
    t[racol] = [f"{v:.3f}" for v in t[racol]]
    t[racol][1] = "12h30m"
    path = _write(t, tmp_path / f"{kind}_pos.csv")
    with pytest.raises(CatalogFormatError) as info:
        _read(kind, path)
    _assert_names(str(info.value), f"{kind}_pos.csv", repr(racol), "'12h30m'", "row 1",
                  ROWS_NOTE)  # fmt: skip


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
def test_non_finite_dec_is_masked_with_a_warning(value):
    t = _na10(3)
    t["DEdeg"][2] = value
    with pytest.warns(CatalogWarning) as record:
        cat = read_na10(t)
    message = " | ".join(str(w.message) for w in record)
    _assert_names(message, "'DEdeg'", "row 2", ROWS_NOTE)
    assert cat["dec"].mask.tolist() == [False, False, True]


def test_out_of_range_ra_names_rows():
    t = _gz2_votes(3)
    t["ra"][0] = 361.0
    with pytest.warns(CatalogWarning, match=r"row 0 \(0-based\)"):
        cat = read_gz2(t)
    assert cat["ra"].mask.tolist() == [True, False, False]


def test_bad_efigi_coordinates_name_the_table():
    coords = Table({"PGC": [212, 213], "ra": ["1.0", "east"], "dec": [0.0, 0.0]})
    with pytest.raises(CatalogFormatError) as info:
        read_efigi(_efigi(2), coordinates=coords)
    _assert_names(str(info.value), "coordinates", "'ra'", "'east'", "row 1", ROWS_NOTE)


# --- empty files and files of the wrong catalog ----------------------------------------


@pytest.mark.parametrize("kind", ["gz2", "efigi", "na10"])
@pytest.mark.parametrize(("name", "text"), [("nothing.csv", ""), ("blank.csv", "\n \n"),
                                            ("nothing.txt", "")])  # fmt: skip
def test_empty_file_is_refused(tmp_path, kind, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CatalogFormatError) as info:
        _read(kind, path)
    message = str(info.value)
    _assert_names(message, name)
    assert "is empty" in message
    assert "its columns are: ." not in message


@pytest.mark.parametrize(
    ("kind", "header"),
    [("gz2", "dr7objid,ra,dec,gz2_class"), ("efigi", "PGCname,T,T_inf,T_sup"),
     ("na10", "JID,RAdeg,DEdeg,TType")],  # fmt: skip
)
def test_header_only_file_is_refused(tmp_path, kind, header):
    path = tmp_path / "header.csv"
    path.write_text(header + "\n")
    with pytest.raises(CatalogFormatError) as info:
        _read(kind, path)
    _assert_names(str(info.value), "header.csv", "no data rows")


@pytest.mark.parametrize("kind", ["gz2", "efigi", "na10"])
def test_empty_table_is_refused(kind):
    make = {"gz2": _gz2_main, "efigi": _efigi, "na10": _na10}[kind]
    with pytest.raises(CatalogFormatError, match="the given table has no data rows"):
        _read(kind, make(2)[:0])


@pytest.mark.parametrize(
    ("reader", "source", "hint"),
    [
        (read_gz2, "efigi_csv", "read_efigi"),
        (read_na10, "efigi_csv", "read_efigi"),
        (read_efigi, "gz2", "read_gz2"),
        (read_na10, "gz2", "read_gz2"),
        (read_efigi, "na10_csv", "read_na10"),
        (read_gz2, "na10_csv", "read_na10"),
        (read_gz2, "efigi_txt", "read_efigi"),
        (read_na10, "efigi_txt", "read_efigi"),
        (read_gz2, "na10_dat", "read_na10"),
        (read_efigi, "na10_dat", "read_na10"),
    ],
)
def test_file_of_another_catalog_says_which_reader_to_use(tmp_path, reader, source, hint):
    if source == "efigi_csv":
        path = tmp_path / "efigi.csv"
        Table.read(EFIGI_SUBSET, format="ascii.basic", comment="#", guess=False).write(path)
    elif source == "na10_csv":
        path = tmp_path / "na10.csv"
        raw = Table.read(NA10_DAT, format="ascii.cds", readme=NA10_README)
        raw.rename_column("JID", "objID")  # a VizieR export naming its id objID
        raw.write(path)
    elif source == "efigi_txt":
        path = EFIGI_SUBSET
    elif source == "na10_dat":
        path = NA10_DAT
    else:
        path = GZ2_SUBSET
    with pytest.raises(CatalogFormatError) as info:
        reader(path)
    _assert_names(str(info.value), path.name, hint)
    assert len(str(info.value)) < 1200


def test_efigi_output_given_to_read_na10_is_refused(tmp_path):
    # read_efigi's output has an 'objid' and a 'T' column, both of which
    # read_na10 would accept; EFIGI's T is not an NA10 TType code.
    path = tmp_path / "efigi_out.fits"
    read_efigi(_efigi(3)).write(path)
    with pytest.raises(CatalogFormatError) as info:
        read_na10(path)
    _assert_names(str(info.value), "efigi_out.fits", "read_efigi")


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("reader", ["efigi", "gz2"])
def test_stray_quote_does_not_lose_rows(tmp_path, reader, compress):
    import gzip

    from galmorphsearch import catalogs

    if reader == "efigi":
        text = ('PGCname,T,T_inf,T_sup\nPGC0000212,1,0,2\n"PGC0000213,-5,-5,-5\n'
                'PGC0000214,1,0,2\nPGC0000215,4,3,5\n')
    else:
        text = ('dr7objid,ra,dec,gz2_class\n1,10.0,0.1,Sb\n2,10.1,0.2,"Sc\n'
                '3,10.2,0.3,Er\n4,10.3,0.4,Ei\n')
    path = tmp_path / ("cat.csv.gz" if compress else "cat.csv")
    data = text.encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(CatalogFormatError, match="line 3 has an unbalanced double quote"):
        getattr(catalogs, f"read_{reader}")(path)


def test_quotes_in_comments_and_balanced_fields_are_fine(tmp_path):
    from galmorphsearch import catalogs
    from galmorphsearch.catalogs._io import _check_balanced_quotes

    path = tmp_path / "cat.csv"
    path.write_text('PGCname,T,T_inf,T_sup\n"PGC0000212",1,0,2\nPGC0000214,1,0,2\n')
    assert len(catalogs.read_efigi(path)) == 2
    commented = tmp_path / "commented.txt"
    commented.write_text('# aperture 5" wide\nPGCname T\nPGC0000212 1\n')
    _check_balanced_quotes(commented, "a table")  # no error: the quote is in a comment
