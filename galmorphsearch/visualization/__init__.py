# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Pictures of retrieval and evaluation: retrieval galleries, autoencoder
reconstructions, loss curves, confusion matrices, H-similarity distributions
and latent maps (matplotlib, returning the Figure), and a self-contained
static HTML report to browse targets and their matches.
"""

from .plots import *  # noqa: F403
from .plots import __all__ as _plots_all
from .report import *  # noqa: F403
from .report import __all__ as _report_all

__all__ = [*_plots_all, *_report_all]
