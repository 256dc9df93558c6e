# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Latent sources: the latent vectors of a database, read chunk by chunk.

A *latent source* is what an out-of-core search reads. It is any object
with

- ``len(source)``: the number of rows ``N``;
- ``source.dim``: the latent length ``D``;
- ``source.dtype``: the stored precision (``float32`` or ``float16``);
- ``source.iter_chunks(chunk_rows=None)``: an iterator of ``(start,
  chunk)`` pairs, ``chunk`` a float32 ``(n, D)`` array of rows ``start`` to
  ``start + n``, in row order;
- ``source.take(indices)``: the float32 rows at ``indices``, in that
  order.

`ArrayLatents` wraps an array in memory, `FITSLatents` reads the latent
column of a FITS database file and `HDF5Latents` the latent dataset of an
HDF5 database file. The file sources read each chunk into a buffer that is
reused for the next one, with plain reads rather than one memory map of the
whole file, so the memory they use does not grow with the file.
`chunked_neighbours` is an exact nearest-neighbour search over any source.
"""

import abc
import hashlib
import os
from pathlib import Path

import numpy as np

from ..utils import DatabaseFormatError
from ._fits import _read_exactly

__all__ = ["LatentSource", "ArrayLatents", "FITSLatents", "HDF5Latents", "as_latent_source",
           "chunked_neighbours", "latent_hash"]

#: The default chunk of `LatentSource.iter_chunks` holds about this many
#: bytes of float32 latents (and a file source reads about as many).
DEFAULT_CHUNK_BYTES = 16 * 2**20

#: Value of the ``LATTYPE`` keyword for half-precision latents.
FLOAT16 = "float16"

#: The stored latent precisions.
_STORAGE_DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}

# Candidates kept beyond k in the float32 pass of `chunked_neighbours`, then
# re-ranked on float64 distances (as in `~galmorphsearch.search.exact_neighbours`).
_EXTRA_CANDIDATES = 8

# At most this many float32 scores (queries x rows) at once: 64 MiB.
_MAX_BLOCK_ELEMENTS = 2**24


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
    `take`; `read`, `lathash` and `shape` follow from them.
    """

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

        File sources return the value recorded in the file when there is
        one; otherwise it is computed with one pass over the latents (once
        for a file, on each access for an array, which may change).
        """
        value = getattr(self, "_lathash", None)
        if value is None:
            value = latent_hash(self)
            if isinstance(self, _FileSource):
                self._lathash = value
        return value

    def __repr__(self):
        where = f" {self.path}" if getattr(self, "path", None) else ""
        return (f"<{type(self).__name__}{where}: {len(self)} x {self.dim} "
                f"{self.dtype.name}>")


def latent_hash(source, dtype=None):
    """
    The ``LATHASH`` keyword of latents: a short sha256 of their bytes.

    The hash covers the latents in row order as stored, little-endian
    float32 or float16 (``dtype``), so two files with the same latents at
    the same precision share it whatever their format, and an index built
    from one database can be checked against another cheaply.

    Parameters
    ----------
    source : `LatentSource` or array-like
        The latents.
    dtype : str or dtype-like, optional
        Stored precision to hash; default: the source's.

    Returns
    -------
    lathash : str
        The first 16 hexadecimal digits of the sha256.
    """
    source = as_latent_source(source)
    store = storage_dtype(source.dtype if dtype is None else dtype).newbyteorder("<")
    digest = hashlib.sha256()
    for _, chunk in source.iter_chunks():
        digest.update(np.ascontiguousarray(chunk, dtype=store).data)
    return digest.hexdigest()[:16]


def as_latent_source(latents):
    """
    A latent source for ``latents``.

    Parameters
    ----------
    latents : `LatentSource`, `~galmorphsearch.database.LatentDatabase` or array-like
        A source is returned as is; a database gives its
        `~galmorphsearch.database.LatentDatabase.latent_source`; an array
        of shape (N, D) is wrapped in an `ArrayLatents` (checked for NaN
        and infinite values).

    Returns
    -------
    source : `LatentSource`
    """
    if isinstance(latents, LatentSource) or all(
            hasattr(latents, name) for name in ("iter_chunks", "take", "dim", "dtype")):
        return latents
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
    """What file sources share: the path, a check that the file is unchanged."""

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

    def _aligned_rows(self, chunk_rows, step):
        rows = self._default_rows(chunk_rows)
        if chunk_rows is None and rows > step:
            rows -= rows % step
        return rows


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

    def __len__(self):
        return self._n

    @property
    def dim(self):
        return self._dim

    @property
    def dtype(self):
        return self._dtype

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
        with open(self.path, "rb", buffering=0) as f:
            _advise_sequential(f)
            f.seek(self._data_offset)
            for start in range(0, len(self), rows):
                n = min(rows, len(self) - start)
                _read_exactly(f, memoryview(raw)[:n * self._row_bytes], self.path)
                chunk = out[:n]
                np.copyto(chunk, np.frombuffer(raw, dtype=record, count=n)["latent"])
                self._check_rows(chunk, start)
                yield start, chunk
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

    Chunks are read with ``read_direct`` into one float32 buffer reused for
    every chunk; HDF5 verifies the Fletcher-32 checksum of each storage
    chunk it reads and converts float16 to float32 on the way.

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

    def __len__(self):
        return self._n

    @property
    def dim(self):
        return self._dim

    @property
    def dtype(self):
        return self._dtype

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
        rows = self._aligned_rows(chunk_rows, self._storage_rows)
        n_rows = min(rows, len(self))
        out = np.empty((n_rows, self._dim), dtype=np.float32)
        with self._open() as f:
            dset = f[self.column]
            for start in range(0, len(self), rows):
                n = min(rows, len(self) - start)
                chunk = out[:n]
                try:
                    dset.read_direct(chunk, np.s_[start:start + n], np.s_[0:n])
                except OSError as exc:
                    raise _hdf5_read_error(self.path, self.column, start, n, exc) from exc
                self._check_rows(chunk, start)
                yield start, chunk
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

    This is the out-of-core search of a database read with
    ``memmap=True``; `~galmorphsearch.search.SimilaritySearcher` does not
    use it yet (the search backends will).

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
    from ..search.similarity import _as_latents, _check_exclude, _check_finite, _check_k

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
        rows = chunk_rows or max(1, DEFAULT_CHUNK_BYTES // (4 * source.dim))

    n_q = q.shape[0]
    n_cand = min(k + _EXTRA_CANDIDATES, n_db)
    q_block = max(1, min(n_q, _MAX_BLOCK_ELEMENTS // max(1, min(rows, n_db))))
    best_idx = np.empty((n_q, 0), dtype=np.int64)
    best_score = np.empty((n_q, 0), dtype=np.float32)
    for start, chunk in source.iter_chunks(rows):
        n = chunk.shape[0]
        sqnorms = np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64).astype(np.float32)
        width = min(n_cand, best_idx.shape[1] + min(n, n_cand))
        new_idx = np.empty((n_q, width), dtype=np.int64)
        new_score = np.empty((n_q, width), dtype=np.float32)
        for q0 in range(0, n_q, q_block):
            q1 = min(q0 + q_block, n_q)
            scores = q[q0:q1] @ chunk.T  # float32 BLAS
            scores *= -2.0
            scores += sqnorms
            if exc is not None:
                ex = exc[q0:q1]
                hit = (ex >= start) & (ex < start + n)
                scores[np.flatnonzero(hit), ex[hit] - start] = np.inf
            if n > n_cand:
                part = np.argpartition(scores, n_cand - 1, axis=1)[:, :n_cand]
            else:
                part = np.broadcast_to(np.arange(n), (q1 - q0, n))
            cand_idx = np.concatenate([best_idx[q0:q1], part + start], axis=1)
            cand_score = np.concatenate(
                [best_score[q0:q1], np.take_along_axis(scores, part, axis=1)], axis=1)
            if cand_idx.shape[1] > width:
                keep = np.argpartition(cand_score, width - 1, axis=1)[:, :width]
                cand_idx = np.take_along_axis(cand_idx, keep, axis=1)
                cand_score = np.take_along_axis(cand_score, keep, axis=1)
            new_idx[q0:q1] = cand_idx
            new_score[q0:q1] = cand_score
        best_idx, best_score = new_idx, new_score

    # Exact float64 re-ranking of the candidates, read back from the source.
    uniq, inverse = np.unique(best_idx, return_inverse=True)
    cand = source.take(uniq).astype(np.float64)
    inverse = inverse.reshape(best_idx.shape)
    out_idx = np.empty((n_q, k), dtype=np.int64)
    out_dist = np.empty((n_q, k), dtype=np.float64)
    r_block = max(1, 2**22 // max(1, n_cand * source.dim))
    for q0 in range(0, n_q, r_block):
        q1 = min(q0 + r_block, n_q)
        diff = cand[inverse[q0:q1]]
        diff -= q[q0:q1, np.newaxis, :].astype(np.float64)
        dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        if exc is not None:
            dist[best_idx[q0:q1] == exc[q0:q1, np.newaxis]] = np.inf
        order = np.lexsort((best_idx[q0:q1], dist), axis=1)[:, :k]
        out_idx[q0:q1] = np.take_along_axis(best_idx[q0:q1], order, axis=1)
        out_dist[q0:q1] = np.take_along_axis(dist, order, axis=1)
    return out_idx, out_dist
