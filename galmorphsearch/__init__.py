# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
galmorphsearch: find galaxies that look alike and classify galaxy morphology
by retrieval.

The package implements the method of Seo et al. (2023, PASP 135, 084101;
TSGICAS) and the related retrieval methods around it. The public entry points
are re-exported here::

    >>> from galmorphsearch import GalaxyCutout
    >>> from galmorphsearch.catalogs import read_gz2, read_efigi, read_na10
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - only when running from a bare source tree
    __version__ = "0.0.0"

from .preprocessing import GalaxyCutout

__all__ = ["GalaxyCutout", "__version__"]
