# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Private helpers shared by the catalog readers."""

import gc
import gzip
import os
import re
import warnings
import zlib

import numpy as np
from astropy import units as u
from astropy.table import MaskedColumn, Table
from astropy.utils.exceptions import AstropyWarning

from ..utils.exceptions import CatalogFormatError, CatalogWarning, UnknownMorphologyError

__all__ = []


#: Valid ranges of the standard coordinate columns, in degrees.
COORDINATE_RANGES = {"ra": (0.0, 360.0), "dec": (-90.0, 90.0)}
_MAX_REASON = 160
#: How many rows, values or ids a message lists before "... (N in all)".
_MAX_LISTED = 5
#: Where a message names rows, they are counted like this.
ROWS_NOTE = "0-based"
#: Up to this many bytes, a file of blanks only is recognised as empty.
_EMPTY_SNIFF = 1 << 16
#: Vote fractions may exceed [0, 1] by this much (rounding in the published files).
FRACTION_SLACK = 1e-6

#: Catalog kinds: what messages call them and the reader that reads them.
_CATALOG_KINDS = {
    "gz2": ("Galaxy Zoo 2", "read_gz2"),
    "efigi": ("EFIGI", "read_efigi"),
    "na10": ("Nair & Abraham (2010)", "read_na10"),
}
_KIND_OF_CATALOG = {"Galaxy Zoo 2": "gz2", "GZ2": "gz2", "EFIGI": "efigi", "NA10": "na10"}


def describe_source(source):
    """How messages name ``source``: the quoted path, or 'the given table'."""
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    return "the given table"


def in_source(where):
    """`` in 'path'`` for a file, or nothing for a Table (see `describe_source`)."""
    return "" if where in (None, "the given table") else f" in {where}"


def warn_no_morphology(catalog, n_rows, where, missing, reasons, blank, column):
    """
    Warn that the ``missing`` rows have no morphology (they are masked).

    Rows with a code that gives no type are counted by ``reasons`` (their
    codes or why); rows whose ``column`` is blank (``blank``) are listed.
    The warning points at the caller of the reader.
    """
    named = missing & ~blank
    kinds, counts = np.unique(reasons[named], return_counts=True)
    parts = [f"{c} {k}" for k, c in zip(kinds, counts, strict=True)]
    if blank.any():
        parts.append(f"{int(blank.sum())} blank {column!r} at "
                     f"{describe_rows(np.flatnonzero(blank))}")
    msg = (f"{int(missing.sum())} of {n_rows} {catalog} rows{in_source(where)} have no "
           f"morphology (masked): {', '.join(parts)}.")
    warnings.warn(msg, CatalogWarning, stacklevel=3)


def describe_rows(rows, limit=_MAX_LISTED, note=True):
    """
    ``'table rows 1, 3 (0-based)'``: the first ``limit`` of ``rows``.

    Rows are positions in the table read, counted from 0 over the data rows
    only (header, comment and blank lines of a file are not counted).
    """
    rows = np.asarray(rows, dtype=np.int64).ravel()
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    if rows.size > limit:
        shown += f", ... ({rows.size} in all)"
    word = "row" if rows.size == 1 else "rows"
    return f"table {word} {shown}" + (f" ({ROWS_NOTE})" if note else "")


def _show_value(value):
    """A value as a message shows it: numbers plainly, strings quoted."""
    if isinstance(value, (str, np.str_)):
        return repr(str(value))
    if isinstance(value, (bytes, np.bytes_)):
        return repr(value.decode("ascii", errors="replace"))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):g}"
    return str(value)


def describe_values(values, limit=_MAX_LISTED):
    """``'[3.5, 12]'``: the distinct ``values`` in order of appearance, the first few."""
    seen = []
    for v in values:
        key = _show_value(v)
        if key not in seen:
            seen.append(key)
    more = f", ... ({len(seen)} distinct)" if len(seen) > limit else ""
    return "[" + ", ".join(seen[:limit]) + more + "]"


def catalog_kind(table):
    """'gz2', 'efigi' or 'na10' when the columns of ``table`` look like that catalog, else None."""
    names = {name.lower() for name in table.colnames}
    if "pgcname" in names and {"t", "t_inf", "t_sup"} & names:
        return "efigi"
    if "gz2_class" in names or any(n.startswith("t01_smooth_or_features") for n in names):
        return "gz2"
    if names & {"ttype", "jid"}:
        return "na10"
    return None


def other_catalog_hint(table, catalog):
    """`` It looks like the ... catalog: read it with read_...`` for a table of another kind."""
    other = catalog_kind(table)
    if other is None or other == _KIND_OF_CATALOG.get(catalog, catalog):
        return ""
    return _looks_like(other)


def _looks_like(kind):
    name, reader = _CATALOG_KINDS[kind]
    return f" It looks like the {name} catalog: read it with {reader}."


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


def read_table(source, what, expected=None, kind=None, **kwargs):
    """
    Return a copy of ``source`` as a `~astropy.table.Table`.

    ``source`` is a Table (copied), or a path read with `Table.read` and
    ``kwargs``. Every failure to read becomes a `CatalogFormatError` with a
    short message naming the file, what was ``expected`` there (default
    ``'a <what>'``) and the first line of astropy's reason; when the file
    looks like a catalog other than ``kind`` (``'gz2'``, ``'efigi'``,
    ``'na10'``), the message says which reader to use. An empty file, or a
    table without columns or rows, is refused too.
    """
    if isinstance(source, Table):
        table = Table(source, copy=True, masked=False)
        _check_not_empty(table, what, "the given table", expected or f"a {what}")
        return table
    if not isinstance(source, (str, os.PathLike)):
        msg = (
            f"Expected a file name or an astropy Table for the {what}, got {type(source).__name__}."
        )
        raise TypeError(msg)
    path = os.fspath(source)
    if not os.path.exists(path):
        msg = f"{what} file not found: {path}"
        raise FileNotFoundError(msg)
    expected = expected or f"a {what}"
    if _is_blank_file(path):
        msg = f"{path!r} is empty: expected {expected}."
        raise CatalogFormatError(msg)
    msg = None
    try:
        with warnings.catch_warnings():
            # Unit strings or header cards that astropy does not understand are
            # not our business here; they must not turn into errors.
            warnings.simplefilter("ignore", AstropyWarning)
            table = Table.read(path, **kwargs)
    except Exception as exc:  # astropy raises many kinds for a wrong file
        msg = f"Could not read {path!r}: expected {expected}; {_short_reason(exc)}"
        other = _sniff_kind(path)
        if other is not None and other != kind:
            msg = f"{msg.rstrip('.')}.{_looks_like(other)}"
    if msg is not None:
        # astropy's fast ASCII parser leaves the file open when it fails; the
        # handle hangs on the dropped traceback. Close it now, quietly, rather
        # than with a ResourceWarning at some later garbage collection.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        raise CatalogFormatError(msg)
    _check_balanced_quotes(path, expected)
    table = Table(table, masked=False)
    _check_not_empty(table, what, repr(path), expected)
    return table


# First bytes of the binary formats a catalog may come in (FITS, gzip, bzip2,
# HDF5, zip): quotes mean nothing there.
_BINARY_MAGIC = (b"SIMPLE  =", b"\x1f\x8b", b"BZh", b"\x89HDF", b"PK\x03\x04")


def _check_balanced_quotes(path, expected):
    """
    Refuse a text table with a line of unbalanced double quotes.

    A stray ``"`` opens a quoted field that astropy's readers close at the
    next quote, lines later, joining the rows in between into one: the table
    comes back with rows missing and no error. Catalog fields never span
    lines, so a line with an odd number of quotes is an error in the file.
    """
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
        head = f.read(65536)
        if head.startswith(_BINARY_MAGIC) or head.lstrip().startswith(b"<"):
            return  # FITS, compressed, HDF5 or XML (VOTable)
        if b"Byte-by-byte Description" in head:
            return  # CDS/MRT: fixed columns, and '"' means arcseconds in the header
        f.seek(0)
        for number, line in enumerate(f, start=1):
            if line.lstrip().startswith(b"#"):
                continue
            if line.count(b'"') % 2:
                msg = (f"{path!r} line {number} has an unbalanced double quote (\"), which "
                       f"would join the lines after it into one row and lose rows: "
                       f"expected {expected}; correct or remove the quote.")
                raise CatalogFormatError(msg)


#: Text that gives away which catalog a file holds, when astropy cannot read it.
_KIND_MARKERS = (
    ("efigi", re.compile(rb"\bPGCname\b.*\bT_inf\b", re.DOTALL)),
    ("gz2", re.compile(rb"\bt01_smooth_or_features_a0|\bgz2_class\b")),
    ("na10", re.compile(rb"\bTType\b|^J\d{6}\.\d{2}[+-]\d{6}\.\d ", re.MULTILINE)),
)


def _sniff_kind(path):
    """'gz2', 'efigi' or 'na10' from the first bytes of a file astropy could not read."""
    try:
        with open(path, "rb") as f:
            head = f.read(_EMPTY_SNIFF)
        if head[:2] == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                head = f.read(_EMPTY_SNIFF)
    except (OSError, EOFError, zlib.error):
        return None
    for kind, marker in _KIND_MARKERS:
        if marker.search(head):
            return kind
    return None


def _is_blank_file(path):
    """True for a file of no bytes, or of a few blanks and line ends only."""
    try:
        size = os.path.getsize(path)
        if size > _EMPTY_SNIFF:
            return False
        with open(path, "rb") as f:
            return not f.read().strip()
    except OSError:
        return False


def _check_not_empty(table, what, where, expected):
    if not table.colnames:
        msg = f"{where} is empty (no columns): expected {expected}."
        raise CatalogFormatError(msg)
    if len(table) == 0:
        msg = (
            f"Cannot read the {what}: {where} has no data rows (columns "
            f"{', '.join(table.colnames[:4])}{', ...' if len(table.colnames) > 4 else ''})."
        )
        raise CatalogFormatError(msg)


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
        hint = other_catalog_hint(table, catalog)
        shown = 4 if hint else 8
        msg = (
            f"The {catalog} table{where} has no {what} column (looked for "
            f"{', '.join(repr(c) for c in candidates)}); its columns are: "
            f"{', '.join(table.colnames[:shown])}"
            f"{f' ... ({len(table.colnames)} in all)' if len(table.colnames) > shown else ''}."
            f"{hint}"
        )
        raise CatalogFormatError(msg)
    return name


def to_str_array(values):
    """Column values as a numpy str array with surrounding blanks removed (bytes decoded)."""
    data = np.ma.getdata(np.ma.asarray(values))
    if data.dtype.kind == "S":
        data = np.char.decode(data, "ascii", errors="replace")
    return np.char.strip(data.astype(str))


def numeric_values(column):
    """
    Values of a column as floats, whatever the column holds.

    Returns ``(values, blank, notnum)``: ``values`` (float, NaN where
    blank), ``blank`` (masked, empty string, or NaN) and ``notnum`` (a text
    that is not a number, such as ``'Sb'`` or ``'12h30m'``; NaN in
    ``values``). Infinities are kept as they are, for the caller to judge.
    """
    data = np.ma.getdata(column)
    mask = np.ma.getmaskarray(column).copy()
    n = len(data)
    notnum = np.zeros(n, dtype=bool)
    if data.ndim != 1:
        values = np.full(n, np.nan)
        notnum[:] = True
    elif data.dtype.kind in "iuf":
        values = data.astype(float)
    elif data.dtype.kind in "USO":
        strings = to_str_array(data)
        values = np.full(n, np.nan)
        cache = {}
        for i, text in enumerate(strings.tolist()):
            if mask[i] or text == "":
                continue
            if text not in cache:
                try:
                    cache[text] = float(text)
                except ValueError:
                    cache[text] = None
            if cache[text] is None:
                notnum[i] = True
            else:
                values[i] = cache[text]
    else:  # booleans, complex numbers, ...: not values of a catalog column
        values = np.full(n, np.nan)
        notnum[:] = ~mask
    values[mask] = np.nan
    blank = ~notnum & (mask | np.isnan(values))
    return values, blank, notnum


def _shown_texts(column, rows):
    data = np.ma.getdata(column)
    if data.ndim != 1:
        return [f"<{data.dtype} of shape {data.shape[1:]}>"]
    return list(to_str_array(data[rows]))


def integer_codes(table, col, *, where, catalog, allowed, explain, what="code"):
    """
    Integer codes of a morphology column, and which rows are blank.

    ``allowed`` holds the known codes; ``explain`` ends the message of an
    unknown one (e.g. ``'outside the EFIGI range -6..11'``). Blank entries
    (masked, empty or NaN) come back with code 0 and ``blank`` set: the
    reader gives them no morphology and warns.

    Raises
    ------
    CatalogFormatError
        For texts that are not numbers, infinities and non-integer values,
        naming ``where``, the column and the rows.
    UnknownMorphologyError
        For integers not in ``allowed``.
    """
    column = table[col]
    values, blank, notnum = numeric_values(column)
    label = f"{catalog} column {col!r} of {where}"
    with np.errstate(invalid="ignore"):
        fractional = ~blank & ~notnum & np.isfinite(values) & (values != np.round(values))
    integers = f"expected integer {what}s."
    # The first kind of bad value found is reported, in this order.
    for bad, kind, shown, tail in (
            (notnum, "non-numeric", lambda r: _shown_texts(column, r), integers),
            (~blank & np.isinf(values), "infinite", lambda r: values[r], integers),
            (fractional, "non-integer", lambda r: values[r],
             (f"{catalog} {what}s are integers, and a value between two of them is not "
              "a type."))):
        if bad.any():
            rows = np.flatnonzero(bad)
            msg = (f"{label} holds {kind} {what}(s) {describe_values(shown(rows))} at "
                   f"{describe_rows(rows)}; {tail}")
            raise CatalogFormatError(msg)
    known = np.isin(values, np.asarray(sorted(allowed), dtype=float))
    unknown = ~blank & ~known
    if unknown.any():
        rows = np.flatnonzero(unknown)
        msg = (
            f"{label} holds {what}(s) {describe_values(np.unique(values[rows]))} at "
            f"{describe_rows(rows)}, {explain}."
        )
        raise UnknownMorphologyError(msg)
    codes = np.where(blank, 0, values).astype(np.int64)
    return codes, blank


def check_ids(table, col, *, where, catalog, keys=None):
    """
    The object ids of column ``col``, refused when blank or duplicated.

    Integer ids stay integers (floats are accepted only when they are
    integers that a float holds exactly, below 2**53); other ids become
    stripped strings. ``keys`` (one per row) decides what counts as the
    same id when that is not the value itself (``'PGC 212'`` and
    ``'PGC0000212'``).

    Raises
    ------
    CatalogFormatError
        Naming ``where``, the column, the offending ids and their rows.
    """
    column = table[col]
    label = f"{catalog} column {col!r} of {where}"
    data = np.ma.getdata(column)
    mask = np.ma.getmaskarray(column).copy()
    if data.ndim != 1:
        msg = f"{label} holds arrays of shape {data.shape[1:]}, not one object id per row."
        raise CatalogFormatError(msg)
    if data.dtype.kind == "f":
        mask |= ~np.isfinite(data)
        with np.errstate(invalid="ignore"):
            fractional = ~mask & (data != np.round(data))
            inexact = ~mask & ~fractional & (np.abs(data) > 2.0**53)
        if fractional.any():
            rows = np.flatnonzero(fractional)
            msg = (
                f"{label} holds non-integer object id(s) {describe_values(data[rows])} at "
                f"{describe_rows(rows)}."
            )
            raise CatalogFormatError(msg)
        if inexact.any():
            rows = np.flatnonzero(inexact)
            msg = (
                f"{label} holds floating-point object ids above 2**53 (e.g. "
                f"{float(data[rows[0]]):.17g} at {describe_rows(rows[:1])}), which a float "
                "cannot hold exactly: the ids are already altered. Write them as 64-bit "
                "integers (or strings)."
            )
            raise CatalogFormatError(msg)
        values = np.where(mask, 0, data).astype(np.int64)
    elif data.dtype.kind in "iu":
        values = data
    else:
        values = to_str_array(data)
        mask |= values == ""
    if mask.any():
        rows = np.flatnonzero(mask)
        msg = f"{label} has blank object id(s) at {describe_rows(rows)}; every row needs an id."
        raise CatalogFormatError(msg)
    check_unique(values, label, keys=keys)
    return values


def check_unique(values, label, keys=None):
    """
    Raise `CatalogFormatError` when ``keys`` (default ``values``) repeat.

    The message starts with ``label`` (e.g. ``"EFIGI column 'PGCname' of
    'x.txt'"``) and shows the ids (from ``values``) of the first few
    duplicates with their rows.
    """
    keys = np.asarray(values if keys is None else keys)
    if keys.size == 0:
        return
    _, first, inverse, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    inverse = np.ravel(inverse)
    dup = np.flatnonzero(counts > 1)
    if dup.size:
        dup = dup[np.argsort(first[dup], kind="stable")]
        shown = 3
        parts = []
        for code in dup[:shown]:
            rows = np.flatnonzero(inverse == code)
            parts.append(f"{_show_value(values[rows[0]])} at {describe_rows(rows, note=False)}")
        more = f"; ... ({dup.size} in all)" if dup.size > shown else ""
        msg = (
            f"{label} has {dup.size} duplicated id(s): {'; '.join(parts)}{more} (rows are "
            f"{ROWS_NOTE} table rows); each row must be a different galaxy."
        )
        raise CatalogFormatError(msg)


def coordinate_column(table, candidates, name, catalog="catalog", where=None):
    """
    A float column in degrees from the first present candidate, or a fully masked one.

    Values outside the valid range of ``name`` (`COORDINATE_RANGES`: ra in
    [0, 360], dec in [-90, 90] degrees) and values that are blank, NaN or
    infinite are a problem of the data, not of the file: they are masked,
    with a `CatalogWarning` saying how many and at which rows. Texts that
    are not numbers (``'12h30m'``) raise `CatalogFormatError`. ``where``
    (see `describe_source`) names the table in messages.
    """
    col = find_column(table, candidates)
    n = len(table)
    if col is None:
        return MaskedColumn(np.zeros(n), name=name, mask=np.ones(n, dtype=bool), unit=u.deg)
    src = table[col]
    of_where = f" of {where}" if where else ""
    values, blank, notnum = numeric_values(src)
    if notnum.any():
        rows = np.flatnonzero(notnum)
        msg = (
            f"{catalog} column {col!r}{of_where} cannot be read as {name} in degrees: it holds "
            f"{describe_values(_shown_texts(src, rows))} at {describe_rows(rows)}."
        )
        raise CatalogFormatError(msg)
    if src.unit is not None and src.unit not in (u.deg, u.dimensionless_unscaled):
        try:
            values = (values * src.unit).to_value(u.deg)
        except u.UnitConversionError as exc:
            msg = f"{catalog} column {col!r}{of_where} has unit {src.unit}, which is not an angle."
            raise CatalogFormatError(msg) from exc
    mask = ~np.isfinite(values)
    if mask.any():
        rows = np.flatnonzero(mask)
        msg = (
            f"{rows.size} of {n} {catalog} rows have no usable {name} in column {col!r}"
            f"{in_source(where)} (blank, NaN or infinite) at {describe_rows(rows)}; "
            f"their {name} is masked."
        )
        warnings.warn(msg, CatalogWarning, stacklevel=3)
    if name in COORDINATE_RANGES:
        low, high = COORDINATE_RANGES[name]
        with np.errstate(invalid="ignore"):
            bad = ~mask & ((values < low) | (values > high))
        if bad.any():
            rows = np.flatnonzero(bad)
            msg = (
                f"{rows.size} of {n} {catalog} rows have {name} outside "
                f"[{low:g}, {high:g}] deg in column {col!r}{in_source(where)} at "
                f"{describe_rows(rows)} (values {describe_values(values[rows])}); "
                f"their {name} is masked."
            )
            warnings.warn(msg, CatalogWarning, stacklevel=3)
            mask |= bad
    return MaskedColumn(
        np.where(np.isfinite(values), values, 0.0), name=name, mask=mask, unit=u.deg
    )


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
