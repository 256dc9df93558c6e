# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the Nair & Abraham (2010) reader on tables written in the CDS/VizieR format."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.catalogs import NA10_SCHEME, NA10_TTYPE_NAMES, NA10_TYPE_MAP, read_na10
from galmorphsearch.utils.exceptions import (
    CatalogFormatError,
    CatalogWarning,
    UnknownMorphologyError,
)

CDS = Path(__file__).parent / "data" / "catalogs" / "na10"


@pytest.fixture(scope="module")
def cds():
    with pytest.warns(CatalogWarning, match="3 of 19"):
        return read_na10(CDS / "table2.dat", readme=CDS / "ReadMe")


def test_read_cds(cds):
    assert cds.colnames[:6] == ["objid", "ra", "dec", "morphology", "type_index", "na10_type"]
    assert cds["objid"][0] == "J080000.00-013000.0"
    assert cds["ra"].unit == "deg"
    np.testing.assert_allclose(cds["ra"][0], 120.0)
    assert "TType" in cds.colnames and "Bar" in cds.colnames
    assert set(cds["morphology"].compressed()) == set(NA10_SCHEME.types)
    for row in cds:
        if row["TType"] is np.ma.masked or NA10_TYPE_MAP[NA10_TTYPE_NAMES[row["TType"]]] is None:
            assert row["morphology"] is np.ma.masked
            assert row["type_index"] is np.ma.masked
        else:
            name = NA10_TTYPE_NAMES[row["TType"]]
            assert row["na10_type"] == name
            assert row["morphology"] == NA10_TYPE_MAP[name]
            assert row["type_index"] == NA10_SCHEME.index(NA10_TYPE_MAP[name])
    assert cds.meta["CATALOG"] == "NA10" and cds.meta["NOMORPH"] == 3


def test_type_index_follows_ttype(cds):
    ok = ~cds["morphology"].mask
    ttype = np.asarray(cds["TType"][ok])
    index = np.asarray(cds["type_index"][ok])
    order = np.argsort(ttype, kind="stable")
    assert np.all(np.diff(index[order]) >= 0)


def test_readme_found_beside_dat(tmp_path, cds):
    shutil.copy(CDS / "table2.dat", tmp_path / "table2.dat")
    with pytest.raises(CatalogFormatError, match="readme"):
        read_na10(tmp_path / "table2.dat")
    shutil.copy(CDS / "ReadMe", tmp_path / "ReadMe")
    with pytest.warns(CatalogWarning):
        cat = read_na10(tmp_path / "table2.dat")
    assert cat["morphology"].tolist() == cds["morphology"].tolist()


@pytest.mark.parametrize("fmt", ["fits", "votable", "csv"])
def test_vizier_exports(tmp_path, fmt):
    raw = Table.read(CDS / "table2.dat", format="ascii.cds", readme=CDS / "ReadMe")
    raw = raw[~raw["TType"].mask]
    path = tmp_path / f"na10.{ {'votable': 'vot', 'fits': 'fits', 'csv': 'csv'}[fmt] }"
    raw.write(path, format={"csv": "ascii.csv"}.get(fmt, fmt))
    with pytest.warns(CatalogWarning, match="2 of 18"):
        cat = read_na10(path)
    assert cat["morphology"][0] == "E"
    assert cat["objid"][0] == "J080000.00-013000.0"


def test_custom_codes_and_map():
    t = Table({"JID": ["a", "b", "c"], "RAJ2000": [1.0, 2.0, 3.0], "DEJ2000": [0.0, 1.0, 2.0],
               "TType": [-6, -5, 10]})  # fmt: skip
    codes = dict(NA10_TTYPE_NAMES)
    codes[-6] = "c0"
    type_map = dict(NA10_TYPE_MAP, c0="E")
    cat = read_na10(t, codes=codes, type_map=type_map)
    assert cat["morphology"].tolist() == ["E", "E", "Sm/Im"]
    assert cat["na10_type"].tolist() == ["c0", "E", "Sm"]
    np.testing.assert_allclose(cat["dec"], [0.0, 1.0, 2.0])


def test_bad_inputs(tmp_path):
    t = Table({"JID": ["a", "b"], "TType": [4, 13]})
    with pytest.raises(UnknownMorphologyError, match=r"\[13\]"):
        read_na10(t)
    with pytest.raises(CatalogFormatError, match="TType"):
        read_na10(Table({"JID": ["a"], "Type": [4]}))
    with pytest.raises(CatalogFormatError, match="JID"):
        read_na10(Table({"TType": [4]}))
    with pytest.raises(UnknownMorphologyError, match="'Sz'"):
        read_na10(Table({"JID": ["a"], "TType": [4]}), type_map=dict(NA10_TYPE_MAP, Sb="Sz"))
    with pytest.raises(UnknownMorphologyError, match="type_map"):
        read_na10(Table({"JID": ["a"], "TType": [4]}), codes={4: "Sbb"})
    with pytest.raises(FileNotFoundError, match="NoReadMe"):
        read_na10(CDS / "table2.dat", readme=tmp_path / "NoReadMe")
    wrong = tmp_path / "ReadMe"
    wrong.write_text("not a CDS ReadMe\n")
    with pytest.raises(CatalogFormatError, match="table2.dat"):
        read_na10(CDS / "table2.dat", readme=wrong)
    # Without coordinates the positions are masked.
    cat = read_na10(Table({"JID": ["a"], "TType": [4]}))
    assert cat["ra"].mask.all()


def test_out_of_range_coordinates_are_masked_with_a_warning():
    t = Table({"JID": ["a", "b", "c"], "RAdeg": [400.0, 10.0, 20.0],
               "DEdeg": [5.0, 100.0, -20.0], "TType": [4, 4, 4]})  # fmt: skip
    with pytest.warns(CatalogWarning) as record:
        cat = read_na10(t)
    messages = " | ".join(str(w.message) for w in record)
    assert "1 of 3 NA10 rows have ra outside [0, 360] deg in column 'RAdeg'" in messages
    assert "1 of 3 NA10 rows have dec outside [-90, 90] deg in column 'DEdeg'" in messages
    assert cat["ra"].mask.tolist() == [True, False, False]
    assert cat["dec"].mask.tolist() == [False, True, False]
    assert cat["RAdeg"][0] == 400.0  # the catalog's own column is kept


def test_unreadable_file_gives_short_message(tmp_path):
    path = tmp_path / "na10.fits"
    path.write_text("JID TType\n")
    with pytest.raises(CatalogFormatError) as info:
        read_na10(path)
    message = str(info.value)
    assert "na10.fits" in message and "Nair & Abraham" in message
    assert "\n" not in message and len(message) < 400
