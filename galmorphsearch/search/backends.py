# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Nearest-neighbour search backends.

A backend holds the database latents (`SearchBackend.fit`) and answers
k-nearest-neighbour queries (`SearchBackend.search`) with Euclidean
distances. `ExactBackend` does an exact, chunked BLAS search in NumPy; an
approximate faiss backend for very large databases is planned for a later
release. Backends are looked up by name with `get_backend`.
"""

import abc

import numpy as np

from .similarity import (
    DEFAULT_CHUNK_SIZE,
    _as_latents,
    _check_exclude,
    _check_finite,
    _check_k,
    _neighbours,
    _squared_norms,
)

__all__ = [
    "SearchBackend",
    "ExactBackend",
    "register_backend",
    "get_backend",
    "available_backends",
]


class SearchBackend(abc.ABC):
    """
    Base class of nearest-neighbour search backends.

    Subclasses implement `fit` (store or index the database latents) and
    `search` (k nearest database rows of each query, Euclidean distances,
    nearest first), and set the class attribute ``name``.
    """

    #: Name under which the backend is registered.
    name = None

    @abc.abstractmethod
    def fit(self, latents):
        """
        Store or index the database latents.

        Parameters
        ----------
        latents : array-like, shape (N, D)
            The database latent vectors.

        Returns
        -------
        self : `SearchBackend`
            The fitted backend.
        """

    @abc.abstractmethod
    def search(self, queries, k, exclude=None):
        """
        The k nearest database rows of each query.

        Parameters
        ----------
        queries : array-like, shape (Q, D)
            Query latent vectors.
        k : int
            Number of neighbours per query.
        exclude : array-like of int, shape (Q,), optional
            A database row to leave out per query (-1 for none).

        Returns
        -------
        indices : `~numpy.ndarray`, shape (Q, k), int64
            Database rows, nearest first.
        distances : `~numpy.ndarray`, shape (Q, k), float64
            Euclidean distances, ascending.
        """

    def __repr__(self):
        return f"<{type(self).__name__}>"


class ExactBackend(SearchBackend):
    """
    Exact Euclidean search with chunked BLAS matrix products.

    See `~galmorphsearch.search.exact_neighbours` for the algorithm; the
    database latents are checked and their squared norms computed once, in
    `fit`.

    Parameters
    ----------
    chunk_size : int, optional
        Number of database rows compared with the queries at once; memory
        grows with ``chunk_size`` times the number of queries in a block.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.search import ExactBackend
    >>> backend = ExactBackend().fit(np.eye(3, dtype=np.float32))
    >>> idx, dist = backend.search(np.array([[0.9, 0.1, 0.0]]), k=2)
    >>> idx
    array([[0, 1]])
    """

    name = "exact"

    def __init__(self, chunk_size=DEFAULT_CHUNK_SIZE):
        chunk_size = int(chunk_size)
        if chunk_size < 1:
            msg = f"chunk_size must be at least 1; got {chunk_size}."
            raise ValueError(msg)
        self.chunk_size = chunk_size
        self._latents = None
        self._sqnorms = None

    def __repr__(self):
        n = "unfitted" if self._latents is None else f"{self._latents.shape[0]} rows"
        return f"<ExactBackend chunk_size={self.chunk_size}, {n}>"

    @property
    def n_rows(self):
        """Number of database rows (0 before `fit`)."""
        return 0 if self._latents is None else self._latents.shape[0]

    @property
    def latent_dim(self):
        """Latent dimension of the database (None before `fit`)."""
        return None if self._latents is None else self._latents.shape[1]

    def fit(self, latents):
        """
        Store the database latents as native float32.

        Parameters
        ----------
        latents : array-like, shape (N, D)
            The database latent vectors.

        Returns
        -------
        self : `ExactBackend`
            The fitted backend.

        Raises
        ------
        ValueError
            If the array is not 2-D, is empty or holds NaN or infinite values.
        """
        lat = _as_latents(latents, "database latents")
        if lat.shape[0] == 0:
            msg = "The database is empty."
            raise ValueError(msg)
        _check_finite(lat, "database latents")
        self._latents = lat
        self._sqnorms = _squared_norms(lat)
        return self

    def search(self, queries, k, exclude=None):
        """
        The k nearest database rows of each query (exact).

        Parameters
        ----------
        queries : array-like, shape (Q, D) or (D,)
            Query latent vectors.
        k : int
            Number of neighbours per query.
        exclude : array-like of int, shape (Q,), optional
            A database row to leave out per query (-1 for none).

        Returns
        -------
        indices : `~numpy.ndarray`, shape (Q, k), int64
            Database rows, nearest first.
        distances : `~numpy.ndarray`, shape (Q, k), float64
            Euclidean distances, ascending.

        Raises
        ------
        RuntimeError
            If the backend was not fitted.
        ValueError
            If the queries do not match the database's latent dimension, hold
            NaN or infinite values, or ``k`` is out of range.
        """
        if self._latents is None:
            msg = "The backend has not been fitted; call fit(latents) first."
            raise RuntimeError(msg)
        q = _as_latents(queries, "query latents")
        if q.shape[1] != self._latents.shape[1]:
            msg = (
                f"Latent dimensions differ: the queries have {q.shape[1]}, the database "
                f"has {self._latents.shape[1]}."
            )
            raise ValueError(msg)
        _check_finite(q, "query latents")
        exc = _check_exclude(exclude, q.shape[0], self._latents.shape[0])
        n_available = self._latents.shape[0] - (1 if exc is not None and np.any(exc >= 0) else 0)
        k = _check_k(k, n_available)
        return _neighbours(q, self._latents, k, self._sqnorms, self.chunk_size, exc)


def _faiss_placeholder(**kwargs):
    msg = (
        "The 'faiss' search backend comes with a later release of galmorphsearch; "
        "use backend='exact' (exact search, fast up to a few million rows)."
    )
    raise NotImplementedError(msg)


_BACKENDS = {"exact": ExactBackend, "faiss": _faiss_placeholder}


def register_backend(name, factory, overwrite=False):
    """
    Register a search backend under a name.

    Parameters
    ----------
    name : str
        The name (case-insensitive) given to `get_backend` or to
        ``SimilaritySearcher(..., backend=name)``.
    factory : callable
        A `SearchBackend` subclass, or any callable returning a
        `SearchBackend` from keyword options.
    overwrite : bool, optional
        Replace an existing backend of that name.

    Raises
    ------
    ValueError
        If the name is taken and ``overwrite`` is False.
    """
    key = str(name).strip().lower()
    if key in _BACKENDS and not overwrite:
        msg = f"A search backend named {key!r} is already registered (use overwrite=True)."
        raise ValueError(msg)
    if not callable(factory):
        msg = "factory must be callable (a SearchBackend subclass or a function)."
        raise TypeError(msg)
    _BACKENDS[key] = factory


def available_backends():
    """
    Names of the registered search backends.

    Returns
    -------
    names : list of str
        Sorted backend names (including placeholders of later releases).

    Examples
    --------
    >>> from galmorphsearch.search import available_backends
    >>> available_backends()
    ['exact', 'faiss']
    """
    return sorted(_BACKENDS)


def get_backend(name, **options):
    """
    A new, unfitted search backend by name.

    Parameters
    ----------
    name : str or `SearchBackend`
        A registered name (``'exact'``); a `SearchBackend` instance is
        returned unchanged.
    **options
        Keyword arguments of the backend (e.g. ``chunk_size`` for
        ``'exact'``).

    Returns
    -------
    backend : `SearchBackend`
        The backend.

    Raises
    ------
    ValueError
        If no backend has that name.
    NotImplementedError
        For ``'faiss'``, which comes with a later release.

    Examples
    --------
    >>> from galmorphsearch.search import get_backend
    >>> get_backend('exact', chunk_size=1024)
    <ExactBackend chunk_size=1024, unfitted>
    """
    if isinstance(name, SearchBackend):
        return name
    key = str(name).strip().lower()
    if key not in _BACKENDS:
        msg = f"Unknown search backend {name!r}; choose one of {available_backends()}."
        raise ValueError(msg)
    backend = _BACKENDS[key](**options)
    if not isinstance(backend, SearchBackend):
        msg = f"The factory of backend {key!r} did not return a SearchBackend."
        raise TypeError(msg)
    return backend
