# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
EFIGI catalog reader (Baillard et al. 2011, A&A 532, A74).

The EFIGI attribute file (``EFIGI_attributes.txt``, version 1.6.2, or its CSV
copy) holds the PGC name, the EFIGI morphological type T (-6..11) with its
confidence bounds T_inf/T_sup, and 16 visual attributes with bounds. It has
no coordinates: ``ra``/``dec`` are masked unless a coordinates table is
given.
"""

import re
import warnings

import numpy as np
from astropy.table import Column, MaskedColumn

from ..utils.exceptions import CatalogFormatError, CatalogWarning
from ._io import (
    add_standard_columns,
    check_ids,
    check_unique,
    coordinate_column,
    describe_rows,
    describe_source,
    find_column,
    guess_format,
    in_source,
    integer_codes,
    read_table,
    require_column,
    to_str_array,
)
from .schemes import EFIGI_SCHEME, EFIGI_TTYPES

__all__ = ["read_efigi"]

EFIGI_REFERENCE = "Baillard et al. 2011, A&A 532, A74"
_T_COLUMNS = ("T", "T_inf", "T_sup")
_EFIGI_EXPECTED = (
    "the EFIGI attribute table (EFIGI_attributes.txt: whitespace-separated columns "
    "PGCname T T_inf T_sup ... with '#' comments, or a CSV/FITS copy)"
)


def _pgc_number(names):
    """PGC numbers (int, -1 where unknown) from 'PGC0000212', 'PGC 212', 212, ..."""
    out = np.full(len(names), -1, dtype=np.int64)
    for i, name in enumerate(to_str_array(names)):
        match = re.fullmatch(r"(?:PGC)?\s*0*(\d+)", name, flags=re.IGNORECASE)
        if match:
            out[i] = int(match.group(1))
    return out


def _pgc_keys(names):
    """What makes two PGC names the same galaxy: the PGC number, else the stripped name."""
    numbers = _pgc_number(names)
    strings = to_str_array(names)
    return np.array(
        [f"PGC{k}" if k >= 0 else f"name:{t}" for k, t in zip(numbers, strings, strict=True)]
    )


def _efigi_names(table, column, where):
    """EFIGI type names of a T column (masked where blank), and the blank rows."""
    codes, blank = integer_codes(
        table,
        column,
        where=where,
        catalog="EFIGI",
        allowed=EFIGI_TTYPES,
        explain="outside the EFIGI range -6..11",
        what="T value",
    )
    names = np.array(
        ["" if b else EFIGI_TTYPES[int(c)] for c, b in zip(codes, blank, strict=True)],
        dtype="U3",
    )
    return np.ma.MaskedArray(names, mask=blank), blank


def read_efigi(source, *, coordinates=None, mask_undetermined=True, format=None):
    """
    Read the EFIGI catalog of galaxy attributes.

    Parameters
    ----------
    source : str, path-like or `~astropy.table.Table`
        ``EFIGI_attributes.txt`` (the published whitespace-separated text
        with ``#`` comments), its CSV copy, any table `Table.read` reads with
        the same columns, or a Table.
    coordinates : `~astropy.table.Table`, optional
        Positions to attach: a table with a PGC identifier column (``PGCname``,
        ``objid``, ``PGC`` or ``pgc``; ``'PGC0000212'`` or ``212``) and ``ra``
        and ``dec`` in degrees (or ``RAdeg``/``DEdeg``, ``RAJ2000``/``DEJ2000``).
        Galaxies not in it keep masked coordinates.
    mask_undetermined : bool, optional
        Mask the attribute values of -1, which EFIGI uses for "undetermined"
        (default `True`). The T columns are never masked: T = -1 is S0+.
    format : str, optional
        Astropy table format; by default ``ascii.csv`` for ``.csv`` files,
        ``fits`` for FITS and the EFIGI text layout otherwise.

    Returns
    -------
    table : `~astropy.table.Table`
        ``objid`` (the PGC name, a string), ``ra``, ``dec`` (deg; masked
        without ``coordinates``), ``morphology`` (EFIGI type name from T),
        ``type_index`` (T + 6), then the catalog's columns, with
        ``morphology_inf`` and ``morphology_sup`` (type names of T_inf and
        T_sup) after ``T_sup``.

    Raises
    ------
    CatalogFormatError
        If the file cannot be read, is empty or has no data rows, or lacks
        ``PGCname``, ``T``, ``T_inf`` or ``T_sup``; if a PGC name is blank or
        appears twice (``'PGC 212'`` and ``'PGC0000212'`` are the same); if
        a T column holds text, an infinity or a non-integer value (3.5); or
        if ``coordinates`` lacks an identifier or position, repeats a PGC
        number or holds positions that are not numbers. Messages name the
        file (or "the given table"), the column and the table rows, counted
        from 0 over the data rows.
    UnknownMorphologyError
        If a T value lies outside -6..11.

    Warns
    -----
    CatalogWarning
        When a T, T_inf or T_sup value is blank (the row gets no
        ``morphology``, resp. ``morphology_inf``/``morphology_sup``: masked;
        ``meta['NOMORPH']`` counts the rows without ``morphology``), and when
        ``coordinates`` holds ``ra`` or ``dec`` that are blank, not finite or
        outside [0, 360] or [-90, 90] degrees (those values are masked).

    Examples
    --------
    >>> from astropy.table import Table
    >>> from galmorphsearch.catalogs import read_efigi
    >>> t = Table({'PGCname': ['PGC0000212', 'PGC0001309'], 'T': [1, -5],
    ...            'T_inf': [0, -5], 'T_sup': [2, -5]})
    >>> cat = read_efigi(t)
    >>> cat['morphology'].tolist(), cat['morphology_inf'].tolist(), cat['type_index'].tolist()
    (['Sa', 'E'], ['S0a', 'E'], [7, 1])
    """
    if hasattr(source, "colnames"):
        kwargs = {}
    else:
        fmt = format or guess_format(source)
        if fmt is None:
            kwargs = {"format": "ascii.basic", "comment": "#", "guess": False}
        else:
            kwargs = {"format": fmt}
    table = read_table(
        source, "EFIGI attribute table", expected=_EFIGI_EXPECTED, kind="efigi", **kwargs
    )
    where = describe_source(source)

    pgc = require_column(table, ["PGCname"], "PGCname", "EFIGI", source=where)
    for col in _T_COLUMNS:
        require_column(table, [col], col, "EFIGI", source=where)
    pgcnames = check_ids(table, pgc, where=where, catalog="EFIGI", keys=_pgc_keys(table[pgc]))
    morph, blank = _efigi_names(table, "T", where)
    inf, blank_inf = _efigi_names(table, "T_inf", where)
    sup, blank_sup = _efigi_names(table, "T_sup", where)
    n = len(table)
    for col, rows, result in (
        ("T", blank, "no morphology"),
        ("T_inf", blank_inf, "no morphology_inf"),
        ("T_sup", blank_sup, "no morphology_sup"),
    ):
        if rows.any():
            msg = (
                f"{int(rows.sum())} of {n} EFIGI rows{in_source(where)} have a blank {col!r} "
                f"and {result} (masked): {describe_rows(np.flatnonzero(rows))}."
            )
            warnings.warn(msg, CatalogWarning, stacklevel=2)

    if mask_undetermined:
        for name in table.colnames:
            col = table[name]
            if name in _T_COLUMNS or name == pgc or col.dtype.kind not in "if":
                continue
            undetermined = np.ma.getdata(col) == -1
            if undetermined.any():
                mask = np.ma.getmaskarray(col) | undetermined
                table[name] = MaskedColumn(np.ma.getdata(col), name=name, mask=mask, unit=col.unit)

    pos = table.colnames.index("T_sup") + 1
    table.add_column(MaskedColumn(inf, name="morphology_inf"), index=pos)
    table.add_column(MaskedColumn(sup, name="morphology_sup"), index=pos + 1)

    objid = Column(pgcnames, name="objid", description="PGC name")
    if coordinates is None:
        ra = coordinate_column(table, [], "ra")
        dec = coordinate_column(table, [], "dec")
        coords_note = "none (EFIGI has no positions)"
    else:
        ra, dec = _join_coordinates(table[pgc], coordinates)
        coords_note = f"joined on PGC for {int((~ra.mask).sum())} rows"
    add_standard_columns(table, objid, ra, dec, morph, EFIGI_SCHEME)
    version = [c for c in table.meta.pop("comments", []) if "version" in c.lower()]
    if version:
        table.meta["FILEVER"] = version[0].strip(" :")
    table.meta.update(
        {
            "CATALOG": "EFIGI",
            "SCHEME": EFIGI_SCHEME.name,
            "REF": EFIGI_REFERENCE,
            "MORPHSRC": "T (type_index = T + 6)",
            "COORDS": coords_note,
            "NOMORPH": int(blank.sum()),
        }
    )
    return table


def _join_coordinates(pgcnames, coordinates):
    if not hasattr(coordinates, "colnames"):
        msg = f"coordinates must be an astropy Table, got {type(coordinates).__name__}."
        raise TypeError(msg)
    idcol = require_column(
        coordinates, ["PGCname", "objid", "PGC", "pgc"], "PGC identifier", "coordinates"
    )
    where = "the coordinates table"
    # Two positions for one galaxy: which one is right cannot be told. Rows
    # whose identifier is not a PGC number match nothing and are left alone.
    numbers = _pgc_number(coordinates[idcol])
    keys = np.array([f"PGC{k}" if k >= 0 else f"row:{i}" for i, k in enumerate(numbers)])
    check_unique(to_str_array(coordinates[idcol]), f"Column {idcol!r} of {where}", keys=keys)
    cra = coordinate_column(
        coordinates, ["ra", "RAdeg", "RAJ2000", "_RAJ2000"], "ra", "EFIGI coordinates", where
    )
    cdec = coordinate_column(
        coordinates, ["dec", "DEdeg", "DEJ2000", "_DEJ2000"], "dec", "EFIGI coordinates", where
    )
    if cra.mask.all() or cdec.mask.all():
        if find_column(coordinates, ["ra", "RAdeg", "RAJ2000", "_RAJ2000"]) is None:
            msg = "The coordinates table has no ra (or RAdeg/RAJ2000) column."
            raise CatalogFormatError(msg)
        if find_column(coordinates, ["dec", "DEdeg", "DEJ2000", "_DEJ2000"]) is None:
            msg = "The coordinates table has no dec (or DEdeg/DEJ2000) column."
            raise CatalogFormatError(msg)
    lookup = {}
    for k, number in enumerate(_pgc_number(coordinates[idcol])):
        if number >= 0:
            lookup.setdefault(number, k)
    rows = np.array([lookup.get(n, -1) for n in _pgc_number(pgcnames)], dtype=np.int64)
    found = rows >= 0
    take = np.where(found, rows, 0)
    n = len(rows)
    ra = MaskedColumn(
        np.where(found, np.ma.getdata(cra)[take], 0.0) if len(cra) else np.zeros(n),
        name="ra",
        mask=~found | (cra.mask[take] if len(cra) else True),
        unit=cra.unit,
    )
    dec = MaskedColumn(
        np.where(found, np.ma.getdata(cdec)[take], 0.0) if len(cdec) else np.zeros(n),
        name="dec",
        mask=~found | (cdec.mask[take] if len(cdec) else True),
        unit=cdec.unit,
    )
    return ra, dec
