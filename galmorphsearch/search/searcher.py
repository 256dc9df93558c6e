# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Similarity search and classification by retrieval in a latent database
(TSGICAS, Seo et al. 2023, section 2.4).
"""

from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Column, Table

from ..catalogs import get_scheme
from ..latents import ArrayLatents, LatentSource, default_chunk_rows, is_latent_source
from ..latents.kernel import check_k
from ..latents.similarity import identical_mask, identical_rtol
from ..preprocessing import GalaxyCutout
from .backends import SearchBackend, _check_on_stale, get_backend

__all__ = ["SimilaritySearcher", "match_coordinates"]

_CORE_COLUMNS = ("objid", "ra", "dec", "morphology", "type_index")
_LATENT_COLUMNS = ("latent", "background_latent", "h_similarity")


def match_coordinates(table):
    """
    Sky coordinates of the galaxies of a search or database table.

    The result can be cross-matched with any other catalog through
    `~astropy.coordinates.SkyCoord.match_to_catalog_sky` or
    `~astropy.coordinates.search_around_sky`.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A table with ``ra`` and ``dec`` columns (in degrees when they carry
        no unit), such as the output of `SimilaritySearcher.search`.

    Returns
    -------
    coords : `~astropy.coordinates.SkyCoord`
        ICRS coordinates, one per row.

    Raises
    ------
    ValueError
        If the table has no ``ra`` or ``dec`` column.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from galmorphsearch.search import match_coordinates
    >>> match_coordinates(Table({'ra': [10.0], 'dec': [-5.0]}))
    <SkyCoord (ICRS): (ra, dec) in deg
        [(10., -5.)]>
    """
    for name in ("ra", "dec"):
        if name not in table.colnames:
            msg = f"The table has no {name!r} column."
            raise ValueError(msg)
    return SkyCoord(ra=_degrees(table["ra"]), dec=_degrees(table["dec"]), frame="icrs")


def _degrees(col):
    """A column of angles as a float64 array in degrees."""
    unit = getattr(col, "unit", None)
    values = np.asarray(col, dtype=np.float64)
    if unit is None:
        return values * u.deg
    return (values * u.Unit(unit)).to(u.deg)


def _database_source(database):
    """
    The latents of a database as a latent source: ``database.latent_source``
    when the database offers one (a `~galmorphsearch.database.LatentDatabase`:
    a file source when it was read with ``memmap=True``, so that the latents
    are searched chunk by chunk and never loaded whole), else
    ``database.latents`` (an array, or itself a source).
    """
    source = getattr(database, "latent_source", None)
    if source is None:
        source = database.latents
    if is_latent_source(source):
        return source
    # Checked by the backend's pass over the latents.
    return ArrayLatents(source, check_finite=False)


def _as_array(source):
    """A source as one float32 array, for backends that take arrays only."""
    if isinstance(source, ArrayLatents):
        return source.array.astype(np.float32, copy=False)
    if isinstance(source, LatentSource):
        return source.read()
    out = np.empty((len(source), int(source.dim)), dtype=np.float32)
    for start, block in source.iter_chunks(default_chunk_rows(source)):
        out[start:start + block.shape[0]] = block
    return out


class SimilaritySearcher:
    """
    Search a latent database for the galaxies most similar to targets.

    The similarity of database galaxy :math:`D_i` to a target :math:`T`
    whose background patch has the latent :math:`B` is (Seo et al. 2023,
    eqs. 1-3)

    .. math::

        S_{p,i} = \\left(1 - \\frac{\\lVert T - D_i \\rVert}{\\lVert T - B
        \\rVert}\\right) \\times 100.

    The H-similarity of a target is its highest Sp, skipping an identical
    image (Sp = 100, distance 0) and, when the target is in the database,
    its own row (``exclude_objids``). A target whose H-similarity is below
    the mean minus one standard deviation of the database's own
    H-similarity distribution has no similar galaxy in the database.

    Parameters
    ----------
    database : `~galmorphsearch.database.LatentDatabase`
        The latent database: any object with ``latent_source`` (a latent
        source, see `galmorphsearch.latents.LatentSource`; searched chunk
        by chunk, so a database read with ``memmap=True`` is never loaded
        whole) or ``latents`` (N, D), ``table`` (with ``objid``, ``ra``,
        ``dec``, ``morphology``, ``type_index``), ``h_similarity_mean``,
        ``h_similarity_std`` and ``check_encoder(encoder)``; and optionally
        ``path``, ``meta`` and ``lathash`` (for index files).
    encoder : `~galmorphsearch.model.Encoder`, optional
        The encoder that built the database, needed to search with
        `~galmorphsearch.preprocessing.GalaxyCutout` targets. Without it,
        search with precomputed latents (`search_latents`,
        `classify_latents`).
    backend : str or `SearchBackend`, optional
        The nearest-neighbour backend: ``'exact'`` (default, exact BLAS
        search), ``'faiss-flat'`` (exact, faiss), ``'faiss-ivf'`` or
        ``'faiss-hnsw'`` (approximate, faiss), ``'auto'`` (exact up to
        `~galmorphsearch.search.AUTO_EXACT_MAX_ROWS` rows or when the
        latents are not in memory (``database.out_of_core``),
        ``'faiss-ivf'`` above when faiss is
        installed; see `AutoBackend`), or a `SearchBackend` instance (e.g.
        ``ExactBackend(chunk_rows=4096)``, ``FaissBackend('ivf', nlist=1024)``).
        The faiss backends need the ``scale`` extra
        (``pip install "galmorphsearch[scale]"``).
    threads : int, optional
        Cap the BLAS and OpenMP thread pools used by the search at this
        many threads (a backend given by name only; give an instance its
        own ``threads``).
    index_path : str, path-like, ``'auto'`` or None, optional
        Where a faiss IVF or HNSW index is saved and looked for. ``'auto'``
        (default): beside the database file, as
        ``<database file>.<backend name>.index`` with the JSON sidecar
        ``<...>.index.json``, when the database was read from a file (its
        ``path``); otherwise, and with None, the index is built in memory
        only. A saved index is checked against the database (rows, latent
        dimension and storage precision, encoder hash, the database's
        ``LATHASH``, build parameters) before it is used.
    on_stale : {'rebuild', 'raise'}, optional
        What to do when the saved index no longer matches the database:
        rebuild it and replace the files, with a
        `~galmorphsearch.utils.StaleIndexWarning`, or raise
        `~galmorphsearch.utils.StaleIndexError`. A stale index is never
        used.

    Attributes
    ----------
    backend : `SearchBackend`
        The fitted backend; its ``name`` is in the ``BACKEND`` keyword of
        every result, with ``EXACTNN`` saying whether it is exact.
    index_path : `~pathlib.Path` or None
        The index file in use, or None when the index (if any) lives in
        memory only.

    Raises
    ------
    ~galmorphsearch.utils.EncoderMismatchError
        If ``encoder`` is not the encoder that built the database.
    ValueError
        If the backend name is unknown (the message lists the choices).
    ImportError
        If a faiss backend is asked for and faiss is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.search import SimilaritySearcher
    >>> class ToyDatabase:  # a stand-in for LatentDatabase
    ...     latents = np.array([[0, 0], [1, 0], [5, 5]], dtype=np.float32)
    ...     table = Table({'objid': [11, 12, 13], 'ra': [1.0, 2.0, 3.0],
    ...                    'dec': [0.0, 0.0, 0.0], 'morphology': ['Er', 'Sc', 'Sc'],
    ...                    'type_index': [0, 6, 6]})
    ...     h_similarity_mean, h_similarity_std = 50.0, 10.0
    ...     def check_encoder(self, encoder):
    ...         pass
    >>> searcher = SimilaritySearcher(ToyDatabase())
    >>> result = searcher.search_latents([0.25, 0.0], [4.25, 0.0], k=2)
    >>> result['rank', 'objid', 'morphology', 'Sp', 'distance']
    <Table length=2>
     rank objid morphology    Sp   distance
    int64 int64    str2    float64 float64
    ----- ----- ---------- ------- --------
        1    11         Er   93.75     0.25
        2    12         Sc   81.25     0.75
    """

    def __init__(self, database, encoder=None, *, backend="exact", threads=None,
                 index_path="auto", on_stale="rebuild"):
        if encoder is not None:
            database.check_encoder(encoder)
        self.database = database
        self.encoder = encoder
        table = database.table
        missing = [name for name in _CORE_COLUMNS if name not in table.colnames]
        if missing:
            msg = f"The database table lacks the column(s) {missing}."
            raise ValueError(msg)
        on_stale = _check_on_stale(on_stale)
        if isinstance(backend, SearchBackend):
            if threads is not None:
                msg = ("threads applies to a backend given by name; give the backend "
                       "instance its own threads.")
                raise ValueError(msg)
            self.backend = backend
        else:
            options = {} if threads is None else {"threads": threads}
            self.backend = get_backend(backend, **options)
        source = _database_source(database)
        self._n_rows = len(table)
        if self._n_rows != len(source):
            msg = f"The database table has {self._n_rows} rows but {len(source)} latents."
            raise ValueError(msg)
        # Latents stored as float16 lie up to 2**-11 of their norm from the
        # float32 latents they were rounded from: a larger identical-image
        # tolerance (IDENTICAL_RTOL_FLOAT16) for them.
        self._identical_rtol = identical_rtol(source.dtype)
        self.index_path = self._index_path(index_path)
        if getattr(self.backend, "supports_index_files", False):
            self.backend.fit(source, index_path=self.index_path,
                             provenance=self._provenance(), on_stale=on_stale)
            if getattr(self.backend, "index_info", None) is None:
                self.index_path = None  # no index file is in use
        else:
            if self.index_path is not None:
                msg = (f"index_path applies to the faiss backends; backend "
                       f"{self.backend.name!r} saves no index.")
                raise ValueError(msg)
            if getattr(self.backend, "accepts_latent_sources", False):
                self.backend.fit(source)
            else:
                self.backend.fit(_as_array(source))
        self._objid_order = None

    def _index_path(self, index_path):
        """The index file to use, or None."""
        if index_path is None:
            return None
        if isinstance(index_path, str) and index_path == "auto":
            db_path = getattr(self.database, "path", None)
            name = getattr(self.backend, "index_name", None)
            if db_path is None or name is None:
                return None
            return Path(f"{db_path}.{name}.index")
        return Path(index_path)

    def _provenance(self):
        """Database keywords that tie a saved index to the database."""
        meta = self._meta()
        prov = {"LATHASH": self._database_lathash}  # resolved only if an index needs it
        if meta.get("ENCHASH") is not None:
            prov["ENCHASH"] = meta["ENCHASH"]
        db_path = getattr(self.database, "path", None)
        if db_path is not None:
            prov["FILE"] = Path(db_path).name
        return prov

    def _database_lathash(self):
        """
        The database's ``LATHASH``: `LatentDatabase.lathash
        <galmorphsearch.database.LatentDatabase.lathash>` (the value recorded
        in its file, free to read), else a ``LATHASH`` keyword in its meta,
        else None (the backend then computes the same hash from the latents).
        """
        lathash = getattr(self.database, "lathash", None)
        if lathash is None:
            lathash = self._meta().get("LATHASH")
        return lathash

    def _meta(self):
        meta = getattr(self.database, "meta", None)
        return self.database.table.meta if meta is None else meta

    def __repr__(self):
        return (
            f"<SimilaritySearcher: {self._n_rows} galaxies, backend "
            f"{getattr(self.backend, 'name', type(self.backend).__name__)!r}>"
        )

    # ------------------------------------------------------------------
    # Properties
    @property
    def carried_columns(self):
        """Database columns copied into the search results after the core ones."""
        skip = set(_CORE_COLUMNS) | set(_LATENT_COLUMNS)
        return [name for name in self.database.table.colnames if name not in skip]

    @property
    def h_similarity_threshold(self):
        """
        The "no similar galaxy" threshold: mean minus one standard deviation
        of the database's H-similarity distribution (NaN when the database
        does not record them).
        """
        mean = getattr(self.database, "h_similarity_mean", None)
        std = getattr(self.database, "h_similarity_std", None)
        if mean is None or std is None:
            return np.nan
        return float(mean) - float(std)

    @property
    def scheme(self):
        """
        The morphology scheme of the database (from its ``SCHEME`` header
        keyword), or None when it records none or an unknown one.
        """
        name = self._meta().get("SCHEME")
        if not name:
            return None
        try:
            return get_scheme(name)
        except ValueError:
            return None

    # ------------------------------------------------------------------
    # Input handling
    def _encode(self, targets):
        """Latents and background latents of cutout targets."""
        if isinstance(targets, GalaxyCutout):
            cutouts, batch = [targets], False
        elif isinstance(targets, list | tuple) and all(
            isinstance(t, GalaxyCutout) for t in targets
        ):
            cutouts, batch = list(targets), True
            if not cutouts:
                msg = "No targets given."
                raise ValueError(msg)
        else:
            msg = (
                "targets must be a GalaxyCutout or a list of them; search precomputed "
                "latents with search_latents() / classify_latents()."
            )
            raise TypeError(msg)
        if self.encoder is None:
            msg = (
                "Searching with GalaxyCutout targets needs the encoder that built the "
                "database: SimilaritySearcher(database, encoder). Without one, use "
                "search_latents() / classify_latents()."
            )
            raise ValueError(msg)
        _warn_unlike_database(cutouts, self.database.meta, stacklevel=3)
        latents = self.encoder.encode(cutouts)
        background = self.encoder.encode(cutouts, background=True)
        return latents, background, batch

    def _prepare(self, latents, background_latents):
        """Check target latents; return them as float32 (Q, D), the
        background distances (Q,) and whether a batch was given."""
        lat = np.asarray(latents)
        bkg = np.asarray(background_latents)
        batch = lat.ndim != 1
        lat = np.atleast_2d(lat)
        bkg = np.atleast_2d(bkg)
        if lat.ndim != 2 or lat.shape[0] == 0:
            msg = f"Target latents must have shape (D,) or (Q, D); got {np.shape(latents)}."
            raise ValueError(msg)
        if bkg.shape != lat.shape:
            msg = (
                f"background_latents {np.shape(background_latents)} must have the shape of "
                f"the target latents {np.shape(latents)}."
            )
            raise ValueError(msg)
        lat = np.ascontiguousarray(lat, dtype=np.float32)
        bkg = np.ascontiguousarray(bkg, dtype=np.float32)
        for arr, name in ((lat, "Target latents"), (bkg, "Background latents")):
            if not np.all(np.isfinite(arr)):
                msg = f"{name} hold NaN or infinite values."
                raise ValueError(msg)
        dim = getattr(self.backend, "latent_dim", None)
        if dim is not None and lat.shape[1] != dim:
            msg = (
                f"Latent dimensions differ: the targets have {lat.shape[1]}, the database "
                f"has {dim}."
            )
            raise ValueError(msg)
        diff = lat.astype(np.float64) - bkg.astype(np.float64)
        back = np.sqrt(np.einsum("ij,ij->i", diff, diff))
        zero = np.flatnonzero(back == 0)
        if zero.size:
            msg = (
                f"Target(s) {zero[:5].tolist()} have a background latent equal to the target "
                "latent (background distance 0), so the similarity Sp is undefined; check "
                "the background patch of these cutouts."
            )
            raise ValueError(msg)
        return lat, back, batch

    def _target_ids(self, target_ids, n_targets):
        if target_ids is None:
            return np.arange(n_targets)
        ids = np.asarray(target_ids)
        if ids.ndim == 0:
            ids = ids.reshape(1)
        if ids.shape != (n_targets,):
            msg = f"target_ids must have one entry per target ({n_targets}); got {ids.shape}."
            raise ValueError(msg)
        return ids

    def _excluded_rows(self, exclude_objids, n_targets):
        """Per target, an array of database rows to leave out."""
        if exclude_objids is None:
            return [None] * n_targets
        objids = exclude_objids
        if np.ndim(objids) == 0:
            if n_targets != 1:
                msg = (
                    "exclude_objids must have one entry (an objid or None) per target "
                    f"({n_targets})."
                )
                raise ValueError(msg)
            objids = [objids]
        objids = list(objids)
        if len(objids) != n_targets:
            msg = (
                f"exclude_objids must have one entry (an objid or None) per target "
                f"({n_targets}); got {len(objids)}."
            )
            raise ValueError(msg)
        column = np.asarray(self.database.table["objid"])
        if self._objid_order is None:
            self._objid_order = np.argsort(column, kind="stable")
        ordered = column[self._objid_order]
        rows = []
        for oid in objids:
            if oid is None or oid is np.ma.masked:
                rows.append(None)
                continue
            try:
                lo = np.searchsorted(ordered, oid, side="left")
                hi = np.searchsorted(ordered, oid, side="right")
            except (TypeError, ValueError, np.exceptions.DTypePromotionError):
                rows.append(None)  # not comparable with the database objids: not there
                continue
            rows.append(self._objid_order[lo:hi] if hi > lo else None)
        return rows

    def _check_k(self, k):
        return check_k(k, self._n_rows)

    def _neighbours(self, lat, k, excluded, skip_identical):
        """
        The k nearest database rows of each target, leaving out identical
        latents (distance 0) and excluded rows; fewer than k remain only
        when the database has no more galaxies to offer.
        """
        n_q = lat.shape[0]
        norms = np.linalg.norm(np.asarray(lat, dtype=np.float64), axis=1)
        result = [None] * n_q
        todo = np.arange(n_q)
        n_skip = max((0 if e is None else e.size for e in excluded), default=0)
        kk = min(self._n_rows, k + n_skip + (1 if skip_identical else 0))
        while todo.size:
            idx, dist = self.backend.search(lat[todo], kk)
            retry = []
            for j, qi in enumerate(todo):
                keep = np.ones(kk, dtype=bool)
                if skip_identical:
                    keep &= ~identical_mask(dist[j][None], norms[qi], self._identical_rtol)[0]
                if excluded[qi] is not None:
                    keep &= ~np.isin(idx[j], excluded[qi])
                if keep.sum() >= k or kk >= self._n_rows:
                    result[qi] = (idx[j][keep][:k], dist[j][keep][:k])
                else:
                    retry.append(qi)
            todo = np.asarray(retry, dtype=np.int64)
            kk = min(self._n_rows, 2 * kk)
        return result

    # ------------------------------------------------------------------
    # Search
    def search(self, targets, k=10, *, target_ids=None, exclude_objids=None,
               skip_identical=True, coord=False):
        """
        The k database galaxies most similar to each target.

        Parameters
        ----------
        targets : `~galmorphsearch.preprocessing.GalaxyCutout` or list of them
            The target galaxies; the encoder encodes each cutout's image and
            its background patch.
        k : int, optional
            Number of galaxies returned per target.
        target_ids : array-like, optional
            Identifiers of the targets for the ``target`` column (default
            0 .. Q-1).
        exclude_objids : scalar or sequence, optional
            Per target, a database ``objid`` to leave out (``None`` for
            none), for targets that are themselves in the database.
        skip_identical : bool, optional
            Leave out database galaxies with a latent identical to the
            target's (distance 0, Sp = 100: the same image).
        coord : bool, optional
            Add a ``coord`` `~astropy.coordinates.SkyCoord` column.

        Returns
        -------
        result : `~astropy.table.Table`
            See `search_latents`.

        Raises
        ------
        ValueError
            If the searcher has no encoder, or see `search_latents`.
        TypeError
            If ``targets`` are not cutouts.
        """
        lat, bkg, batch = self._encode(targets)
        if not batch:
            lat, bkg = lat[0], bkg[0]
        return self.search_latents(
            lat, bkg, k=k, target_ids=target_ids, exclude_objids=exclude_objids,
            skip_identical=skip_identical, coord=coord,
        )

    def search_latents(self, latents, background_latents, k=10, target_ids=None,
                       exclude_objids=None, *, skip_identical=True, coord=False):
        """
        The k most similar database galaxies of targets given as latents.

        Parameters
        ----------
        latents : array-like, shape (D,) or (Q, D)
            Latent vectors of the targets (from the database's encoder).
        background_latents : array-like, same shape as ``latents``
            Latent vectors of the targets' background patches.
        k : int, optional
            Number of galaxies returned per target, ``1 <= k <= N``.
        target_ids : array-like, optional
            Identifiers of the targets (default 0 .. Q-1).
        exclude_objids : scalar or sequence, optional
            Per target, a database ``objid`` to leave out (``None`` for
            none).
        skip_identical : bool, optional
            Leave out database galaxies with a latent identical to the
            target's (distance 0).
        coord : bool, optional
            Add a ``coord`` `~astropy.coordinates.SkyCoord` column.

        Returns
        -------
        result : `~astropy.table.Table`
            One row per (target, neighbour), nearest first: ``target`` (only
            when a batch of targets, 2-D latents or a list, was given),
            ``rank`` (1 = most similar), ``objid``, ``ra``, ``dec`` (deg),
            ``morphology``, ``type_index``, ``Sp`` (per cent), ``distance``
            (latent-space Euclidean distance), then the database's carried
            columns. Fewer than k rows are returned for a target only when
            skipped and excluded galaxies leave fewer in the database.

        Raises
        ------
        ValueError
            If ``k`` is out of range, the latent dimension differs from the
            database's, latents hold NaN or infinite values, or a background
            latent equals its target latent (Sp undefined).
        """
        lat, back, batch = self._prepare(latents, background_latents)
        k = self._check_k(k)
        n_q = lat.shape[0]
        ids = self._target_ids(target_ids, n_q)
        excluded = self._excluded_rows(exclude_objids, n_q)
        found = self._neighbours(lat, k, excluded, skip_identical)

        counts = np.array([len(r[0]) for r in found])
        rows = np.concatenate([r[0] for r in found]).astype(np.int64)
        dist = np.concatenate([r[1] for r in found]).astype(np.float64)
        which = np.repeat(np.arange(n_q), counts)
        rank = np.concatenate([np.arange(1, c + 1) for c in counts]).astype(np.int64)
        sp = (1.0 - dist / back[which]) * 100.0

        table = self.database.table
        out = Table()
        if batch or target_ids is not None:
            out["target"] = ids[which]
        out["rank"] = rank
        out["objid"] = np.asarray(table["objid"])[rows]
        out["ra"] = Column(_degrees(table["ra"][rows]).value, unit=u.deg)
        out["dec"] = Column(_degrees(table["dec"][rows]).value, unit=u.deg)
        out["morphology"] = np.asarray(table["morphology"])[rows]
        out["type_index"] = np.asarray(table["type_index"])[rows]
        out["Sp"] = Column(sp, description="similarity (1 - distance / background distance) x 100")
        out["distance"] = Column(dist, description="Euclidean distance in latent space")
        for name in self.carried_columns:
            out[name] = table[name][rows]
        if coord:
            out["coord"] = match_coordinates(out)
        out.meta.update(self._result_meta(k))
        return out

    def _result_meta(self, k):
        meta = {"K": k, "BACKEND": getattr(self.backend, "name", None) or "custom"}
        exact = getattr(self.backend, "exact", None)
        if exact is not None:
            meta["EXACTNN"] = bool(exact)
        db_meta = self._meta()
        for key in ("ENCODER", "ENCHASH", "SCHEME"):
            if key in db_meta:
                meta[key] = db_meta[key]
        thr = self.h_similarity_threshold
        if np.isfinite(thr):
            meta["HSIMTHR"] = thr
        return meta

    # ------------------------------------------------------------------
    # Classification
    def classify(self, targets, k=1, vote=False, *, target_ids=None, exclude_objids=None):
        """
        Classify targets by the galaxies most similar to them.

        Parameters
        ----------
        targets : `~galmorphsearch.preprocessing.GalaxyCutout` or list of them
            The target galaxies.
        k : int, optional
            Number of neighbours that vote when ``vote`` is True.
        vote : bool, optional
            Predict the most common type among the k most similar galaxies
            instead of the type of the single most similar one.
        target_ids : array-like, optional
            Identifiers of the targets (default 0 .. Q-1).
        exclude_objids : scalar or sequence, optional
            Per target, a database ``objid`` to leave out.

        Returns
        -------
        result : `~astropy.table.Table`
            See `classify_latents`.
        """
        lat, bkg, _ = self._encode(targets)
        return self.classify_latents(
            lat, bkg, k=k, vote=vote, target_ids=target_ids, exclude_objids=exclude_objids
        )

    def classify_latents(self, latents, background_latents, k=1, vote=False,
                         target_ids=None, exclude_objids=None):
        """
        Classify targets given as latents by the galaxies most similar to them.

        The predicted type is that of the H-similarity galaxy (the highest
        Sp, skipping identical latents and excluded objids) or, with
        ``vote=True``, the most common type among the k most similar
        galaxies (ties go to the type of the nearer galaxy). A target whose
        H-similarity is below the database's mean minus one standard
        deviation is flagged ``no_similar``; its prediction is still given.

        Parameters
        ----------
        latents : array-like, shape (D,) or (Q, D)
            Latent vectors of the targets.
        background_latents : array-like, same shape as ``latents``
            Latent vectors of the targets' background patches.
        k : int, optional
            Number of neighbours that vote when ``vote`` is True (ignored
            otherwise).
        vote : bool, optional
            Use a k-nearest-neighbour vote.
        target_ids : array-like, optional
            Identifiers of the targets (default 0 .. Q-1).
        exclude_objids : scalar or sequence, optional
            Per target, a database ``objid`` to leave out.

        Returns
        -------
        result : `~astropy.table.Table`
            One row per target: ``target``, ``predicted_morphology``,
            ``predicted_type_index``, ``H_similarity`` (the highest Sp),
            ``no_similar`` (bool), ``reason`` (why no similar galaxy, else
            an empty string), ``matched_objid`` (the H-similarity galaxy)
            and, with ``vote=True``, one ``vote_<type>`` column per type of
            the database's scheme with the fraction of the k votes (the
            fractions of a row sum to 1).

        Raises
        ------
        ValueError
            As `search_latents`, or if a target has no galaxy left to
            compare with.
        """
        lat, back, _ = self._prepare(latents, background_latents)
        k = self._check_k(k) if vote else 1
        n_q = lat.shape[0]
        ids = self._target_ids(target_ids, n_q)
        excluded = self._excluded_rows(exclude_objids, n_q)
        found = self._neighbours(lat, k, excluded, skip_identical=True)
        empty = [i for i, (r, _) in enumerate(found) if len(r) == 0]
        if empty:
            msg = (
                f"Target(s) {empty[:5]} have no database galaxy left to compare with after "
                "skipping identical latents and excluded objids."
            )
            raise ValueError(msg)

        table = self.database.table
        morph = np.asarray(table["morphology"])
        tindex = np.asarray(table["type_index"])
        objid = np.asarray(table["objid"])
        first = np.array([r[0][0] for r in found], dtype=np.int64)
        hsim = (1.0 - np.array([r[1][0] for r in found]) / back) * 100.0

        thr = self.h_similarity_threshold
        if np.isfinite(thr):
            no_similar = hsim < thr
            mean = float(self.database.h_similarity_mean)
            std = float(self.database.h_similarity_std)
            reason = [
                f"H-similarity {h:.2f} is below the database threshold {thr:.2f} "
                f"(mean {mean:.2f} - 1 sigma {std:.2f}): no similar galaxy in the database"
                if flag
                else ""
                for h, flag in zip(hsim, no_similar, strict=True)
            ]
        else:
            no_similar = np.zeros(n_q, dtype=bool)
            reason = [""] * n_q

        out = Table()
        out["target"] = ids
        if vote:
            types, type_indices = self._vote_types()
            lookup = {t: i for i, t in enumerate(types)}
            fractions = np.zeros((n_q, len(types)))
            winners = np.empty(n_q, dtype=np.int64)
            for qi, (rows, _) in enumerate(found):
                codes = np.array([lookup[str(m)] for m in morph[rows]])
                counts = np.bincount(codes, minlength=len(types))
                fractions[qi] = counts / counts.sum()
                tied = np.flatnonzero(counts == counts.max())
                # Ties go to the type of the nearest galaxy among the tied types.
                winners[qi] = next(c for c in codes if c in tied)
            out["predicted_morphology"] = np.array(types)[winners]
            out["predicted_type_index"] = np.asarray(type_indices)[winners]
        else:
            out["predicted_morphology"] = morph[first]
            out["predicted_type_index"] = tindex[first]
        out["H_similarity"] = Column(hsim, description="highest Sp (per cent)")
        out["no_similar"] = np.asarray(no_similar, dtype=bool)
        out["reason"] = np.array(reason, dtype=str) if any(reason) else np.array(reason, "U1")
        out["matched_objid"] = objid[first]
        if vote:
            for j, name in enumerate(types):
                out[f"vote_{name}"] = fractions[:, j]
        out.meta.update(self._result_meta(k))
        return out

    def _vote_types(self):
        """Type names voted on (the scheme's, else the database's) and their indices."""
        morph = np.asarray(self.database.table["morphology"]).astype(str)
        scheme = self.scheme
        present = set(np.unique(morph).tolist())
        if scheme is not None and present <= set(scheme.types):
            return list(scheme.types), list(range(len(scheme)))
        tindex = np.asarray(self.database.table["type_index"])
        pairs = sorted({(int(t), m) for t, m in zip(tindex, morph, strict=True)})
        return [m for _, m in pairs], [t for t, _ in pairs]


def _warn_unlike_database(cutouts, meta, stacklevel):
    """
    Warn when target cutouts were not made with the recipe of the database galaxies.

    ``stacklevel`` counts from the caller of this function, as for
    `warnings.warn`.
    """
    from ..preprocessing import warn_recipe_differences

    sizes = {int(c.params["size"]) for c in cutouts}
    warn_recipe_differences(
        cutouts, meta, size=sizes.pop() if len(sizes) == 1 else None,
        message="The targets were not preprocessed like the database galaxies, so their "
                "similarities are not comparable", stacklevel=stacklevel + 1)
