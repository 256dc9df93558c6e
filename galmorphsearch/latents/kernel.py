# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The building blocks of the exact nearest-neighbour search, for search backends.

`~galmorphsearch.latents.exact_neighbours` is the search for users; this
module holds its pieces, public for the code that builds on them (the
backends of `galmorphsearch.search`, the build pipeline, and a new backend
registered with `~galmorphsearch.search.register_backend`): the checks of
queries, ``k`` and ``exclude`` (with the error messages of the package),
`checked_neighbours`, the search on checked inputs, and `rerank`, the exact
float64 re-ranking of candidate rows. These functions check as little as
their docstrings say, so they are fast on inputs already checked. (The
H-similarity of a block of database rows, for the build pipeline, is
``galmorphsearch.latents.similarity.h_similarity_rows``.)
"""

import numpy as np

from .sources import ArrayLatents, is_latent_source

__all__ = ["EXTRA_CANDIDATES", "as_latents", "check_finite", "squared_norms",
           "check_exclude", "check_k", "checked_neighbours", "rerank"]

# At most this many elements in one (queries x database rows) block of scores
# (float32, so 64 MiB per block).
_MAX_BLOCK_ELEMENTS = 2**24

#: Extra candidates kept from the float32 pass (or asked of an approximate
#: index) and re-ranked with exact float64 distances, so that rounding in the
#: fast pass does not change the result.
EXTRA_CANDIDATES = 8


def as_latents(array, name):
    """
    Check and convert an array of latents to a 2-D native float32 array.

    Parameters
    ----------
    array : array-like, shape (N, D) or (D,)
        Latent vectors (one vector is made a row).
    name : str
        What the array is, for the error messages.

    Returns
    -------
    latents : `~numpy.ndarray`, shape (N, D), float32
        C-contiguous (no copy when it already is float32).

    Raises
    ------
    ValueError
        If the array is not 1-D or 2-D, has latent dimension 0 or does not
        hold real numbers.
    """
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


def check_finite(arr, name):
    """
    Raise if latent vectors hold NaN or infinite values.

    Parameters
    ----------
    arr : `~numpy.ndarray`, shape (N, D)
        Latent vectors.
    name : str
        What the array is, for the error message.

    Raises
    ------
    ValueError
        Naming the number of bad rows and the first of them.
    """
    if not np.all(np.isfinite(arr)):
        bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
        msg = (
            f"{name} holds NaN or infinite values in {bad.size} row(s) "
            f"(first: {bad[:5].tolist()})."
        )
        raise ValueError(msg)


def squared_norms(arr):
    """
    Row-wise squared norms, accumulated in float64.

    Parameters
    ----------
    arr : `~numpy.ndarray`, shape (N, D)
        Latent vectors.

    Returns
    -------
    sqnorms : `~numpy.ndarray`, shape (N,), float64
        Their squared Euclidean norms.
    """
    return np.einsum("ij,ij->i", arr, arr, dtype=np.float64)


def check_exclude(exclude, n_queries, n_database):
    """
    Check the ``exclude`` argument of a search.

    Parameters
    ----------
    exclude : int or array-like of int, shape (Q,), or None
        A database row per query that must not be returned, -1 for none (one
        int for all queries).
    n_queries : int
        Number of queries ``Q``.
    n_database : int
        Number of database rows.

    Returns
    -------
    exclude : `~numpy.ndarray`, shape (Q,), int64, or None
        The rows, or None when ``exclude`` is None.

    Raises
    ------
    ValueError
        If the shape or type is wrong or a row is outside ``-1..n_database-1``.
    """
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


def check_k(k, n_available, what="database row(s) that can be returned"):
    """
    Check a number of neighbours (or of clusters, or of anything counted).

    Parameters
    ----------
    k : int
        The number asked for.
    n_available : int
        The largest number allowed.
    what : str, optional
        What is counted, for the error message.

    Returns
    -------
    k : int
        ``k`` as a Python int in ``[1, n_available]``.

    Raises
    ------
    TypeError
        If ``k`` is not an integer (a bool is not).
    ValueError
        If ``k`` is below 1 or above ``n_available``.
    """
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


def checked_neighbours(queries, database, k, db_sqnorms, chunk_rows, exclude, grow=False):
    """
    The exact search of the package, on checked float32 queries.

    The core of `~galmorphsearch.latents.exact_neighbours` and
    `~galmorphsearch.search.ExactBackend`; nothing is checked here (see
    `as_latents`, `check_finite`, `check_exclude` and `check_k`).

    ``database`` is a checked float32 array or a latent source (see
    `galmorphsearch.latents.LatentSource`); ``db_sqnorms`` its squared row
    norms (float32 or float64), or None to compute them block by block. With
    ``grow``, blocks of an in-memory float32 array (views, not copies) grow
    beyond ``chunk_rows`` rows when there are few queries, as long as the
    scores of a block stay within ``_MAX_BLOCK_ELEMENTS``: one query is
    compared with up to 16.7 million rows in one BLAS call. The database is read
    once, block by block (the outer loop), and each block is compared with
    all queries in bounded blocks of queries (the inner loop), so a
    memory-mapped store is streamed once per call. A fast float32 pass ranks
    ``||b||^2 - 2 a.b`` (the query norm does not change the order), keeps
    ``k`` plus a few extra candidates per query, and the candidates are then
    re-ranked on exact float64 distances (`rerank`).

    Parameters
    ----------
    queries : `~numpy.ndarray`, shape (Q, D), float32
        Checked queries (`as_latents`, `check_finite`).
    database : `~numpy.ndarray`, shape (N, D), or latent source
        Checked database latents.
    k : int
        Neighbours per query, checked (`check_k`).
    db_sqnorms : `~numpy.ndarray`, shape (N,), or None
        Squared norms of the database rows, or None to compute them.
    chunk_rows : int
        Database rows compared at once.
    exclude : `~numpy.ndarray`, shape (Q,), int64, or None
        Checked rows to leave out (`check_exclude`).
    grow : bool, optional
        Let blocks of an in-memory float32 array grow (see above).

    Returns
    -------
    indices : `~numpy.ndarray`, shape (Q, k), int64
        Database rows of the neighbours, nearest first (ties by row number).
    distances : `~numpy.ndarray`, shape (Q, k), float64
        Their exact Euclidean distances, ascending.
    """
    source = (database if is_latent_source(database)
              else ArrayLatents(database, check_finite=False))  # checked by the caller
    n_q, n_db = queries.shape[0], len(source)
    n_cand = min(k + EXTRA_CANDIDATES, n_db)
    if db_sqnorms is not None:
        db_sqnorms = np.asarray(db_sqnorms, dtype=np.float32)  # no copy if float32 already
    if grow and _direct_float32(source):
        chunk_rows = max(chunk_rows, min(n_db, _MAX_BLOCK_ELEMENTS // n_q))
    q_chunk = max(1, min(n_q, _MAX_BLOCK_ELEMENTS // min(chunk_rows, n_db)))
    minus2q = queries * np.float32(-2.0)
    # Running best candidates of every query; -1 marks an empty slot.
    best_idx = np.full((n_q, n_cand), -1, dtype=np.int64)
    best_score = np.full((n_q, n_cand), np.inf, dtype=np.float32)
    for d0, block in source.iter_chunks(chunk_rows):
        block = np.asarray(block, dtype=np.float32)
        nc = block.shape[0]
        d1 = d0 + nc
        if db_sqnorms is None:
            sqn = squared_norms(block).astype(np.float32)
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
    idx, dist = rerank(queries, best_idx, k, source, exclude)
    return idx, dist


def _direct_float32(source):
    """Whether the source's blocks are views of an in-memory native float32 array."""
    array = getattr(source, "array", None)
    return (isinstance(source, ArrayLatents) and array.dtype == np.float32
            and array.dtype.isnative)


def rerank(queries, candidates, k, source, exclude=None):
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
