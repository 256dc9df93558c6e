# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Evaluation of classification by similarity search: the tests of Seo et al.
(2023) (`~galmorphsearch.evaluation.evaluate_retrieval`, rates, confusion
matrix, type correlation, the balanced test, H-similarity statistics) and
related methods (k-nearest-neighbour votes, clustering, maps of the latent
space).
"""

from .paper import *  # noqa: F403
from .paper import __all__ as _paper_all
from .related import *  # noqa: F403
from .related import __all__ as _related_all

__all__ = [*_paper_all, *_related_all]
