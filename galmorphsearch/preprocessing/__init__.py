# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Preprocessing of survey images into galaxy cutouts (TSGICAS, Seo et al.
2023, section 2.2): detection, Kron crop, masking of neighbours, rotation,
colour rendering and resizing, plus the background patch used by the
similarity Sp.
"""

from .cutout import *  # noqa: F403
from .cutout import __all__ as _cutout_all
from .cutout_set import *  # noqa: F403
from .cutout_set import __all__ as _set_all
from .flags import *  # noqa: F403
from .flags import __all__ as _flags_all
from .recipe import *  # noqa: F403
from .recipe import __all__ as _recipe_all

__all__ = [*_cutout_all, *_set_all, *_flags_all, *_recipe_all]
