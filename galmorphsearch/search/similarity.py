# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The similarity Sp of Seo et al. (2023) and exact nearest-neighbour search.

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

import numpy as np

from ..database._stores import ArrayLatents, is_latent_source

__all__ = ["similarity_percent", "exact_neighbours", "database_h_similarity",
           "IDENTICAL_RTOL", "IDENTICAL_RTOL_FLOAT16", "identical_mask"]

#: Default number of database rows compared at once by `exact_neighbours`.
DEFAULT_CHUNK_SIZE = 32768

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


# At most this many elements in one (queries x database rows) block of scores
# (float32, so 64 MiB per block).
_MAX_BLOCK_ELEMENTS = 2**24

# Extra candidates kept from the float32 pass and re-ranked with exact float64
# distances, so that rounding in the fast pass does not change the result.
_EXTRA_CANDIDATES = 8


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
    >>> from galmorphsearch.search import similarity_percent
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


def _as_latents(array, name):
    """Check and convert a 2-D array of latents to native float32."""
    arr = np.asarray(array)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2:
        msg = f"{name} must be a 2-D array (n, latent_dim); got shape {arr.shape}."
        raise ValueError(msg)
    if arr.shape[1] == 0:
        msg = f"{name} has latent dimension 0."
        raise ValueError(msg)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        msg = f"{name} must hold real numbers; got dtype {arr.dtype}."
        raise ValueError(msg)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _check_finite(arr, name):
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
        msg = (
            f"{name} holds NaN or infinite values in {bad.size} row(s) "
            f"(first: {bad[:5].tolist()})."
        )
        raise ValueError(msg)


def _squared_norms(arr):
    """Row-wise squared norms accumulated in float64."""
    return np.einsum("ij,ij->i", arr, arr, dtype=np.float64)


def _check_exclude(exclude, n_queries, n_database):
    if exclude is None:
        return None
    exc = np.asarray(exclude)
    if exc.ndim == 0:
        exc = np.full(n_queries, int(exc), dtype=np.int64)
    if exc.shape != (n_queries,) or not np.issubdtype(exc.dtype, np.integer):
        msg = f"exclude must be an integer array of shape ({n_queries},); got {exc.shape}."
        raise ValueError(msg)
    exc = exc.astype(np.int64)
    if np.any(exc >= n_database) or np.any(exc < -1):
        msg = f"exclude holds row numbers outside -1..{n_database - 1}."
        raise ValueError(msg)
    return exc


def _check_k(k, n_available, what="database row(s) that can be returned"):
    """``k`` as an int in ``[1, n_available]``, or a clear error naming ``what``."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        msg = f"k must be an integer; got {k!r}."
        raise TypeError(msg)
    if k < 1:
        msg = f"k must be at least 1; got {k}."
        raise ValueError(msg)
    if k > n_available:
        msg = f"k={k} is larger than the {n_available} {what}."
        raise ValueError(msg)
    return int(k)


def _neighbours(queries, database, k, db_sqnorms, chunk_size, exclude, grow=False):
    """
    The exact search of the package, on checked float32 queries: the core of
    `exact_neighbours`, `~galmorphsearch.database.chunked_neighbours` and
    `~galmorphsearch.search.ExactBackend`.

    ``database`` is a checked float32 array or a latent source (see
    `galmorphsearch.database.LatentSource`); ``db_sqnorms`` its squared row
    norms (float32 or float64), or None to compute them block by block. With
    ``grow``, blocks of an in-memory float32 array (views, not copies) grow
    beyond ``chunk_size`` rows when there are few queries, as long as the
    scores of a block stay within ``_MAX_BLOCK_ELEMENTS``: one query is
    compared with up to 16.7 million rows in one BLAS call. The database is read
    once, block by block (the outer loop), and each block is compared with
    all queries in bounded blocks of queries (the inner loop), so a
    memory-mapped store is streamed once per call. A fast float32 pass ranks
    ``||b||^2 - 2 a.b`` (the query norm does not change the order), keeps
    ``k`` plus a few extra candidates per query, and the candidates are then
    re-ranked on exact float64 distances (`_rerank`).
    """
    source = (database if is_latent_source(database)
              else ArrayLatents(database, check_finite=False))  # checked by the caller
    n_q, n_db = queries.shape[0], len(source)
    n_cand = min(k + _EXTRA_CANDIDATES, n_db)
    if db_sqnorms is not None:
        db_sqnorms = np.asarray(db_sqnorms, dtype=np.float32)  # no copy if float32 already
    if grow and _direct_float32(source):
        chunk_size = max(chunk_size, min(n_db, _MAX_BLOCK_ELEMENTS // n_q))
    q_chunk = max(1, min(n_q, _MAX_BLOCK_ELEMENTS // min(chunk_size, n_db)))
    minus2q = queries * np.float32(-2.0)
    # Running best candidates of every query; -1 marks an empty slot.
    best_idx = np.full((n_q, n_cand), -1, dtype=np.int64)
    best_score = np.full((n_q, n_cand), np.inf, dtype=np.float32)
    for d0, block in source.iter_chunks(chunk_size):
        block = np.asarray(block, dtype=np.float32)
        nc = block.shape[0]
        d1 = d0 + nc
        if db_sqnorms is None:
            sqn = _squared_norms(block).astype(np.float32)
        else:
            sqn = db_sqnorms[d0:d1]
        for q0 in range(0, n_q, q_chunk):
            q1 = min(q0 + q_chunk, n_q)
            scores = minus2q[q0:q1] @ block.T  # float32 BLAS: -2 a.b (exact scaling)
            scores += sqn[np.newaxis, :]
            if exclude is not None:
                ex = exclude[q0:q1]
                hit = np.flatnonzero((ex >= d0) & (ex < d1))
                scores[hit, ex[hit] - d0] = np.inf
            if nc > n_cand:
                part = np.argpartition(scores, n_cand - 1, axis=1)[:, :n_cand]
                if d0 == 0:  # the first block: nothing to merge with yet
                    best_idx[q0:q1] = part
                    best_score[q0:q1] = np.take_along_axis(scores, part, axis=1)
                    continue
            else:
                part = np.broadcast_to(np.arange(nc), (q1 - q0, nc))
            cand_score = np.concatenate(
                [best_score[q0:q1], np.take_along_axis(scores, part, axis=1)], axis=1)
            cand_idx = np.concatenate([best_idx[q0:q1], part + d0], axis=1)
            keep = np.argpartition(cand_score, n_cand - 1, axis=1)[:, :n_cand]
            best_idx[q0:q1] = np.take_along_axis(cand_idx, keep, axis=1)
            best_score[q0:q1] = np.take_along_axis(cand_score, keep, axis=1)
    idx, dist = _rerank(queries, best_idx, k, source, exclude)
    return idx, dist


def _direct_float32(source):
    """Whether the source's blocks are views of an in-memory native float32 array."""
    array = getattr(source, "array", None)
    return (isinstance(source, ArrayLatents) and array.dtype == np.float32
            and array.dtype.isnative)


def _rerank(queries, candidates, k, source, exclude=None):
    """
    Exact float64 re-ranking of candidate rows.

    Parameters
    ----------
    queries : `~numpy.ndarray`, shape (Q, D)
        The queries.
    candidates : `~numpy.ndarray`, shape (Q, C), int64
        Distinct candidate database rows per query, -1 for none (faiss pads
        short results with -1).
    k : int
        Neighbours kept per query (``k <= C``).
    source : latent source
        Where the candidate rows are read (``take``).
    exclude : `~numpy.ndarray`, shape (Q,), optional
        A row per query that must not be returned (-1 for none).

    Returns
    -------
    indices, distances : `~numpy.ndarray`, shape (Q, k)
        Nearest first, ties by row number; where a query has fewer than k
        valid candidates the remaining entries are -1 and ``inf``.
    """
    n_q, n_c = candidates.shape
    dim = queries.shape[1]
    out_idx = np.empty((n_q, k), dtype=np.int64)
    out_dist = np.empty((n_q, k), dtype=np.float64)
    direct = source.array if _direct_float32(source) else None
    block = max(1, _MAX_BLOCK_ELEMENTS // 4 // max(1, n_c * dim))
    for q0 in range(0, n_q, block):
        q1 = min(q0 + block, n_q)
        cand = candidates[q0:q1]
        valid = cand >= 0
        if exclude is not None:
            valid &= cand != exclude[q0:q1, np.newaxis]
        all_valid = bool(valid.all())
        flat = (cand if all_valid else np.where(valid, cand, 0)).ravel()
        if direct is not None:
            vectors = direct[flat]  # checked rows of an array in memory
        elif getattr(source, "in_memory", False):
            vectors = source.take(flat)  # repeats cost nothing to read
        else:  # each row read from the file once
            rows, inverse = np.unique(flat, return_inverse=True)
            vectors = source.take(rows)[inverse.reshape(-1)]
        diff = np.subtract(vectors.reshape(q1 - q0, n_c, dim),
                           queries[q0:q1, np.newaxis, :], dtype=np.float64)
        dist = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
        if all_valid:
            order = np.lexsort((cand, dist), axis=1)[:, :k]
            out_idx[q0:q1] = np.take_along_axis(cand, order, axis=1)
            out_dist[q0:q1] = np.take_along_axis(dist, order, axis=1)
            continue
        dist[~valid] = np.inf
        ranked = np.where(valid, cand, np.iinfo(np.int64).max)
        order = np.lexsort((ranked, dist), axis=1)[:, :k]
        idx = np.take_along_axis(cand, order, axis=1)
        dist = np.take_along_axis(dist, order, axis=1)
        idx[~np.isfinite(dist)] = -1
        out_idx[q0:q1] = idx
        out_dist[q0:q1] = dist
    return out_idx, out_dist


def exact_neighbours(queries, database, k, *, chunk_size=DEFAULT_CHUNK_SIZE, exclude=None):
    """
    Exact Euclidean k-nearest neighbours of query latents in a database.

    The distances are computed as :math:`\\lVert a \\rVert^2 - 2 a \\cdot b +
    \\lVert b \\rVert^2` with a float32 matrix product (BLAS), in blocks of
    ``chunk_size`` database rows so that memory stays bounded; the best
    candidates of each query are then re-ranked on exact float64 distances,
    so an identical vector has a distance of exactly 0.

    Parameters
    ----------
    queries : array-like, shape (Q, D) or (D,)
        Query latent vectors.
    database : array-like, shape (N, D)
        Database latent vectors.
    k : int
        Number of neighbours per query, ``1 <= k <= N`` (``N - 1`` when a row
        is excluded).
    chunk_size : int, optional
        Number of database rows compared at once.
    exclude : array-like of int, shape (Q,), optional
        For each query, a database row that must not be returned (for
        example the query itself), or -1 for none.

    Returns
    -------
    indices : `~numpy.ndarray`, shape (Q, k), int64
        Database rows of the neighbours, nearest first (ties by row number).
    distances : `~numpy.ndarray`, shape (Q, k), float64
        Their Euclidean distances, ascending.

    Raises
    ------
    ValueError
        If the arrays are not 2-D, their latent dimensions differ, they hold
        NaN or infinite values, ``k`` is out of range or ``exclude`` is
        malformed.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.search import exact_neighbours
    >>> db = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    >>> idx, dist = exact_neighbours([[0.9, 0.0]], db, k=2)
    >>> idx
    array([[1, 0]])
    >>> dist.round(3)
    array([[0.1, 0.9]])
    """
    q = _as_latents(queries, "queries")
    db = _as_latents(database, "database")
    if q.shape[1] != db.shape[1]:
        msg = (
            f"Latent dimensions differ: queries have {q.shape[1]}, the database has "
            f"{db.shape[1]}."
        )
        raise ValueError(msg)
    if db.shape[0] == 0:
        msg = "The database is empty."
        raise ValueError(msg)
    _check_finite(q, "queries")
    _check_finite(db, "database")
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        msg = f"chunk_size must be at least 1; got {chunk_size}."
        raise ValueError(msg)
    exc = _check_exclude(exclude, q.shape[0], db.shape[0])
    n_available = db.shape[0] - (1 if exc is not None and np.any(exc >= 0) else 0)
    k = _check_k(k, n_available)
    return _neighbours(q, db, k, _squared_norms(db), chunk_size, exc)


def database_h_similarity(latents, background_latents, *, chunk_size=DEFAULT_CHUNK_SIZE):
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
    chunk_size : int, optional
        Number of database rows compared at once (see `exact_neighbours`).

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

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.search import database_h_similarity
    >>> lat = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    >>> bkg = np.array([[4.0, 0.0], [1.0, 4.0], [0.0, 0.0]])
    >>> database_h_similarity(lat, bkg)
    array([75., 75., 0.])
    """
    lat = _as_latents(latents, "latents")
    bkg = _as_latents(background_latents, "background_latents")
    if lat.shape != bkg.shape:
        msg = (
            f"latents {lat.shape} and background_latents {bkg.shape} must have the same shape."
        )
        raise ValueError(msg)
    _check_finite(lat, "latents")
    _check_finite(bkg, "background_latents")
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        msg = f"chunk_size must be at least 1; got {chunk_size}."
        raise ValueError(msg)
    return _h_similarity_rows(lat, np.arange(lat.shape[0], dtype=np.int64), lat, bkg,
                              _squared_norms(lat), chunk_size)


def _h_similarity_rows(queries, rows, database, query_backgrounds, db_sqnorms, chunk_size):
    """
    The H-similarity of the database rows ``rows``, whose latents are ``queries``.

    Each row's nearest other row that is not an identical copy of it (the
    same image) is searched exactly, with a larger k where all k neighbours
    were identical, and its Sp against the row's own background patch
    (``query_backgrounds``) is returned; NaN where there is no such row or
    the background is identical to the galaxy. ``database`` is an array or a
    latent source, ``db_sqnorms`` its squared norms or None. The core of
    `database_h_similarity` and of the H-similarity tasks of
    `~galmorphsearch.database.build_database`.
    """
    n = len(database)
    nearest = np.full(len(rows), np.nan)
    if n >= 2:
        qnorms = np.sqrt(_squared_norms(queries))
        todo = np.arange(len(rows))
        k = min(n - 1, 4)
        while todo.size:
            _, dist = _neighbours(queries[todo], database, k, db_sqnorms, chunk_size, rows[todo])
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
