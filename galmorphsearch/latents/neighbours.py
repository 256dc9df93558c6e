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
database (`~galmorphsearch.latents.database_h_similarity`). Its building
blocks, for search backends, are in ``galmorphsearch.latents.kernel``.
"""

import warnings

import numpy as np
from astropy.utils.exceptions import AstropyDeprecationWarning

from .kernel import (
    as_latents,
    check_exclude,
    check_finite,
    check_k,
    checked_neighbours,
    squared_norms,
)
from .sources import (
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
    q = as_latents(queries, "queries")
    db = as_latents(database, "database")
    if q.shape[1] != db.shape[1]:
        msg = (
            f"Latent dimensions differ: queries have {q.shape[1]}, the database has "
            f"{db.shape[1]}."
        )
        raise ValueError(msg)
    if db.shape[0] == 0:
        msg = "The database is empty."
        raise ValueError(msg)
    check_finite(q, "queries")
    check_finite(db, "database")
    chunk_rows = _checked_chunk_rows(chunk_rows)
    exc = check_exclude(exclude, q.shape[0], db.shape[0])
    n_available = db.shape[0] - (1 if exc is not None and np.any(exc >= 0) else 0)
    k = check_k(k, n_available)
    return checked_neighbours(q, db, k, squared_norms(db), chunk_rows, exc)


def _source_neighbours(queries, source, k, chunk_rows, exclude):
    """`exact_neighbours` of a latent source, read chunk by chunk."""
    source = as_latent_source(source)
    q = as_latents(queries, "queries")
    if q.shape[1] != source.dim:
        msg = (f"Latent dimensions differ: queries have {q.shape[1]}, the database has "
               f"{source.dim}.")
        raise ValueError(msg)
    n_db = len(source)
    if n_db == 0:
        msg = "The database is empty."
        raise ValueError(msg)
    check_finite(q, "queries")
    exc = check_exclude(exclude, q.shape[0], n_db)
    k = check_k(k, n_db - (1 if exc is not None and np.any(exc >= 0) else 0))
    if isinstance(source, LatentSource):
        rows = source._default_rows(chunk_rows)
    else:
        rows = default_chunk_rows(source) if chunk_rows is None else int(chunk_rows)
    # Norms a file source already holds are used; otherwise each chunk's are
    # computed as it is read (no extra pass).
    return checked_neighbours(q, source, k, getattr(source, "_sqnorms", None), rows, exc)
