# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Latent databases: galaxies of known morphology with the latent vectors of
their images and background patches, stored as checksummed FITS binary
tables with the provenance of the encoder that made them.
"""

from .database import *  # noqa: F403
from .database import __all__ as _database_all

__all__ = [*_database_all]
