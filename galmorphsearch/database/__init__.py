# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Latent databases: galaxies of known morphology with the latent vectors of
their images and background patches, stored as checksummed FITS binary
tables (or HDF5 files, for the very large) with the provenance of the
encoder that made them, latent sources that read them chunk by chunk, and
`build_database`, which builds them at scale (on Dask, or in-process).
"""

from ._distributed import build_database, local_cluster
from ._stores import (
    ArrayLatents,
    FITSLatents,
    HDF5Latents,
    LatentSource,
    as_latent_source,
    chunked_neighbours,
    is_latent_source,
    latent_hash,
)
from .database import *  # noqa: F403
from .database import __all__ as _database_all

__all__ = [*_database_all, "build_database", "local_cluster", "LatentSource", "ArrayLatents",
           "FITSLatents", "HDF5Latents", "as_latent_source", "is_latent_source",
           "chunked_neighbours", "latent_hash"]
