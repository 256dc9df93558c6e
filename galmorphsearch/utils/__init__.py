# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""General-purpose utilities: warnings, exceptions, safe writes, progress bars."""

from .exceptions import *  # noqa: F403
from .exceptions import __all__ as _exc_all
from .io import *  # noqa: F403
from .io import __all__ as _io_all
from .progress import *  # noqa: F403
from .progress import __all__ as _progress_all

__all__ = [*_exc_all, *_io_all, *_progress_all]
