# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Latent vectors: latent sources read chunk by chunk, ``LATHASH``, the one
exact nearest-neighbour search of the package, the similarity Sp and the
H-similarity of database rows.

This is a low floor of the package (above `galmorphsearch.utils` only):
both `galmorphsearch.database`, which stores latents, and
`galmorphsearch.search`, which searches them, build on it.
"""

from .hashing import *  # noqa: F403
from .hashing import __all__ as _hashing_all
from .neighbours import *  # noqa: F403
from .neighbours import __all__ as _neighbours_all
from .similarity import *  # noqa: F403
from .similarity import __all__ as _similarity_all
from .sources import *  # noqa: F403
from .sources import __all__ as _sources_all

__all__ = [*_sources_all, *_hashing_all, *_neighbours_all, *_similarity_all]
