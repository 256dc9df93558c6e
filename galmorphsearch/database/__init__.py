# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Latent databases: galaxies of known morphology with the latent vectors of
their images and background patches, stored as checksummed FITS binary
tables (or HDF5 files, for the very large) with the provenance of the
encoder that made them, and the latent sources that read them chunk by
chunk. Databases are built at scale (on Dask, or in-process) by
`galmorphsearch.pipeline.build_database`.
"""

import warnings

from astropy.utils.exceptions import AstropyDeprecationWarning

from ..latents import ArrayLatents, LatentSource, as_latent_source, is_latent_source, latent_hash
from .database import *  # noqa: F403
from .database import __all__ as _database_all
from .sources import FITSLatents, HDF5Latents, chunked_neighbours

__all__ = [*_database_all, "LatentSource", "ArrayLatents", "FITSLatents", "HDF5Latents",
           "as_latent_source", "is_latent_source", "chunked_neighbours", "latent_hash"]

#: Names that moved to `galmorphsearch.pipeline`; still importable from here,
#: with a deprecation warning.
_MOVED_TO_PIPELINE = ("build_database", "local_cluster")


def __getattr__(name):
    if name in _MOVED_TO_PIPELINE:
        warnings.warn(f"galmorphsearch.database.{name} is deprecated; use "
                      f"galmorphsearch.pipeline.{name}, which is the same function.",
                      AstropyDeprecationWarning, stacklevel=2)
        # The one import of a higher floor from database (allowed, see
        # tests/test_layers.py): lazily, only for these deprecated names.
        from .. import pipeline

        return getattr(pipeline, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
