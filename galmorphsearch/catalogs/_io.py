# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Private helpers shared by the catalog readers."""

import os
import warnings

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table
from astropy.utils.exceptions import AstropyWarning

from ..utils.exceptions import CatalogFormatError

__all__ = []


def read_table(source, what, **kwargs):
    """
    Return a copy of ``source`` as a `~astropy.table.Table`.

    ``source`` is a Table (copied), or a path read with `Table.read` and
    ``kwargs``. Every failure to read becomes a `CatalogFormatError` naming
    the file and the catalog it was meant to be.
    """
    if isinstance(source, Table):
        return Table(source, copy=True, masked=False)
    if not isinstance(source, (str, os.PathLike)):
        msg = (
            f"Expected a file name or an astropy Table for the {what}, got {type(source).__name__}."
        )
        raise TypeError(msg)
    path = os.fspath(source)
    if not os.path.exists(path):
        msg = f"{what} file not found: {path}"
        raise FileNotFoundError(msg)
    try:
        with warnings.catch_warnings():
            # Unit strings or header cards that astropy does not understand are
            # not our business here; they must not turn into errors.
            warnings.simplefilter("ignore", AstropyWarning)
            table = Table.read(path, **kwargs)
    except Exception as exc:  # astropy raises many kinds for a wrong file
        msg = f"Could not read {path!r} as a {what}: {type(exc).__name__}: {exc}"
        raise CatalogFormatError(msg) from exc
    return Table(table, masked=False)


def guess_format(path):
    """Astropy format name for a catalog file, from its extension."""
    name = os.fspath(path).lower()
    for ext in (".gz", ".bz2", ".xz"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    if name.endswith((".fits", ".fit", ".fts")):
        return "fits"
    if name.endswith(".csv"):
        return "ascii.csv"
    if name.endswith((".xml", ".vot", ".votable")):
        return "votable"
    if name.endswith((".ecsv",)):
        return "ascii.ecsv"
    if name.endswith((".h5", ".hdf5")):
        return "hdf5"
    return None


def find_column(table, candidates):
    """First column name of ``candidates`` present in ``table`` (case-insensitive), or None."""
    lower = {name.lower(): name for name in table.colnames}
    for cand in candidates:
        if cand in table.colnames:
            return cand
        if cand.lower() in lower:
            return lower[cand.lower()]
    return None


def require_column(table, candidates, what, catalog):
    """Like `find_column`, but raise `CatalogFormatError` naming the column when absent."""
    name = find_column(table, candidates)
    if name is None:
        msg = (
            f"The {catalog} table has no {what} column (looked for "
            f"{', '.join(repr(c) for c in candidates)}); its columns are: "
            f"{', '.join(table.colnames[:20])}{' ...' if len(table.colnames) > 20 else ''}."
        )
        raise CatalogFormatError(msg)
    return name


def to_str_array(values):
    """Column values as a numpy str array with surrounding blanks removed (bytes decoded)."""
    data = np.ma.getdata(np.ma.asarray(values))
    if data.dtype.kind == "S":
        data = np.char.decode(data, "ascii", errors="replace")
    return np.char.strip(data.astype(str))


def coordinate_column(table, candidates, name):
    """A float column in degrees from the first present candidate, or a fully masked one."""
    col = find_column(table, candidates)
    n = len(table)
    if col is None:
        return MaskedColumn(np.zeros(n), name=name, mask=np.ones(n, dtype=bool), unit=u.deg)
    src = table[col]
    mask = np.ma.getmaskarray(src).copy()
    try:
        values = np.ma.getdata(src).astype(float)
    except (TypeError, ValueError) as exc:
        msg = f"Column {col!r} cannot be read as {name} in degrees: {exc}"
        raise CatalogFormatError(msg) from exc
    if src.unit is not None and src.unit not in (u.deg, u.dimensionless_unscaled):
        try:
            values = (values * src.unit).to_value(u.deg)
        except u.UnitConversionError as exc:
            msg = f"Column {col!r} has unit {src.unit}, which is not an angle."
            raise CatalogFormatError(msg) from exc
    mask |= ~np.isfinite(values)
    return MaskedColumn(values, name=name, mask=mask, unit=u.deg)


def add_standard_columns(table, objid, ra, dec, morphology, scheme):
    """
    Put ``objid, ra, dec, morphology, type_index`` first in ``table``.

    Existing columns of these names are replaced (the catalog's own values
    are what the new columns hold). ``morphology`` is a masked str array.
    """
    morphology = np.ma.asarray(morphology)
    mask = np.ma.getmaskarray(morphology)
    width = max(max(len(t) for t in scheme.types), 1)
    morph = np.where(mask, "", np.ma.getdata(morphology)).astype(f"U{width}")
    index = scheme.indices(np.ma.MaskedArray(morph, mask=mask))
    columns = [
        objid,
        ra,
        dec,
        MaskedColumn(morph, name="morphology", mask=mask, description=f"{scheme.name} type"),
        MaskedColumn(
            np.ma.getdata(index).astype(np.int16),
            name="type_index",
            mask=mask,
            fill_value=-1,
            description=f"position along the {scheme.name} sequence",
        ),
    ]
    for col in columns:
        if col.name in table.colnames:
            table.remove_column(col.name)
    for pos, col in enumerate(columns):
        table.add_column(col, index=pos)
    return table
