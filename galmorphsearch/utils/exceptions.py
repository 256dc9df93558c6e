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
    "DatabaseLockedError",
    "CheckpointFormatError",
    "UnsafeCheckpointError",
    "WeightFileFormatError",
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


class DatabaseLockedError(TimeoutError):
    """
    A file could not be locked for writing: another writer holds its lock.

    Raised by `LatentDatabase.write
    <galmorphsearch.database.LatentDatabase.write>` and
    `LatentDatabase.append_to_file
    <galmorphsearch.database.LatentDatabase.append_to_file>` (and
    `~galmorphsearch.utils.file_lock`) when the lock file beside the
    database is still held after the timeout. The message names the lock
    file, its holder and how to remove it. A `TimeoutError`, so an
    `OSError`.
    """


class CheckpointFormatError(ValueError):
    """
    A training checkpoint cannot be used to resume a run.

    Raised by the training functions (``resume=``) for a file that is
    empty, truncated, damaged (a failed CRC check), not a PyTorch Lightning
    training checkpoint, or a checkpoint of another model. The message names
    the file and the problem.
    """


class UnsafeCheckpointError(CheckpointFormatError):
    """
    A training checkpoint holds objects that are not allowed.

    Checkpoints are read with ``torch.load(..., weights_only=True)``
    whatever the environment says (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is
    ignored): only tensors, numbers, strings and plain containers are
    loaded, and a file that refers to anything else (a class, a function)
    is refused without running any of it. The message names the file and
    the first object refused.
    """


class WeightFileFormatError(ValueError):
    """
    A weight file is damaged, is not what it claims to be, or describes an unusable model.

    Raised by `Encoder.load <galmorphsearch.model.Encoder.load>`,
    `~galmorphsearch.model.load_weights`, `Encoder.from_state_dict_file
    <galmorphsearch.model.Encoder.from_state_dict_file>` and
    `Encoder.load_backbone_weights
    <galmorphsearch.model.Encoder.load_backbone_weights>` (``init_weights``
    of the trainers) for a file that cannot be read, whose tensors do not
    match its recorded hash, or whose metadata have the wrong types or
    values out of range (an architecture that is not a name, a negative or
    absurdly large size). The message names the file and the entry. A file
    that refers to objects other than tensors and plain containers raises
    `UnsafeCheckpointError` instead.
    """
