# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Preprocessing of survey images into galaxy cutouts (placeholder until written)."""

from .cutout import *  # noqa: F403
