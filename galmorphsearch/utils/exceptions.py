# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Warnings and exceptions raised by galmorphsearch.

Misuse (a wrong argument, a file that is not what it claims to be) raises an
exception; questionable but usable data emits a warning that subclasses
`~astropy.utils.exceptions.AstropyUserWarning` and sets a quality flag on the
result.
"""

from astropy.utils.exceptions import AstropyUserWarning

__all__ = [
    "GalMorphSearchWarning",
    "CutoutWarning",
    "CatalogWarning",
    "NoResultsWarning",
    "CatalogFormatError",
    "UnknownMorphologyError",
    "RemoteServiceError",
    "EncoderMismatchError",
    "DatabaseFormatError",
    "StaleIndexError",
    "StaleIndexWarning",
]


class GalMorphSearchWarning(AstropyUserWarning):
    """Base class of all warnings emitted by galmorphsearch."""


class CutoutWarning(GalMorphSearchWarning):
    """
    A galaxy cutout was made, but from questionable data.

    The matching bit is set in the cutout's ``flag`` attribute (see
    `~galmorphsearch.preprocessing.CutoutFlag`).
    """


class CatalogWarning(GalMorphSearchWarning):
    """A catalog was read, but some rows could not be given a morphology."""


class NoResultsWarning(GalMorphSearchWarning):
    """A remote query returned no data."""


class StaleIndexWarning(GalMorphSearchWarning):
    """
    A saved search index no longer matches its database and is rebuilt.

    The message says why (rows, latent dimension, encoder, latent content or
    index parameters differ, or the index file is damaged).
    """


class CatalogFormatError(ValueError):
    """A catalog file or table does not have the format its reader expects."""


class UnknownMorphologyError(ValueError):
    """A morphology class string or code is not part of the scheme."""


class RemoteServiceError(Exception):
    """A remote service answered with an error or with unusable data."""


class EncoderMismatchError(ValueError):
    """
    A latent database and an encoder do not belong together.

    Raised when a database built by one encoder (architecture, weights,
    input size or latent size) is searched with another.
    """


class DatabaseFormatError(ValueError):
    """A latent database file is corrupted or is not a galmorphsearch database."""


class StaleIndexError(ValueError):
    """
    A saved search index no longer matches its database.

    Raised instead of rebuilding the index when asked for
    (``on_stale='raise'``); a stale index is never used.
    """
