# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Pipelines that orchestrate the other subpackages at survey scale:
`build_database` turns a catalog and its images into a latent database
(preprocessing, encoding, H-similarity, one file), on a Dask cluster or
in-process, and `local_cluster` starts a Dask cluster suited to it.

This is the roof of the package: it uses `galmorphsearch.preprocessing`,
`galmorphsearch.model` (through the encoder it is given),
`galmorphsearch.latents` and `galmorphsearch.database`, and nothing below
imports it.
"""

from .build import *  # noqa: F403
from .build import __all__ as _build_all

__all__ = [*_build_all]
