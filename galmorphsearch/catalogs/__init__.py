# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Catalogs of galaxy morphology: readers returning `~astropy.table.Table`
(Galaxy Zoo 2, EFIGI, Nair & Abraham 2010), the morphology schemes of those
catalogs as data, and the Galaxy Zoo 2 decision tree that turns vote
fractions into the 12 types of Seo et al. (2023).
"""

from . import decision_tree as _decision_tree
from . import efigi as _efigi
from . import gz2 as _gz2
from . import na10 as _na10
from . import schemes as _schemes
from .decision_tree import *  # noqa: F403
from .efigi import *  # noqa: F403
from .gz2 import *  # noqa: F403
from .na10 import *  # noqa: F403
from .schemes import *  # noqa: F403

__all__ = [
    *_schemes.__all__,
    *_decision_tree.__all__,
    *_gz2.__all__,
    *_efigi.__all__,
    *_na10.__all__,
]
