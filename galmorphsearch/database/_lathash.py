# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The one definition of ``LATHASH``, the content hash of a database's latents.

``LATHASH`` is the first 16 hexadecimal digits of the sha256 of the
``latent`` column in row order, each value as stored: little-endian float32,
or little-endian float16 for a database written with ``dtype='float16'``
(the raw bits of FITS's int16 column are the same bytes). Nothing else goes
into the hash (no shape, no header), so the hash of the same stored latents
is the same whatever wrote them: `write_fits`, the chunked FITS writer, the
HDF5 writer and `~galmorphsearch.database.latent_hash` all feed the stored
values through `LatentHasher`, and search index sidecars record it.
"""

import hashlib

import numpy as np

from ..utils import DatabaseFormatError

__all__ = ["LatentHasher", "LATHASH_DIGITS", "lathash_mismatch"]

#: Hexadecimal digits kept of the sha256.
LATHASH_DIGITS = 16


class LatentHasher:
    """
    Accumulate ``LATHASH`` over the stored latents, a block of rows at a time.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.database._lathash import LatentHasher
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
