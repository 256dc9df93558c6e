# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""FITS storage of latent databases: one checksummed binary table HDU."""

import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from ..utils import DatabaseFormatError, atomic_path

__all__ = []

EXTNAME = "LATENTS"
HDUVERS = "1.0"
ORIGIN = "galmorphsearch"

_CHECKSUM_MESSAGES = ("checksum verification failed", "datasum verification failed")


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
    hdulist = fits.HDUList([fits.PrimaryHDU(), hdu])
    with atomic_path(path, overwrite=overwrite) as tmp:
        hdulist.writeto(tmp, checksum=True)


def _format_error(path, reason):
    msg = f"{path} is not a valid galmorphsearch latent database: {reason}"
    return DatabaseFormatError(msg)


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
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            hdulist = fits.open(path, checksum=True, memmap=memmap)
        except Exception as exc:  # any failure means a broken file
            raise _format_error(path, f"astropy cannot open it as FITS ({exc})") from exc
        try:
            if EXTNAME not in hdulist:
                raise _format_error(path, f"it has no {EXTNAME!r} HDU")
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
