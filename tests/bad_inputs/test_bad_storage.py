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
import time
import warnings

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
        "type_index": np.arange(n) % 4,
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
                       "type_index": np.zeros(n, int), "catalog": ["x"] * n,
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
