# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Flags telling which optional dependencies are importable."""

import importlib.util

__all__ = ["HAS_TQDM", "HAS_STATMORPH", "HAS_FAISS", "HAS_DASK"]

HAS_TQDM = importlib.util.find_spec("tqdm") is not None
HAS_STATMORPH = importlib.util.find_spec("statmorph") is not None
HAS_FAISS = importlib.util.find_spec("faiss") is not None
HAS_DASK = importlib.util.find_spec("dask") is not None
