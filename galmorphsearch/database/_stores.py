# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Latent sources: the latent vectors of a database, read chunk by chunk.

This module holds the one latent-source protocol of the package: the
database reads its files through it and the search backends
(`~galmorphsearch.search.ExactBackend`, `~galmorphsearch.search.FaissBackend`)
search it. A *latent source* is any object with

- ``len(source)``: the number of rows ``N``;
- ``source.dim``: the latent length ``D``;
- ``source.dtype``: the stored precision (``float32`` or ``float16``);
- ``source.iter_chunks(chunk_rows)``: an iterator of ``(start, chunk)``
  pairs, ``chunk`` a float32 ``(n, D)`` array of rows ``start`` to
  ``start + n``, in row order (it may be a buffer that the next chunk
  overwrites);
- ``source.take(indices)``: the float32 rows at ``indices``, in that
  order.

`LatentSource` is the base class of the package's sources (it adds
``shape``, ``read``, ``lathash``, ``squared_norms`` and ``in_memory``), but
any object with these five members is accepted (`is_latent_source`).
`ArrayLatents` wraps an array in memory, `FITSLatents` reads the latent
column of a FITS database file and `HDF5Latents` the latent dataset of an
HDF5 database file. The file sources read each chunk into a buffer that is
reused for the next one, with plain reads rather than one memory map of the
whole file, so the memory they use does not grow with the file.
`chunked_neighbours` is an exact nearest-neighbour search over any source
(the search of `~galmorphsearch.search.ExactBackend`).
"""

import abc
import os
from pathlib import Path

import numpy as np

from ..utils import DatabaseFormatError
from ._fits import _read_exactly
from ._lathash import LatentHasher, lathash_mismatch

__all__ = ["LatentSource", "ArrayLatents", "FITSLatents", "HDF5Latents", "as_latent_source",
           "is_latent_source", "chunked_neighbours", "latent_hash"]

#: The default chunk of `LatentSource.iter_chunks` holds about this many
#: bytes of float32 latents (and a file source reads about as many).
DEFAULT_CHUNK_BYTES = 16 * 2**20

#: Value of the ``LATTYPE`` keyword for half-precision latents.
FLOAT16 = "float16"

#: The stored latent precisions.
_STORAGE_DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}

#: Rows per chunk for objects of the protocol that are not a `LatentSource`
#: (they have no default of their own).
DEFAULT_STREAM_ROWS = 32768

_PROTOCOL = ("__len__", "dim", "dtype", "iter_chunks", "take")


def storage_dtype(dtype):
    """
    The stored latent precision named by ``dtype``.

    Parameters
    ----------
    dtype : str or dtype-like
        ``'float32'`` or ``'float16'`` (or the NumPy types).

    Returns
    -------
    dtype : `numpy.dtype`
        Native float32 or float16.

    Raises
    ------
    ValueError
        For any other precision.
    """
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.kind != "f" or dt.itemsize not in (2, 4):
        msg = f"Latents are stored as 'float32' or 'float16'; got dtype={dtype!r}."
        raise ValueError(msg)
    return _STORAGE_DTYPES[f"float{8 * dt.itemsize}"]


class LatentSource(abc.ABC):
    """
    Base class of latent sources: (N, D) latents read in chunks of rows.

    Subclasses implement ``__len__``, `dim`, `dtype`, `iter_chunks` and
    `take`; `read`, `lathash`, `squared_norms` and `shape` follow from
    them. ``in_memory`` says whether the latents are held in memory
    (`ArrayLatents`) or read from a file as needed (`FITSLatents`,
    `HDF5Latents`); ``backend='auto'`` searches the latter exactly.
    """

    #: Whether the latents are held in memory (not read from a file chunk by chunk).
    in_memory = False

    @abc.abstractmethod
    def __len__(self):
        """Number of rows."""

    @property
    @abc.abstractmethod
    def dim(self):
        """Length of the latent vectors."""

    @property
    @abc.abstractmethod
    def dtype(self):
        """Stored precision, `numpy.float32` or `numpy.float16` as a dtype."""

    @property
    def shape(self):
        """``(N, D)``."""
        return (len(self), self.dim)

    @abc.abstractmethod
    def iter_chunks(self, chunk_rows=None):
        """
        Iterate over the latents in row order, a chunk of rows at a time.

        Parameters
        ----------
        chunk_rows : int, optional
            Rows per chunk (the last chunk may be shorter). Default: about
            16 MiB of float32 latents per chunk (for a FITS file, 16 MiB of
            table rows).

        Yields
        ------
        start : int
            Row number of the first row of the chunk.
        chunk : `~numpy.ndarray`
            Native float32 ``(n, D)``. It may be a buffer that the next
            chunk overwrites (or a view of an array in memory): read it
            before asking for the next one, and copy what you keep.
        """

    @abc.abstractmethod
    def take(self, indices):
        """
        The latents of some rows.

        Parameters
        ----------
        indices : array-like of int
            Row numbers, in any order, repeats allowed.

        Returns
        -------
        latents : `~numpy.ndarray`
            Native float32 ``(len(indices), D)``, a new array.

        Raises
        ------
        IndexError
            If a row number is outside ``0 .. N - 1``.
        """

    def _default_rows(self, chunk_rows):
        if chunk_rows is None:
            return max(1, min(len(self), DEFAULT_CHUNK_BYTES // (4 * max(self.dim, 1))))
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer):
            msg = f"chunk_rows must be an integer; got {chunk_rows!r}."
            raise TypeError(msg)
        if chunk_rows < 1:
            msg = f"chunk_rows must be at least 1; got {chunk_rows}."
            raise ValueError(msg)
        return int(chunk_rows)

    def _indices(self, indices):
        idx = np.asarray(indices)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            msg = f"indices must be a 1-D array of integers; got {idx.dtype} {idx.shape}."
            raise IndexError(msg)
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            msg = f"Row numbers must be in 0..{len(self) - 1}; got {idx.min()}..{idx.max()}."
            raise IndexError(msg)
        return idx

    def read(self, chunk_rows=None):
        """
        All latents in memory, read chunk by chunk.

        Returns
        -------
        latents : `~numpy.ndarray`
            Native float32 ``(N, D)``: this holds the whole column in
            memory.
        """
        out = np.empty(self.shape, dtype=np.float32)
        for start, chunk in self.iter_chunks(chunk_rows):
            out[start:start + len(chunk)] = chunk
        return out

    @property
    def lathash(self):
        """
        The ``LATHASH`` of these latents (see `latent_hash`).

        It is computed with one pass over the latents: once for a file
        source, which then checks it against the value its file records
        (unless the database that read the file checked it already), and
        on each access for an array, which may change.

        Raises
        ------
        ~galmorphsearch.utils.DatabaseFormatError
            If the latents of a file do not match the ``LATHASH`` it
            records.
        """
        value = getattr(self, "_lathash", None)
        if value is None:
            value = latent_hash(self)
            if isinstance(self, _FileSource):
                self._lathash = value
        return value

    def squared_norms(self, chunk_rows=None):
        """
        The squared Euclidean norm of every row, in one pass over the latents.

        A file source computes them once and keeps them (8 bytes per row):
        every exact search of the file uses them, and a second searcher of
        the same database does not read the file again for them. An array
        source computes them on each call (the array may change).

        Parameters
        ----------
        chunk_rows : int, optional
            Rows read at once (see `iter_chunks`).

        Returns
        -------
        sqnorms : `~numpy.ndarray`
            ``(N,)`` float64, accumulated in float64; NaN or infinite for a
            row holding NaN or infinite values.
        """
        cached = getattr(self, "_sqnorms", None)
        if cached is not None:
            return cached
        out = np.empty(len(self), dtype=np.float64)
        for start, chunk in self.iter_chunks(chunk_rows):
            out[start:start + len(chunk)] = np.einsum("ij,ij->i", chunk, chunk,
                                                      dtype=np.float64)
        if isinstance(self, _FileSource):
            out.flags.writeable = False
            self._sqnorms = out
        return out

    def __repr__(self):
        where = f" {self.path}" if getattr(self, "path", None) else ""
        return (f"<{type(self).__name__}{where}: {len(self)} x {self.dim} "
                f"{self.dtype.name}>")


def is_latent_source(obj):
    """
    Whether ``obj`` is a latent source (not an array to wrap).

    True for a `LatentSource` and for any other object with ``__len__``,
    ``dim``, ``dtype``, ``iter_chunks`` and ``take``.
    """
    if isinstance(obj, LatentSource):
        return True
    if isinstance(obj, np.ndarray):
        return False
    return all(hasattr(obj, name) for name in _PROTOCOL)


def default_chunk_rows(source):
    """Rows per chunk when none is asked for: the source's own default, if it has one."""
    if isinstance(source, LatentSource):
        return source._default_rows(None)
    return max(1, min(len(source), DEFAULT_STREAM_ROWS))


def source_squared_norms(source, chunk_rows=None):
    """
    `LatentSource.squared_norms` of any latent source.

    A `LatentSource` gives its own (cached for files); for another object
    of the protocol they are computed with one pass.
    """
    if isinstance(source, LatentSource):
        return source.squared_norms(chunk_rows)
    rows = default_chunk_rows(source) if chunk_rows is None else int(chunk_rows)
    out = np.empty(len(source), dtype=np.float64)
    for start, chunk in source.iter_chunks(rows):
        chunk = np.asarray(chunk, dtype=np.float32)
        out[start:start + len(chunk)] = np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64)
    return out


def latent_hash(source, dtype=None):
    """
    The ``LATHASH`` keyword of latents: a short sha256 of their bytes.

    The hash covers the latents in row order as stored, little-endian
    float32 or float16 (``dtype``), so two files with the same latents at
    the same precision share it whatever their format, and an index built
    from one database can be checked against another cheaply. It is the
    hash every database file records (`LatentDatabase.lathash
    <galmorphsearch.database.LatentDatabase.lathash>`) and the one the
    sidecar of a saved search index is checked against.

    Parameters
    ----------
    source : `LatentSource` or array-like
        The latents (any object of the latent-source protocol, or an array).
    dtype : str or dtype-like, optional
        Stored precision to hash; default: the source's.

    Returns
    -------
    lathash : str
        The first 16 hexadecimal digits of the sha256.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.database import latent_hash
    >>> a = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> latent_hash(a) == latent_hash(a.astype(np.float64))
    True
    >>> latent_hash(a) == latent_hash(a[::-1]), latent_hash(a) == latent_hash(a, 'float16')
    (False, False)
    """
    source = as_latent_source(source)
    store = storage_dtype(source.dtype if dtype is None else dtype)
    hasher = LatentHasher()
    for _, chunk in source.iter_chunks(default_chunk_rows(source)):
        hasher.update(np.asarray(chunk, dtype=store))
    return hasher.hexdigest()


def as_latent_source(latents):
    """
    A latent source for ``latents``.

    Parameters
    ----------
    latents : `LatentSource`, `~galmorphsearch.database.LatentDatabase` or array-like
        A source (any object of the protocol, see `is_latent_source`) is
        returned as is; a database gives its
        `~galmorphsearch.database.LatentDatabase.latent_source`; an array
        of shape (N, D) is wrapped in an `ArrayLatents` (checked for NaN
        and infinite values).

    Returns
    -------
    source : `LatentSource` or object of the protocol
    """
    if is_latent_source(latents):
        return latents
    if not isinstance(latents, np.ndarray):
        source = getattr(latents, "latent_source", None)
        if source is not None:
            return source
    return ArrayLatents(latents)


def _not_finite_error(where, column, rows):
    msg = (f"{where}: column {column!r} has NaN or infinite values in {rows.size} row(s) "
           f"(first rows: {rows[:5].tolist()}).")
    return DatabaseFormatError(msg)


class ArrayLatents(LatentSource):
    """
    Latents held in memory, as a latent source.

    Parameters
    ----------
    latents : array-like, shape (N, D)
        Floating-point latents. float16 and float32 arrays are kept as they
        are (no copy); other types are converted to float32.
    check_finite : bool, optional
        Check, once and chunk by chunk, that no value is NaN or infinite.

    Raises
    ------
    ValueError
        If ``latents`` is not a 2-D array of real numbers, or (with
        ``check_finite``) holds NaN or infinite values.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.database import ArrayLatents
    >>> source = ArrayLatents(np.arange(12, dtype=np.float32).reshape(6, 2))
    >>> len(source), source.dim, source.dtype
    (6, 2, dtype('float32'))
    >>> [(start, chunk.shape) for start, chunk in source.iter_chunks(4)]
    [(0, (4, 2)), (4, (2, 2))]
    >>> source.take([5, 0])
    array([[10., 11.],
           [ 0.,  1.]], dtype=float32)
    """

    in_memory = True

    def __init__(self, latents, *, check_finite=True):
        arr = np.asarray(latents)
        if arr.ndim != 2 or arr.shape[1] == 0:
            msg = f"Latents must be a 2-D array (N, D) with D > 0; got shape {arr.shape}."
            raise ValueError(msg)
        if arr.dtype.kind not in "fiu":
            msg = f"Latents must hold real numbers; got dtype {arr.dtype}."
            raise ValueError(msg)
        if not (arr.dtype.kind == "f" and arr.dtype.itemsize in (2, 4)):
            arr = np.asarray(arr, dtype=np.float32)
        self._array = arr
        if check_finite:
            for start, chunk in self.iter_chunks():
                ok = np.isfinite(chunk).all(axis=1)
                if not ok.all():
                    rows = start + np.flatnonzero(~ok)
                    msg = (f"Latents have NaN or infinite values in row(s) "
                           f"{rows[:5].tolist()}.")
                    raise ValueError(msg)

    def __len__(self):
        return self._array.shape[0]

    @property
    def dim(self):
        return self._array.shape[1]

    @property
    def dtype(self):
        return _STORAGE_DTYPES[f"float{8 * self._array.dtype.itemsize}"]

    @property
    def array(self):
        """The wrapped array (not a copy)."""
        return self._array

    def iter_chunks(self, chunk_rows=None):
        rows = self._default_rows(chunk_rows)
        arr = self._array
        direct = arr.dtype == np.float32 and arr.dtype.isnative
        buf = None if direct else np.empty((min(rows, len(self)), self.dim), np.float32)
        for start in range(0, len(self), rows):
            stop = min(start + rows, len(self))
            if direct:
                yield start, arr[start:stop]
            else:
                out = buf[:stop - start]
                np.copyto(out, arr[start:stop], casting="unsafe")
                yield start, out

    def take(self, indices):
        return np.asarray(self._array[self._indices(indices)], dtype=np.float32)


class _FileSource(LatentSource):
    """What file sources share: shape, precision, path and a check that the file is unchanged."""

    #: Whether ``_lathash`` is known to match the latents of the file.
    _lathash_checked = False

    def __len__(self):
        return self._n

    @property
    def lathash(self):
        """
        The ``LATHASH`` of the file's latents, checked against the value it records.

        Computed once, with one pass over the latents, unless that was done
        already: by the database that read the file, as it read them, or by
        the first complete pass of `iter_chunks` (which hashes the
        ``latent`` column as it reads it).

        Raises
        ------
        ~galmorphsearch.utils.DatabaseFormatError
            If the latents do not match the ``LATHASH`` the file records.
        """
        if not self._lathash_checked and self.column == "latent":
            for _ in self.iter_chunks(default_chunk_rows(self)):
                pass  # hashed and checked by the pass itself
        if not self._lathash_checked:  # another column
            self._settle_lathash(latent_hash(self))
        return self._lathash

    def _pass_hasher(self):
        """A hasher for a pass over the latents, or None when their hash is known."""
        return None if self._lathash_checked or self.column != "latent" else LatentHasher()

    def _settle_lathash(self, computed):
        """
        Check ``computed``, the hash of all the latents as read, against the
        ``LATHASH`` the file records, and remember it.
        """
        if self._lathash_checked:
            return
        recorded = self._lathash
        if recorded is not None and str(recorded).strip() != computed:
            raise lathash_mismatch(self.path, str(recorded).strip(), computed)
        self._lathash, self._lathash_checked = computed, True

    @property
    def dim(self):
        return self._dim

    @property
    def dtype(self):
        return self._dtype

    def __getstate__(self):
        # The cached squared norms (8 bytes per row) are not shipped to other
        # processes: a source pickles as its path and layout.
        state = self.__dict__.copy()
        state.pop("_sqnorms", None)
        return state

    def _remember_file(self, path):
        self.path = Path(path)
        self._stat = self._file_state()
        self._validated = False

    def _file_state(self):
        st = os.stat(self.path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _check_unchanged(self):
        try:
            same = self._file_state() == self._stat
        except FileNotFoundError:
            same = False
        if not same:
            msg = (f"{self.path} was replaced or modified after it was opened; read the "
                   "database again.")
            raise DatabaseFormatError(msg)

    def _check_rows(self, chunk, start, rows=None):
        if self._validated:
            return
        ok = np.isfinite(chunk).all(axis=1)
        if not ok.all():
            bad = np.flatnonzero(~ok)
            bad = (start + bad) if rows is None else rows[bad]
            raise _not_finite_error(self.path, self.column, np.asarray(bad))


class FITSLatents(_FileSource):
    """
    The latent column of a FITS database file, as a latent source.

    Only the header is read when the source is made. `iter_chunks` reads
    whole table rows (FITS stores rows one after the other, so the other
    columns are read too) into one buffer reused for every chunk, and
    `take` reads just the requested cells: the memory used stays that of
    one chunk, however large the file.

    Parameters
    ----------
    path : str or path-like
        A database file written by
        `LatentDatabase.write <galmorphsearch.database.LatentDatabase.write>`.
    column : {'latent', 'background_latent'}, optional
        The column to read.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ~galmorphsearch.utils.DatabaseFormatError
        If the file is not a FITS database or the column is not a latent
        column (float32 ``E``, or float16 bits in ``I`` with
        ``LATTYPE = 'float16'``).

    Notes
    -----
    The checksums are not verified here (that would read the whole
    file); `LatentDatabase.read(..., memmap=True)
    <galmorphsearch.database.LatentDatabase.read>` verifies them while it
    reads the catalog columns. Each chunk and each row taken is checked
    for NaN and infinite values until one full pass has checked them all.
    A source notices when its file is replaced and then raises
    `~galmorphsearch.utils.DatabaseFormatError`.
    """

    def __init__(self, path, column="latent"):
        from ._fits import fits_layout

        layout = fits_layout(path)
        if column not in layout["columns"]:
            msg = f"{path} has no latent column {column!r}."
            raise DatabaseFormatError(msg)
        offset, disk_dtype, dim = layout["columns"][column]
        lattype = layout["lattype"]
        expected = {"float32": ">f4", "float16": ">i2"}[lattype]
        if disk_dtype != np.dtype(expected):
            msg = (f"{path}: column {column!r} is stored as {disk_dtype} but LATTYPE = "
                   f"{lattype!r} needs {np.dtype(expected)}.")
            raise DatabaseFormatError(msg)
        self.column = column
        self._n = layout["nrows"]
        self._dim = dim
        self._dtype = _STORAGE_DTYPES[lattype]
        self._data_offset = layout["data_offset"]
        self._row_bytes = layout["row_bytes"]
        self._field_offset = offset
        self._lathash = layout["lathash"] if column == "latent" else None
        self._remember_file(path)

    def _default_rows(self, chunk_rows):
        if chunk_rows is None:
            # Whole table rows are read: bound the raw buffer, not just the latents.
            return max(1, min(len(self), DEFAULT_CHUNK_BYTES // max(self._row_bytes, 1)))
        return super()._default_rows(chunk_rows)

    def _record_dtype(self):
        # The raw float16 bits are read directly as big-endian half floats.
        cell = ">f4" if self._dtype == np.float32 else ">f2"
        return np.dtype({"names": ["latent"], "formats": [(cell, (self._dim,))],
                         "offsets": [self._field_offset], "itemsize": self._row_bytes})

    def iter_chunks(self, chunk_rows=None):
        rows = self._default_rows(chunk_rows)
        self._check_unchanged()
        n_rows = min(rows, len(self))
        raw = bytearray(n_rows * self._row_bytes)
        out = np.empty((n_rows, self._dim), dtype=np.float32)
        record = self._record_dtype()
        hasher = self._pass_hasher()
        with open(self.path, "rb", buffering=0) as f:
            _advise_sequential(f)
            f.seek(self._data_offset)
            for start in range(0, len(self), rows):
                n = min(rows, len(self) - start)
                _read_exactly(f, memoryview(raw)[:n * self._row_bytes], self.path)
                chunk = out[:n]
                stored = np.frombuffer(raw, dtype=record, count=n)["latent"]
                np.copyto(chunk, stored)
                self._check_rows(chunk, start)
                if hasher is not None:
                    hasher.update(stored)
                yield start, chunk
        if hasher is not None:  # a complete pass checks LATHASH before it ends
            self._settle_lathash(hasher.hexdigest())
        self._validated = True

    def take(self, indices):
        idx = self._indices(indices)
        self._check_unchanged()
        uniq, inverse = np.unique(idx, return_inverse=True)
        cell = np.dtype(">f4" if self._dtype == np.float32 else ">f2")
        nbytes = cell.itemsize * self._dim
        rows = np.empty((uniq.size, self._dim), dtype=np.float32)
        buf = bytearray(nbytes)
        with open(self.path, "rb", buffering=0) as f:
            base = self._data_offset + self._field_offset
            for i, row in enumerate(uniq.tolist()):
                f.seek(base + row * self._row_bytes)
                _read_exactly(f, memoryview(buf), self.path)
                rows[i] = np.frombuffer(buf, dtype=cell)
        self._check_rows(rows, 0, uniq)
        return rows[inverse.reshape(-1)]


class HDF5Latents(_FileSource):
    """
    A latent dataset of an HDF5 database file, as a latent source.

    Chunks are read with ``read_direct`` into one buffer reused for every
    chunk (float16 latents as stored, then converted to float32 by NumPy);
    HDF5 verifies the Fletcher-32 checksum of each storage chunk it reads.

    Parameters
    ----------
    path : str or path-like
        A database file written by
        `LatentDatabase.write <galmorphsearch.database.LatentDatabase.write>`
        in the HDF5 format.
    column : {'latent', 'background_latent'}, optional
        The dataset to read.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ~galmorphsearch.utils.DatabaseFormatError
        If the file is not an HDF5 database, the dataset is missing or not
        (N, D) float16/float32, or a read fails its checksum.

    Notes
    -----
    Each chunk and each row taken is checked for NaN and infinite values
    until one full pass has checked them all.
    """

    def __init__(self, path, column="latent"):
        from ._hdf5 import hdf5_layout

        layout = hdf5_layout(path)
        if column not in layout["latents"]:
            msg = f"{path} has no latent dataset {column!r}."
            raise DatabaseFormatError(msg)
        shape, dtype, chunk_rows = layout["latents"][column]
        self.column = column
        self._n, self._dim = shape
        self._dtype = dtype
        self._storage_rows = chunk_rows
        self._lathash = layout["lathash"] if column == "latent" else None
        self._remember_file(path)

    def _default_rows(self, chunk_rows):
        rows = super()._default_rows(chunk_rows)
        if chunk_rows is None and rows > self._storage_rows:
            # Whole storage chunks, each decoded (and checksummed) once.
            rows -= rows % self._storage_rows
        return rows

    def _open(self):
        import h5py

        self._check_unchanged()
        try:
            # A chunk cache of a few storage chunks (1 MiB each), so that
            # reads not aligned with them decode each chunk once.
            return h5py.File(self.path, "r", rdcc_nbytes=4 * 2**20)
        except OSError as exc:
            msg = f"{self.path} cannot be opened as HDF5 ({exc})."
            raise DatabaseFormatError(msg) from exc

    def iter_chunks(self, chunk_rows=None):
        rows = self._default_rows(chunk_rows)
        n_rows = min(rows, len(self))
        out = np.empty((n_rows, self._dim), dtype=np.float32)
        # float16 is read as stored and converted by NumPy: HDF5's own
        # float16 -> float32 conversion took 2.4 times as long (0.65 s against
        # 0.27 s for 200,000 x 512 values on the development machine).
        raw = (np.empty((n_rows, self._dim), dtype=np.float16)
               if self._dtype == np.float16 else None)
        hasher = self._pass_hasher()
        with self._open() as f:
            dset = f[self.column]
            for start in range(0, len(self), rows):
                n = min(rows, len(self) - start)
                chunk = out[:n]
                try:
                    if raw is None:
                        dset.read_direct(chunk, np.s_[start:start + n], np.s_[0:n])
                    else:
                        dset.read_direct(raw[:n], np.s_[start:start + n], np.s_[0:n])
                except OSError as exc:
                    raise _hdf5_read_error(self.path, self.column, start, n, exc) from exc
                if raw is not None:
                    np.copyto(chunk, raw[:n])
                self._check_rows(chunk, start)
                if hasher is not None:
                    hasher.update(chunk if raw is None else raw[:n])
                yield start, chunk
        if hasher is not None:  # a complete pass checks LATHASH before it ends
            self._settle_lathash(hasher.hexdigest())
        self._validated = True

    def take(self, indices):
        idx = self._indices(indices)
        uniq, inverse = np.unique(idx, return_inverse=True)
        rows = np.empty((uniq.size, self._dim), dtype=np.float32)
        with self._open() as f:
            dset = f[self.column]
            # Runs of consecutive rows are read as one slice each.
            breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
            for run in np.split(np.arange(uniq.size), breaks):
                if run.size == 0:
                    continue
                r0, n = int(uniq[run[0]]), run.size
                try:
                    dset.read_direct(rows, np.s_[r0:r0 + n], np.s_[run[0]:run[0] + n])
                except OSError as exc:
                    raise _hdf5_read_error(self.path, self.column, r0, n, exc) from exc
        self._check_rows(rows, 0, uniq)
        return rows[inverse.reshape(-1)]


def _hdf5_read_error(path, column, start, n, exc):
    msg = (f"{path}: reading rows {start}..{start + n - 1} of {column!r} failed; the file is "
           f"corrupted or truncated ({exc}).")
    return DatabaseFormatError(msg)


def _advise_sequential(f):
    advise = getattr(os, "posix_fadvise", None)
    if advise is not None:
        try:
            advise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:  # pragma: no cover - advice only
            pass


# ----------------------------------------------------------------------
# search
def chunked_neighbours(queries, source, k, *, chunk_rows=None, exclude=None):
    """
    Exact Euclidean k nearest neighbours in a latent source, read in chunks.

    The source is read once, chunk by chunk (`LatentSource.iter_chunks`),
    whatever the number of queries: for each chunk, the scores
    :math:`\\lVert b \\rVert^2 - 2 a \\cdot b` of every query against every
    row are computed with a float32 matrix product and the best ``k``
    plus a few candidates per query are merged into the running best with
    `numpy.argpartition`. The candidates are then read again with
    `LatentSource.take` and re-ranked on exact float64 distances, as
    `~galmorphsearch.search.exact_neighbours` does for an array in memory,
    so both return the same neighbours and distances. The memory used is
    that of one chunk plus the scores of one block of queries.

    This is the exact search of the package as a function: the one
    implementation that `~galmorphsearch.search.exact_neighbours` and
    `~galmorphsearch.search.ExactBackend` (so
    `~galmorphsearch.search.SimilaritySearcher`) run too, and the way an
    out-of-core database (read with ``memmap=True``) is searched.

    Parameters
    ----------
    queries : array-like, shape (Q, D) or (D,)
        Query latent vectors.
    source : `LatentSource`, `~galmorphsearch.database.LatentDatabase` or array-like
        The database latents (see `as_latent_source`).
    k : int
        Number of neighbours per query, ``1 <= k <= N`` (``N - 1`` when a row
        is excluded).
    chunk_rows : int, optional
        Database rows read at once (see `LatentSource.iter_chunks`).
    exclude : array-like of int, shape (Q,), optional
        For each query, a database row that must not be returned, or -1
        for none.

    Returns
    -------
    indices : `~numpy.ndarray`, shape (Q, k), int64
        Database rows of the neighbours, nearest first (ties by row number).
    distances : `~numpy.ndarray`, shape (Q, k), float64
        Their Euclidean distances, ascending.

    Raises
    ------
    ValueError
        If the latent dimensions differ, queries hold NaN or infinite
        values, or ``k`` or ``exclude`` is out of range.
    ~galmorphsearch.utils.DatabaseFormatError
        If a file source holds NaN or infinite values or cannot be read.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.database import ArrayLatents, chunked_neighbours
    >>> db = ArrayLatents(np.array([[0, 0], [1, 0], [0, 3], [5, 5]], dtype=np.float32))
    >>> idx, dist = chunked_neighbours([[0.9, 0.0]], db, k=2, chunk_rows=3)
    >>> idx
    array([[1, 0]])
    >>> dist.round(3)
    array([[0.1, 0.9]])
    """
    from ..search.similarity import (
        _as_latents,
        _check_exclude,
        _check_finite,
        _check_k,
        _neighbours,
    )

    source = as_latent_source(source)
    q = _as_latents(queries, "queries")
    if q.shape[1] != source.dim:
        msg = (f"Latent dimensions differ: queries have {q.shape[1]}, the database has "
               f"{source.dim}.")
        raise ValueError(msg)
    n_db = len(source)
    if n_db == 0:
        msg = "The database is empty."
        raise ValueError(msg)
    _check_finite(q, "queries")
    exc = _check_exclude(exclude, q.shape[0], n_db)
    k = _check_k(k, n_db - (1 if exc is not None and np.any(exc >= 0) else 0))
    if isinstance(source, LatentSource):
        rows = source._default_rows(chunk_rows)
    else:
        rows = default_chunk_rows(source) if chunk_rows is None else int(chunk_rows)
    # Norms a file source already holds are used; otherwise each chunk's are
    # computed as it is read (no extra pass).
    return _neighbours(q, source, k, getattr(source, "_sqnorms", None), rows, exc)
