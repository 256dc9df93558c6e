# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Private helpers shared by the catalog readers."""

import os
import warnings

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table
from astropy.utils.exceptions import AstropyWarning

from ..utils.exceptions import CatalogFormatError, CatalogWarning

__all__ = []


#: Valid ranges of the standard coordinate columns, in degrees.
COORDINATE_RANGES = {"ra": (0.0, 360.0), "dec": (-90.0, 90.0)}
_MAX_REASON = 160


def describe_source(source):
    """How messages name ``source``: the quoted path, or 'the given table'."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return "the given table"


def _short_reason(exc):
    """One short line saying why astropy could not read a file."""
    from astropy.io.registry import IORegistryError

    if isinstance(exc, IORegistryError):
        return "astropy does not recognise its format from the file name or contents"
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_table(source, what, expected=None, **kwargs):
    """
    Return a copy of ``source`` as a `~astropy.table.Table`.

    ``source`` is a Table (copied), or a path read with `Table.read` and
    ``kwargs``. Every failure to read becomes a `CatalogFormatError` with a
    short message naming the file, what was ``expected`` there (default
    ``'a <what>'``) and the first line of astropy's reason.
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
        expected = expected or f"a {what}"
        msg = f"Could not read {path!r}: expected {expected}; {_short_reason(exc)}"
        raise CatalogFormatError(msg) from None
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


def require_column(table, candidates, what, catalog, source=None):
    """
    Like `find_column`, but raise `CatalogFormatError` naming the column when absent.

    ``source`` (see `describe_source`) names where the table came from.
    """
    name = find_column(table, candidates)
    if name is None:
        where = f" read from {source}" if source and source != "the given table" else ""
        msg = (
            f"The {catalog} table{where} has no {what} column (looked for "
            f"{', '.join(repr(c) for c in candidates)}); its columns are: "
            f"{', '.join(table.colnames[:8])}"
            f"{f' ... ({len(table.colnames)} in all)' if len(table.colnames) > 8 else ''}."
        )
        raise CatalogFormatError(msg)
    return name


def to_str_array(values):
    """Column values as a numpy str array with surrounding blanks removed (bytes decoded)."""
    data = np.ma.getdata(np.ma.asarray(values))
    if data.dtype.kind == "S":
        data = np.char.decode(data, "ascii", errors="replace")
    return np.char.strip(data.astype(str))


def coordinate_column(table, candidates, name, catalog="catalog"):
    """
    A float column in degrees from the first present candidate, or a fully masked one.

    Values outside the valid range of ``name`` (`COORDINATE_RANGES`: ra in
    [0, 360], dec in [-90, 90] degrees) are a problem of the data, not of
    the file: they are masked, with a `CatalogWarning` saying how many.
    """
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
    if name in COORDINATE_RANGES:
        low, high = COORDINATE_RANGES[name]
        with np.errstate(invalid="ignore"):
            bad = ~mask & ((values < low) | (values > high))
        if bad.any():
            examples = ", ".join(f"{v:g}" for v in values[bad][:3])
            msg = (
                f"{int(bad.sum())} of {n} {catalog} rows have {name} outside "
                f"[{low:g}, {high:g}] deg in column {col!r} (e.g. {examples}); "
                f"their {name} is masked."
            )
            warnings.warn(msg, CatalogWarning, stacklevel=3)
            mask |= bad
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
