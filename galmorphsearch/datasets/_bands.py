# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The one parser of band arguments used by the dataset functions."""

__all__ = []


def parse_bands(bands, allowed):
    """
    Turn ``'gri'`` or ``['g', 'r', 'i']`` into a tuple of distinct bands.

    Parameters
    ----------
    bands : str or iterable of str
        The requested bands, one letter each.
    allowed : str
        The bands that may be requested, e.g. ``'ugriz'``.

    Returns
    -------
    bands : tuple of str
        The bands, in the order given.

    Raises
    ------
    ValueError
        If no band is given, a band is not in ``allowed`` or one is repeated.
    """
    if isinstance(bands, str):
        bands = tuple(bands)
    else:
        try:
            bands = tuple(bands)
        except TypeError:
            bands = (bands,)
    choices = ", ".join(repr(b) for b in allowed)
    if not bands:
        msg = f"bands must be one or more of {choices}, got {bands!r}"
        raise ValueError(msg)
    bad = [b for b in bands if not isinstance(b, str) or b not in allowed]
    if bad:
        msg = f"bands must be among {choices}; unknown band(s) {bad!r} in {bands!r}"
        raise ValueError(msg)
    if len(set(bands)) != len(bands):
        msg = f"bands must be distinct; a band is requested twice in {bands!r}"
        raise ValueError(msg)
    return bands
