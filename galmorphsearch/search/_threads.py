# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Thread limits for the search backends.

One process can hold several thread pools at once: NumPy's BLAS, torch's
OpenMP runtime and, with faiss, faiss's own OpenMP runtime and BLAS.
`limit_threads` caps all of them for the duration of a search through
threadpoolctl (installed with scikit-learn), and faiss's OpenMP pool through
``faiss.omp_set_num_threads`` as well, restoring the previous settings
afterwards.
"""

import contextlib
import sys

__all__ = ["check_threads", "limit_threads"]

_CONTROLLER = {}


def check_threads(threads):
    """``threads`` as None or a positive int, or a clear error."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int):
        msg = f"threads must be a positive integer or None; got {threads!r}."
        raise TypeError(msg)
    if threads < 1:
        msg = f"threads must be at least 1; got {threads}."
        raise ValueError(msg)
    return threads


def _controller():
    """A threadpoolctl controller, rebuilt when new libraries were imported."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    key = ("faiss" in sys.modules, "torch" in sys.modules)
    if key not in _CONTROLLER:
        _CONTROLLER[key] = ThreadpoolController()
    return _CONTROLLER[key]


@contextlib.contextmanager
def limit_threads(threads):
    """
    Cap the BLAS and OpenMP thread pools at ``threads`` inside the block.

    Parameters
    ----------
    threads : int or None
        The cap; None leaves every pool as it is.
    """
    if threads is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        controller = _controller()
        if controller is not None:
            stack.enter_context(controller.limit(limits=threads))
        faiss = sys.modules.get("faiss")
        if faiss is not None:
            previous = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(threads)
            stack.callback(faiss.omp_set_num_threads, previous)
        yield
