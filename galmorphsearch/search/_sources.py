# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Latent sources: where the search backends read database latents from.

A *latent source* is any object with

- ``len(source)``: the number of rows N;
- ``source.dim``: the latent dimension D;
- ``source.dtype``: the storage dtype (``float32`` or ``float16``);
- ``source.iter_chunks(chunk_rows)``: yields ``(start, block)`` pairs in row
  order, ``block`` a float32 array of shape ``(n, D)`` with ``n <=
  chunk_rows`` (the source may reuse the buffer for the next block, so a
  block must not be kept);
- ``source.take(indices)``: the float32 rows at the given (sorted, unique)
  row numbers, shape ``(len(indices), D)``.

`ArrayLatents` is the in-memory implementation; memory-mapped FITS and HDF5
stores implement the same protocol, so that `~galmorphsearch.search.ExactBackend`
can stream a database that does not fit in memory.
"""

import hashlib

import numpy as np

__all__ = ["ArrayLatents", "as_latent_source", "is_latent_source", "latent_hash"]

#: Rows read at once when a source is streamed to hash it or index it.
DEFAULT_STREAM_ROWS = 32768


def is_latent_source(obj):
    """Whether ``obj`` implements the latent-source protocol (not a plain array)."""
    if isinstance(obj, np.ndarray):
        return False
    return all(hasattr(obj, name) for name in ("iter_chunks", "take", "dim", "__len__"))


class ArrayLatents:
    """
    An in-memory latent source over a 2-D array.

    Parameters
    ----------
    array : array-like, shape (N, D)
        The latents, of a real floating dtype. float16 and float32 arrays
        are kept as they are (without a copy when already C-contiguous and
        native); other real dtypes are converted to float32. Blocks and rows
        are handed out as float32.

    Raises
    ------
    ValueError
        If the array is not 2-D, has latent dimension 0 or does not hold
        real numbers.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.search._sources import ArrayLatents
    >>> source = ArrayLatents(np.arange(12, dtype=np.float16).reshape(4, 3))
    >>> len(source), source.dim, source.dtype
    (4, 3, dtype('float16'))
    >>> [(start, block.shape) for start, block in source.iter_chunks(3)]
    [(0, (3, 3)), (3, (1, 3))]
    >>> source.take([1, 3])
    array([[ 3.,  4.,  5.],
           [ 9., 10., 11.]], dtype=float32)
    """

    def __init__(self, array):
        arr = np.asarray(array)
        if arr.ndim != 2:
            msg = f"Latents must be a 2-D array (n, latent_dim); got shape {arr.shape}."
            raise ValueError(msg)
        if arr.shape[1] == 0:
            msg = "The latents have dimension 0."
            raise ValueError(msg)
        if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
            msg = f"Latents must hold real numbers; got dtype {arr.dtype}."
            raise ValueError(msg)
        keep = arr.dtype.kind == "f" and arr.dtype.itemsize in (2, 4)
        dtype = arr.dtype.newbyteorder("=") if keep else np.float32
        self._array = np.ascontiguousarray(arr, dtype=dtype)

    def __len__(self):
        return self._array.shape[0]

    def __repr__(self):
        return f"<ArrayLatents {self._array.shape[0]} x {self.dim} {self.dtype}>"

    @property
    def dim(self):
        """Latent dimension D."""
        return self._array.shape[1]

    @property
    def dtype(self):
        """Storage dtype (float16 or float32)."""
        return self._array.dtype

    @property
    def array(self):
        """The underlying (N, D) array."""
        return self._array

    def iter_chunks(self, chunk_rows):
        """
        The latents in blocks of rows, in order.

        Parameters
        ----------
        chunk_rows : int
            The largest number of rows per block.

        Yields
        ------
        start : int
            Row number of the block's first row.
        block : `~numpy.ndarray`, shape (n, D), float32
            The rows (a view of the array when it is float32).
        """
        chunk_rows = max(1, int(chunk_rows))
        n = self._array.shape[0]
        for start in range(0, n, chunk_rows):
            yield start, self._array[start:start + chunk_rows].astype(np.float32, copy=False)

    def take(self, indices):
        """
        The rows at ``indices`` as float32.

        Parameters
        ----------
        indices : array-like of int
            Row numbers.

        Returns
        -------
        rows : `~numpy.ndarray`, shape (len(indices), D), float32
        """
        idx = np.asarray(indices, dtype=np.int64)
        return self._array[idx].astype(np.float32, copy=False)


def as_latent_source(latents):
    """
    A latent source for an array or an object of the protocol.

    Parameters
    ----------
    latents : array-like or latent source
        An (N, D) array (wrapped in `ArrayLatents`) or any object with
        ``__len__``, ``dim``, ``dtype``, ``iter_chunks`` and ``take``
        (returned as it is).

    Returns
    -------
    source : latent source

    Raises
    ------
    ValueError
        If an array is not 2-D or does not hold real numbers.
    """
    if isinstance(latents, ArrayLatents) or is_latent_source(latents):
        return latents
    return ArrayLatents(latents)


def source_dtype(source):
    """The storage dtype of a source (float32 when it does not say)."""
    return np.dtype(getattr(source, "dtype", np.float32))


def latent_hash(latents, chunk_rows=DEFAULT_STREAM_ROWS):
    """
    A content hash of latents in row order.

    The hash is the first 16 hexadecimal digits of the SHA-256 of the
    latents as little-endian float32, row after row, computed block by
    block (so a memory-mapped store is never read whole). It does not
    depend on how the latents are stored (float16 latents are hashed as
    their float32 values) and changes when any value or the row order
    changes.

    Parameters
    ----------
    latents : array-like or latent source
        The latents.
    chunk_rows : int, optional
        Rows hashed at once.

    Returns
    -------
    digest : str
        16 hexadecimal digits.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.search._sources import latent_hash
    >>> a = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> latent_hash(a) == latent_hash(a.astype(np.float64))
    True
    >>> latent_hash(a) == latent_hash(a[::-1])
    False
    """
    source = as_latent_source(latents)
    digest = hashlib.sha256()
    digest.update(f"latents {len(source)} x {int(source.dim)}\n".encode())
    for _, block in source.iter_chunks(chunk_rows):
        digest.update(np.ascontiguousarray(block, dtype="<f4"))
    return digest.hexdigest()[:16]
