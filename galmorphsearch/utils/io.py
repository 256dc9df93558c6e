# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Safe file writing: never overwrite by accident, never leave half a file."""

import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import threading
import time
from pathlib import Path

from ._lock import DEFAULT_LOCK_TIMEOUT, file_lock, host_identity, lock_path, pid_alive, valid_pid

__all__ = ["atomic_path", "remove_stale_temporaries", "file_lock", "lock_path",
           "DEFAULT_LOCK_TIMEOUT"]

#: Seconds after which a temporary file of another machine (whose writer
#: cannot be checked) or of an older version of the package is removed.
STALE_TEMPORARY_AGE = 86400.0

# Temporary files this process is writing (never removed as leftovers).
_active = set()
_active_guard = threading.Lock()

# Errors of os.link that mean "no hard links here" (some network, FAT and
# FUSE file systems): a new file is then renamed into place instead.
_NO_HARD_LINKS = frozenset(
    getattr(errno, name) for name in ("EPERM", "EXDEV", "EINVAL", "ENOSYS", "ENOTSUP",
                                      "EOPNOTSUPP", "EMLINK")
    if hasattr(errno, name))


@contextlib.contextmanager
def atomic_path(path, overwrite=False):
    """
    Give a temporary path to write to, renamed to ``path`` on success.

    The temporary file lives in the same directory as ``path`` so that the
    final `os.replace` is atomic: a reader sees either the old file or the
    complete new one, and an interrupted write leaves the old file intact.
    Its name, ``.<name>.<host>_<pid>_<random>.tmp<suffix>``, says which
    process wrote it: a write killed before it could remove it (``kill
    -9``, a crash, a power cut) leaves it behind, and the next write to
    ``path`` removes it (see `remove_stale_temporaries`).

    A ``path`` that is a symbolic link writes the file it points to (the
    temporary file lives beside that file, and the link stays a link).
    Without ``overwrite``, the new file is published with a hard link
    (`os.link`), which fails if a file of that name appeared during the
    write: a file another process wrote meanwhile is never replaced. Where
    the file system has no hard links, the name is checked again just
    before the rename.

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
        If ``path`` exists and ``overwrite`` is `False`, when the write
        starts or when it ends (another process wrote it meanwhile: its
        file is kept, this one is dropped).

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
    target = _link_target(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Housekeeping never stops a write.
    with contextlib.suppress(OSError, ValueError, OverflowError):
        remove_stale_temporaries(target)
    while True:
        tmp = target.with_name(_temp_name(target))
        try:
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue
        break
    os.close(fd)
    with _active_guard:
        _active.add(tmp.name)
    tmp.unlink()
    try:
        yield tmp
        if not tmp.exists():
            msg = f"nothing was written for {path}"
            raise OSError(msg)
        # Some writers create files readable by their owner only; the result gets
        # the mode of the file it replaces, or the one the umask gives new files.
        mode = (stat.S_IMODE(target.stat().st_mode) if target.exists()
                else 0o666 & ~_current_umask())
        os.chmod(tmp, mode)
        if overwrite:
            os.replace(tmp, target)
        else:
            _publish_new(tmp, target, path)
    finally:
        with _active_guard:
            _active.discard(tmp.name)
        if tmp.exists():
            tmp.unlink()


def _link_target(path):
    """The file ``path`` stands for: itself, or where the symbolic link it is points to."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _publish_new(tmp, target, path):
    """
    Give the finished temporary file ``tmp`` the name ``target``, which must
    not exist (``path``, the name the caller gave, is the one reported).
    """
    try:
        os.link(tmp, target)  # atomic, and fails if target exists
    except OSError as exc:
        if _same_file(tmp, target):
            return  # linked, though the call said otherwise (a retried NFS request)
        if not isinstance(exc, FileExistsError) and exc.errno not in _NO_HARD_LINKS:
            raise
        if isinstance(exc, FileExistsError) or os.path.lexists(target):
            msg = (f"{path} was not written: another process wrote it meanwhile (it did not "
                   "exist when this write began); its file is kept. Pass overwrite=True to "
                   "replace it.")
            raise FileExistsError(msg) from None
        os.replace(tmp, target)  # no hard links here: checked just before


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def remove_stale_temporaries(path, max_age=STALE_TEMPORARY_AGE):
    """
    Remove the temporary files that killed writes of ``path`` left behind.

    `atomic_path` (so every writer of the package) calls this before each
    write; call it yourself to clean a folder without writing. A temporary
    file of ``path`` (named ``.<name>.<host>_<pid>_<random>.tmp<suffix>``,
    ``<host>`` 8 hexadecimal digits standing for the host name and boot) is
    removed when

    - it was made on this host by a process that no longer runs;
    - it was made on another host, or on this one before it restarted
      (whose processes cannot be checked), and is older than ``max_age``
      seconds;
    - it has the name older versions gave temporary files
      (``.<name>.<8 random characters>.tmp<suffix>``) and is older than
      ``max_age``.

    The temporary files of writes still running are kept, and so are those
    of this host whose process id cannot be one (a planted name) until they
    are older than ``max_age``. A ``path`` that is a symbolic link stands
    for the file it points to, beside which its temporaries are written.

    Parameters
    ----------
    path : str or path-like
        The file whose leftovers are removed (it need not exist).
    max_age : float, optional
        Age in seconds beyond which a leftover whose writer cannot be
        checked is removed. Default: one day.

    Returns
    -------
    removed : list of `pathlib.Path`
        The files removed.

    Examples
    --------
    >>> from galmorphsearch.utils import remove_stale_temporaries
    >>> remove_stale_temporaries("database.fits")  # doctest: +SKIP
    [PosixPath('.database.fits.3f2a9c1e_41877_0b6d2e9a.tmp.fits')]
    """
    path = _link_target(path)
    name, suffix = re.escape(path.name), re.escape(path.suffix)
    current = re.compile(rf"\.{name}\.([0-9a-f]{{8}})_(\d+)_[0-9a-f]{{8}}\.tmp{suffix}")
    legacy = re.compile(rf"\.{name}\.[a-z0-9_]{{8}}\.tmp{suffix}")
    here, now = _host_tag(), time.time()
    removed = []
    try:
        entries = list(os.scandir(path.parent if str(path.parent) else "."))
    except FileNotFoundError:
        return removed
    for entry in entries:
        match = current.fullmatch(entry.name)
        if match is None and legacy.fullmatch(entry.name) is None:
            continue
        with _active_guard:
            if entry.name in _active:
                continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        pid = None
        if match is not None and match.group(1) == here:
            with contextlib.suppress(ValueError):
                pid = int(match.group(2))
            if not valid_pid(pid):
                pid = None  # no process's: judged by age, like another host's
        if pid is not None:
            stale = pid == os.getpid() or not pid_alive(pid)  # our own ones are _active
        else:
            stale = age > max_age
        if stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(path.with_name(entry.name))
    return removed


def _host_tag(host=None):
    """8 hexadecimal digits that stand for this host (and boot) in temporary file names."""
    host = host_identity() if host is None else host
    return hashlib.sha256(host.encode("utf-8")).hexdigest()[:8]


def _temp_name(path, pid=None, host=None):
    """The name of a new temporary file for ``path`` (of process ``pid`` on ``host``)."""
    path = Path(path)
    pid = os.getpid() if pid is None else int(pid)
    return f".{path.name}.{_host_tag(host)}_{pid}_{secrets.token_hex(4)}.tmp{path.suffix}"


def _current_umask():
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
