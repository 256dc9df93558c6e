# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The similarity Sp of Seo et al. (2023) and the H-similarity of database rows.

Everything here is plain NumPy and works on arrays of latent vectors, so the
functions can be used without an encoder or a database object.

Seo et al. (2023, eqs. 1-3) measure how much a database galaxy :math:`D_i`
looks like a target galaxy :math:`T` against how much the target looks like
its own sky background :math:`B`:

.. math::

    S_{p,i} = \\left(1 - \\frac{\\lVert T - D_i \\rVert}{\\lVert T - B \\rVert}\\right)
    \\times 100,

with Euclidean distances between latent vectors. ``Sp = 100`` for an
identical latent vector, ``Sp = 0`` for a galaxy as far from the target as
the target's background, and Sp is negative for galaxies farther than that.
"""

import warnings

import numpy as np
from astropy.utils.exceptions import AstropyDeprecationWarning

from .kernel import as_latents, check_finite, checked_neighbours, squared_norms
from .neighbours import (
    _UNSET,
    DEFAULT_CHUNK_ROWS,
    _checked_chunk_rows,
    _checked_chunk_size,
)

__all__ = ["similarity_percent", "database_h_similarity", "IDENTICAL_RTOL",
           "IDENTICAL_RTOL_FLOAT16", "identical_mask"]

#: Two latent vectors closer than this fraction of the query's norm are the
#: same image: encoding one image alone or within a batch changes its latents
#: by float32 rounding (about 1e-6), never by a galaxy-to-galaxy distance.
IDENTICAL_RTOL = 1e-5

#: The same for database latents stored as float16, whose rounding moves a
#: latent by up to ``2**-11`` of its norm.
IDENTICAL_RTOL_FLOAT16 = 2.0**-10


def identical_mask(distances, query_norms, rtol=None):
    """
    Which neighbours are the query's own image, up to float rounding.

    Parameters
    ----------
    distances : `~numpy.ndarray`
        ``(Q, k)`` Euclidean distances of each query to its neighbours.
    query_norms : `~numpy.ndarray`
        ``(Q,)`` Euclidean norms of the query latents.
    rtol : float, optional
        The tolerance relative to the query's norm; default
        ``IDENTICAL_RTOL``, suited to latents stored as float32. Latents
        stored as float16 are rounded by up to ``2**-11`` of their norm and
        need ``IDENTICAL_RTOL_FLOAT16``.

    Returns
    -------
    mask : `~numpy.ndarray`
        ``(Q, k)`` boolean, `True` where the distance is at most ``rtol``
        times the query's norm (or exactly 0).
    """
    rtol = IDENTICAL_RTOL if rtol is None else float(rtol)
    distances = np.asarray(distances, dtype=np.float64)
    tol = rtol * np.asarray(query_norms, dtype=np.float64).reshape(-1, 1)
    return distances <= tol


def identical_rtol(dtype):
    """The `identical_mask` tolerance for database latents stored as ``dtype``."""
    return IDENTICAL_RTOL_FLOAT16 if np.dtype(dtype).itemsize < 4 else IDENTICAL_RTOL



def similarity_percent(distance, background_distance):
    """
    The similarity Sp of Seo et al. (2023) from latent-space distances.

    Parameters
    ----------
    distance : float or array-like
        Euclidean distance(s) :math:`\\lVert T - D_i \\rVert` between the
        target latent and database latents.
    background_distance : float or array-like
        Euclidean distance :math:`\\lVert T - B \\rVert` between the target
        latent and the latent of its background patch; broadcast against
        ``distance``.

    Returns
    -------
    sp : float or `~numpy.ndarray`
        ``(1 - distance / background_distance) * 100`` as float64: 100 for
        an identical latent, 0 at the background's distance, negative
        beyond it.

    Raises
    ------
    ValueError
        If a distance is negative or not finite, or if a background distance
        is zero (the target latent equals its background latent, and Sp is
        undefined).

    Examples
    --------
    >>> from galmorphsearch.latents import similarity_percent
    >>> similarity_percent([0.0, 1.0, 4.0, 6.0], 4.0)
    array([100.,  75.,   0., -50.])
    """
    d = np.asarray(distance, dtype=np.float64)
    b = np.asarray(background_distance, dtype=np.float64)
    if not (np.all(np.isfinite(d)) and np.all(np.isfinite(b))):
        msg = "Distances must be finite to compute the similarity Sp."
        raise ValueError(msg)
    if np.any(d < 0) or np.any(b < 0):
        msg = "Distances must be non-negative."
        raise ValueError(msg)
    if np.any(b == 0):
        msg = (
            "The background distance is zero (the target latent equals its background "
            "latent), so the similarity Sp is undefined."
        )
        raise ValueError(msg)
    sp = (1.0 - d / b) * 100.0
    return sp if sp.ndim else float(sp)



def database_h_similarity(latents, background_latents, *, chunk_rows=DEFAULT_CHUNK_ROWS,
                          chunk_size=_UNSET):
    """
    The H-similarity of every database galaxy searched against the others.

    Each galaxy :math:`i` is taken in turn as the target; its H-similarity
    is the highest :math:`S_{p,ij} = (1 - \\lVert D_i - D_j \\rVert /
    \\lVert D_i - B_i \\rVert) \\times 100` over the other galaxies
    :math:`j \\neq i`, skipping those with a latent identical to
    :math:`D_i` (distance 0, the same image). The mean and standard
    deviation of this distribution set the "no similar galaxy" threshold of
    Seo et al. (2023).

    Parameters
    ----------
    latents : array-like, shape (N, D)
        Latent vectors of the database galaxies.
    background_latents : array-like, shape (N, D)
        Latent vectors of their background patches.
    chunk_rows : int, optional
        Number of database rows compared at once (see
        `~galmorphsearch.latents.exact_neighbours`).
    chunk_size : int, optional
        Deprecated name of ``chunk_rows``.

    Returns
    -------
    h_similarity : `~numpy.ndarray`, shape (N,), float64
        The H-similarity of each galaxy. It is NaN where it is undefined: a
        galaxy whose latent equals its background latent (background
        distance 0), or one with no other, distinct galaxy to compare with.
        Use `numpy.nanmean` and `numpy.nanstd` for the statistics.

    Raises
    ------
    ValueError
        If the arrays do not have the same shape or hold NaN or infinite
        values.

    Warns
    -----
    ~astropy.utils.exceptions.AstropyDeprecationWarning
        When ``chunk_size`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.latents import database_h_similarity
    >>> lat = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> bkg = np.array([[4.0, 0.0], [1.0, 4.0], [0.0, 0.0]])
    >>> database_h_similarity(lat, bkg)
    array([75., 75., 0.])
    """
    if chunk_size is not _UNSET:
        warnings.warn("The chunk_size argument of database_h_similarity is deprecated; use "
                      "chunk_rows, which means the same.", AstropyDeprecationWarning,
                      stacklevel=2)
        chunk_rows = _checked_chunk_size(chunk_size)
    lat = as_latents(latents, "latents")
    bkg = as_latents(background_latents, "background_latents")
    if lat.shape != bkg.shape:
        msg = (
            f"latents {lat.shape} and background_latents {bkg.shape} must have the same shape."
        )
        raise ValueError(msg)
    check_finite(lat, "latents")
    check_finite(bkg, "background_latents")
    chunk_rows = _checked_chunk_rows(chunk_rows)
    return h_similarity_rows(lat, np.arange(lat.shape[0], dtype=np.int64), lat, bkg,
                              squared_norms(lat), chunk_rows)


def h_similarity_rows(queries, rows, database, query_backgrounds, db_sqnorms, chunk_rows):
    """
    The H-similarity of the database rows ``rows``, whose latents are ``queries``.

    Each row's nearest other row that is not an identical copy of it (the
    same image) is searched exactly, with a larger k where all k neighbours
    were identical, and its Sp against the row's own background patch
    (``query_backgrounds``) is returned; NaN where there is no such row or
    the background is identical to the galaxy. ``database`` is an array or a
    latent source, ``db_sqnorms`` its squared norms or None. The core of
    `database_h_similarity` and of the H-similarity tasks of
    `~galmorphsearch.pipeline.build_database`, which compute it for blocks
    of rows; nothing is checked here (see `galmorphsearch.latents.kernel`).

    Parameters
    ----------
    queries : `~numpy.ndarray`, shape (R, D), float32
        Checked latents of the rows.
    rows : `~numpy.ndarray`, shape (R,), int64
        Their row numbers in ``database`` (each is left out of its own search).
    database : `~numpy.ndarray`, shape (N, D), or latent source
        All database latents.
    query_backgrounds : array-like, shape (R, D)
        Latents of the rows' background patches.
    db_sqnorms : `~numpy.ndarray`, shape (N,), or None
        Squared norms of the database rows, or None to compute them.
    chunk_rows : int
        Database rows compared at once.

    Returns
    -------
    h : `~numpy.ndarray`, shape (R,), float64
        The H-similarity of each row (NaN where undefined).
    """
    n = len(database)
    nearest = np.full(len(rows), np.nan)
    if n >= 2:
        qnorms = np.sqrt(squared_norms(queries))
        todo = np.arange(len(rows))
        k = min(n - 1, 4)
        while todo.size:
            _, dist = checked_neighbours(queries[todo], database, k, db_sqnorms, chunk_rows,
                                         rows[todo])
            positive = ~identical_mask(dist, qnorms[todo])
            found = positive.any(axis=1)
            first = np.argmax(positive, axis=1)
            nearest[todo[found]] = dist[found, first[found]]
            # Rows whose k neighbours were all identical copies need a larger k.
            todo = todo[~found]
            if k >= n - 1:
                break
            k = min(n - 1, 4 * k)
    diff = queries.astype(np.float64) - np.asarray(query_backgrounds, dtype=np.float64)
    back = np.sqrt(np.sum(diff**2, axis=1))
    hsim = np.full(len(rows), np.nan)
    ok = np.isfinite(nearest) & (back > 0)
    hsim[ok] = (1.0 - nearest[ok] / back[ok]) * 100.0
    return hsim
