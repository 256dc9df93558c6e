# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Shared pytest configuration for the galmorphsearch test suite."""

from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

try:
    from pytest_astropy_header.display import PYTEST_HEADER_MODULES, TESTED_VERSIONS
except ImportError:  # pragma: no cover
    PYTEST_HEADER_MODULES = {}
    TESTED_VERSIONS = {}


def pytest_configure(config):
    """Report the versions of the libraries that matter here in the header."""
    config.option.astropy_header = True
    for name in ("Matplotlib", "h5py", "Pandas", "scikit-image"):
        PYTEST_HEADER_MODULES.pop(name, None)
    PYTEST_HEADER_MODULES["photutils"] = "photutils"
    PYTEST_HEADER_MODULES["astroquery"] = "astroquery"
    PYTEST_HEADER_MODULES["torch"] = "torch"
    PYTEST_HEADER_MODULES["torchvision"] = "torchvision"
    from galmorphsearch import __version__

    TESTED_VERSIONS["galmorphsearch"] = __version__


@pytest.fixture(scope="session")
def shared_data():
    """
    The folder of full-size real data that lives beside the repository.

    CI clones the repository next to ``shared/`` (so the data are at
    ``../shared/data`` from the repository root). Tests that need files too
    large to bundle use this fixture and are skipped, with the reason, where
    the folder is absent (for example, on an installed copy elsewhere).
    """
    root = Path(__file__).resolve().parent.parent
    path = root.parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"the shared real-data folder {path} is not available")
    return path
