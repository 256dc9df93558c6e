# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the EFIGI reader."""

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.catalogs import EFIGI_SCHEME, EFIGI_TTYPES, read_efigi
from galmorphsearch.utils.exceptions import (
    CatalogFormatError,
    CatalogWarning,
    UnknownMorphologyError,
)

DATA = Path(__file__).parent / "data" / "catalogs"
SUBSET = DATA / "efigi_attributes_subset.txt"



def _raw_rows(path):
    """PGC name and T read straight from the text, without astropy."""
    rows = []
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    header = lines[0].split()
    for line in lines[1:]:
        fields = line.split()
        rows.append((fields[0], int(fields[1]), int(fields[2]), int(fields[3]),
                     float(fields[header.index("Arm_Strength")])))  # fmt: skip
    return rows


@pytest.fixture(scope="module")
def subset():
    return read_efigi(SUBSET)


def test_read_text_subset(subset):
    raw = _raw_rows(SUBSET)
    assert len(subset) == len(raw)
    assert subset.colnames[:5] == ["objid", "ra", "dec", "morphology", "type_index"]
    for row, (pgc, t, tinf, tsup, arm) in zip(subset, raw, strict=True):
        assert row["objid"] == pgc
        assert row["T"] == t
        assert row["morphology"] == EFIGI_TTYPES[t]
        assert row["type_index"] == t + 6
        assert row["morphology_inf"] == EFIGI_TTYPES[tinf]
        assert row["morphology_sup"] == EFIGI_TTYPES[tsup]
        assert (row["Arm_Strength"] is np.ma.masked) == (arm == -1)
    assert set(subset["morphology"]) == set(EFIGI_SCHEME.types)
    assert subset["ra"].mask.all() and subset["dec"].mask.all()
    assert subset["ra"].unit == "deg"
    i = subset.colnames.index("T_sup")
    assert subset.colnames[i + 1 : i + 3] == ["morphology_inf", "morphology_sup"]
    assert subset.meta["CATALOG"] == "EFIGI"
    assert "1.6.2" in subset.meta["FILEVER"]
    assert "comments" not in subset.meta


def test_s0plus_is_not_masked(subset):
    s0p = subset[subset["T"] == -1]
    assert len(s0p) > 0
    assert set(s0p["morphology"]) == {"S0+"}


def test_keep_undetermined():
    cat = read_efigi(SUBSET, mask_undetermined=False)
    assert not getattr(cat["Arm_Strength"], "mask", np.array(False)).any()
    assert (cat["Arm_Strength"] == -1).any()


def test_csv_and_table_input(tmp_path, subset):
    raw = Table.read(SUBSET, format="ascii.basic", comment="#", guess=False)
    path = tmp_path / "efigi.csv"
    raw.write(path, format="ascii.csv")
    cat = read_efigi(path)
    assert cat["morphology"].tolist() == subset["morphology"].tolist()
    cat2 = read_efigi(raw)
    assert cat2["objid"].tolist() == subset["objid"].tolist()
    assert "objid" not in raw.colnames


def test_coordinates_join(subset):
    coords = Table({"PGC": [212, 218, 999999999], "RAdeg": [1.5, 2.5, 3.5],
                    "DEdeg": [-1.0, 2.0, 3.0]})  # fmt: skip
    cat = read_efigi(SUBSET, coordinates=coords)
    assert cat["ra"][0] == 1.5 and cat["dec"][1] == 2.0
    assert cat["ra"].mask.sum() == len(cat) - 2
    assert "2 rows" in cat.meta["COORDS"]
    named = Table({"PGCname": ["PGC0000243"], "ra": [10.0], "dec": [20.0]})
    cat = read_efigi(SUBSET, coordinates=named)
    assert cat["ra"][cat["objid"] == "PGC0000243"][0] == 10.0
    with pytest.raises(CatalogFormatError, match="PGC identifier"):
        read_efigi(SUBSET, coordinates=Table({"name": ["x"], "ra": [1.0], "dec": [1.0]}))
    with pytest.raises(CatalogFormatError, match="dec"):
        read_efigi(SUBSET, coordinates=Table({"PGC": [212], "ra": [1.0]}))


def test_bad_inputs(tmp_path):
    t = Table({"PGCname": ["PGC1"], "T": [12], "T_inf": [11], "T_sup": [12]})
    with pytest.raises(UnknownMorphologyError, match=r"\[12\]"):
        read_efigi(t)
    t = Table({"PGCname": ["PGC1"], "T": [1], "T_inf": [0]})
    with pytest.raises(CatalogFormatError, match="T_sup"):
        read_efigi(t)
    path = tmp_path / "gz2.csv"
    Table({"objid": [1], "ra": [1.0]}).write(path, format="ascii.csv")
    with pytest.raises(CatalogFormatError, match="PGCname"):
        read_efigi(path)
    garbage = tmp_path / "efigi.txt"
    garbage.write_text("PGCname T\nPGC1 1 2 3\n")
    with pytest.raises(CatalogFormatError, match="efigi.txt"):
        read_efigi(garbage)


def test_full_efigi_files(shared_data):
    txt = shared_data / "efigi-attributes" / "EFIGI_attributes.txt"
    csv = shared_data / "efigi-attributes" / "EFIGI_attributes.csv"
    a = read_efigi(txt)
    b = read_efigi(csv)
    assert len(a) == len(b) == 4458
    assert a["morphology"].tolist() == b["morphology"].tolist()
    assert set(a["morphology"]) == set(EFIGI_SCHEME.types)
    assert np.all(a["type_index"] == a["T"] + 6)
    assert np.all(a["T_inf"] <= a["T"]) and np.all(a["T"] <= a["T_sup"])


def test_other_catalog_file_gives_short_message():
    # The GZ2 table (a compressed CSV) is not the EFIGI table: the message says
    # so, naming the file, instead of an error from astropy's C parser.
    gz2 = DATA / "gz2_table5_stripe82_subset.csv.gz"
    with pytest.raises(CatalogFormatError) as info:
        read_efigi(gz2)
    message = str(info.value)
    assert "gz2_table5_stripe82_subset.csv.gz" in message
    assert "PGCname" in message
    assert "chr()" not in message
    assert len(message) < 400



def test_out_of_range_coordinates_are_masked_with_a_warning():
    coords = Table({"PGC": [212, 1309], "ra": [400.0, 10.0], "dec": [5.0, -95.0]})
    with pytest.warns(CatalogWarning) as record:
        cat = read_efigi(SUBSET, coordinates=coords)
    messages = " | ".join(str(w.message) for w in record)
    assert "ra outside [0, 360] deg" in messages and "dec outside [-90, 90] deg" in messages
    assert np.all(cat["ra"].mask | (cat["ra"].filled(0) <= 360))
    assert np.all(cat["dec"].mask | (np.abs(cat["dec"].filled(0)) <= 90))
