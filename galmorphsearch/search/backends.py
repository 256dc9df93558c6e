# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Nearest-neighbour search backends.

A backend holds the database latents (`SearchBackend.fit`) and answers
k-nearest-neighbour queries (`SearchBackend.search`) with Euclidean
distances. `ExactBackend` does an exact, chunked BLAS search in NumPy over
an in-memory array or any latent source (a memory-mapped store read block
by block); `FaissBackend` searches a faiss index (``'flat'``, exact;
``'ivf'`` and ``'hnsw'``, approximate), which needs the optional package
faiss (``pip install "galmorphsearch[scale]"``); `AutoBackend` picks one of
them from the size of the database. Every backend returns float64 Euclidean
distances computed exactly from the stored latents, so the similarity Sp
does not depend on the backend. Backends are looked up by name with
`get_backend`.
"""

import abc
import logging
import math
import warnings
from pathlib import Path

import numpy as np
from astropy.utils.exceptions import AstropyDeprecationWarning

from ..latents import (
    ArrayLatents,
    LatentSource,
    default_chunk_rows,
    is_latent_source,
    source_squared_norms,
)
from ..latents.kernel import (
    EXTRA_CANDIDATES,
    as_latents,
    check_exclude,
    check_finite,
    check_k,
    checked_neighbours,
    rerank,
)
from ..latents.neighbours import DEFAULT_CHUNK_ROWS
from ..utils import GalMorphSearchWarning, StaleIndexError, StaleIndexWarning
from ._faiss import (
    IndexLatents,
    Provenance,
    check_index_file,
    check_index_header,
    import_faiss,
    sample_mismatch,
    write_index_files,
)
from ._threads import check_threads, limit_threads

__all__ = [
    "SearchBackend",
    "ExactBackend",
    "FaissBackend",
    "AutoBackend",
    "AUTO_EXACT_MAX_ROWS",
    "register_backend",
    "get_backend",
    "available_backends",
]

log = logging.getLogger(__name__)

#: ``backend='auto'`` searches exactly up to this many database rows, and
#: with a faiss IVF index above (when faiss is installed and the latents are
#: in memory). A design choice, not a measured crossover.
AUTO_EXACT_MAX_ROWS = 250_000

_ON_STALE = ("rebuild", "raise")

#: Largest value of an index parameter (faiss stores them as 32-bit integers).
_MAX_PARAM = 2**31 - 1


class SearchBackend(abc.ABC):
    """
    Base class of nearest-neighbour search backends.

    Subclasses implement `fit` (store or index the database latents) and
    `search` (k nearest database rows of each query, Euclidean distances,
    nearest first), and set the class attribute ``name``.

    Class attributes tell `~galmorphsearch.search.SimilaritySearcher` what a
    backend can do: ``accepts_latent_sources`` (`fit` takes a latent source
    as well as an array; otherwise it is given a float32 array),
    ``supports_index_files`` (`fit` takes ``index_path``, ``provenance`` and
    ``on_stale`` keywords), ``index_name`` (the suffix of the index file
    saved beside a database, or None) and ``exact`` (whether the results are
    the exact nearest neighbours; None when unknown).
    """

    #: Name under which the backend is registered.
    name = None

    #: Whether `fit` accepts a latent source (see `galmorphsearch.latents.LatentSource`).
    accepts_latent_sources = False

    #: Whether `fit` accepts ``index_path``, ``provenance`` and ``on_stale``.
    supports_index_files = False

    #: Index files beside a database are named ``<database>.<index_name>.index``.
    index_name = None

    #: Whether the neighbours are exact (None: unknown).
    exact = None

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


_UNSET = object()


def _check_chunk_rows(value, name="chunk_rows", allow_none=False):
    if value is None and allow_none:
        return None
    value = int(value)
    if value < 1:
        msg = f"{name} must be at least 1; got {value}."
        raise ValueError(msg)
    return value


def _chunk_rows_argument(owner, chunk_rows, chunk_size, allow_none=True):
    """
    The ``chunk_rows`` of a backend, given by that name or by its deprecated
    name ``chunk_size`` (`_UNSET` when not given), checked.
    """
    if chunk_size is _UNSET:
        return _check_chunk_rows(chunk_rows, "chunk_rows", allow_none)
    warnings.warn(f"The chunk_size argument of {owner} is deprecated; use chunk_rows, which "
                  "means the same.", AstropyDeprecationWarning, stacklevel=3)
    if chunk_rows is not None:
        msg = "Give chunk_rows or its deprecated name chunk_size, not both."
        raise TypeError(msg)
    return _check_chunk_rows(chunk_size, "chunk_size", allow_none)


def _chunk_size_alias():
    """The deprecated attribute ``chunk_size`` of a backend: its ``chunk_rows``."""

    def chunk_size(self):
        warnings.warn(f"The chunk_size attribute of {type(self).__name__} is deprecated; use "
                      "chunk_rows, which means the same.", AstropyDeprecationWarning,
                      stacklevel=2)
        return self.chunk_rows

    chunk_size.__doc__ = "Deprecated name of ``chunk_rows``."
    return property(chunk_size)


def _check_queries(queries, dim):
    q = as_latents(queries, "query latents")
    if q.shape[1] != dim:
        msg = (
            f"Latent dimensions differ: the queries have {q.shape[1]}, the database "
            f"has {dim}."
        )
        raise ValueError(msg)
    check_finite(q, "query latents")
    return q


def _as_source(latents):
    """
    A latent source for ``latents``: a source as it is, an array wrapped
    in an `~galmorphsearch.latents.ArrayLatents` (float16 and float32 kept,
    not copied; its values are checked by the caller's pass over them).
    """
    source = latents if is_latent_source(latents) else ArrayLatents(latents, check_finite=False)
    if len(source) == 0:
        msg = "The database is empty."
        raise ValueError(msg)
    if int(source.dim) < 1:
        msg = "The database latents have dimension 0."
        raise ValueError(msg)
    return source


def _rows_per_block(chunk_rows, source):
    """Rows per block: as asked, else the file source's default, else `DEFAULT_CHUNK_ROWS`."""
    if chunk_rows is not None:
        return chunk_rows
    if isinstance(source, LatentSource) and not source.in_memory:
        return default_chunk_rows(source)  # about 16 MiB read at a time
    return DEFAULT_CHUNK_ROWS


def _fit_source(latents, chunk_rows):
    """
    A checked latent source for ``latents``, its squared norms and the rows per block.

    The norms take one pass over the latents, block by block (none for a
    file source that already holds them: they are kept with the source),
    and a row with NaN or infinite values has a norm that is not finite.
    """
    source = _as_source(latents)
    rows = _rows_per_block(chunk_rows, source)
    sqnorms = source_squared_norms(source, rows)
    bad = np.flatnonzero(~np.isfinite(sqnorms))
    if bad.size:
        msg = (
            f"database latents hold NaN or infinite values in {bad.size} row(s) "
            f"(first: {bad[:5].tolist()})."
        )
        raise ValueError(msg)
    return source, sqnorms, rows


class ExactBackend(SearchBackend):
    """
    Exact Euclidean search with chunked BLAS matrix products.

    The database is read block by block: each block of ``chunk_rows`` rows
    is compared with all queries through a float32 matrix product
    (:math:`\\lVert b \\rVert^2 - 2 a \\cdot b`), the best ``k`` plus a few
    extra candidates of each query are kept across blocks (``argpartition``
    merges), and the candidates are re-ranked on exact float64 distances,
    so an identical vector is at distance exactly 0 (see
    `~galmorphsearch.latents.exact_neighbours`; this is the one exact search
    of the package).
    The latents are checked and their squared norms computed once, in
    `fit`; a file source (a database read with ``memmap=True``) keeps its
    norms, so a later backend on the same database does not read the file
    for them again. A search reads a file source once, whatever the number
    of queries.

    Parameters
    ----------
    chunk_rows : int, optional
        Number of database rows compared with the queries at once; memory
        grows with ``chunk_rows`` times the number of queries in a block.
        Default: 32768 rows for latents in memory, and for a float32 array
        as many more as keep the scores of a block within 2**24 values
        (64 MiB), so that one query is compared with the whole database in
        one BLAS call (blocks of an array are views, not copies); for a
        file source, its own default (about 16 MiB read at a time).
    threads : int, optional
        Cap the BLAS thread pools at this many threads while fitting and
        searching (through threadpoolctl); by default they are left as they
        are.
    chunk_size : int, optional
        Deprecated name of ``chunk_rows``.

    Warns
    -----
    ~astropy.utils.exceptions.AstropyDeprecationWarning
        When ``chunk_size`` is given.

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
    accepts_latent_sources = True
    exact = True

    chunk_size = _chunk_size_alias()

    def __init__(self, chunk_rows=None, *, threads=None, chunk_size=_UNSET):
        self.chunk_rows = _chunk_rows_argument("ExactBackend", chunk_rows, chunk_size)
        self.threads = check_threads(threads)
        self._source = None
        self._sqnorms = None
        self._rows = None

    def __repr__(self):
        n = "unfitted" if self._source is None else f"{len(self._source)} rows"
        size = "default" if self.chunk_rows is None else self.chunk_rows
        return f"<ExactBackend chunk_rows={size}, {n}>"

    @property
    def n_rows(self):
        """Number of database rows (0 before `fit`)."""
        return 0 if self._source is None else len(self._source)

    @property
    def latent_dim(self):
        """Latent dimension of the database (None before `fit`)."""
        return None if self._source is None else int(self._source.dim)

    @property
    def source(self):
        """The latent source searched (None before `fit`)."""
        return self._source

    def fit(self, latents):
        """
        Keep the database latents and compute their squared norms.

        Parameters
        ----------
        latents : array-like, shape (N, D), or latent source
            The database latent vectors: an array (float32 and float16
            kept as they are, other types converted to float32) or a latent
            source, an object with ``__len__``, ``dim``, ``dtype``,
            ``iter_chunks(rows)`` and ``take(indices)`` (kept as it is and
            read block by block; see `galmorphsearch.latents.LatentSource`,
            e.g. ``database.latent_source``).

        Returns
        -------
        self : `ExactBackend`
            The fitted backend.

        Raises
        ------
        ValueError
            If the array is not 2-D, is empty or holds NaN or infinite values.
        """
        with limit_threads(self.threads):
            self._source, sqnorms, self._rows = _fit_source(latents, self.chunk_rows)
        # float32, as the scores they are added to: not converted at each search
        self._sqnorms = sqnorms.astype(np.float32)
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
            Database rows, nearest first (ties by row number).
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
        if self._source is None:
            msg = "The backend has not been fitted; call fit(latents) first."
            raise RuntimeError(msg)
        n = len(self._source)
        q = _check_queries(queries, int(self._source.dim))
        exc = check_exclude(exclude, q.shape[0], n)
        n_available = n - (1 if exc is not None and np.any(exc >= 0) else 0)
        k = check_k(k, n_available)
        with limit_threads(self.threads):
            return checked_neighbours(q, self._source, k, self._sqnorms, self._rows, exc,
                               grow=self.chunk_rows is None)


def _positive_int(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        msg = f"{name} must be a positive integer or None; got {value!r}."
        raise TypeError(msg)
    if value < 1:
        msg = f"{name} must be at least 1; got {value}."
        raise ValueError(msg)
    if value > _MAX_PARAM:
        msg = f"{name} must be at most {_MAX_PARAM}; got {value}."
        raise ValueError(msg)
    return int(value)


def _check_on_stale(on_stale):
    if on_stale not in _ON_STALE:
        msg = f"on_stale must be one of {list(_ON_STALE)}; got {on_stale!r}."
        raise ValueError(msg)
    return on_stale


def auto_nlist(n_rows):
    """
    The default number of IVF lists for ``n_rows`` database rows.

    About ``4 * sqrt(N)``, rounded to a power of two (4096 at 10^6 rows),
    and at most ``N // 39`` so that k-means has 39 training points per list.
    """
    if n_rows < 1:
        return 1
    nlist = 2 ** round(math.log2(4.0 * math.sqrt(n_rows)))
    return int(max(1, min(nlist, n_rows // 39)))


class FaissBackend(SearchBackend):
    """
    Nearest-neighbour search with a faiss index.

    Three kinds of index: ``'flat'`` (``IndexFlatL2``, exact brute force),
    ``'ivf'`` (``IndexIVFFlat``: k-means lists, of which ``nprobe`` are
    searched; approximate) and ``'hnsw'`` (``IndexHNSWFlat``, a graph;
    approximate). faiss ranks candidates by float32 squared distances; the
    ``k`` plus a few extra best candidates of each query are then re-ranked
    on exact float64 Euclidean distances computed from the stored latents,
    so the distances, the similarity Sp and the identical-image test are
    those of `ExactBackend` for every neighbour found. IVF and HNSW may miss
    true neighbours (their recall is below 1); a query for which the index
    returns fewer than ``k`` rows (short IVF lists give ``-1`` labels) is
    answered by an exact search instead.

    With ``nprobe`` (IVF) or ``ef_search`` (HNSW) left at None, `fit` picks
    the smallest value that reaches ``target_recall`` (recall@10 against
    exact search on up to 500 database rows used as queries, each leaving
    itself out) and records it with the measured recall (`recall`).

    Indexes can be saved and loaded with the files that tie them to their
    database (`fit` with ``index_path``, `save`).

    Parameters
    ----------
    kind : {'flat', 'ivf', 'hnsw'}, optional
        The kind of index.
    nlist : int, optional
        IVF: number of lists (default: about ``4 sqrt(N)`` rounded to a power of two,
        at most ``N // 39``).
        The lists are trained by k-means on at most ``64 * nlist`` rows
        drawn with ``seed``.
    nprobe : int, optional
        IVF: lists searched per query (default: tuned at build time).
    M : int, optional
        HNSW: graph neighbours per node (default 32).
    ef_construction : int, optional
        HNSW: build-time search depth (default 40).
    ef_search : int, optional
        HNSW: query-time search depth (default: tuned at build time).
    target_recall : float, optional
        The recall@10 the tuning of ``nprobe`` / ``ef_search`` aims at.
    seed : int, optional
        Seed of the IVF training sample and the tuning queries.
    chunk_rows : int, optional
        Rows added to the index at once, and rows per block of the exact
        searches (default 32768).
    threads : int, optional
        Cap faiss's OpenMP pool and the BLAS pools at this many threads
        while building and searching; by default they are left as they are.
    chunk_size : int, optional
        Deprecated name of ``chunk_rows``.

    Raises
    ------
    ImportError
        If faiss is not installed (it comes with the ``scale`` extra:
        ``pip install "galmorphsearch[scale]"``).
    ValueError
        If ``kind`` is unknown, a parameter is out of range or does not
        apply to ``kind``.

    Warns
    -----
    ~astropy.utils.exceptions.AstropyDeprecationWarning
        When ``chunk_size`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.search import FaissBackend
    >>> rng = np.random.default_rng(0)
    >>> latents = rng.normal(size=(2000, 16)).astype(np.float32)
    >>> backend = FaissBackend('ivf', seed=1).fit(latents)  # doctest: +SKIP
    >>> idx, dist = backend.search(latents[:2], k=3, exclude=[0, 1])  # doctest: +SKIP
    """

    accepts_latent_sources = True
    supports_index_files = True

    KINDS = ("flat", "ivf", "hnsw")
    chunk_size = _chunk_size_alias()
    _KIND_PARAMS = {"ivf": ("nlist", "nprobe"), "hnsw": ("M", "ef_construction", "ef_search")}

    def __init__(self, kind="flat", *, nlist=None, nprobe=None, M=None, ef_construction=None,
                 ef_search=None, target_recall=0.95, seed=0, chunk_rows=None,
                 threads=None, chunk_size=_UNSET):
        kind = str(kind).strip().lower()
        if kind not in self.KINDS:
            msg = f"Unknown faiss index kind {kind!r}; choose one of {list(self.KINDS)}."
            raise ValueError(msg)
        given = {"nlist": nlist, "nprobe": nprobe, "M": M, "ef_construction": ef_construction,
                 "ef_search": ef_search}
        for key, value in given.items():
            _positive_int(value, key)
        wrong = [key for key, value in given.items()
                 if value is not None and key not in self._KIND_PARAMS.get(kind, ())]
        if wrong:
            verb = "does" if len(wrong) == 1 else "do"
            msg = f"{', '.join(wrong)} {verb} not apply to a faiss {kind!r} index."
            raise ValueError(msg)
        target_recall = float(target_recall)
        if not 0.0 < target_recall <= 1.0:
            msg = f"target_recall must be in (0, 1]; got {target_recall}."
            raise ValueError(msg)
        self._faiss = import_faiss()
        self.kind = kind
        self.nlist = _positive_int(nlist, "nlist")
        self.nprobe = _positive_int(nprobe, "nprobe")
        self.M = _positive_int(M, "M")
        self.ef_construction = _positive_int(ef_construction, "ef_construction")
        self.ef_search = _positive_int(ef_search, "ef_search")
        self.target_recall = target_recall
        self.seed = int(seed)
        chunk_rows = _chunk_rows_argument("FaissBackend", chunk_rows, chunk_size)
        self.chunk_rows = DEFAULT_CHUNK_ROWS if chunk_rows is None else chunk_rows
        self.threads = check_threads(threads)
        self._index = None
        self._fit_source = None
        self._search_param = None
        self.recall = None
        self.index_info = None
        self.index_state = None

    @property
    def name(self):
        """The registered name: ``'faiss-flat'``, ``'faiss-ivf'`` or ``'faiss-hnsw'``."""
        return f"faiss-{self.kind}"

    @property
    def index_name(self):
        """Suffix of index files saved beside a database (None for ``'flat'``, rebuilt cheaply)."""
        return None if self.kind == "flat" else self.name

    @property
    def exact(self):
        """Whether the search is exact (the ``'flat'`` kind)."""
        return self.kind == "flat"

    @property
    def index(self):
        """The faiss index (None before `fit`)."""
        return self._index

    @property
    def n_rows(self):
        """Number of database rows (0 before `fit`)."""
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def latent_dim(self):
        """Latent dimension of the database (None before `fit`)."""
        return None if self._index is None else int(self._index.d)

    @property
    def search_parameter(self):
        """``nprobe`` (IVF) or ``ef_search`` (HNSW) in use, None for flat or before `fit`."""
        return self._search_param

    def __repr__(self):
        if self._index is None:
            return f"<FaissBackend {self.kind!r}, unfitted>"
        extra = ""
        if self.kind == "ivf":
            extra = f", nlist={self._index.nlist}, nprobe={self._search_param}"
        elif self.kind == "hnsw":
            extra = f", ef_search={self._search_param}"
        return f"<FaissBackend {self.kind!r}{extra}, {self.n_rows} rows>"

    # ------------------------------------------------------------------
    # building
    def _factory(self):
        """The ``faiss.index_factory`` string of the fitted index."""
        params = self._params_record()
        return {"flat": "Flat", "ivf": f"IVF{params.get('nlist')},Flat",
                "hnsw": f"HNSW{params.get('M')},Flat"}[self.kind]

    def _build_params(self, n_rows):
        """Build parameters as resolved for ``n_rows`` rows."""
        if self.kind == "ivf":
            return {"nlist": self.nlist or auto_nlist(n_rows)}
        if self.kind == "hnsw":
            return {"M": self.M or 32, "ef_construction": self.ef_construction or 40}
        return {}

    def _requested_params(self):
        """Build parameters that an existing index must match (None: any)."""
        if self.kind == "ivf":
            return {"nlist": self.nlist}
        if self.kind == "hnsw":
            return {"M": self.M, "ef_construction": self.ef_construction}
        return {}

    def _build(self, source):
        faiss = self._faiss
        n, dim = len(source), int(source.dim)
        params = self._build_params(n)
        if self.kind == "flat":
            index = faiss.IndexFlatL2(dim)
        elif self.kind == "ivf":
            nlist = params["nlist"]
            if nlist > n:
                msg = f"nlist={nlist} is larger than the {n} database rows."
                raise ValueError(msg)
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
            index.cp.seed = self.seed
            rng = np.random.default_rng(self.seed)
            rows = np.sort(rng.choice(n, size=min(n, 64 * nlist), replace=False))
            sample = np.ascontiguousarray(source.take(rows), dtype=np.float32)
            check_finite(sample, "database latents")
            index.train(sample)
            del sample
        else:
            index = faiss.IndexHNSWFlat(dim, params["M"])
            index.hnsw.efConstruction = params["ef_construction"]
        bad = []
        for start, block in source.iter_chunks(self.chunk_rows):
            block = np.ascontiguousarray(block, dtype=np.float32)
            finite = np.all(np.isfinite(block), axis=1)
            if not finite.all():
                bad.extend((start + np.flatnonzero(~finite)).tolist())
                continue
            if not bad:
                index.add(block)
        if bad:
            msg = (
                f"database latents hold NaN or infinite values in {len(bad)} row(s) "
                f"(first: {bad[:5]})."
            )
            raise ValueError(msg)
        if self.kind == "ivf":
            index.make_direct_map()  # for reconstruct_batch in the re-ranking
        self._index = index
        self._search_param = None
        self.recall = None
        self._tune()

    def _set_search_param(self, value):
        if self.kind == "ivf":
            self._index.nprobe = int(value)
        elif self.kind == "hnsw":
            self._index.hnsw.efSearch = int(value)
        self._search_param = None if self.kind == "flat" else int(value)

    def _tune(self, recorded=None):
        """Set nprobe / ef_search: as given, as recorded, or the smallest reaching the target."""
        if self.kind == "flat":
            return
        given = self.nprobe if self.kind == "ivf" else self.ef_search
        if given is not None:
            self._set_search_param(given)
            return
        if recorded is not None:
            self._set_search_param(recorded)
            return
        n = int(self._index.ntotal)
        if self.kind == "ivf":
            nlist = int(self._index.nlist)
            candidates = [2**i for i in range(nlist.bit_length()) if 2**i < nlist] + [nlist]
        else:
            candidates = [16, 32, 64, 128, 256, 512]
        if n < 2:
            self._set_search_param(candidates[-1] if self.kind == "ivf" else 64)
            return
        rng = np.random.default_rng(self.seed + 1)
        rows = np.sort(rng.choice(n, size=min(n, 500), replace=False)).astype(np.int64)
        source = IndexLatents(self._index)
        queries = np.ascontiguousarray(source.take(rows), dtype=np.float32)
        k = min(10, n - 1)
        truth, _ = checked_neighbours(queries, source, k, None, self.chunk_rows, rows)
        recall = 0.0
        for value in candidates:
            self._set_search_param(value)
            found, _ = self._approximate(queries, k, rows)
            hits = sum(np.intersect1d(f[f >= 0], t).size for f, t in zip(found, truth, strict=True))
            recall = hits / truth.size
            if recall >= self.target_recall:
                break
        self.recall = float(recall)
        param = "nprobe" if self.kind == "ivf" else "ef_search"
        log.info("faiss-%s: %s=%d gives recall@%d %.3f on %d database rows.", self.kind, param,
                 self._search_param, k, recall, rows.size)

    def _params_record(self):
        """Build and search parameters of the fitted index, for the sidecar."""
        index = self._index
        if self.kind == "ivf":
            params = {"nlist": int(index.nlist), "nprobe": self._search_param}
        elif self.kind == "hnsw":
            params = {"M": int(index.hnsw.nb_neighbors(1)),
                      "ef_construction": int(index.hnsw.efConstruction),
                      "ef_search": self._search_param}
        else:
            params = {}
        params.update({"seed": self.seed, "target_recall": self.target_recall,
                       "recall": self.recall})
        return params

    def fit(self, latents, *, index_path=None, provenance=None, on_stale="rebuild"):
        """
        Build the index, or load it from an up-to-date index file.

        Parameters
        ----------
        latents : array-like, shape (N, D), or latent source
            The database latents (an array or an object of the latent-source
            protocol, read block by block).
        index_path : str or path-like, optional
            An index file (with its sidecar ``index_path + '.json'``). When
            it exists and matches the latents (rows, latent dimension and
            storage dtype, encoder hash, ``LATHASH``, build parameters, file
            checksum) it is loaded; when it is missing it is written after
            the build; when it is stale, see ``on_stale``. Without it, the
            index lives in memory only.
        provenance : dict, optional
            Database keywords recorded in and checked against the sidecar:
            ``ENCHASH``, ``LATHASH`` (the database's
            `~galmorphsearch.database.LatentDatabase.lathash`, or a
            callable returning it, called only when needed; without one,
            `~galmorphsearch.latents.latent_hash` of the latents, the same
            hash, is computed with one pass) and ``FILE`` (for information).
        on_stale : {'rebuild', 'raise'}, optional
            What to do with a stale index file: rebuild the index and
            replace the file, with a `~galmorphsearch.utils.StaleIndexWarning`
            saying why, or raise `~galmorphsearch.utils.StaleIndexError`. A
            stale index is never used.

        Returns
        -------
        self : `FaissBackend`
            The fitted backend; ``index_state`` says whether the index was
            ``'built'`` (in memory only), ``'loaded'``, ``'saved'`` (built and
            written) or ``'rebuilt'`` (a stale file replaced). When the files
            cannot be written (a read-only folder), a
            `~galmorphsearch.utils.GalMorphSearchWarning` says so and the
            index is kept in memory.

        Raises
        ------
        ValueError
            If the latents are empty or hold NaN or infinite values.
        ~galmorphsearch.utils.StaleIndexError
            If the index file is stale and ``on_stale='raise'``.
        FileExistsError
            If a file at ``index_path`` (or its sidecar) was not written by
            galmorphsearch; it is never overwritten.
        """
        on_stale = _check_on_stale(on_stale)
        with limit_threads(self.threads):
            source = _as_source(latents)
            self._fit_source = source
            if index_path is None:
                self._build(source)
                self.index_info = None
                self.index_state = "built"
                return self
            index_path = Path(index_path)
            prov = Provenance(source, provenance)
            state, reason, info = check_index_file(index_path, prov, self.name,
                                                   self._requested_params())
            if state == "ok":
                reason = self._load(index_path, info, prov)
                if reason is None:
                    return self
                state = "stale"
            if state == "foreign":
                msg = (
                    f"{index_path} exists but is not a galmorphsearch index ({reason}); it is "
                    "left alone: move it away or choose another index_path."
                )
                raise FileExistsError(msg)
            if state == "stale":
                if on_stale == "raise":
                    msg = (
                        f"The {self.name} index {index_path} is stale: {reason}. Rebuild it "
                        "(on_stale='rebuild') or delete it."
                    )
                    raise StaleIndexError(msg)
                warnings.warn(
                    f"The {self.name} index {index_path} is stale ({reason}); rebuilding it.",
                    StaleIndexWarning, stacklevel=2,
                )
            self._build(source)
            try:
                self._write(index_path, prov, overwrite=True)
            except FileExistsError:
                raise
            except OSError as exc:
                # A read-only folder beside a shared database: search anyway.
                warnings.warn(
                    f"Could not save the {self.name} index to {index_path} ({exc}); it is "
                    "kept in memory only.", GalMorphSearchWarning, stacklevel=2,
                )
                self.index_info = None
                self.index_state = "built"
                return self
            self.index_state = "rebuilt" if state == "stale" else "saved"
        return self

    def _recorded_params_problem(self, params):
        """Why the parameters a sidecar records are unusable, or None."""
        problems = []
        for key in self._KIND_PARAMS.get(self.kind, ()):
            value = params.get(key)
            # nprobe / ef_search may be None (tuned again); build parameters may not.
            if value is None and key in ("nprobe", "ef_search"):
                continue
            if (isinstance(value, bool) or not isinstance(value, int)
                    or not 1 <= value <= _MAX_PARAM):
                problems.append(f"{key}={value!r:.40} is not a positive integer")
        recall = params.get("recall")
        if recall is not None and (isinstance(recall, bool) or not isinstance(recall, int | float)
                                   or not 0.0 <= recall <= 1.0):
            problems.append(f"recall={recall!r:.40} is not a number in [0, 1]")
        if self.kind == "ivf" and not problems and params.get("nprobe") is not None \
                and params["nprobe"] > params["nlist"]:
            problems.append(f"nprobe={params['nprobe']} is larger than nlist={params['nlist']}")
        return "; ".join(problems) if problems else None

    def _index_params_problem(self, index, params):
        """Why the build parameters a sidecar records are not those of the index file, or None."""
        if self.kind == "ivf":
            actual = {"nlist": int(index.nlist)}
        elif self.kind == "hnsw":
            actual = {"M": int(index.hnsw.nb_neighbors(1)),
                      "ef_construction": int(index.hnsw.efConstruction)}
        else:
            return None
        wrong = [f"{key}={params.get(key)!r} in the sidecar, {value} in the index file"
                 for key, value in actual.items() if params.get(key) != value]
        return "; ".join(wrong) if wrong else None

    def _load(self, index_path, info, provenance):
        """Load a checked index file; return None, or why it cannot be used."""
        faiss = self._faiss
        params = info["params"]
        problem = self._recorded_params_problem(params)
        if problem:
            return f"its sidecar records unusable parameters: {problem}"
        n_rows, dim = provenance.fields["NROWS"], provenance.fields["LATDIM"]
        problem = check_index_header(index_path, self.kind, n_rows, dim)
        if problem:
            return problem
        try:
            index = faiss.read_index(str(index_path))
        except Exception as exc:  # faiss raises RuntimeError (or MemoryError) on bad files
            reason = " ".join(str(exc).split())
            reason = reason.split(": ", 1)[-1] if reason.startswith("Error in") else reason
            return f"the index file cannot be read by faiss ({reason[:160]})"
        expected = {"flat": faiss.IndexFlatL2, "ivf": faiss.IndexIVFFlat,
                    "hnsw": faiss.IndexHNSWFlat}[self.kind]
        if not isinstance(index, expected):
            return f"the file holds a {type(index).__name__}, not a {expected.__name__}"
        if index.ntotal != n_rows or index.d != dim:
            return (f"the file holds {index.ntotal} x {index.d} vectors, the database has "
                    f"{n_rows} x {dim}")
        problem = self._index_params_problem(index, params)
        if problem:
            return f"its sidecar does not describe the index file: {problem}"
        if self.kind == "ivf" and index.direct_map.type == faiss.DirectMap.NoMap:
            index.make_direct_map()
        problem = sample_mismatch(index, provenance.source)
        if problem:
            return problem
        self._index = index
        self.recall = None if params.get("recall") is None else float(params["recall"])
        recorded = params.get("nprobe" if self.kind == "ivf" else "ef_search")
        self._tune(recorded=recorded)
        self.index_info = info
        self.index_state = "loaded"
        log.info("Loaded the %s index %s.", self.name, index_path)
        return None

    def _write(self, index_path, provenance, overwrite):
        self.index_info = write_index_files(
            self._faiss, self._index, index_path, backend_name=self.name,
            factory=self._factory(), params=self._params_record(),
            database=provenance.record(), overwrite=overwrite,
        )

    def save(self, index_path, *, provenance=None, overwrite=False):
        """
        Write the index and its JSON sidecar.

        Parameters
        ----------
        index_path : str or path-like
            The index file (faiss's binary format); the sidecar is
            ``index_path + '.json'``. Both are written atomically.
        provenance : dict, optional
            Database keywords to record (``ENCHASH``, ``LATHASH``, ``FILE``);
            without ``LATHASH`` the content hash
            (`~galmorphsearch.latents.latent_hash`) is computed from the
            latents the index was built from, at their stored precision.
        overwrite : bool, optional
            Replace existing files.

        Raises
        ------
        RuntimeError
            If the backend was not fitted.
        FileExistsError
            If a file exists and ``overwrite`` is False.
        """
        if self._index is None:
            msg = "The backend has not been fitted; call fit(latents) first."
            raise RuntimeError(msg)
        source = self._fit_source if self._fit_source is not None else IndexLatents(self._index)
        prov = Provenance(source, provenance)
        with limit_threads(self.threads):
            self._write(index_path, prov, overwrite=overwrite)
        self.index_state = "saved"

    # ------------------------------------------------------------------
    # searching
    def _approximate(self, queries, k, exclude):
        """faiss candidates re-ranked exactly; -1 / inf where fewer than k were found."""
        n = int(self._index.ntotal)
        kk = min(n, k + EXTRA_CANDIDATES + (0 if exclude is None else 1))
        _, labels = self._index.search(queries, kk)
        # The candidates' latents: from the array fitted (the same float32
        # values the index holds) when it is in memory, else from the index.
        fitted = self._fit_source
        source = (fitted if fitted is not None and getattr(fitted, "in_memory", False)
                  else IndexLatents(self._index))
        return rerank(queries, labels.astype(np.int64, copy=False), k, source, exclude)

    def search(self, queries, k, exclude=None):
        """
        The k nearest database rows of each query.

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
            Database rows, nearest first (ties by row number).
        distances : `~numpy.ndarray`, shape (Q, k), float64
            Exact Euclidean distances (float64, from the stored latents),
            ascending.

        Raises
        ------
        RuntimeError
            If the backend was not fitted.
        ValueError
            If the queries do not match the database's latent dimension, hold
            NaN or infinite values, or ``k`` is out of range.
        """
        if self._index is None:
            msg = "The backend has not been fitted; call fit(latents) first."
            raise RuntimeError(msg)
        n = int(self._index.ntotal)
        q = _check_queries(queries, int(self._index.d))
        exc = check_exclude(exclude, q.shape[0], n)
        n_available = n - (1 if exc is not None and np.any(exc >= 0) else 0)
        k = check_k(k, n_available)
        with limit_threads(self.threads):
            idx, dist = self._approximate(q, k, exc)
            short = np.flatnonzero(idx[:, -1] < 0)
            if short.size:
                log.info("faiss-%s found fewer than %d neighbours for %d queries; searching "
                         "them exactly.", self.kind, k, short.size)
                sub = None if exc is None else exc[short]
                idx[short], dist[short] = checked_neighbours(q[short], IndexLatents(self._index), k,
                                                      None, self.chunk_rows, sub)
        return idx, dist


class AutoBackend(SearchBackend):
    """
    Exact search for small databases, a faiss IVF index for large ones.

    `fit` chooses, in this order:

    1. `ExactBackend` when the database has at most ``max_exact_rows`` rows
       (`AUTO_EXACT_MAX_ROWS`, 250 000, by default);
    2. `ExactBackend` when the latents are not held in memory: a file
       source such as the ``latent_source`` of a database read with
       ``memmap=True`` (``database.out_of_core``), whose ``in_memory`` is
       False; an IVF index would hold them all in memory;
    3. ``FaissBackend('ivf')`` when faiss is installed, loading an
       up-to-date index file or building one (and saving it when
       ``index_path`` is given);
    4. otherwise `ExactBackend`, with a log message (not a warning).

    The choice and its reason are in ``backend`` and ``reason``; ``name``
    and ``exact`` are those of the chosen backend.

    Parameters
    ----------
    max_exact_rows : int, optional
        The largest database searched exactly.
    chunk_rows : int, optional
        Rows per block (both backends; default: as `ExactBackend`, and
        32768 for the IVF index).
    threads : int, optional
        Thread cap passed to the chosen backend.
    chunk_size : int, optional
        Deprecated name of ``chunk_rows``.
    **ivf_options
        Options of ``FaissBackend('ivf', ...)`` (``nlist``, ``nprobe``,
        ``target_recall``, ``seed``).

    Warns
    -----
    ~astropy.utils.exceptions.AstropyDeprecationWarning
        When ``chunk_size`` is given.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.search import AutoBackend
    >>> backend = AutoBackend().fit(np.eye(3, dtype=np.float32))
    >>> backend.name, backend.exact
    ('exact', True)
    """

    accepts_latent_sources = True
    supports_index_files = True
    index_name = "faiss-ivf"

    _IVF_OPTIONS = ("nlist", "nprobe", "target_recall", "seed")
    chunk_size = _chunk_size_alias()

    def __init__(self, *, max_exact_rows=AUTO_EXACT_MAX_ROWS, chunk_rows=None,
                 threads=None, chunk_size=_UNSET, **ivf_options):
        unknown = sorted(set(ivf_options) - set(self._IVF_OPTIONS))
        if unknown:
            msg = (f"Unknown option(s) {unknown} of backend 'auto'; it takes max_exact_rows, "
                   f"chunk_rows, threads and {list(self._IVF_OPTIONS)}.")
            raise TypeError(msg)
        max_exact_rows = int(max_exact_rows)
        if max_exact_rows < 0:
            msg = f"max_exact_rows must be non-negative; got {max_exact_rows}."
            raise ValueError(msg)
        self.max_exact_rows = max_exact_rows
        self.chunk_rows = _chunk_rows_argument("AutoBackend", chunk_rows, chunk_size)
        self.threads = check_threads(threads)
        self.ivf_options = dict(ivf_options)
        self.backend = None
        self.reason = None

    @property
    def name(self):
        """``'auto'`` before `fit`, then the name of the chosen backend."""
        return "auto" if self.backend is None else self.backend.name

    @property
    def exact(self):
        """Whether the chosen backend is exact (None before `fit`)."""
        return None if self.backend is None else self.backend.exact

    @property
    def n_rows(self):
        """Number of database rows (0 before `fit`)."""
        return 0 if self.backend is None else self.backend.n_rows

    @property
    def index_info(self):
        """The sidecar of the index file in use, or None (see `FaissBackend.fit`)."""
        return getattr(self.backend, "index_info", None)

    @property
    def latent_dim(self):
        """Latent dimension of the database (None before `fit`)."""
        return None if self.backend is None else self.backend.latent_dim

    def __repr__(self):
        chosen = "unfitted" if self.backend is None else f"chose {self.backend!r}"
        return f"<AutoBackend max_exact_rows={self.max_exact_rows}, {chosen}>"

    def fit(self, latents, *, index_path=None, provenance=None, on_stale="rebuild"):
        """
        Choose a backend for these latents and fit it.

        Parameters
        ----------
        latents : array-like, shape (N, D), or latent source
            The database latents.
        index_path, provenance, on_stale
            Passed to `FaissBackend.fit` when the IVF index is chosen.

        Returns
        -------
        self : `AutoBackend`
            The fitted backend.
        """
        on_stale = _check_on_stale(on_stale)
        # An array, or a source that says it holds its latents in memory
        # (ArrayLatents); a file source (a database read with memmap=True,
        # whose ``out_of_core`` is True) or an unknown source is not.
        source = latents if is_latent_source(latents) else None
        in_memory = source is None or bool(getattr(source, "in_memory", False))
        n = len(source) if source is not None else np.shape(latents)[0]
        chosen = None
        if n <= self.max_exact_rows:
            reason = f"{n} rows <= max_exact_rows={self.max_exact_rows}"
        elif not in_memory:
            reason = "the latents are not in memory (an IVF index would hold them all)"
        else:
            try:
                chosen = FaissBackend("ivf", chunk_rows=self.chunk_rows or DEFAULT_CHUNK_ROWS,
                                      threads=self.threads, **self.ivf_options)
            except ImportError:
                reason = ('faiss is not installed (pip install "galmorphsearch[scale]" for '
                          "approximate search of large databases)")
            else:
                reason = f"{n} rows > max_exact_rows={self.max_exact_rows}"
        if chosen is None:
            chosen = ExactBackend(self.chunk_rows, threads=self.threads).fit(latents)
        else:
            chosen.fit(latents, index_path=index_path, provenance=provenance, on_stale=on_stale)
        self.backend, self.reason = chosen, reason
        log.info("backend='auto' chose %r: %s.", chosen.name, reason)
        return self

    def search(self, queries, k, exclude=None):
        """
        The k nearest database rows of each query, with the chosen backend.

        See `ExactBackend.search` and `FaissBackend.search`.
        """
        if self.backend is None:
            msg = "The backend has not been fitted; call fit(latents) first."
            raise RuntimeError(msg)
        return self.backend.search(queries, k, exclude)


def _faiss_kind(kind):
    def factory(**options):
        if "kind" in options:
            msg = (f"Backend 'faiss-{kind}' is a faiss {kind!r} index; use backend='faiss' with "
                   "kind=... to choose the kind.")
            raise TypeError(msg)
        return FaissBackend(kind, **options)

    factory.__name__ = f"faiss_{kind}"
    return factory


_BACKENDS = {
    "exact": ExactBackend,
    "auto": AutoBackend,
    "faiss": FaissBackend,
    "faiss-flat": _faiss_kind("flat"),
    "faiss-ivf": _faiss_kind("ivf"),
    "faiss-hnsw": _faiss_kind("hnsw"),
}


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

    The faiss backends are listed whether or not faiss is installed; asking
    for one without it raises an `ImportError` naming the ``scale`` extra.

    Returns
    -------
    names : list of str
        Sorted backend names.

    Examples
    --------
    >>> from galmorphsearch.search import available_backends
    >>> available_backends()
    ['auto', 'exact', 'faiss', 'faiss-flat', 'faiss-hnsw', 'faiss-ivf']
    """
    return sorted(_BACKENDS)


def get_backend(name, **options):
    """
    A new, unfitted search backend by name.

    Parameters
    ----------
    name : str or `SearchBackend`
        A registered name: ``'exact'`` (`ExactBackend`), ``'auto'``
        (`AutoBackend`), ``'faiss'`` (`FaissBackend`, ``kind`` given as an
        option, flat by default), ``'faiss-flat'``, ``'faiss-ivf'`` or
        ``'faiss-hnsw'``. A `SearchBackend` instance is returned unchanged.
    **options
        Keyword arguments of the backend (e.g. ``chunk_rows`` for
        ``'exact'``, ``nlist`` for ``'faiss-ivf'``, ``threads``).

    Returns
    -------
    backend : `SearchBackend`
        The backend.

    Raises
    ------
    ValueError
        If no backend has that name.
    ImportError
        For a faiss backend when faiss is not installed.

    Examples
    --------
    >>> from galmorphsearch.search import get_backend
    >>> get_backend('exact', chunk_rows=1024)
    <ExactBackend chunk_rows=1024, unfitted>
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
