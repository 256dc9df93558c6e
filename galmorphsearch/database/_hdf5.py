# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
HDF5 storage of latent databases, for databases too large for FITS to be
convenient.

Layout of a file:

- root attributes: ``format = 'galmorphsearch-latents'``, ``columns`` (the
  column names in order) and the database keywords with the same names and
  values as in the FITS header (``ENCODER``, ``ENCHASH``, ``LATDIM``,
  ``HSIMMEAN``, ``LATHASH``, ..., ``HDUVERS``, ``ORIGIN``; ``LATTYPE =
  'float16'`` for float16 latents, as in FITS); an undefined value (`None`)
  is an empty float attribute;
- ``/latent`` and ``/background_latent``: (N, D) float32 or float16, in
  chunks of rows with a Fletcher-32 checksum each;
- one dataset per other column (``/objid``, ``/ra``, ...; strings as
  fixed-length UTF-8), with ``description`` and ``unit`` attributes;
- ``/_masks/<name>``: the mask of a column with masked values.

A database file keeps all its data in itself: a file with an external link,
a dataset in external storage or a virtual dataset (HDF5 features that read
other files) is refused when it is opened.
"""

import os
from pathlib import Path

import numpy as np
from astropy.table import Column, MaskedColumn, Table

from ..latents import LatentHasher
from ..utils import DatabaseFormatError, atomic_path
from ._fits import HDUVERS, ORIGIN, to_float16

__all__ = []

FORMAT = "galmorphsearch-latents"
SIGNATURE = b"\x89HDF\r\n\x1a\n"
LATENT_COLUMNS = ("latent", "background_latent")
_MASKS = "_masks"

# Target size in bytes of one HDF5 storage chunk of latents.
_STORAGE_CHUNK_BYTES = 2**20


def is_hdf5(path):
    """Whether the file at ``path`` starts with the HDF5 signature."""
    with open(path, "rb") as f:
        return f.read(len(SIGNATURE)) == SIGNATURE


def _format_error(path, reason):
    msg = f"{path} is not a valid galmorphsearch latent database: {reason}"
    return DatabaseFormatError(msg)


def hdf5_truncation(path):
    """
    Where an HDF5 file is cut short, or None when it is whole.

    The superblock at the start of the file records where the file ends;
    a file shorter than that (or than the superblock itself) is truncated.
    A file with its signature elsewhere (after a user block) is left to
    HDF5.

    Returns
    -------
    reason : str or None
        What is missing, with the file size.
    """
    with open(path, "rb") as f:
        head = f.read(128)
        size = os.fstat(f.fileno()).st_size
    if not head.startswith(SIGNATURE):
        return None
    incomplete = f"the file has {size} bytes and ends inside its HDF5 superblock"
    if len(head) < 16:
        return incomplete
    version = head[8]
    if version in (0, 1):
        offsets = head[13]
        eof_at = 24 + (4 if version == 1 else 0) + 2 * offsets
        base_at = eof_at - 2 * offsets
    elif version in (2, 3):
        offsets = head[9]
        eof_at = 12 + 2 * offsets
        base_at = 12
    else:
        return None
    if offsets not in (2, 4, 8) or len(head) < eof_at + offsets:
        return incomplete if offsets in (2, 4, 8) else None
    base = int.from_bytes(head[base_at:base_at + offsets], "little")
    eof = int.from_bytes(head[eof_at:eof_at + offsets], "little")
    if eof == 2 ** (8 * offsets) - 1:  # undefined address
        return None
    if size < base + eof:
        return f"the file has {size} bytes but its HDF5 superblock says it has {base + eof}"
    return None


def _open(path):
    import h5py

    path = Path(path)
    if not path.exists():
        msg = f"No latent database file at {path}"
        raise FileNotFoundError(msg)
    reason = hdf5_truncation(path)
    if reason is not None:
        raise _format_error(path, f"it is truncated ({reason})")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise _format_error(path, f"h5py cannot open it as HDF5 ({exc})") from exc
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise _format_error(path, f"its root has no format = {FORMAT!r} attribute")
    try:
        reason = _foreign_data(f)
    except Exception as exc:  # a damaged file
        f.close()
        raise _format_error(path, f"its structure cannot be read ({exc})") from exc
    if reason is not None:
        f.close()
        raise _format_error(path, f"{reason}. A database file keeps all its data in "
                            "itself; reading this one would read other files")
    return f


def _foreign_data(f):
    """
    What in an open HDF5 file would make HDF5 read other files, or None.

    Every link of the file is looked at (hard links to groups are followed
    once each; soft links name paths of the file itself): an external link,
    a dataset whose data are in external storage, and a virtual dataset
    (made of datasets of other files, or of this one) are reported.
    """
    import h5py

    seen = {f.id}  # group ids compare (and hash) by file and object
    groups = [("", f)]
    while groups:
        prefix, group = groups.pop()
        for key in group:
            name = f"{prefix}{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.SoftLink):
                continue
            if isinstance(link, h5py.ExternalLink):
                return (f"{name!r} is an external link to {link.path!r} in the other file "
                        f"{link.filename!r}")
            if not isinstance(link, h5py.HardLink):
                return f"{name!r} is a link of a kind HDF5 resolves elsewhere"
            obj = group[key]
            if isinstance(obj, h5py.Dataset):
                if obj.is_virtual:
                    sources = sorted({source.file_name for source in obj.virtual_sources()})
                    return (f"its dataset {name!r} is virtual (made of data that HDF5 reads "
                            f"from the file(s) {', '.join(map(repr, sources))})")
                if obj.external:
                    files = sorted({str(entry[0]) for entry in obj.external})
                    return (f"its dataset {name!r} uses external storage (its data are in the "
                            f"other file(s) {', '.join(map(repr, files))})")
            elif isinstance(obj, h5py.Group) and obj.id not in seen:
                seen.add(obj.id)
                groups.append((f"{name}/", obj))
    return None


def _attr_value(value):
    import h5py

    if isinstance(value, h5py.Empty):
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _latent_info(path, f, name):
    dset = f[name]
    if dset.ndim != 2 or dset.dtype not in (np.dtype("<f4"), np.dtype("<f2"),
                                            np.dtype(">f4"), np.dtype(">f2")):
        raise _format_error(path, f"dataset {name!r} is not an (N, D) float32 or float16 "
                            f"array ({dset.dtype}, shape {dset.shape})")
    chunks = dset.chunks[0] if dset.chunks else max(1, dset.shape[0])
    dtype = np.dtype(np.float16) if dset.dtype.itemsize == 2 else np.dtype(np.float32)
    return (tuple(dset.shape), dtype, chunks)


def hdf5_layout(path):
    """
    The latent datasets of an HDF5 database file.

    Returns
    -------
    layout : dict
        ``latents``: ``{name: ((N, D), dtype, rows per storage chunk)}``;
        ``lathash``: the ``LATHASH`` attribute or `None`.
    """
    with _open(path) as f:
        try:
            latents = {name: _latent_info(path, f, name) for name in LATENT_COLUMNS
                       if name in f}
            lathash = _attr_value(f.attrs.get("LATHASH"))
        except DatabaseFormatError:
            raise
        except Exception as exc:  # a damaged file
            raise _format_error(path, f"its latent datasets cannot be read ({exc})") from exc
    return {"latents": latents, "lathash": lathash}


def _storage_rows(dim, itemsize, nrows):
    return int(max(1, min(max(nrows, 1), _STORAGE_CHUNK_BYTES // (dim * itemsize))))


def write_hdf5(table, sources, path, overwrite=False, lattype="float32", descriptions=None):
    """
    Write a database as an HDF5 file, the latents chunk by chunk.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Every column but the latent ones, with the keywords in ``meta``.
    sources : dict
        Column name to `~galmorphsearch.latents.LatentSource`.
    path : str or path-like
        Destination file (written atomically).
    overwrite : bool, optional
        Whether an existing file may be replaced.
    lattype : {'float32', 'float16'}, optional
        Stored precision of the latents.
    descriptions : dict, optional
        Column descriptions of the latent columns.

    Returns
    -------
    lathash : str
        The ``LATHASH`` written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is `False`.
    ValueError
        If a column cannot be stored (object values, a name with ``/``).
    """
    import h5py

    n = len(table)
    storage = np.dtype("<f2" if lattype == "float16" else "<f4")
    descriptions = descriptions or {}
    names = [*table.colnames, *sources]
    bad = [name for name in names if "/" in name or name == _MASKS or name == "."]
    if bad:
        msg = f"Column name(s) {bad} cannot be HDF5 dataset names."
        raise ValueError(msg)
    hasher = LatentHasher()
    with atomic_path(path, overwrite=overwrite) as tmp, h5py.File(tmp, "w",
                                                                  track_order=True) as f:
        f.attrs["format"] = FORMAT
        f.attrs["columns"] = names
        f.attrs["HDUVERS"] = HDUVERS
        f.attrs["ORIGIN"] = ORIGIN
        for key, value in table.meta.items():
            if key in ("LATHASH", "LATTYPE", "HDUVERS", "ORIGIN"):
                continue
            f.attrs[key] = h5py.Empty("f8") if value is None else value
        for name in table.colnames:
            _write_column(f, table[name], name)
        for name, source in sources.items():
            if len(source) != n:
                msg = f"The {name!r} source has {len(source)} rows but the table {n}."
                raise ValueError(msg)
            rows = _storage_rows(source.dim, storage.itemsize, n)
            dset = f.create_dataset(name, shape=(n, source.dim), dtype=storage,
                                    chunks=(rows, source.dim) if n else None,
                                    fletcher32=bool(n))
            if descriptions.get(name):
                dset.attrs["description"] = descriptions[name]
            step = max(rows, (64 * 2**20 // (4 * source.dim)) // rows * rows)
            for start, chunk in source.iter_chunks(step):
                if lattype == "float16":
                    values = to_float16(chunk)
                else:
                    values = np.ascontiguousarray(chunk, dtype=storage)
                dset[start:start + len(values)] = values
                if name == "latent":
                    hasher.update(values)
        lathash = hasher.hexdigest()
        if lattype == "float16":
            f.attrs["LATTYPE"] = lattype
        f.attrs["LATHASH"] = lathash
    return lathash


def _write_column(f, col, name):
    import h5py

    mask = np.ma.getmaskarray(col) if isinstance(col, MaskedColumn) else None
    data = np.asarray(np.ma.getdata(col))
    if data.dtype.kind == "O":
        msg = f"Column {name!r} holds Python objects, which HDF5 cannot store."
        raise ValueError(msg)
    if data.dtype.kind in "US":
        # Fixed-length strings; HDF5 marks unicode ones as UTF-8.
        encoding = "utf-8" if data.dtype.kind == "U" else "ascii"
        if data.dtype.kind == "U":
            data = np.char.encode(data, "utf-8")
        data = data.view(h5py.string_dtype(encoding, data.dtype.itemsize))
    elif not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    dset = f.create_dataset(name, data=data)
    if col.description:
        dset.attrs["description"] = str(col.description)
    if col.unit is not None:
        dset.attrs["unit"] = col.unit.to_string()
    if mask is not None and mask.any():
        f.create_dataset(f"{_MASKS}/{name}", data=mask)


def read_hdf5(path, memmap=False):
    """
    Read an HDF5 database file.

    Parameters
    ----------
    path : str or path-like
        The file.
    memmap : bool, optional
        Leave the latents in the file: the table then has no latent
        columns, and their names are returned in ``latent_names``.

    Returns
    -------
    table : `~astropy.table.Table`
        The columns (latents native float32 or float16, strings unicode)
        and the keywords in ``meta``.
    latent_names : list of str
        The latent datasets left in the file (empty unless ``memmap``).

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ~galmorphsearch.utils.DatabaseFormatError
        If the file is not a galmorphsearch HDF5 database, lacks a listed
        column or fails a checksum.
    """
    import h5py

    path = Path(path)
    with _open(path) as f:
        try:
            names = [_attr_value(name) for name in f.attrs.get("columns", [])]
            absent = [name for name in names if name not in f]
            if absent:
                raise _format_error(path, f"it lacks the column(s) {', '.join(absent)}")
            meta = {key: _attr_value(value) for key, value in f.attrs.items()
                    if key == key.upper()}
            table = Table(meta=meta)
            left = []
            for name in names:
                dset = f[name]
                if name in LATENT_COLUMNS:
                    _latent_info(path, f, name)
                    if memmap:
                        left.append(name)
                        continue
                data = dset[()]
                string = h5py.check_string_dtype(dset.dtype)
                if string is not None:
                    data = np.char.decode(data, string.encoding)
                elif not data.dtype.isnative:
                    data = data.astype(data.dtype.newbyteorder("="))
                attrs = {"name": name, "description": _attr_value(dset.attrs.get("description")),
                         "unit": _attr_value(dset.attrs.get("unit"))}
                mask = f.get(f"{_MASKS}/{name}")
                if mask is not None:
                    table[name] = MaskedColumn(data, mask=mask[()], **attrs)
                else:
                    table[name] = Column(data, **attrs)
        except DatabaseFormatError:
            raise
        except Exception as exc:  # checksum failures and damaged files
            raise _format_error(path, f"its data cannot be read; the file is corrupted or "
                                f"truncated ({exc})") from exc
    return table, left
