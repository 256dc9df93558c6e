# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Exact nearest-neighbour search: the one kernel of the package.

`exact_neighbours` searches an array of latents in memory or any latent
source (`~galmorphsearch.latents.LatentSource`, read chunk by chunk) with
the same code: a float32 matrix product (BLAS) over blocks of
``chunk_rows`` database rows ranks candidates, which are then re-ranked on
exact float64 distances, so an identical vector has a distance of exactly
0 and the result does not depend on where the latents are stored. It is
the search behind `~galmorphsearch.search.ExactBackend` (so
`~galmorphsearch.search.SimilaritySearcher`) and the H-similarity of a
database (`~galmorphsearch.latents.database_h_similarity`).
"""

import warnings

import numpy as np
from astropy.utils.exceptions import AstropyDeprecationWarning

from .sources import (
    ArrayLatents,
    LatentSource,
    as_latent_source,
    default_chunk_rows,
    is_latent_source,
)

__all__ = ["exact_neighbours"]

#: Default number of database rows compared at once when the database is an
#: array (a latent source has its own default, see
#: `LatentSource.iter_chunks <galmorphsearch.latents.LatentSource.iter_chunks>`).
DEFAULT_CHUNK_ROWS = 32768

# At most this many elements in one (queries x database rows) block of scores
# (float32, so 64 MiB per block).
_MAX_BLOCK_ELEMENTS = 2**24

# Extra candidates kept from the float32 pass and re-ranked with exact float64
# distances, so that rounding in the fast pass does not change the result.
_EXTRA_CANDIDATES = 8


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


def _neighbours(queries, database, k, db_sqnorms, chunk_rows, exclude, grow=False):
    """
    The exact search of the package, on checked float32 queries: the core of
    `exact_neighbours` and `~galmorphsearch.search.ExactBackend`.

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
    re-ranked on exact float64 distances (`_rerank`).
    """
    source = (database if is_latent_source(database)
              else ArrayLatents(database, check_finite=False))  # checked by the caller
    n_q, n_db = queries.shape[0], len(source)
    n_cand = min(k + _EXTRA_CANDIDATES, n_db)
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


_UNSET = object()


def exact_neighbours(queries, database, k, *, chunk_rows=None, exclude=None,
                     chunk_size=_UNSET):
    """
    Exact Euclidean k-nearest neighbours of query latents in a database.

    The distances are computed as :math:`\\lVert a \\rVert^2 - 2 a \\cdot b +
    \\lVert b \\rVert^2` with a float32 matrix product (BLAS), in blocks of
    ``chunk_rows`` database rows so that memory stays bounded; the best
    ``k`` plus a few candidates per query are merged into the running best
    with `numpy.argpartition`, and then re-ranked on exact float64
    distances, so an identical vector has a distance of exactly 0. An array
    and a latent source holding the same latents give the same neighbours
    and distances.

    A latent source (`~galmorphsearch.latents.LatentSource`, or a
    `~galmorphsearch.database.LatentDatabase`, whose latent source is
    searched) is read once, chunk by chunk
    (`~galmorphsearch.latents.LatentSource.iter_chunks`), whatever the
    number of queries, and the candidates are read again with
    `~galmorphsearch.latents.LatentSource.take`: the memory used is that of
    one chunk plus the scores of one block of queries. This is the way an
    out-of-core database (read with ``memmap=True``) is searched.

    Parameters
    ----------
    queries : array-like, shape (Q, D) or (D,)
        Query latent vectors.
    database : array-like, shape (N, D), or latent source
        Database latent vectors: an array, a latent source (see
        `~galmorphsearch.latents.is_latent_source`) or a
        `~galmorphsearch.database.LatentDatabase`.
    k : int
        Number of neighbours per query, ``1 <= k <= N`` (``N - 1`` when a row
        is excluded).
    chunk_rows : int, optional
        Number of database rows compared at once. Default: 32768 for an
        array, the source's own default for a latent source (about 16 MiB
        read at a time, see
        `~galmorphsearch.latents.LatentSource.iter_chunks`).
    exclude : array-like of int, shape (Q,), optional
        For each query, a database row that must not be returned (for
        example the query itself), or -1 for none.
    chunk_size : int, optional
        Deprecated name of ``chunk_rows``.

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
    ~galmorphsearch.utils.DatabaseFormatError
        If a file source holds NaN or infinite values or cannot be read.

    Warns
    -----
    ~astropy.utils.exceptions.AstropyDeprecationWarning
        When ``chunk_size`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.latents import ArrayLatents, exact_neighbours
    >>> db = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    >>> idx, dist = exact_neighbours([[0.9, 0.0]], db, k=2)
    >>> idx
    array([[1, 0]])
    >>> dist.round(3)
    array([[0.1, 0.9]])
    >>> idx, dist = exact_neighbours([[0.9, 0.0]], ArrayLatents(db), k=2, chunk_rows=2)
    >>> idx
    array([[1, 0]])
    """
    if chunk_size is not _UNSET:
        warnings.warn("The chunk_size argument of exact_neighbours is deprecated; use "
                      "chunk_rows, which means the same.", AstropyDeprecationWarning,
                      stacklevel=2)
        if chunk_rows is not None:
            msg = "Give chunk_rows or its deprecated name chunk_size, not both."
            raise TypeError(msg)
        chunk_rows = _checked_chunk_size(chunk_size)
    if _is_source(database):
        return _source_neighbours(queries, database, k, chunk_rows, exclude)
    return _array_neighbours(queries, database, k, chunk_rows, exclude)


def _is_source(database):
    """Whether ``database`` is searched as a latent source (not as an array)."""
    if is_latent_source(database):
        return True
    return (not isinstance(database, np.ndarray)
            and getattr(database, "latent_source", None) is not None)


def _checked_chunk_size(chunk_size):
    """The deprecated ``chunk_size`` of `exact_neighbours`, checked as it always was."""
    chunk_size = int(chunk_size)
    if chunk_size < 1:
        msg = f"chunk_size must be at least 1; got {chunk_size}."
        raise ValueError(msg)
    return chunk_size


def _checked_chunk_rows(chunk_rows, default=DEFAULT_CHUNK_ROWS):
    """``chunk_rows`` as a positive int (``default`` for None)."""
    if chunk_rows is None:
        return default
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer):
        msg = f"chunk_rows must be an integer; got {chunk_rows!r}."
        raise TypeError(msg)
    if chunk_rows < 1:
        msg = f"chunk_rows must be at least 1; got {chunk_rows}."
        raise ValueError(msg)
    return int(chunk_rows)


def _array_neighbours(queries, database, k, chunk_rows, exclude):
    """`exact_neighbours` of an array in memory."""
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
    chunk_rows = _checked_chunk_rows(chunk_rows)
    exc = _check_exclude(exclude, q.shape[0], db.shape[0])
    n_available = db.shape[0] - (1 if exc is not None and np.any(exc >= 0) else 0)
    k = _check_k(k, n_available)
    return _neighbours(q, db, k, _squared_norms(db), chunk_rows, exc)


def _source_neighbours(queries, source, k, chunk_rows, exclude):
    """`exact_neighbours` of a latent source, read chunk by chunk."""
    source = as_latent_source(source)
    q = _as_latents(queries, "queries")
    if q.shape[1] != source.dim:
        msg = (f"Latent dimensions differ: queries have {q.shape[1]}, the database has "
               f"{source.dim}.")
        raise ValueError(msg)
    n_db = len(source)
    if n_db == 0:
        msg = "The database is empty."
        raise ValueError(msg)
    _check_finite(q, "queries")
    exc = _check_exclude(exclude, q.shape[0], n_db)
    k = _check_k(k, n_db - (1 if exc is not None and np.any(exc >= 0) else 0))
    if isinstance(source, LatentSource):
        rows = source._default_rows(chunk_rows)
    else:
        rows = default_chunk_rows(source) if chunk_rows is None else int(chunk_rows)
    # Norms a file source already holds are used; otherwise each chunk's are
    # computed as it is read (no extra pass).
    return _neighbours(q, source, k, getattr(source, "_sqnorms", None), rows, exc)
