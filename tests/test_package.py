# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the package as installed: version, public API, warnings, helpers."""

import importlib
import warnings

import pytest
from astropy.utils.exceptions import AstropyUserWarning

import galmorphsearch
from galmorphsearch.utils import exceptions, progress_iter


def test_version_is_set():
    assert galmorphsearch.__version__ != "0.0.0"
    assert galmorphsearch.__version__[0].isdigit()


def test_public_api_imports():
    from galmorphsearch import GalaxyCutout
    from galmorphsearch.catalogs import read_efigi, read_gz2, read_na10

    assert callable(read_gz2) and callable(read_efigi) and callable(read_na10)
    assert GalaxyCutout.__module__.startswith("galmorphsearch.preprocessing")


@pytest.mark.parametrize(
    "name", ["catalogs", "preprocessing", "datasets", "utils", "scripts.main"]
)
def test_subpackages_define_all(name):
    module = importlib.import_module(f"galmorphsearch.{name}")
    if name != "scripts.main":
        assert module.__all__, f"galmorphsearch.{name} exports nothing"
    for public in getattr(module, "__all__", []):
        assert hasattr(module, public), f"{name}.__all__ names missing {public}"


def test_warnings_are_astropy_user_warnings():
    for name in exceptions.__all__:
        obj = getattr(exceptions, name)
        if name.endswith("Warning"):
            assert issubclass(obj, AstropyUserWarning)
            assert issubclass(obj, exceptions.GalMorphSearchWarning)
        else:
            assert issubclass(obj, Exception)
    # The package's warnings can be silenced as a group, astropy-style.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", exceptions.GalMorphSearchWarning)
        warnings.warn("questionable", exceptions.CutoutWarning)


def test_progress_iter_passthrough():
    items = [1, 2, 3]
    assert progress_iter(items) is items
    assert list(progress_iter(items, progress_bar=True, desc="x")) == items


def test_atomic_path_never_overwrites_by_accident(tmp_path):
    from galmorphsearch.utils import atomic_path

    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and not tmp.exists()
        tmp.write_text("first")
    assert target.read_text() == "first"

    with pytest.raises(FileExistsError, match="overwrite=True"):
        with atomic_path(target) as tmp:
            pass

    # An interrupted write leaves the old file as it was and no temporary file.
    with pytest.raises(RuntimeError):
        with atomic_path(target, overwrite=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]

    with atomic_path(target, overwrite=True) as tmp:
        tmp.write_text("second")
    assert target.read_text() == "second"


def test_atomic_path_gives_new_files_the_umask_mode_and_keeps_an_old_files_mode(tmp_path):
    import os
    import stat

    from galmorphsearch.utils import atomic_path

    target = tmp_path / "weights.bin"
    old_mask = os.umask(0o022)
    try:
        with atomic_path(target) as tmp:
            # A writer that creates owner-only files, as some libraries do.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        os.chmod(target, 0o640)
        with atomic_path(target, overwrite=True) as tmp:
            tmp.write_text("second")
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
    finally:
        os.umask(old_mask)
