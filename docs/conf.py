# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Sphinx configuration for the galmorphsearch documentation (sphinx-astropy v3)."""

import datetime
import os
import sys
from importlib import metadata

try:
    from sphinx_astropy.conf.v3 import *  # noqa: F403
except ImportError:  # pragma: no cover
    print("ERROR: the documentation requires the sphinx-astropy package: "
          "pip install 'galmorphsearch[docs]'")
    sys.exit(1)

# -- Project information ------------------------------------------------------
project = "galmorphsearch"
author = "The galmorphsearch developers"
copyright = f"2026-{datetime.datetime.now().year}, {author}"
release = metadata.version(project)
version = ".".join(release.split(".")[:2])

# -- General configuration ----------------------------------------------------
# pretrained/generated holds tables that the model cards include (made by
# benchmarks/pretrained_yardstick.py); they are not documents of their own.
exclude_patterns.extend(["_build", "_templates", "pretrained/generated"])  # noqa: F405
templates_path = []
rst_epilog = """
.. _astropy: https://www.astropy.org
.. _photutils: https://photutils.readthedocs.io
"""

# The documentation is built offline (no network on the build machines), so no
# intersphinx inventories are fetched: cross-references into numpy/astropy
# appear as plain literals rather than links.
intersphinx_mapping = {}

# graphviz is not a dependency: no inheritance diagrams.
automodapi_inheritance_diagram = False
automodsumm_inherited_members = False

# Figures made by ``.. plot::`` blocks.
plot_include_source = True
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 100)]
plot_rcparams = {"figure.dpi": 100, "savefig.bbox": "tight"}

# -- Options for HTML output --------------------------------------------------
html_title = f"{project} v{release}"
htmlhelp_basename = project + "doc"
html_static_path = ["_static"]
html_theme_options = {}

# -- Options for the linkcheck / nitpicky ------------------------------------
nitpicky = False

os.environ.setdefault("MPLBACKEND", "Agg")
