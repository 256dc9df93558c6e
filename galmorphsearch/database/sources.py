# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The latent sources of database files: `FITSLatents` and `HDF5Latents`.

They read the latent column of a database file chunk by chunk, as latent
sources (`~galmorphsearch.latents.LatentSource`, through their base
`~galmorphsearch.latents.FileLatentSource`): each chunk is read into a
buffer that is reused for the next one, with plain reads rather than one
memory map of the whole file, so the memory they use does not grow with the
file. `LatentDatabase.read(..., memmap=True)
<galmorphsearch.database.LatentDatabase.read>` searches and streams a
database through them.
"""

import contextlib
import os

import numpy as np
from astropy.utils.decorators import deprecated

from ..latents import FileLatentSource, as_latent_source, exact_neighbours, storage_dtype
from ..latents import sources as _latent_sources
from ..utils import DatabaseFormatError
from ._fits import _read_exactly, fits_layout
from ._hdf5 import hdf5_layout

__all__ = ["FITSLatents", "HDF5Latents", "chunked_neighbours"]


class FITSLatents(FileLatentSource):
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
        self._dtype = storage_dtype(lattype)
        self._data_offset = layout["data_offset"]
        self._row_bytes = layout["row_bytes"]
        self._field_offset = offset
        self._lathash = layout["lathash"] if column == "latent" else None
        self._remember_file(path)

    def _default_rows(self, chunk_rows):
        if chunk_rows is None:
            # Whole table rows are read: bound the raw buffer, not just the latents.
            return max(1, min(len(self),
                              _latent_sources.DEFAULT_CHUNK_BYTES // max(self._row_bytes, 1)))
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


class HDF5Latents(FileLatentSource):
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
        with contextlib.suppress(OSError):  # advice only
            advise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)


@deprecated("0.1", alternative="galmorphsearch.latents.exact_neighbours")
def chunked_neighbours(queries, source, k, *, chunk_rows=None, exclude=None):
    """
    Exact Euclidean k nearest neighbours in a latent source, read in chunks.

    `~galmorphsearch.latents.exact_neighbours` of ``source`` as a latent
    source (an array is wrapped in an `~galmorphsearch.latents.ArrayLatents`,
    checked for NaN and infinite values): the same neighbours and
    distances as before the function moved.

    Parameters
    ----------
    queries : array-like, shape (Q, D) or (D,)
        Query latent vectors.
    source : `~galmorphsearch.latents.LatentSource`, `LatentDatabase` or array-like
        The database latents (see `~galmorphsearch.latents.as_latent_source`).
    k : int
        Number of neighbours per query.
    chunk_rows : int, optional
        Database rows read at once.
    exclude : array-like of int, shape (Q,), optional
        For each query, a database row that must not be returned, or -1
        for none.

    Returns
    -------
    indices : `~numpy.ndarray`, shape (Q, k), int64
        Database rows of the neighbours, nearest first.
    distances : `~numpy.ndarray`, shape (Q, k), float64
        Their Euclidean distances, ascending.
    """
    return exact_neighbours(queries, as_latent_source(source), k, chunk_rows=chunk_rows,
                            exclude=exclude)
