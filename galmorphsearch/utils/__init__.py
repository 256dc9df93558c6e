# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""General-purpose utilities: warnings, exceptions and small helpers."""

from .exceptions import *  # noqa: F403
from .progress import *  # noqa: F403
