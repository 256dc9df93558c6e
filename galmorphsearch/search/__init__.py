# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Similarity search and classification by retrieval (TSGICAS, Seo et al. 2023,
section 2.4): the similarity Sp, exact nearest-neighbour search, search
backends and `SimilaritySearcher`.
"""

from .backends import *  # noqa: F403
from .backends import __all__ as _backends_all
from .searcher import *  # noqa: F403
from .searcher import __all__ as _searcher_all
from .similarity import *  # noqa: F403
from .similarity import __all__ as _similarity_all

__all__ = [*_similarity_all, *_backends_all, *_searcher_all]
