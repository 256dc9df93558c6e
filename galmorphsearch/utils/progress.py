# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Optional progress bars for long loops (backed by tqdm when installed)."""

from ._optional_deps import HAS_TQDM

__all__ = ["progress_iter"]


def progress_iter(iterable, progress_bar=False, desc=None, total=None):
    """
    Wrap an iterable in a progress bar if asked and if tqdm is available.

    Parameters
    ----------
    iterable : iterable
        The items to loop over.
    progress_bar : bool, optional
        Show a progress bar. Requires the optional ``tqdm`` package; without it
        the bar is silently not shown.
    desc : str, optional
        Label of the bar.
    total : int, optional
        Number of items, when ``len(iterable)`` is not available.

    Returns
    -------
    iterable
        Either ``iterable`` itself or a ``tqdm`` wrapper around it.
    """
    if progress_bar and HAS_TQDM:
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total)
    return iterable
