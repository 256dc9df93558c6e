# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Hostile and careless inputs to database storage: concurrent appends, stale
locks, files edited after they were written (statistics, latents), cut
files and the temporary files of killed writes.
"""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from galmorphsearch.database import LatentDatabase
from galmorphsearch.utils import (
    DatabaseFormatError,
    DatabaseLockedError,
    GalMorphSearchWarning,
    atomic_path,
    remove_stale_temporaries,
)

LATDIM = 8


def make_table(n=12, seed=0, start=0):
    rng = np.random.default_rng(seed)
    table = Table({
        "objid": np.arange(start, start + n, dtype=np.int64),
        "ra": np.linspace(150, 151, n),
        "dec": np.linspace(1, 2, n),
        "morphology": [("Er", "Sb", "SBc", "Sc")[i % 4] for i in range(n)],
        "type_index": np.array([0, 5, 10, 6])[np.arange(n) % 4],
        "catalog": ["GZ2"] * n,
        "latent": rng.normal(size=(n, LATDIM)).astype(np.float32),
        "background_latent": rng.normal(size=(n, LATDIM)).astype(np.float32),
    })
    table.meta.update(ENCODER="stub", ENCARCH="resnet18", ENCHASH="0123456789abcdef",
                      INSIZE=64, LATDIM=LATDIM, SCHEME="gz2")
    return table


@pytest.fixture(scope="module")
def db():
    return LatentDatabase(make_table())


def _dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(proc.stdout)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    pytest.fail(f"pid {pid} was reused at once")  # pragma: no cover


def _lock_file(path, pid, host=None):
    lock = path.with_name(path.name + ".lock")
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(),
                                "time": time.time(), "token": "test"}))
    return lock


# ----------------------------------------------------------------------
# 1. lost appends: an exclusive lock around read-merge-write
_APPENDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from astropy.table import Table
    from galmorphsearch.database import LatentDatabase

    path, me, folder = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    merge = LatentDatabase.merge.__func__

    def slow_merge(cls, databases):
        time.sleep(0.2)  # widen the window between reading the file and writing it
        return merge(cls, databases)

    LatentDatabase.merge = classmethod(slow_merge)
    (folder / f"ready{me}").touch()
    while not all((folder / f"ready{i}").exists() for i in (0, 1)):
        time.sleep(0.005)
    for k in range(2):
        rng = np.random.default_rng(100 * me + k)
        n = 3
        table = Table({"objid": np.arange(n, dtype=np.int64) + 1000 * (me + 1) + 10 * k,
                       "ra": np.zeros(n), "dec": np.zeros(n), "morphology": ["Sb"] * n,
                       "type_index": np.full(n, 5), "catalog": ["x"] * n,
                       "latent": rng.normal(size=(n, 8)).astype(np.float32),
                       "background_latent": rng.normal(size=(n, 8)).astype(np.float32)})
        table.meta.update(ENCODER="stub", ENCARCH="resnet18", ENCHASH="0123456789abcdef",
                          INSIZE=64, LATDIM=8, SCHEME="gz2")
        LatentDatabase.append_to_file(path, LatentDatabase(table), lock_timeout=60)
""")


def test_concurrent_appends_lose_nothing(db, tmp_path):
    # Two real processes, each appending twice (the lock is the same for HDF5).
    path = tmp_path / "db.fits"
    db.write(path)
    script = tmp_path / "append.py"
    script.write_text(_APPENDER)
    procs = [subprocess.Popen([sys.executable, str(script), str(path), str(me), str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me in (0, 1)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    back = LatentDatabase.read(path)
    expected = {*db.table["objid"].tolist(),
                *(1000 * (me + 1) + 10 * k + i for me in (0, 1) for k in (0, 1)
                  for i in range(3))}
    assert len(back) == len(db) + 12
    assert set(back.table["objid"].tolist()) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, script.name, "ready0", "ready1"])  # no lock file or temporary left


def test_stale_lock_of_a_dead_process_is_broken(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)
    lock = _lock_file(path, _dead_pid())
    more = LatentDatabase(make_table(n=3, seed=1, start=100))
    with pytest.warns(GalMorphSearchWarning, match=r"stale lock file .*db\.fits\.lock.*no longer"):
        LatentDatabase.append_to_file(path, more, lock_timeout=5)
    assert len(LatentDatabase.read(path)) == len(db) + 3
    assert not lock.exists()
    # An unreadable lock file (its writer killed before it wrote its owner) is
    # broken once it is old enough.
    lock.write_text("")
    old = time.time() - 3600
    os.utime(lock, (old, old))
    with pytest.warns(GalMorphSearchWarning, match="stale lock file"):
        db.write(path, overwrite=True, lock_timeout=5)
    assert not lock.exists()


def test_live_lock_makes_writers_wait_then_fail(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)
    before = path.read_bytes()
    more = LatentDatabase(make_table(n=3, seed=1, start=100))
    lock = _lock_file(path, os.getppid())  # a live process of this host
    t0 = time.monotonic()
    with pytest.raises(DatabaseLockedError, match=r"db\.fits\.lock.*process \d+") as info:
        LatentDatabase.append_to_file(path, more, lock_timeout=0.3)
    assert time.monotonic() - t0 >= 0.3
    assert isinstance(info.value, OSError)
    with pytest.raises(DatabaseLockedError, match=r"db\.fits\.lock"):
        db.write(path, overwrite=True, lock_timeout=0)
    _lock_file(tmp_path / "db.h5", os.getppid())
    with pytest.raises(DatabaseLockedError, match=r"db\.h5\.lock"):
        db.write(tmp_path / "db.h5", lock_timeout=0)
    assert not (tmp_path / "db.h5").exists()
    with pytest.raises(FileExistsError):  # said at once, without waiting for the lock
        db.write(path, lock_timeout=None)
    assert path.read_bytes() == before
    # A lock of another machine cannot be judged: wait, then say how to remove it.
    lock.unlink()
    lock = _lock_file(path, os.getpid(), host="elsewhere.example.org")
    with pytest.raises(DatabaseLockedError, match=r"elsewhere\.example\.org.*remove"):
        LatentDatabase.append_to_file(path, more, lock_timeout=0.1)
    lock.unlink()
    # Released, the writers go on.
    LatentDatabase.append_to_file(path, more, lock_timeout=0)
    assert len(LatentDatabase.read(path)) == len(db) + 3


def test_threads_take_turns(db, tmp_path):
    import threading

    path = tmp_path / "db.fits"
    db.write(path)
    errors = []

    def append(start):
        try:
            for k in range(2):
                more = LatentDatabase(make_table(n=2, seed=start + k, start=start + 10 * k))
                LatentDatabase.append_to_file(path, more, lock_timeout=30)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(start,)) for start in (100, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(LatentDatabase.read(path)) == len(db) + 8


def test_lock_waits_for_the_holder_to_finish(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    lock = _lock_file(path, holder.pid)
    try:
        # The holder ends while we wait: its lock is then stale and broken.
        with pytest.warns(GalMorphSearchWarning, match="stale lock file"):
            db.write(path, overwrite=True, lock_timeout=30)
    finally:
        holder.wait()
    assert not lock.exists()


# ----------------------------------------------------------------------
# 2. H-similarity keywords that disagree with the column
def _edit_fits(path, edit):
    with fits.open(path) as hdul:
        hdul = fits.HDUList([hdu.copy() for hdu in hdul])
    edit(hdul["LATENTS"])
    hdul.writeto(path, overwrite=True, checksum=True)


@pytest.mark.parametrize("key", ["HSIMMEAN", "HSIMSTD"])
def test_h_similarity_keywords_checked_against_the_column(db, tmp_path, key):
    path = tmp_path / "db.fits"
    db.write(path)
    right = db.meta[key]

    def edit(hdu):
        hdu.header[key] = right + 5.0

    _edit_fits(path, edit)
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError,
                           match=rf"db\.fits.*{key} = {right + 5.0:.6g} but the "
                                 rf"h_similarity column gives {right:.6g}"):
            LatentDatabase.read(path, memmap=memmap)
    # A deliberate edit is read with verify=False, which trusts the column.
    back = LatentDatabase.read(path, verify=False)
    assert back.meta[key] == pytest.approx(right)
    back.write(path, overwrite=True)
    assert LatentDatabase.read(path).meta[key] == pytest.approx(right)
    h5 = tmp_path / "db.h5"
    db.write(h5)
    with h5py.File(h5, "r+") as f:
        f.attrs[key] = right - 3.0
    for memmap in (False, True):
        with pytest.raises(DatabaseFormatError, match=rf"db\.h5.*{key}"):
            LatentDatabase.read(h5, memmap=memmap)


def test_h_similarity_column_edited(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)

    def edit(hdu):
        hdu.data["h_similarity"][0] += 40.0

    _edit_fits(path, edit)
    with pytest.raises(DatabaseFormatError, match="h_similarity column"):
        LatentDatabase.read(path)
    # Statistics of a database without any defined H-similarity stay undefined.
    one = LatentDatabase(make_table(n=1))
    one.write(tmp_path / "one.fits")
    assert LatentDatabase.read(tmp_path / "one.fits").meta["HSIMMEAN"] is None


def test_edited_h_similarity_keywords_are_not_written(tmp_path):
    db = LatentDatabase(make_table())
    db.meta["HSIMMEAN"] = db.meta["HSIMMEAN"] + 1.0
    with pytest.raises(ValueError, match=r"Cannot write .*db\.fits.*HSIMMEAN"):
        db.write(tmp_path / "db.fits")
    assert list(tmp_path.iterdir()) == []


def test_h_similarity_count_checked(db, tmp_path):
    path = tmp_path / "db.h5"
    db.write(path)
    with h5py.File(path, "r+") as f:
        f.attrs["HSIMN"] = 3
    with pytest.raises(DatabaseFormatError, match="HSIMN = 3"):
        LatentDatabase.read(path)


# ----------------------------------------------------------------------
# 3. latents edited, checksums recomputed, LATHASH kept
def test_edited_fits_latents_do_not_keep_their_lathash(db, tmp_path):
    for dtype in ("float32", "float16"):
        path = tmp_path / f"db-{dtype}.fits"
        db.write(path, dtype=dtype)
        recorded = LatentDatabase.read(path).lathash

        def edit(hdu):
            hdu.data["latent"][2, 1] = hdu.data["latent"][2, 0]

        _edit_fits(path, edit)
        for memmap in (False, True):
            with pytest.raises(DatabaseFormatError,
                               match=rf"db-{dtype}\.fits.*LATHASH {recorded}.*latents hash to "
                                     r"[0-9a-f]{16}"):
                LatentDatabase.read(path, memmap=memmap)


def test_edited_hdf5_latents_do_not_keep_their_lathash(db, tmp_path):
    path = tmp_path / "db.h5"
    db.write(path)
    recorded = db.lathash
    with h5py.File(path, "r+") as f:  # HDF5 updates the Fletcher-32 checksums itself
        f["latent"][3, 3] = 7.0
    with pytest.raises(DatabaseFormatError, match=rf"db\.h5.*LATHASH {recorded}"):
        LatentDatabase.read(path)
    mem = LatentDatabase.read(path, memmap=True)  # the latents stay in the file
    with pytest.raises(DatabaseFormatError, match=rf"db\.h5.*LATHASH {recorded}"):
        mem.lathash  # noqa: B018
    with pytest.raises(DatabaseFormatError, match=rf"db\.h5.*LATHASH {recorded}"):
        mem.latent_source.lathash  # noqa: B018
    # A file that says nothing has its hash computed, as before.
    with h5py.File(path, "r+") as f:
        del f.attrs["LATHASH"]
    back = LatentDatabase.read(path, memmap=True)
    assert back.lathash != recorded
    assert back.lathash == LatentDatabase.read(path).lathash


# ----------------------------------------------------------------------
# 4. truncated files say so
def _fits_cuts(path):
    """The bytes of a FITS database and sizes that cut it everywhere it can be cut."""
    raw = path.read_bytes()
    with fits.open(path) as hdul:
        info = hdul.fileinfo(1)
        data_end = info["datLoc"] + hdul[1].header["NAXIS1"] * hdul[1].header["NAXIS2"]
    header, data = info["hdrLoc"], info["datLoc"]
    assert data - header > 2880  # a header of several blocks: cut between them too
    return raw, sorted({100, 2000, header, header + 500, header + 2880, data, data + 7,
                        (data + data_end) // 2, data_end, len(raw) - 1})


@pytest.mark.parametrize("memmap", [False, True])
def test_truncated_fits_says_truncated(db, tmp_path, memmap):
    big = LatentDatabase(make_table(n=200))
    path = tmp_path / "db.fits"
    big.write(path)
    raw, cuts = _fits_cuts(path)
    cut = tmp_path / "cut.fits"
    for size in cuts:
        cut.write_bytes(raw[:size])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(DatabaseFormatError, match=r"cut\.fits.*truncated") as info:
                LatentDatabase.read(cut, memmap=memmap)
        assert str(size) in str(info.value), size


@pytest.mark.parametrize("memmap", [False, True])
def test_truncated_hdf5_says_truncated(tmp_path, memmap):
    big = LatentDatabase(make_table(n=200))
    path = tmp_path / "db.h5"
    big.write(path)
    raw = path.read_bytes()
    cut = tmp_path / "cut.h5"
    for size in (9, 20, 44, 100, 4000, len(raw) // 2, len(raw) - 1):
        cut.write_bytes(raw[:size])
        with pytest.raises(DatabaseFormatError, match=r"cut\.h5.*truncated"):
            LatentDatabase.read(cut, memmap=memmap)


def test_empty_file(tmp_path):
    for name in ("empty.fits", "empty.h5"):
        (tmp_path / name).write_bytes(b"")
        for memmap in (False, True):
            with pytest.raises(DatabaseFormatError, match=rf"{name}.*empty"):
                LatentDatabase.read(tmp_path / name, memmap=memmap)


# ----------------------------------------------------------------------
# 5. temporary files of killed writes
def _leftover(path, pid, host=None):
    from galmorphsearch.utils.io import _temp_name

    name = _temp_name(path, pid=pid, host=host)
    leftover = path.with_name(name)
    leftover.write_bytes(b"half a file")
    return leftover


def test_leftovers_of_killed_writes_are_removed(db, tmp_path):
    path = tmp_path / "db.fits"
    dead = _leftover(path, _dead_pid())
    live = _leftover(path, os.getppid())  # a running writer's: kept
    elsewhere = _leftover(path, 12345, host="elsewhere.example.org")
    other = _leftover(tmp_path / "other.fits", _dead_pid())  # another file's: kept
    assert re.fullmatch(r"\.db\.fits\.[0-9a-f]{8}_\d+_[0-9a-f]{8}\.tmp\.fits", dead.name)
    db.write(path)
    names = {p.name for p in tmp_path.iterdir()}
    assert dead.name not in names
    assert {live.name, elsewhere.name, other.name, path.name} == names
    # Those of another machine go once they are old.
    old = time.time() - 3 * 86400
    os.utime(elsewhere, (old, old))
    db.write(path, overwrite=True)
    assert not elsewhere.exists() and live.exists()
    # The function is public, for a folder of leftovers without a new write.
    gone = remove_stale_temporaries(tmp_path / "other.fits")
    assert gone == [other] and not other.exists()


def test_killed_write_leaves_a_recognisable_temporary(tmp_path):
    path = tmp_path / "out.fits"
    script = textwrap.dedent(f"""
        import os, signal
        from galmorphsearch.utils import atomic_path
        with atomic_path({str(path)!r}) as tmp:
            tmp.write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    assert proc.wait() == -9
    left = list(tmp_path.iterdir())
    assert len(left) == 1
    assert re.fullmatch(rf"\.out\.fits\.[0-9a-f]{{8}}_{proc.pid}_[0-9a-f]{{8}}\.tmp\.fits",
                        left[0].name)
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.fits"]


# ----------------------------------------------------------------------
# 6. writes through a symbolic link write its target, under the target's lock
def test_append_through_a_symlink_writes_its_target(db, tmp_path):
    from galmorphsearch.utils import file_lock, lock_path

    path = tmp_path / "db.fits"
    db.write(path)
    link = tmp_path / "link.fits"
    link.symlink_to("db.fits")
    away = tmp_path / "elsewhere"
    away.mkdir()
    far = away / "far.fits"  # a link in another folder, relative to it
    far.symlink_to(os.path.join("..", "db.fits"))
    real = Path(os.path.realpath(tmp_path))
    assert lock_path(link) == lock_path(far) == lock_path(path) == real / "db.fits.lock"
    LatentDatabase.append_to_file(link, LatentDatabase(make_table(n=3, seed=1, start=100)))
    LatentDatabase.append_to_file(far, LatentDatabase(make_table(n=2, seed=2, start=200)))
    LatentDatabase.append_to_file(path, LatentDatabase(make_table(n=1, seed=3, start=300)))
    assert link.is_symlink() and far.is_symlink()
    assert len(LatentDatabase.read(path)) == len(db) + 6
    assert len(LatentDatabase.read(link)) == len(db) + 6
    # One lock for the file, whichever name a writer uses (held here by another thread).
    taken, done = threading.Event(), threading.Event()

    def hold():
        with file_lock(path):
            taken.set()
            done.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(30)
        with pytest.raises(DatabaseLockedError, match=r"link\.fits.*db\.fits\.lock"):
            db.write(link, overwrite=True, lock_timeout=0)
    finally:
        done.set()
        holder.join()
    # Every writer (atomic_path) replaces the target and keeps the link.
    text = tmp_path / "notes.txt"
    text.write_text("old")
    os.chmod(text, 0o640)
    (away / "notes-link.txt").symlink_to(text)
    with atomic_path(away / "notes-link.txt", overwrite=True) as tmp:
        assert tmp.parent == real  # beside the target: the rename is atomic
        tmp.write_text("new")
    assert (away / "notes-link.txt").is_symlink() and text.read_text() == "new"
    assert stat_mode(text) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db.fits", "elsewhere", "link.fits",
                                                          "notes.txt"]
    assert sorted(p.name for p in away.iterdir()) == ["far.fits", "notes-link.txt"]
    # A dangling link makes its target, like open() would.
    (tmp_path / "dangling.fits").symlink_to("new.fits")
    db.write(tmp_path / "dangling.fits")
    assert (tmp_path / "dangling.fits").is_symlink() and len(LatentDatabase.read(
        tmp_path / "new.fits")) == len(db)


def stat_mode(path):
    import stat

    return stat.S_IMODE(os.stat(path).st_mode)


# ----------------------------------------------------------------------
# 7. overwrite=False holds up to the last moment
def test_file_made_meanwhile_is_never_replaced(tmp_path):
    path = tmp_path / "out.txt"
    with pytest.raises(FileExistsError,
                       match=r"out\.txt.*another process wrote it meanwhile") as info:
        with atomic_path(path) as tmp:
            tmp.write_text("mine")
            path.write_text("theirs")  # another writer finishes first
    assert isinstance(info.value, OSError)
    assert path.read_text() == "theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary left
    # A new file gets the mode the umask gives, as before.
    mask = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "new.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(mask)
    assert stat_mode(tmp_path / "new.txt") == 0o640
    assert (tmp_path / "new.txt").stat().st_nlink == 1


def test_no_hard_links_falls_back_to_rename_checked_just_before(tmp_path, monkeypatch):
    import errno

    def no_links(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "out.txt"
    with atomic_path(path) as tmp:
        tmp.write_text("mine")
    assert path.read_text() == "mine"
    with pytest.raises(FileExistsError, match=r"out2\.txt.*another process wrote it meanwhile"):
        with atomic_path(tmp_path / "out2.txt") as tmp:
            tmp.write_text("mine")
            (tmp_path / "out2.txt").write_text("theirs")
    assert (tmp_path / "out2.txt").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "out2.txt"]


# ----------------------------------------------------------------------
# 8. planted files with impossible values do not block writes
def test_temporary_with_an_impossible_pid_does_not_block_writes(db, tmp_path):
    path = tmp_path / "db.fits"
    huge = _leftover(path, 99999999999999999999)
    negative = path.with_name(huge.name.replace("99999999999999999999", "0"))
    negative.write_bytes(b"half")
    db.write(path)  # no OverflowError
    assert huge.exists()  # not ours to judge by pid: kept while fresh
    assert remove_stale_temporaries(path) == []
    old = time.time() - 3 * 86400
    os.utime(huge, (old, old))
    db.write(path, overwrite=True)
    assert not huge.exists()
    assert len(LatentDatabase.read(path)) == len(db)


def test_pid_alive_of_an_impossible_pid():
    from galmorphsearch.utils._lock import pid_alive

    for pid in (2**31, 2**70, -1, 0):
        assert pid_alive(pid) is False


def _raw_lock(path, text, age=0.0):
    lock = path.with_name(path.name + ".lock")
    lock.write_text(text)
    if age:
        then = time.time() - age
        os.utime(lock, (then, then))
    return lock


@pytest.mark.parametrize("record", [
    {"pid": 2**70},
    {"pid": 2**31},
    {"pid": "12"},
    {"pid": True},
    '{"pid": 1e400, "host": "HOST"}',
    '[' * 3000,
], ids=["pid-2**70", "pid-2**31", "pid-string", "pid-bool", "pid-1e400", "deep-json"])
def test_lock_with_an_impossible_owner_is_unreadable(db, tmp_path, record):
    path = tmp_path / "db.fits"
    db.write(path)
    if isinstance(record, dict):
        text = json.dumps({**record, "host": socket.gethostname(), "time": time.time()})
    else:
        text = record.replace("HOST", socket.gethostname())
    lock = _raw_lock(path, text)
    with pytest.raises(DatabaseLockedError, match=r"db\.fits\.lock is held by a process that "
                                                  "did not record itself"):
        db.write(path, overwrite=True, lock_timeout=0)
    # The rules of unreadable locks: broken once old.
    lock = _raw_lock(path, text, age=3600)
    with pytest.warns(GalMorphSearchWarning, match="stale lock file .*owner cannot be read"):
        LatentDatabase.append_to_file(path, LatentDatabase(make_table(n=1, start=50)),
                                      lock_timeout=0)
    assert not lock.exists()


@pytest.mark.parametrize("when", ["1e300", "-1e300", "NaN", "Infinity", "true"])
def test_lock_with_an_impossible_time_is_described_without_it(db, tmp_path, when):
    path = tmp_path / "db.fits"
    _raw_lock(path, f'{{"pid": 1, "host": "elsewhere.example.org", "time": {when}}}')
    with pytest.raises(DatabaseLockedError,
                       match=r"held by process 1 on host elsewhere\.example\.org \(waited"):
        db.write(path, lock_timeout=0)


def test_lock_with_an_odd_token_of_this_pid(db, tmp_path):
    path = tmp_path / "db.fits"
    db.write(path)
    lock = _raw_lock(path, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                       "token": [1, 2]}))
    with pytest.warns(GalMorphSearchWarning, match=r"stale lock file .*this process's id"):
        db.write(path, overwrite=True, lock_timeout=0)
    assert not lock.exists()


# ----------------------------------------------------------------------
# 9. HDF5 features that read other files are refused
def _hdf5_variant(db, tmp_path, name, edit):
    path = tmp_path / name
    db.write(path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def test_hdf5_reading_other_files_is_refused(db, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP SECRET password " * 4)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["catalog"] = np.array([b"XYZ"] * len(db))

    def external_storage(f):
        del f["catalog"]
        f.create_dataset("catalog", (len(db),), "S3",
                         external=[(str(secret), 0, h5py.h5f.UNLIMITED)])

    def external_latents(f):
        data = f["latent"][()]
        raw = tmp_path / "latents.bin"
        raw.write_bytes(data.astype("<f4").tobytes())
        del f["latent"]
        f.create_dataset("latent", data.shape, "<f4", external=[(str(raw), 0, data.nbytes)])

    def virtual(f):
        layout = h5py.VirtualLayout(shape=(len(db),), dtype="S3")
        layout[:] = h5py.VirtualSource(str(other), "catalog", shape=(len(db),))
        del f["catalog"]
        f.create_virtual_dataset("catalog", layout)

    def external_link(f):
        del f["catalog"]
        f["catalog"] = h5py.ExternalLink(str(other), "catalog")

    def hidden(f):  # not a column, in a group of its own
        f.create_dataset("extra/notes", (4,), "S3",
                         external=[(str(secret), 0, h5py.h5f.UNLIMITED)])

    cases = {"ext.h5": (external_storage, "'catalog'.*external storage"),
             "extlat.h5": (external_latents, "'latent'.*external storage"),
             "virtual.h5": (virtual, "'catalog'.*virtual"),
             "link.h5": (external_link, "'catalog'.*external link.*other\\.h5"),
             "hidden.h5": (hidden, "'/?extra/notes'.*external storage")}
    for name, (edit, what) in cases.items():
        path = _hdf5_variant(db, tmp_path, name, edit)
        for memmap in (False, True):
            with pytest.raises(DatabaseFormatError,
                               match=rf"{re.escape(name)}.*{what}.*other file"):
                LatentDatabase.read(path, memmap=memmap)
    from galmorphsearch.database import HDF5Latents

    with pytest.raises(DatabaseFormatError, match=r"extlat\.h5.*external storage"):
        HDF5Latents(tmp_path / "extlat.h5")
    # Links inside the file are its own business.
    path = _hdf5_variant(db, tmp_path, "soft.h5", lambda f: f.__setitem__(
        "alias", h5py.SoftLink("/catalog")))
    assert len(LatentDatabase.read(path)) == len(db)


# ----------------------------------------------------------------------
# 10. memory-mapped HDF5 latents are verified by the first pass over them
def test_memmapped_hdf5_edited_latents_refused_by_the_first_search(db, tmp_path):
    from galmorphsearch.search import ExactBackend, SimilaritySearcher

    path = tmp_path / "db.h5"
    db.write(path)
    recorded = db.lathash
    with h5py.File(path, "r+") as f:
        f["latent"][3, 3] = 7.0
    mem = LatentDatabase.read(path, memmap=True)  # nothing read yet: no extra pass on open
    with pytest.raises(DatabaseFormatError, match=rf"db\.h5.*LATHASH {recorded}"):
        SimilaritySearcher(mem)
    mem = LatentDatabase.read(path, memmap=True)
    with pytest.raises(DatabaseFormatError, match=rf"db\.h5.*LATHASH {recorded}"):
        SimilaritySearcher(mem, backend=ExactBackend(chunk_rows=5))
    mem = LatentDatabase.read(path, memmap=True)
    with pytest.raises(DatabaseFormatError, match=rf"db\.h5.*LATHASH {recorded}"):
        mem.latents  # noqa: B018
    # Intact, the pass that verifies also gives the hash: no second pass.
    good = tmp_path / "good.h5"
    db.write(good)
    mem = LatentDatabase.read(good, memmap=True)
    SimilaritySearcher(mem)
    source = mem.latent_source
    assert source._lathash_checked
    source.iter_chunks = None  # any further pass would fail
    assert mem.lathash == recorded


def test_memmapped_hdf5_edited_latents_are_not_written_elsewhere(db, tmp_path):
    # Copying the database (to FITS or HDF5) reads all its latents: the copy
    # would otherwise record a fresh LATHASH for latents that fail theirs.
    path = tmp_path / "db.h5"
    db.write(path)
    with h5py.File(path, "r+") as f:
        f["latent"][3, 3] = 7.0
    for name in ("copy.fits", "copy.h5"):
        mem = LatentDatabase.read(path, memmap=True)
        with pytest.raises(DatabaseFormatError, match=r"db\.h5.*LATHASH"):
            mem.write(tmp_path / name)
        assert not (tmp_path / name).exists()
    # Read deliberately (verify=False), it is copied with the hash of what it holds.
    mem = LatentDatabase.read(path, memmap=True, verify=False)
    mem.write(tmp_path / "copy.fits")
    assert LatentDatabase.read(tmp_path / "copy.fits").lathash == mem.lathash != db.lathash


def test_compressed_fits_database_is_refused_before_decompression(db, tmp_path):
    # astropy would decompress the whole stream into memory (a gzip bomb);
    # the package never writes a compressed database.
    import bz2
    import gzip

    path = tmp_path / "db.fits"
    db.write(path)
    raw = path.read_bytes()
    for name, packed, kind in (("gz.fits", gzip.compress(raw), "gzip"),
                               ("bz.fits", bz2.compress(raw), "bzip2")):
        (tmp_path / name).write_bytes(packed)
        for memmap in (False, True):
            with pytest.raises(DatabaseFormatError,
                               match=rf"{re.escape(name)}.*{kind}-compressed.*decompress it"):
                LatentDatabase.read(tmp_path / name, memmap=memmap)
    (tmp_path / "text.fits").write_text("my notes\n" * 400)
    with pytest.raises(DatabaseFormatError, match=r"text\.fits.*neither FITS .* nor HDF5"):
        LatentDatabase.read(tmp_path / "text.fits")
