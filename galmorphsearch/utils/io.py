# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Safe file writing: never overwrite by accident, never leave half a file."""

import contextlib
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path, overwrite=False):
    """
    Give a temporary path to write to, renamed to ``path`` on success.

    The temporary file lives in the same directory as ``path`` so that the
    final `os.replace` is atomic: a reader sees either the old file or the
    complete new one, and an interrupted write leaves the old file intact.

    Parameters
    ----------
    path : str or path-like
        The final destination.
    overwrite : bool, optional
        Whether an existing file at ``path`` may be replaced.

    Yields
    ------
    tmp : `pathlib.Path`
        Where to write. It does not exist yet when yielded.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is `False`.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.utils import atomic_path
    >>> with atomic_path("table.fits", overwrite=True) as tmp:  # doctest: +SKIP
    ...     Table({"a": np.arange(3)}).write(tmp, format="fits")
    """
    path = Path(path)
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():
            msg = f"nothing was written for {path}"
            raise OSError(msg)
        # Some writers create files readable by their owner only; the result gets
        # the mode of the file it replaces, or the one the umask gives new files.
        mode = (stat.S_IMODE(path.stat().st_mode) if path.exists()
                else 0o666 & ~_current_umask())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _current_umask():
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
