# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The similarity Sp of Seo et al. (2023) and exact nearest-neighbour search.

They live in `galmorphsearch.latents` (`~galmorphsearch.latents.similarity`
and `~galmorphsearch.latents.neighbours`), which `galmorphsearch.database`
uses too; this module re-exports them as `galmorphsearch.search` has always
exported them.
"""

from ..latents.neighbours import exact_neighbours
from ..latents.similarity import (
    IDENTICAL_RTOL,
    IDENTICAL_RTOL_FLOAT16,
    database_h_similarity,
    identical_mask,
    similarity_percent,
)

__all__ = ["similarity_percent", "exact_neighbours", "database_h_similarity",
           "IDENTICAL_RTOL", "IDENTICAL_RTOL_FLOAT16", "identical_mask"]
