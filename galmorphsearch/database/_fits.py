# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""FITS storage of latent databases: one checksummed binary table HDU."""

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Column, MaskedColumn, Table
from astropy.time import Time

from ..latents import LatentHasher
from ..utils import DatabaseFormatError, atomic_path

__all__ = []

EXTNAME = "LATENTS"
HDUVERS = "1.0"
ORIGIN = "galmorphsearch"

_CHECKSUM_MESSAGES = ("checksum verification failed", "datasum verification failed")

#: About how many bytes of table rows the chunked reader and writer handle at once.
CHUNK_BYTES = 16 * 2**20


def _table_hdu(table, comments=None):
    """The ``LATENTS`` binary table HDU of ``table`` (header comments set)."""
    hdu = fits.table_to_hdu(table)
    hdu.name = EXTNAME
    hdu.header["HDUVERS"] = (HDUVERS, "version of the LATENTS table layout")
    hdu.header["ORIGIN"] = (ORIGIN, "software that wrote this file")
    for key, comment in (comments or {}).items():
        if key in hdu.header:
            # A comment that would not fit in the 80-character card (long
            # version strings, full-precision floats) is shortened rather
            # than left for astropy to truncate with a VerifyWarning.
            card = fits.Card(key, hdu.header[key])
            room = 80 - len(card.image.rstrip()) - 3
            if room >= 8:
                hdu.header.comments[key] = comment if len(comment) <= room else (
                    comment[:room - 3].rstrip() + "...")
    return hdu


def write_fits(table, path, overwrite=False, comments=None):
    """
    Write a database table as the ``LATENTS`` binary table HDU of a FITS file.

    The file is written to a temporary path next to ``path`` and renamed
    into place, so an interrupted write never damages an existing file.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The database table, with flat upper-case ``meta`` keywords.
    path : str or path-like
        Destination file.
    overwrite : bool, optional
        Whether an existing file may be replaced.
    comments : dict, optional
        Header keyword to comment.
    """
    hdulist = fits.HDUList([fits.PrimaryHDU(), _table_hdu(table, comments)])
    with atomic_path(path, overwrite=overwrite) as tmp:
        hdulist.writeto(tmp, checksum=True)


def _format_error(path, reason):
    msg = f"{path} is not a valid galmorphsearch latent database: {reason}"
    return DatabaseFormatError(msg)


_BLOCK = 2880
_SIZE_KEYS = re.compile(rb"(BITPIX|NAXIS\d*|PCOUNT|GCOUNT)")


def fits_truncation(path):
    """
    Where a FITS file is cut short, or None when it is whole.

    The headers are read block by block (the data are skipped): the file is
    truncated when it ends inside a header, inside the data an HDU's header
    announces or inside the padding that completes the last 2880-byte
    block. A file that does not start as FITS is left to astropy.

    Returns
    -------
    reason : str or None
        What is missing, with the file size, e.g. ``'the file has 9000
        bytes but the data of HDU 1 (LATENTS) end at byte 16112'``.
    """
    size = os.path.getsize(path)
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as f:
        offset, index = 0, 0
        while offset < size:
            f.seek(offset)
            values, name, ended = {}, None, False
            while not ended:
                block = f.read(_BLOCK)
                if offset == 0 and not block.startswith(b"SIMPLE  ="):
                    return None
                if len(block) < _BLOCK:
                    return (f"the file has {size} bytes and ends inside the header of HDU "
                            f"{index}")
                offset += _BLOCK
                for start in range(0, _BLOCK, 80):
                    card = block[start:start + 80]
                    key = card[:8].rstrip()
                    if key == b"END":
                        ended = True
                        break
                    if card[8:10] != b"= ":
                        continue
                    if _SIZE_KEYS.fullmatch(key):
                        values[key] = card[10:].split(b"/")[0].strip()
                    elif key == b"EXTNAME":
                        name = card[10:].split(b"/")[0].strip().strip(b"'").strip()
            try:
                naxis = int(values.get(b"NAXIS", b"0"))
                bitpix = int(values[b"BITPIX"])
                pcount = int(values.get(b"PCOUNT", b"0"))
                gcount = int(values.get(b"GCOUNT", b"1"))
                cells = 1
                for axis in range(1, naxis + 1):
                    cells *= int(values[f"NAXIS{axis}".encode()])
            except (KeyError, ValueError):
                return None  # a malformed header: astropy says what is wrong
            nbytes = abs(bitpix) // 8 * gcount * (pcount + cells) if naxis else 0
            what = f"HDU {index}" + (f" ({name.decode('ascii', 'replace')})" if name else "")
            if offset + nbytes > size:
                return (f"the file has {size} bytes but the data of {what} end at byte "
                        f"{offset + nbytes}")
            offset += -(-nbytes // _BLOCK) * _BLOCK
            if offset > size:
                return (f"the file has {size} bytes but the padding after the data of {what} "
                        f"ends at byte {offset}")
            index += 1
    return None


#: The first bytes of the compressed files astropy would decompress by itself.
_COMPRESSED = {b"\x1f\x8b": "gzip", b"\x1f\x9d": "LZW (.Z)", b"BZh": "bzip2",
               b"PK\x03\x04": "zip", b"\xfd7zXZ\x00": "xz"}


def _check_whole(path):
    """
    Raise a `DatabaseFormatError` saying so if the file is truncated, or
    does not start as FITS (a compressed file is named as such: astropy
    would decompress all of it into memory, with no bound on its size).
    """
    reason = fits_truncation(path)
    if reason is not None:
        if reason.startswith("it is empty"):
            raise _format_error(path, reason)
        raise _format_error(path, f"it is truncated ({reason})")
    with open(path, "rb") as f:
        head = f.read(9)
    if head != b"SIMPLE  =":
        kind = next((name for magic, name in _COMPRESSED.items() if head.startswith(magic)),
                    None)
        if kind is not None:
            raise _format_error(path, f"it is a {kind}-compressed file; a database file is "
                                "never compressed: decompress it and read the result")
        raise _format_error(path, "it is neither FITS (it does not start with 'SIMPLE  =') "
                            "nor HDF5")


def _no_latents_hdu(path, hdulist):
    reason = f"it has no {EXTNAME!r} HDU"
    try:
        count = len(hdulist)
    except Exception:  # a broken later HDU
        count = None
    if count == 1:
        reason += (f" (the file, {os.path.getsize(path)} bytes, ends after its primary HDU: "
                   "it is truncated, or not a latent database)")
    return _format_error(path, reason)


def read_fits(path, memmap=False):
    """
    Read the ``LATENTS`` HDU of a database file, verifying its checksums.

    Parameters
    ----------
    path : str or path-like
        The database file.
    memmap : bool, optional
        Memory-map the data instead of reading them into memory.

    Returns
    -------
    table : `~astropy.table.Table`
        The table as stored (latent columns still big-endian).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    DatabaseFormatError
        If the file is not FITS, has no ``LATENTS`` HDU, lacks checksums or
        fails checksum verification.
    """
    path = Path(path)
    if not path.exists():
        msg = f"No latent database file at {path}"
        raise FileNotFoundError(msg)
    _check_whole(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdulist = fits.open(path, checksum=True, memmap=memmap)
        except Exception as exc:  # any failure means a broken file
            raise _format_error(path, f"astropy cannot open it as FITS ({exc})") from exc
        try:
            if EXTNAME not in hdulist:
                raise _no_latents_hdu(path, hdulist)
            hdu = hdulist[EXTNAME]
            if not isinstance(hdu, fits.BinTableHDU):
                raise _format_error(path, f"HDU {EXTNAME!r} is not a binary table")
            missing = [key for key in ("CHECKSUM", "DATASUM") if key not in hdu.header]
            if missing:
                raise _format_error(path, f"HDU {EXTNAME!r} has no {'/'.join(missing)} keyword")
            table = Table.read(hdulist, hdu=EXTNAME, memmap=memmap,
                               mask_invalid=not memmap)
        except DatabaseFormatError:
            hdulist.close()
            raise
        except Exception as exc:  # truncated or garbled data
            hdulist.close()
            raise _format_error(path, f"its {EXTNAME!r} table cannot be read ({exc})") from exc
    failed = [w for w in caught
              if any(text in str(w.message).lower() for text in _CHECKSUM_MESSAGES)]
    if failed:
        hdulist.close()
        raise _format_error(path, "checksum verification failed; the file is corrupted "
                            f"({failed[0].message})")
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not memmap:
        table = Table(table, copy=True)
    # With memmap=True the columns keep the memory map open after this.
    hdulist.close()
    return table


def native_float32(column):
    """A column's values as a native-endian float32 array (a copy only if needed)."""
    if isinstance(column, MaskedColumn):
        column = column.filled(np.nan)
    return np.ascontiguousarray(np.asarray(column, dtype=np.float32))


# ----------------------------------------------------------------------
# float16 storage: FITS binary tables have no 16-bit float type, so the raw
# half-precision bits go in an int16 (``I``) column, without TSCAL/TZERO,
# and the keyword LATTYPE = 'float16' says how to read them.
def fits_latent_column(values, lattype):
    """Latents as the array to store in a FITS column for ``lattype``."""
    if lattype == "float16":
        return to_float16(values).view("<i2")
    return np.ascontiguousarray(values, dtype=np.float32)


def to_float16(values):
    """
    Latents rounded to little-endian float16, refusing values it cannot hold.

    Raises
    ------
    ValueError
        If a value is beyond the float16 range (about 65504), where it
        would become infinite.
    """
    values = np.asarray(values)
    with np.errstate(over="ignore"):
        half = np.ascontiguousarray(values, dtype="<f2")
    if values.dtype != half.dtype:
        overflow = ~np.isfinite(half) & np.isfinite(values)
        if overflow.any():
            rows = np.flatnonzero(overflow.reshape(len(values), -1).any(axis=1))
            msg = (f"Latents of {rows.size} row(s) (first: {rows[:5].tolist()}) exceed the "
                   f"float16 range (|x| <= {float(np.finfo(np.float16).max):g}); store them as "
                   "float32.")
            raise ValueError(msg)
    return half


def lattype_of(header, path):
    """The ``LATTYPE`` of a header (``'float32'`` when absent), checked."""
    lattype = header.get("LATTYPE", "float32")
    if lattype not in ("float32", "float16"):
        raise _format_error(path, f"LATTYPE = {lattype!r} is neither 'float32' nor 'float16'")
    return lattype


# ----------------------------------------------------------------------
# checksums, computed piece by piece
def ones_complement_sum(data, sum32=0):
    """
    Add bytes to a FITS 32-bit ones' complement checksum.

    Parameters
    ----------
    data : bytes-like
        The next bytes; every piece but the last must hold a multiple of 4
        bytes (the last is padded with zeros, as FITS pads the data).
    sum32 : int, optional
        The checksum of the preceding bytes.

    Returns
    -------
    sum32 : int
    """
    data = np.frombuffer(data, dtype=np.uint8)
    total = int(sum32)
    extra = data.size % 4
    if extra:
        total += int.from_bytes(bytes(data[-extra:]) + b"\0" * (4 - extra), "big")
        data = data[:-extra]
    total += int(data.view(">u4").sum(dtype=np.uint64))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


_CHECKSUM_EXCLUDE = frozenset(range(0x3A, 0x41)) | frozenset(range(0x5B, 0x61))


def checksum_string(sum32):
    """The 16-character ``CHECKSUM`` value that makes an HDU sum to -0 (FITS 4.0, J.2)."""
    value = ~int(sum32) & 0xFFFFFFFF
    chars = [0] * 16
    for i in range(4):
        byte = (value >> (8 * (3 - i))) & 0xFF
        quotient, remainder = byte // 4 + ord("0"), byte % 4
        ch = [quotient + remainder, quotient, quotient, quotient]
        changed = True
        while changed:
            changed = False
            for j in (0, 2):
                if ch[j] in _CHECKSUM_EXCLUDE or ch[j + 1] in _CHECKSUM_EXCLUDE:
                    ch[j] += 1
                    ch[j + 1] -= 1
                    changed = True
        for j in range(4):
            chars[4 * j + i] = ch[j]
    return bytes(chars[(i + 15) % 16] for i in range(16)).decode("ascii")


# ----------------------------------------------------------------------
# out-of-core reading
def fits_layout(path):
    """
    Where the columns of a database file lie, from its header only.

    Returns
    -------
    layout : dict
        ``header`` (of the ``LATENTS`` HDU), ``header_offset``,
        ``data_offset``, ``row_bytes``, ``nrows``, ``lattype``, ``lathash``
        (or `None`) and ``columns``: ``{name: (byte offset in the row,
        big-endian dtype of one value, repeat)}`` of the latent columns.
    """
    path = Path(path)
    if not path.exists():
        msg = f"No latent database file at {path}"
        raise FileNotFoundError(msg)
    _check_whole(path)
    try:
        hdulist = fits.open(path, memmap=False, lazy_load_hdus=True, checksum=False)
    except Exception as exc:  # any failure means a broken file
        raise _format_error(path, f"astropy cannot open it as FITS ({exc})") from exc
    with hdulist:
        try:
            index = hdulist.index_of(EXTNAME)
        except KeyError as exc:
            raise _no_latents_hdu(path, hdulist) from exc
        except Exception as exc:  # a broken later HDU
            raise _format_error(path, f"astropy cannot read its HDUs ({exc})") from exc
        hdu = hdulist[index]
        if not isinstance(hdu, fits.BinTableHDU):
            raise _format_error(path, f"HDU {EXTNAME!r} is not a binary table")
        header = hdu.header.copy()
        info = hdulist.fileinfo(index)
        try:
            native = hdu.columns.dtype
        except Exception as exc:  # malformed TFORMs
            raise _format_error(path, f"its {EXTNAME!r} columns are malformed ({exc})") from exc
        columns = {}
        for col in hdu.columns:
            if col.name not in ("latent", "background_latent"):
                continue
            base, shape = native.fields[col.name][0].base, native.fields[col.name][0].shape
            if col.bscale not in (None, 1) or col.bzero not in (None, 0) or len(shape) != 1:
                raise _format_error(path, f"column {col.name!r} is not a plain vector column")
            columns[col.name] = (native.fields[col.name][1], base.newbyteorder(">"), shape[0])
    if header.get("PCOUNT", 0):
        raise _format_error(path, "its table has a heap (variable-length columns), which "
                            "cannot be read out of core; read it with memmap=False")
    nrows, row_bytes = int(header["NAXIS2"]), int(header["NAXIS1"])
    data_offset = int(info["datLoc"])
    if path.stat().st_size < data_offset + nrows * row_bytes:
        raise _format_error(path, "it is truncated (the table data end early)")
    return {"header": header, "header_offset": int(info["hdrLoc"]), "data_offset": data_offset,
            "row_bytes": row_bytes, "nrows": nrows, "lattype": lattype_of(header, path),
            "lathash": header.get("LATHASH"), "columns": columns}


def _chunk_table(header, raw, n):
    """Decode ``n`` raw rows with astropy, as `Table.read` would."""
    header = header.copy()
    header["NAXIS2"] = n
    hdu = fits.BinTableHDU.fromstring(b"".join([header.tostring().encode("ascii"), raw]),
                                      uint=True)
    return Table.read(hdu, mask_invalid=True)


def read_fits_catalog(path, chunk_bytes=None):
    """
    Read the catalog columns of a database file, chunk by chunk.

    One pass over the table data, in pieces of about ``chunk_bytes`` read
    into a reused buffer (no memory map), verifies ``DATASUM`` and
    ``CHECKSUM`` and that the latent columns hold finite values, and
    copies every other column into memory.

    Parameters
    ----------
    path : str or path-like
        The database file.
    chunk_bytes : int, optional
        Bytes read at once; default `CHUNK_BYTES`.

    Returns
    -------
    table : `~astropy.table.Table`
        Every column but ``latent`` and ``background_latent``, strings as
        unicode, with the header keywords in ``meta``.
    layout : dict
        See `fits_layout`; with ``content_lathash``, the ``LATHASH`` of the
        ``latent`` column as read (computed in the same pass).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    DatabaseFormatError
        If the file is not a FITS database, lacks checksums, fails them,
        is truncated or holds NaN or infinite latents.
    """
    path = Path(path)
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    layout = fits_layout(path)
    header = layout["header"].copy()
    missing = [key for key in ("CHECKSUM", "DATASUM") if key not in header]
    if missing:
        raise _format_error(path, f"HDU {EXTNAME!r} has no {'/'.join(missing)} keyword")
    expected_datasum = header["DATASUM"]
    for key in ("CHECKSUM", "DATASUM"):
        header.remove(key)
    row_bytes, nrows = layout["row_bytes"], layout["nrows"]
    lattype = layout["lattype"]
    # Multiples of 4 rows keep every piece of the checksum 4-byte aligned.
    rows = max(4, (chunk_bytes // max(row_bytes, 1)) // 4 * 4)
    raw = bytearray(min(rows, max(nrows, 1)) * row_bytes)
    datasum = 0
    hasher = LatentHasher()
    columns, masks, first = {}, {}, None
    with open(path, "rb", buffering=0) as f:
        f.seek(layout["header_offset"])
        header_bytes = f.read(layout["data_offset"] - layout["header_offset"])
        f.seek(layout["data_offset"])
        for start in range(0, max(nrows, 1), rows):
            n = min(rows, nrows - start)
            view = memoryview(raw)[:n * row_bytes]
            _read_exactly(f, view, path)
            datasum = ones_complement_sum(view, datasum)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    chunk = _chunk_table(header, view, n)
                except Exception as exc:  # garbled data
                    raise _format_error(path, f"its {EXTNAME!r} table cannot be read "
                                        f"({exc})") from exc
            for name in layout["columns"]:
                values = np.asarray(chunk[name])
                if lattype == "float16":
                    values = values.view(">f2")
                if name == "latent":
                    hasher.update(values)
                ok = np.all(np.isfinite(values), axis=1)
                if not ok.all():
                    bad = np.flatnonzero(~ok)
                    objids = list(chunk["objid"][bad[:5]]) if "objid" in chunk.colnames else []
                    raise _format_error(path, f"column {name!r} has NaN or infinite values "
                                        f"(rows {(start + bad[:5]).tolist()}, objid {objids})")
            chunk.remove_columns(list(layout["columns"]))
            chunk.convert_bytestring_to_unicode()
            if first is None:
                first = chunk
                for w in caught:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
                for name in chunk.colnames:
                    col = chunk[name]
                    columns[name] = np.empty((nrows, *col.shape[1:]), dtype=col.dtype)
            for name in chunk.colnames:
                col = chunk[name]
                if isinstance(col, MaskedColumn):
                    mask = masks.setdefault(name, np.zeros(columns[name].shape, dtype=bool))
                    mask[start:start + n] = np.ma.getmaskarray(col)
                columns[name][start:start + n] = np.ma.getdata(col)
    if str(datasum) != str(expected_datasum).strip():
        raise _format_error(path, "checksum verification failed; the file is corrupted "
                            f"(DATASUM {expected_datasum} but the data sum to {datasum})")
    if ones_complement_sum(header_bytes, datasum) != 0xFFFFFFFF:
        raise _format_error(path, "checksum verification failed; the file is corrupted "
                            "(the CHECKSUM of the header does not match)")
    if "latent" in layout["columns"]:
        layout["content_lathash"] = hasher.hexdigest()
    table = Table(meta=first.meta)
    for name in first.colnames:
        proto = first[name]
        attrs = {"name": name, "unit": proto.unit, "description": proto.description,
                 "format": proto.format}
        if name in masks and masks[name].any():
            column = MaskedColumn(columns.pop(name), mask=masks[name], copy=False, **attrs)
        else:
            column = Column(columns.pop(name), copy=False, **attrs)
        table.add_column(column, copy=False)  # table[name] = ... would copy it
    return table, layout


def _read_exactly(f, view, path):
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise _format_error(path, "it is truncated (the table data end early)")
        got += n


# ----------------------------------------------------------------------
# streaming write
def _hdu_data_bytes(hdu):
    """The table data of ``hdu`` exactly as astropy writes them to a file."""
    buffer = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buffer)
    raw = buffer.getvalue()
    size = hdu.header["NAXIS1"] * hdu.header["NAXIS2"]
    padded = size + (-size) % 2880
    return raw[len(raw) - padded:len(raw) - padded + size]


def write_fits_streaming(table, sources, path, overwrite=False, comments=None,
                         lattype="float32", descriptions=None, chunk_bytes=None):
    """
    Write a database whose latents are read from latent sources, in chunks.

    The file is the one `write_fits` writes for the same table (the same
    header and data bytes) but only one chunk of rows is in memory at a
    time: the header is written first with placeholder ``CHECKSUM``,
    ``DATASUM`` and ``LATHASH`` values, the rows follow chunk by chunk (each
    converted by astropy, as `write_fits` would), and the placeholders are
    filled in at the end.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Every column but the latent ones, with the header keywords in
        ``meta``.
    sources : dict
        Column name to `~galmorphsearch.latents.LatentSource`, appended
        after the table's columns in this order.
    path : str or path-like
        Destination file (written atomically).
    overwrite : bool, optional
        Whether an existing file may be replaced.
    comments : dict, optional
        Header keyword to comment.
    lattype : {'float32', 'float16'}, optional
        Stored precision of the latents.
    descriptions : dict, optional
        Column descriptions of the latent columns.
    chunk_bytes : int, optional
        About how many bytes of table rows are converted at once; default
        `CHUNK_BYTES`.

    Returns
    -------
    lathash : str
        The ``LATHASH`` written (of the ``latent`` column).
    """
    chunk_bytes = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    n = len(table)
    for name, source in sources.items():
        if len(source) != n:
            msg = f"The {name!r} source has {len(source)} rows but the table {n}."
            raise ValueError(msg)
    descriptions = descriptions or {}

    def with_latents(rows, latents):
        out = Table(rows, copy=False)
        out.meta = {}
        for name, values in latents.items():
            out[name] = Column(values, name=name, description=descriptions.get(name))
        return out

    template = with_latents(table[:0], {
        name: fits_latent_column(np.zeros((0, s.dim), np.float32), lattype)
        for name, s in sources.items()})
    template.meta = {key: value for key, value in table.meta.items()
                     if key not in ("LATTYPE", "LATHASH")}
    if lattype == "float16":
        template.meta["LATTYPE"] = "float16"
    template.meta["LATHASH"] = "0" * 16
    hdu = _table_hdu(template, comments)
    header = hdu.header
    header["NAXIS2"] = n
    stamp = Time.now().utc.isot[:19]
    header["CHECKSUM"] = ("0" * 16, f"HDU checksum updated {stamp}")
    header["DATASUM"] = ("0", f"data unit checksum updated {stamp}")
    placeholder = header.tostring().encode("ascii")
    primary = fits.PrimaryHDU()
    primary.add_checksum()
    row_bytes = header["NAXIS1"]
    rows = max(4, (chunk_bytes // max(row_bytes, 1)) // 4 * 4)
    forms = [header.get(f"TFORM{i}") for i in range(1, header["TFIELDS"] + 1)]
    hasher = LatentHasher()
    datasum = 0
    with atomic_path(path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
        f.write(primary.header.tostring().encode("ascii"))
        header_offset = f.tell()
        f.write(placeholder)
        chunks = {name: source.iter_chunks(rows) for name, source in sources.items()}
        for start in range(0, n, rows):
            latents = {}
            for name, it in chunks.items():
                got, values = next(it)
                if got != start:  # pragma: no cover - sources follow the protocol
                    msg = f"The {name!r} source returned rows from {got}, expected {start}."
                    raise RuntimeError(msg)
                latents[name] = fits_latent_column(values, lattype)
                if name == "latent":
                    hasher.update(latents[name])
            piece = fits.table_to_hdu(with_latents(table[start:start + rows], latents))
            piece_forms = [piece.header.get(f"TFORM{i}")
                           for i in range(1, piece.header["TFIELDS"] + 1)]
            if piece.header["NAXIS1"] != row_bytes or piece_forms != forms:
                msg = ("Rows {start}.. convert to another FITS layout than the table "
                       f"({piece_forms} vs {forms}).")
                raise RuntimeError(msg)
            data = _hdu_data_bytes(piece)
            datasum = ones_complement_sum(data, datasum)
            f.write(data)
        for it in chunks.values():
            next(it, None)  # the end of each pass: a file source checks its LATHASH there
        f.write(b"\0" * ((-n * row_bytes) % 2880))
        lathash = hasher.hexdigest()
        header["LATHASH"] = lathash
        header["DATASUM"] = str(datasum)
        checksum = ones_complement_sum(header.tostring().encode("ascii"), datasum)
        header["CHECKSUM"] = checksum_string(checksum)
        final = header.tostring().encode("ascii")
        if len(final) != len(placeholder):  # pragma: no cover - fixed-width cards
            msg = "The FITS header changed size while its checksums were filled in."
            raise RuntimeError(msg)
        f.seek(header_offset)
        f.write(final)
    return lathash
