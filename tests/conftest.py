# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Shared pytest configuration for the galmorphsearch test suite."""

import os

import matplotlib

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
    # Keep astropy's and our caches away from the user's home directory.
    os.environ.setdefault("OMP_NUM_THREADS", "2")
