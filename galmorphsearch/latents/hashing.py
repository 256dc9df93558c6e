# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The one definition of ``LATHASH``, the content hash of a database's latents.

``LATHASH`` is the first 16 hexadecimal digits of the sha256 of the
``latent`` column in row order, each value as stored: little-endian float32,
or little-endian float16 for a database written with ``dtype='float16'``
(the raw bits of FITS's int16 column are the same bytes). Nothing else goes
into the hash (no shape, no header), so the hash of the same stored latents
is the same whatever wrote them: the FITS writers and the HDF5 writer of
`galmorphsearch.database` and `latent_hash` all feed the stored values
through `LatentHasher`, and search index sidecars record it.
"""

import hashlib

import numpy as np

from ..utils import DatabaseFormatError
from .sources import as_latent_source, default_chunk_rows, storage_dtype

__all__ = ["latent_hash", "LatentHasher", "LATHASH_DIGITS", "lathash_mismatch"]

#: Hexadecimal digits kept of the sha256.
LATHASH_DIGITS = 16


class LatentHasher:
    """
    Accumulate ``LATHASH`` over the stored latents, a block of rows at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.latents import LatentHasher
    >>> hasher = LatentHasher()
    >>> hasher.update(np.zeros((2, 3), np.float32))
    >>> len(hasher.hexdigest())
    16
    """

    def __init__(self):
        self._digest = hashlib.sha256()

    def update(self, stored):
        """
        Add rows, as stored.

        Parameters
        ----------
        stored : `~numpy.ndarray`
            ``(n, D)`` rows of 2- or 4-byte values (float16, float32, or the
            int16 bits of float16), in any byte order; they are hashed as
            little-endian.
        """
        arr = np.asarray(stored)
        if arr.dtype.itemsize not in (2, 4):
            msg = f"LATHASH hashes 2- or 4-byte stored values; got {arr.dtype}."
            raise ValueError(msg)
        self._digest.update(np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).data)

    def hexdigest(self):
        """The ``LATHASH`` of the rows added so far."""
        return self._digest.hexdigest()[:LATHASH_DIGITS]


def lathash_mismatch(path, recorded, computed):
    """
    The error for a file whose ``LATHASH`` does not match its latents.

    Parameters
    ----------
    path : str or path-like
        The database file.
    recorded : str
        The ``LATHASH`` the file records.
    computed : str
        The hash of the latents it holds.

    Returns
    -------
    error : `~galmorphsearch.utils.DatabaseFormatError`
    """
    msg = (f"{path} is not a valid galmorphsearch latent database: its LATHASH {recorded} "
           f"does not match its latents (the latents hash to {computed}); they were changed "
           "after the file was written, and a search index made for the file would not "
           "match them. If the change was deliberate, read the file with verify=False and "
           "write it again.")
    return DatabaseFormatError(msg)


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
    source : `~galmorphsearch.latents.LatentSource` or array-like
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
    >>> from galmorphsearch.latents import latent_hash
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
