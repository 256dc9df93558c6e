# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Nair & Abraham (2010, ApJS 186, 427) catalog reader.

The catalog of 14,034 visually classified SDSS DR4 galaxies is distributed by
CDS/VizieR as J/ApJS/186/427 (a fixed-width ``.dat`` table described by a
``ReadMe``), and can be exported from VizieR as FITS, VOTable or CSV with the
same column names. The morphology comes from the ``TType`` code.

The T-type code table
---------------------
`NA10_TTYPE_NAMES` is the code table as we understand it from the Nair &
Abraham (2010) paper and the VizieR ReadMe notes: -5 for the ellipticals
(c0, E0 and E+ share this code), -3 S0-, -2 S0, 0 S0+, 1 S0/a, 2 Sa, 3 Sab,
4 Sb, 5 Sbc, 6 Sc, 7 Scd, 8 Sd, 9 Sdm, 10 Sm, 11 Im, 12 unsure (``?``) and 99
unclassifiable. It could not be checked against the original ReadMe while
writing this module (no network access): if your copy of the catalog says
otherwise, pass ``codes=`` to `read_na10`.

`NA10_TYPE_MAP` then reduces these names to the 14 types of
`~galmorphsearch.catalogs.NA10_SCHEME`, merging the rare Magellanic types Sm
and Im (our reading of the 14 NA10 classes of Seo et al. 2023; pass
``type_map=`` for another grouping).
"""

import os

import numpy as np
from astropy.table import Column, MaskedColumn

from ..utils.exceptions import CatalogFormatError, UnknownMorphologyError
from ._io import (
    add_standard_columns,
    catalog_kind,
    check_ids,
    coordinate_column,
    describe_source,
    guess_format,
    integer_codes,
    other_catalog_hint,
    read_table,
    require_column,
    warn_no_morphology,
)
from .schemes import NA10_SCHEME

__all__ = ["read_na10", "NA10_TTYPE_NAMES", "NA10_TYPE_MAP"]

NA10_REFERENCE = "Nair & Abraham 2010, ApJS 186, 427 (VizieR J/ApJS/186/427)"

#: NA10 ``TType`` code to the NA10 type name (see the module notes on its source).
NA10_TTYPE_NAMES = {
    -5: "E",
    -3: "S0-",
    -2: "S0",
    0: "S0+",
    1: "S0/a",
    2: "Sa",
    3: "Sab",
    4: "Sb",
    5: "Sbc",
    6: "Sc",
    7: "Scd",
    8: "Sd",
    9: "Sdm",
    10: "Sm",
    11: "Im",
    12: "?",
    99: "unclassifiable",
}

#: NA10 type name to a type of `NA10_SCHEME` (`None`: no morphology).
NA10_TYPE_MAP = {
    "E": "E",
    "S0-": "S0-",
    "S0": "S0",
    "S0+": "S0+",
    "S0/a": "S0/a",
    "Sa": "Sa",
    "Sab": "Sab",
    "Sb": "Sb",
    "Sbc": "Sbc",
    "Sc": "Sc",
    "Scd": "Scd",
    "Sd": "Sd",
    "Sdm": "Sdm",
    "Sm": "Sm/Im",
    "Im": "Sm/Im",
    "?": None,
    "unclassifiable": None,
}

_ID_COLUMNS = ["JID", "SDSS", "Name", "objID", "dr7objid", "objid"]
_NA10_EXPECTED = (
    "the Nair & Abraham (2010) table: the CDS table2.dat with its ReadMe, or a VizieR "
    "export (FITS, VOTable, CSV) with columns JID and TType"
)
_TTYPE_COLUMNS = ["TType", "T", "T-Type", "Ttype"]


def read_na10(source, *, readme=None, format=None, codes=None, type_map=None):
    """
    Read the Nair & Abraham (2010) catalog.

    Parameters
    ----------
    source : str, path-like or `~astropy.table.Table`
        The CDS data file (``table2.dat``, with ``readme``), a VizieR export
        (FITS, VOTable, CSV) or a Table with the VizieR column names.
    readme : str or path-like, optional
        The CDS ``ReadMe`` describing ``source``. When ``source`` is a
        ``.dat`` file and ``readme`` is not given, a ``ReadMe`` beside it is
        used.
    format : str, optional
        Astropy table format; guessed from the extension by default
        (``ascii.cds`` when a ReadMe is used).
    codes : dict, optional
        ``TType`` code to NA10 type name; default `NA10_TTYPE_NAMES`.
    type_map : dict, optional
        NA10 type name to a type of `NA10_SCHEME` or `None`; default
        `NA10_TYPE_MAP`.

    Returns
    -------
    table : `~astropy.table.Table`
        ``objid`` (``JID``, the SDSS name, or another id column), ``ra``,
        ``dec`` (deg, from ``RAdeg``/``DEdeg`` or ``RAJ2000``/``DEJ2000``),
        ``morphology``, ``type_index``, ``na10_type`` (the NA10 name of the
        code), then the catalog's own columns.

    Raises
    ------
    CatalogFormatError
        If the file cannot be read, is empty or has no data rows, a ``.dat``
        file comes without a ReadMe, or the id or ``TType`` column is
        missing; if an id is blank or appears twice; if ``TType`` holds
        text, an infinity or a non-integer value (3.5); or if ``ra``/``dec``
        hold text that is not a number. Messages name the file (or "the
        given table"), the column and the table rows, counted from 0 over
        the data rows.
    UnknownMorphologyError
        If a ``TType`` code is not in ``codes``, or a name is not in
        ``type_map``.

    Warns
    -----
    CatalogWarning
        When rows have no morphology (blank codes, naming their rows, or
        codes mapped to `None`, such as 12 and 99), and when ``ra`` or
        ``dec`` are blank, not finite or outside [0, 360] or [-90, 90]
        degrees (those values are masked).

    Examples
    --------
    >>> from astropy.table import Table
    >>> from galmorphsearch.catalogs import read_na10
    >>> t = Table({'JID': ['J155341.74-003806.3', 'J094319.11+010023.6'],
    ...            'RAdeg': [238.42, 145.83], 'DEdeg': [-0.64, 1.01], 'TType': [-5, 4]})
    >>> cat = read_na10(t)
    >>> cat['morphology'].tolist(), cat['type_index'].tolist()
    (['E', 'Sb'], [0, 7])
    """
    codes = NA10_TTYPE_NAMES if codes is None else {int(k): v for k, v in codes.items()}
    type_map = NA10_TYPE_MAP if type_map is None else dict(type_map)
    if hasattr(source, "colnames"):
        kwargs = {}
    else:
        path = os.fspath(source)
        if readme is None and format is None and path.lower().endswith(".dat"):
            beside = os.path.join(os.path.dirname(path) or ".", "ReadMe")
            if not os.path.exists(beside):
                msg = (
                    f"{path!r} is a CDS data file; give its byte-by-byte description "
                    "with readme='ReadMe' (none found beside it)."
                )
                raise CatalogFormatError(msg)
            readme = beside
        if readme is not None:
            if not os.path.exists(os.fspath(readme)):
                msg = f"CDS ReadMe file not found: {os.fspath(readme)}"
                raise FileNotFoundError(msg)
            kwargs = {"format": format or "ascii.cds", "readme": os.fspath(readme)}
        else:
            fmt = format or guess_format(path)
            kwargs = {} if fmt is None else {"format": fmt}
    table = read_table(
        source, "Nair & Abraham (2010) table", expected=_NA10_EXPECTED, kind="na10", **kwargs
    )
    where = describe_source(source)

    tcol = require_column(table, _TTYPE_COLUMNS, "TType", "NA10", source=where)
    idcol = require_column(table, _ID_COLUMNS, "object id (JID)", "NA10", source=where)
    if tcol.lower() == "t" and catalog_kind(table) == "efigi":
        # EFIGI's T is another scale (-6..11): read as NA10 codes it would be garbage.
        msg = (
            f"The NA10 table read from {where} has no TType column, and its T column is the "
            f"EFIGI type.{other_catalog_hint(table, 'NA10')}"
        )
        raise CatalogFormatError(msg)
    ids = check_ids(table, idcol, where=where, catalog="NA10")
    codes_int, inmask = integer_codes(
        table,
        tcol,
        where=where,
        catalog="NA10",
        allowed=codes,
        what="code",
        explain=(
            f"which are not NA10 {tcol} codes: the known codes are {sorted(codes)} (pass "
            "codes= to read_na10 for another code table)"
        ),
    )
    bad_names = sorted({str(v) for v in codes.values()} - set(type_map))
    if bad_names:
        msg = f"NA10 type name(s) {bad_names} have no entry in type_map."
        raise UnknownMorphologyError(msg)
    for target in {v for v in type_map.values() if v is not None}:
        NA10_SCHEME.index(target)

    width = max(len(str(v)) for v in codes.values())
    na10 = np.array(
        ["" if m else str(codes[int(c)]) for c, m in zip(codes_int, inmask, strict=True)],
        dtype=f"U{width}",
    )
    morph = np.array(["" if not n else (type_map[n] or "") for n in na10], dtype="U8")
    mask = morph == ""
    morphology = np.ma.MaskedArray(morph, mask=mask)

    objid = Column(ids, name="objid", description=f"NA10 {idcol}")
    ra = coordinate_column(
        table, ["RAdeg", "RAJ2000", "_RAJ2000", "ra", "_RA"], "ra", "NA10", where
    )
    dec = coordinate_column(
        table, ["DEdeg", "DEJ2000", "_DEJ2000", "dec", "_DE"], "dec", "NA10", where
    )
    add_standard_columns(table, objid, ra, dec, morphology, NA10_SCHEME)
    table.add_column(
        MaskedColumn(na10, name="na10_type", mask=na10 == ""),
        index=table.colnames.index("type_index") + 1,
    )
    nomorph = int(mask.sum())
    table.meta.update(
        {
            "CATALOG": "NA10",
            "SCHEME": NA10_SCHEME.name,
            "REF": NA10_REFERENCE,
            "MORPHSRC": tcol,
            "NOMORPH": nomorph,
        }
    )
    if nomorph:
        warn_no_morphology("NA10", len(table), where, mask, na10, inmask, tcol)
    return table
