# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Latent sources: latent vectors read chunk by chunk.

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
`ArrayLatents` wraps an array in memory; `FileLatentSource` is the base of
the sources that read a database file
(`~galmorphsearch.database.FITSLatents`,
`~galmorphsearch.database.HDF5Latents`), which read each chunk into a
buffer that is reused for the next one, with plain reads rather than one
memory map of the whole file, so the memory they use does not grow with the
file.
"""

import abc
import os
from pathlib import Path

import numpy as np

from ..utils import DatabaseFormatError

__all__ = ["LatentSource", "ArrayLatents", "FileLatentSource", "as_latent_source",
           "is_latent_source", "default_chunk_rows", "source_squared_norms", "storage_dtype"]

#: The default chunk of `LatentSource.iter_chunks` holds about this many
#: bytes of float32 latents (and a file source reads about as many).
DEFAULT_CHUNK_BYTES = 16 * 2**20

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
    (`ArrayLatents`) or read from a file as needed (`FileLatentSource`:
    `~galmorphsearch.database.FITSLatents`,
    `~galmorphsearch.database.HDF5Latents`); ``backend='auto'`` searches
    the latter exactly. ``cache_derived`` says whether `lathash` and
    `squared_norms` are computed once and kept.
    """

    #: Whether the latents are held in memory (not read from a file chunk by chunk).
    in_memory = False

    #: Whether the latents cannot change while the source exists (those of a
    #: file, `FileLatentSource`), so that `lathash` and `squared_norms` are
    #: computed once and kept; an array may change, and they are computed on
    #: each access.
    cache_derived = False

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
        The ``LATHASH`` of these latents (see
        `~galmorphsearch.latents.latent_hash`).

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
        from .hashing import latent_hash

        value = getattr(self, "_lathash", None)
        if value is None:
            value = latent_hash(self)
            if self.cache_derived:
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
        if self.cache_derived:
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
    """
    Rows per chunk when none is asked for: the source's own default, if it has one.

    Parameters
    ----------
    source : `LatentSource` or object of the protocol
        The latents.

    Returns
    -------
    rows : int
        ``source``'s default for a `LatentSource` (about 16 MiB of latents,
        see `LatentSource.iter_chunks`), else up to 32768 rows.
    """
    if isinstance(source, LatentSource):
        return source._default_rows(None)
    return max(1, min(len(source), DEFAULT_STREAM_ROWS))


def source_squared_norms(source, chunk_rows=None):
    """
    `LatentSource.squared_norms` of any latent source.

    A `LatentSource` gives its own (cached for files); for another object
    of the protocol they are computed with one pass.

    Parameters
    ----------
    source : `LatentSource` or object of the protocol
        The latents.
    chunk_rows : int, optional
        Rows read at once; default: `default_chunk_rows`.

    Returns
    -------
    sqnorms : `~numpy.ndarray`
        ``(N,)`` float64.
    """
    if isinstance(source, LatentSource):
        return source.squared_norms(chunk_rows)
    rows = default_chunk_rows(source) if chunk_rows is None else int(chunk_rows)
    out = np.empty(len(source), dtype=np.float64)
    for start, chunk in source.iter_chunks(rows):
        chunk = np.asarray(chunk, dtype=np.float32)
        out[start:start + len(chunk)] = np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64)
    return out


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
    >>> from galmorphsearch.latents import ArrayLatents
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


class FileLatentSource(LatentSource):
    """
    Base class of the latent sources that read a file: what they share.

    It gives ``__len__``, `dim` and `dtype` (from ``_n``, ``_dim`` and
    ``_dtype``), a `lathash` computed once and checked against the value the
    file records (``_lathash``), squared norms kept once computed
    (``cache_derived``), pickling without them, and checks that the file was
    not replaced since it was opened and that the rows read hold no NaN or
    infinite values (until one full pass has checked them all). A subclass
    sets ``column``, ``_n``, ``_dim``, ``_dtype`` and ``_lathash`` (or None),
    calls ``_remember_file(path)`` in its ``__init__``, and calls
    ``_check_unchanged()`` and ``_check_rows(...)`` as it reads in
    `iter_chunks` and `take`. The package's file sources are
    `~galmorphsearch.database.FITSLatents` and
    `~galmorphsearch.database.HDF5Latents`.
    """

    cache_derived = True

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
        from .hashing import latent_hash

        if not self._lathash_checked and self.column == "latent":
            for _ in self.iter_chunks(default_chunk_rows(self)):
                pass  # hashed and checked by the pass itself
        if not self._lathash_checked:  # another column
            self._settle_lathash(latent_hash(self))
        return self._lathash

    def _pass_hasher(self):
        """A hasher for a pass over the latents, or None when their hash is known."""
        from .hashing import LatentHasher

        return None if self._lathash_checked or self.column != "latent" else LatentHasher()

    def _settle_lathash(self, computed):
        """
        Check ``computed``, the hash of all the latents as read, against the
        ``LATHASH`` the file records, and remember it.
        """
        from .hashing import lathash_mismatch

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
