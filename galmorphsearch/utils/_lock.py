# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Exclusive lock files beside the files they protect.

A lock is a file ``<path>.lock`` created with ``O_CREAT | O_EXCL`` (atomic
on local file systems and on NFS version 3 and later, unlike ``fcntl`` or
``flock`` locks, which NFS may silently not enforce) and holding its
owner: process id, host name, boot id (Linux), process start time,
creation time and a random token. A lock whose owner is gone is *stale*
and is removed, with a warning, by the next process that wants it:

- an owner on this host (same host name and, where known, same boot)
  whose process no longer runs, or whose process id now belongs to a
  process started later;
- a lock file whose owner cannot be read (its writer killed between
  creating and filling it) once it has been seen unreadable for
  `UNREADABLE_GRACE` seconds, or is older than `UNREADABLE_AGE` (file
  times come from the file server, whose clock may differ from ours).

The owner of a lock on another host (or on this host before it
restarted, which cannot be told from another machine of the same name)
cannot be checked: it is waited for until the timeout, and the error then
says how to remove the file.
"""

import contextlib
import json
import math
import os
import socket
import threading
import time
import uuid
import warnings
from pathlib import Path

from .exceptions import DatabaseLockedError, GalMorphSearchWarning

__all__ = ["file_lock", "lock_path"]

#: Seconds a writer waits for a lock by default.
DEFAULT_LOCK_TIMEOUT = 600.0

#: Seconds a lock file whose owner cannot be read is waited for before it is stale.
UNREADABLE_GRACE = 10.0

#: Age in seconds (by the file's time) beyond which such a lock file is stale at once.
UNREADABLE_AGE = 600.0

#: Seconds after which the guard of a lock being broken is itself stale.
_BREAK_GRACE = 30.0

#: The largest process id there can be (``pid_t`` is a signed 32-bit integer).
MAX_PID = 2**31 - 1

# Locks held by this process: lock path -> [thread ident, depth, token]; and
# the tokens of locks this process is creating or holds (a lock file with
# this process's pid but an unknown token is a leftover of an earlier
# process that had the same pid).
_held = {}
_own_tokens = set()
_guard = threading.Lock()


def lock_path(path):
    """
    The lock file of ``path``: ``<path>.lock`` in the same folder.

    Symbolic links are resolved first (`os.path.realpath`): a file and the
    links to it share one lock, ``<file the links point to>.lock``, as
    they share one content.

    Parameters
    ----------
    path : str or path-like
        The protected file.

    Returns
    -------
    lock : `pathlib.Path`
    """
    path = Path(os.path.realpath(path))
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def file_lock(path, timeout=DEFAULT_LOCK_TIMEOUT):
    """
    Hold the exclusive lock of ``path`` (the file ``<path>.lock``, see `lock_path`).

    Processes and threads that lock the same path run one at a time; the
    same thread may take a lock it holds again (the lock is released when
    the outermost holder exits). The lock file is removed on exit.

    Parameters
    ----------
    path : str or path-like
        The file to protect (it need not exist).
    timeout : float or None, optional
        Seconds to wait for another holder; ``0`` tries once, `None` waits
        for ever.

    Yields
    ------
    lock : `pathlib.Path`
        The lock file.

    Raises
    ------
    ~galmorphsearch.utils.DatabaseLockedError
        If another process still holds the lock after ``timeout`` seconds;
        the message names the lock file, its holder and how to remove a
        lock left by a killed process on another machine.
    OSError
        If the lock file cannot be created (a read-only folder).

    Warns
    -----
    ~galmorphsearch.utils.GalMorphSearchWarning
        When a stale lock (of a process that no longer runs) is removed.

    Examples
    --------
    >>> from galmorphsearch.utils import file_lock
    >>> with file_lock("db.fits") as lock:  # doctest: +SKIP
    ...     pass  # read, change and write db.fits; nobody else can
    """
    if timeout is not None:
        timeout = float(timeout)
        if not timeout >= 0:
            msg = f"The lock timeout must be a number of seconds >= 0 or None; got {timeout!r}."
            raise ValueError(msg)
    lock = lock_path(path)
    key = os.path.abspath(lock)
    me = threading.get_ident()
    with _guard:
        entry = _held.get(key)
        if entry is not None and entry[0] == me:
            entry[1] += 1
            reentrant = True
        else:
            reentrant = False
    if reentrant:
        try:
            yield lock
        finally:
            with _guard:
                _held[key][1] -= 1
        return
    token = _acquire(lock, path, timeout)
    with _guard:
        _held[key] = [me, 1, token]
    try:
        yield lock
    finally:
        with _guard:
            _held.pop(key, None)
        _release(lock, token)


# ----------------------------------------------------------------------
# owners
def hostname():
    """This machine's host name, as lock files record it."""
    return socket.gethostname()


def boot_id():
    """The id of this boot of the machine (Linux), or None."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def host_identity():
    """What tells this machine (and boot) from others: host name and boot id."""
    boot = boot_id()
    return hostname() if boot is None else f"{hostname()}/{boot}"


def pid_alive(pid):
    """
    Whether process ``pid`` of this host runs (`True` when it cannot be told).

    A number that cannot be a process id (not a positive integer up to
    `MAX_PID`) is no running process. Windows has no signal 0 (``os.kill``
    would end the process): every other process counts as running there.
    """
    if not valid_pid(pid):
        return False
    if os.name == "nt":  # pragma: no cover - POSIX is tested
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except OSError:  # PermissionError: another user's process
        return True
    # A zombie (ended, not yet reaped by its parent) no longer runs.
    return _process_state(pid) != b"Z"


def valid_pid(pid):
    """Whether ``pid`` can be a process id: an integer from 1 to `MAX_PID`."""
    return isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid <= MAX_PID


def _process_state(pid):
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None


def process_start(pid):
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _owner_record(token):
    pid = os.getpid()
    return {"pid": pid, "host": hostname(), "boot": boot_id(), "start": process_start(pid),
            "time": time.time(), "token": token}


def _read_owner(lock):
    """
    ``(owner, identity)`` of a lock file: its record (a dict, or None when
    unreadable) and ``(inode, size, mtime)`` to tell it from a newer one;
    ``(None, None)`` when there is no lock file.

    A record this package cannot have written (no JSON object, a process id
    that is not a possible one, a host that is not a string) is unreadable;
    a ``time`` that is not a representable date, or a ``token`` that is not
    a string, is unknown (None).
    """
    try:
        with open(lock, "rb") as f:
            st = os.fstat(f.fileno())
            raw = f.read(4096)
    except FileNotFoundError:
        return None, None
    identity = (st.st_ino, st.st_size, st.st_mtime_ns)
    try:
        owner = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: deeply nested JSON
        owner = None
    if not (isinstance(owner, dict) and valid_pid(owner.get("pid"))
            and isinstance(owner.get("host"), str)):
        return None, identity
    if not isinstance(owner.get("token"), str):
        owner["token"] = None
    owner["time"] = _valid_time(owner.get("time"))
    return owner, identity


def _valid_time(value):
    """``value`` if it is a time (seconds since the epoch) that is a date, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        if not math.isfinite(value):
            return None
        time.localtime(value)
    except (OverflowError, ValueError, OSError):
        return None
    return value


def _stale_reason(owner, identity, unreadable_since):
    """
    Why a lock is stale, or None while its owner may still hold it.

    ``unreadable_since`` is when (`time.monotonic`) this lock file, as it is
    now, was first seen without a readable owner.
    """
    if owner is None:
        age = time.time() - identity[2] / 1e9
        seen = time.monotonic() - unreadable_since
        if age > UNREADABLE_AGE or seen > UNREADABLE_GRACE:
            return (f"its owner cannot be read (it is {max(age, 0):.0f} s old and was "
                    f"unreadable for the {seen:.0f} s waited)")
        return None
    boot = owner.get("boot")
    if owner["host"] != hostname() or (boot is not None and boot_id() is not None
                                       and boot != boot_id()):
        return None
    pid = owner["pid"]
    if pid == os.getpid():
        with _guard:
            ours = owner.get("token") in _own_tokens
        return None if ours else (f"process {pid} on {owner['host']} (this process's id, "
                                  "reused) no longer holds it")
    if not pid_alive(pid):
        return f"process {pid} on {owner['host']} that made it no longer runs"
    start = owner.get("start")
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return (f"process {pid} on {owner['host']} that made it no longer runs "
                    "(its id belongs to a newer process)")
    return None


def _describe(owner):
    if owner is None:
        return "held by a process that did not record itself"
    when = _valid_time(owner.get("time"))
    since = ""
    if when is not None:
        since = " since " + time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    where = owner["host"]
    boot = owner.get("boot")
    if where == hostname() and boot is not None and boot_id() not in (None, boot):
        where += " (before it last restarted, or another machine of that name)"
    return f"held by process {owner['pid']} on host {where}{since}"


# ----------------------------------------------------------------------
# taking, breaking and releasing
def _acquire(lock, path, timeout):
    token = uuid.uuid4().hex
    with _guard:
        _own_tokens.add(token)
    try:
        record = json.dumps(_owner_record(token)).encode("utf-8")
        lock.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        delay = 0.01
        unreadable = {}
        while True:
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass
            except OSError as exc:
                msg = f"Cannot create the lock file {lock} to write {path}: {exc}"
                raise type(exc)(exc.errno, msg) from exc
            else:
                try:
                    os.write(fd, record)
                finally:
                    os.close(fd)
                return token
            owner, identity = _read_owner(lock)
            if identity is None:
                continue  # released meanwhile
            if owner is None:
                unreadable.setdefault(identity, time.monotonic())
            reason = _stale_reason(owner, identity, unreadable.get(identity))
            if reason is not None:
                _break(lock, identity, reason)
                continue
            waited = time.monotonic() - start
            if timeout is not None and waited >= timeout:
                msg = (f"Cannot write {path}: its lock file {lock} is {_describe(owner)}"
                       f" (waited {waited:.1f} s). Another process is writing it; if none is "
                       f"(a process killed on another machine), remove {lock} and try again.")
                raise DatabaseLockedError(msg)
            pause = delay if timeout is None else min(delay, max(timeout - waited, 0.0))
            time.sleep(pause)
            delay = min(2 * delay, 0.5)
    except BaseException:
        with _guard:
            _own_tokens.discard(token)
        raise


def _break(lock, identity, reason):
    """
    Remove a stale lock file, if it is still the one judged stale.

    Breakers take turns through a guard file, so that one cannot remove the
    fresh lock another has just made in place of the stale one.
    """
    guard = lock.with_name(lock.name + ".break")
    try:
        fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - guard.stat().st_mtime > _BREAK_GRACE:
                guard.unlink()  # left by a breaker killed in its few microseconds
        time.sleep(0.01)
        return
    os.close(fd)
    try:
        _, now = _read_owner(lock)
        if now != identity:
            return
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
    finally:
        with contextlib.suppress(FileNotFoundError):
            guard.unlink()
    warnings.warn(f"Removed the stale lock file {lock}: {reason}.", GalMorphSearchWarning,
                  stacklevel=5)


def _release(lock, token):
    with _guard:
        _own_tokens.discard(token)
    owner, _ = _read_owner(lock)
    if owner is not None and owner.get("token") == token:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
        return
    warnings.warn(f"The lock file {lock} was removed or replaced by another process while "
                  "this one held it; concurrent writes may have been lost.",
                  GalMorphSearchWarning, stacklevel=4)
