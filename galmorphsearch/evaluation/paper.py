# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The evaluation of classification by similarity search of Seo et al. (2023).

Seo et al. (2023, section 3) split each catalogue, type by type, into a
morphology-check set (MC, 10 per cent of the galaxies) and a database
(MD, the other 90 per cent), classify every MC galaxy by the type of its
H-similarity galaxy in MD, and report

* the *best* classification rate (the exact type),
* the *good* classification rate (within two adjacent types along the
  scheme's order, `~galmorphsearch.catalogs.MorphologyScheme.is_good`),
* the Pearson correlation between true and predicted type order,
* the confusion matrix in per cent of each true type (their Fig. 12),
* a balanced test with a small, equal number of database galaxies per
  type drawn many times (their Fig. 14),
* the H-similarity distribution of the database per type (Figs. 9 and 11).

Everything is vectorised with NumPy; no encoder is needed, the stored
latents of a `~galmorphsearch.database.LatentDatabase` are used.
"""

import numpy as np
from astropy.table import Column, Table

from ..catalogs import MorphologyScheme, get_scheme
from ..latents import IDENTICAL_RTOL

__all__ = [
    "mc_md_split",
    "evaluate_retrieval",
    "confusion_matrix",
    "type_correlation",
    "rates",
    "balanced_vote",
    "h_similarity_statistics",
]

# At most this many float64 elements in one (MC rows x drawn MD rows) block
# of the distance matrix of `balanced_vote` (128 MiB).
_MAX_BLOCK_ELEMENTS = 2**24


# ----------------------------------------------------------------------
# helpers
def _table_of(database_or_table):
    table = getattr(database_or_table, "table", database_or_table)
    if not isinstance(table, Table):
        msg = ("Expected a LatentDatabase or an astropy Table; got "
               f"{type(database_or_table).__name__}.")
        raise TypeError(msg)
    if "morphology" not in table.colnames:
        msg = "The table lacks the column 'morphology'."
        raise ValueError(msg)
    return table


def _names(values, what):
    """Type names as a 1-D array of str (masked or bytes entries handled)."""
    arr = np.ma.asarray(values)
    if arr.ndim != 1:
        arr = np.ma.atleast_1d(arr)
        if arr.ndim != 1:
            msg = f"{what} must be one-dimensional; got shape {arr.shape}."
            raise ValueError(msg)
    if np.any(np.ma.getmaskarray(arr)):
        msg = f"{what} has masked entries."
        raise ValueError(msg)
    data = np.ma.getdata(arr)
    if data.dtype.kind == "S":
        data = np.char.decode(data, "ascii")
    return data.astype(str)


def _scheme_of(database):
    """The database's morphology scheme, or one built from its table."""
    table = _table_of(database)
    meta = getattr(database, "meta", table.meta)
    name = meta.get("SCHEME")
    morph = _names(table["morphology"], "morphology")
    if name is not None:
        try:
            scheme = get_scheme(name)
        except ValueError:
            scheme = None
        if scheme is not None and set(np.unique(morph).tolist()) <= set(scheme.types):
            return scheme
    # A scheme of unknown name: order the types by the table's type_index.
    if "type_index" in table.colnames:
        tindex = np.asarray(table["type_index"], dtype=np.int64)
        pairs = sorted({(int(t), str(m)) for t, m in zip(tindex, morph, strict=True)})
        types = [m for _, m in pairs]
    else:
        types = sorted(set(morph.tolist()))
    return MorphologyScheme(str(name or "custom"), types)


def _resolve_types(types):
    if isinstance(types, (str, MorphologyScheme)):
        return get_scheme(types).types
    types = tuple(str(t) for t in types)
    if not types:
        msg = "types must not be empty."
        raise ValueError(msg)
    if len(set(types)) != len(types):
        msg = f"types holds duplicate names: {types}."
        raise ValueError(msg)
    return types


def _codes(values, types, what):
    """Positions of type names (or integer type indices) in ``types``."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        arr = np.atleast_1d(arr)
        if arr.ndim != 1:
            msg = f"{what} must be one-dimensional; got shape {arr.shape}."
            raise ValueError(msg)
    if arr.size and arr.dtype.kind in "iu":
        codes = arr.astype(np.int64)
        bad = (codes < 0) | (codes >= len(types))
        if np.any(bad):
            msg = (f"{what} holds type indices outside 0..{len(types) - 1}: "
                   f"{np.unique(codes[bad])[:5].tolist()}.")
            raise ValueError(msg)
        return codes
    names = _names(values, what)
    uniq, inverse = np.unique(names, return_inverse=True)
    lookup = {t: i for i, t in enumerate(types)}
    unknown = [u for u in uniq.tolist() if u not in lookup]
    if unknown:
        msg = f"{what} holds unknown type(s) {unknown[:5]}; known types are {list(types)}."
        raise ValueError(msg)
    return np.array([lookup[u] for u in uniq.tolist()], dtype=np.int64)[inverse].reshape(-1)


def _check_same_length(a, b, names=("true", "predicted")):
    if len(a) != len(b):
        msg = f"{names[0]} ({len(a)}) and {names[1]} ({len(b)}) must have the same length."
        raise ValueError(msg)


def _rates_from_codes(true, pred, width):
    diff = np.abs(true - pred)
    n = true.size
    if n == 0:
        return {"n": 0, "best": np.nan, "good": np.nan, "miss": np.nan}
    best = float(np.count_nonzero(diff == 0)) / n
    good = float(np.count_nonzero(diff <= width)) / n
    return {"n": int(n), "best": best, "good": good, "miss": 1.0 - good}


def _check_width(width):
    width = int(width)
    if width < 0:
        msg = f"width must be >= 0, got {width}."
        raise ValueError(msg)
    return width


# ----------------------------------------------------------------------
# metrics
def confusion_matrix(true, predicted, types, normalize=True):
    """
    Confusion matrix of predicted against true types (Seo et al. 2023, Fig. 12).

    Parameters
    ----------
    true, predicted : array-like of str or of int
        True and predicted type names, or integer positions in ``types``.
    types : sequence of str, str or `~galmorphsearch.catalogs.MorphologyScheme`
        The types, in the order of the matrix axes (a scheme or scheme name
        gives the scheme's types).
    normalize : bool, optional
        If True (default), give per cent of each true type; otherwise the
        counts.

    Returns
    -------
    matrix : `~numpy.ndarray`, shape (T, T), float64
        ``matrix[p, t]``: galaxies of true type ``types[t]`` predicted as
        ``types[p]`` (rows predicted, columns true). Normalised, each column
        sums to 100 where the true type has galaxies and is NaN where it has
        none.

    Raises
    ------
    ValueError
        If the inputs have different lengths or hold unknown types.

    Examples
    --------
    >>> from galmorphsearch.evaluation import confusion_matrix
    >>> confusion_matrix(['E', 'E', 'S', 'S', 'S'], ['E', 'S', 'S', 'S', 'E'],
    ...                  ['E', 'S', 'Irr'])
    array([[50.        , 33.33333333,         nan],
           [50.        , 66.66666667,         nan],
           [ 0.        ,  0.        ,         nan]])
    """
    types = _resolve_types(types)
    t = _codes(true, types, "true")
    p = _codes(predicted, types, "predicted")
    _check_same_length(t, p)
    n_types = len(types)
    counts = np.bincount(p * n_types + t, minlength=n_types * n_types)
    counts = counts.reshape(n_types, n_types).astype(np.float64)
    if not normalize:
        return counts
    column = counts.sum(axis=0)
    out = np.full_like(counts, np.nan)
    has = column > 0
    out[:, has] = counts[:, has] / column[has] * 100.0
    return out


def type_correlation(true_index, predicted_index):
    """
    Pearson correlation between true and predicted type order.

    Seo et al. (2023) find r = 0.735 (GZ2), 0.811 (EFIGI) and 0.815 (NA10).

    .. math::

        r = \\frac{\\sum_i (t_i - \\bar t)(p_i - \\bar p)}
        {\\sqrt{\\sum_i (t_i - \\bar t)^2 \\sum_i (p_i - \\bar p)^2}}

    Parameters
    ----------
    true_index, predicted_index : array-like of int
        Type indices (positions along the scheme's order).

    Returns
    -------
    r : float
        The Pearson correlation coefficient; NaN if either input is constant.

    Raises
    ------
    ValueError
        If the inputs have different lengths, fewer than two entries, or are
        not finite.

    Examples
    --------
    >>> from galmorphsearch.evaluation import type_correlation
    >>> round(type_correlation([0, 1, 2, 3], [0, 2, 1, 3]), 6)
    0.8
    """
    t = np.asarray(true_index, dtype=np.float64).reshape(-1)
    p = np.asarray(predicted_index, dtype=np.float64).reshape(-1)
    _check_same_length(t, p, ("true_index", "predicted_index"))
    if t.size < 2:
        msg = f"The correlation needs at least two galaxies; got {t.size}."
        raise ValueError(msg)
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(p))):
        msg = "Type indices must be finite."
        raise ValueError(msg)
    dt = t - t.mean()
    dp = p - p.mean()
    denom = np.sqrt(np.dot(dt, dt) * np.dot(dp, dp))
    if denom == 0:
        return float("nan")
    return float(np.dot(dt, dp) / denom)


def rates(true, predicted, scheme, width=2):
    """
    Best, good and miss classification rates (Seo et al. 2023, section 3).

    A prediction is *best* when it is the true type, *good* when it lies
    within ``width`` steps of the true type along the scheme's order (the
    paper's "two adjacent types", `MorphologyScheme.is_good`), and a
    *miss* otherwise. The paper reports best 55.08/24.44/31.74 per cent and
    good 82.68/74.28/80.32 per cent for GZ2/EFIGI/NA10.

    Parameters
    ----------
    true, predicted : array-like of str
        True and predicted type names.
    scheme : str or `~galmorphsearch.catalogs.MorphologyScheme`
        The morphology scheme (or its name).
    width : int, optional
        Largest distance along the order for a good classification (2).

    Returns
    -------
    rates : dict
        ``n`` (number of galaxies) and the fractions (0..1) ``best``,
        ``good`` (which includes the best) and ``miss`` (``1 - good``); NaN
        for no galaxies.

    Raises
    ------
    ValueError
        If the inputs have different lengths, hold types not in the scheme,
        or ``width`` is negative.

    Examples
    --------
    >>> from galmorphsearch.evaluation import rates
    >>> r = rates(['Er', 'Er', 'Sb', 'SBd'], ['Er', 'Ec', 'Sd', 'Er'], 'gz2')
    >>> r['best'], r['good'], r['miss']
    (0.25, 0.75, 0.25)
    """
    width = _check_width(width)
    types = _resolve_types(scheme)
    t = _codes(true, types, "true")
    p = _codes(predicted, types, "predicted")
    _check_same_length(t, p)
    return _rates_from_codes(t, p, width)


# ----------------------------------------------------------------------
# the MC/MD split and the retrieval test
def mc_md_split(database_or_table, fraction=0.1, seed=0):
    """
    Split galaxies, type by type, into morphology-check targets and a database.

    Seo et al. (2023) take 10 per cent of the galaxies of every type as the
    morphology-check set (MC) and keep the other 90 per cent as the
    database (MD). Each type of ``n >= 2`` members gives ``fraction * n``
    galaxies, rounded half up, but at least one and at most ``n - 1``, to
    MC; a type with a single member stays in MD. The MC galaxies of each
    type are drawn at random (types taken in sorted order from one
    `numpy.random.Generator` seeded with ``seed``).

    Parameters
    ----------
    database_or_table : `~galmorphsearch.database.LatentDatabase` or `~astropy.table.Table`
        The galaxies; only the ``morphology`` column is used.
    fraction : float, optional
        Fraction of each type put into MC, strictly between 0 and 1 (0.1).
    seed : int, optional
        Seed of the random draw (the split is reproducible).

    Returns
    -------
    mc_indices, md_indices : `~numpy.ndarray` of int
        Sorted row indices of the MC targets and of the MD database; together
        they are every row exactly once.

    Raises
    ------
    ValueError
        If ``fraction`` is not in (0, 1) or the table has no ``morphology``.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from galmorphsearch.evaluation import mc_md_split
    >>> t = Table({'morphology': ['E'] * 20 + ['S'] * 10 + ['Irr']})
    >>> mc, md = mc_md_split(t, fraction=0.1, seed=1)
    >>> len(mc), len(md)
    (3, 28)
    >>> t['morphology'][mc].tolist()
    ['E', 'E', 'S']
    """
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        msg = f"fraction must be strictly between 0 and 1; got {fraction}."
        raise ValueError(msg)
    table = _table_of(database_or_table)
    morph = _names(table["morphology"], "morphology")
    rng = np.random.default_rng(seed)
    uniq, inverse = np.unique(morph, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    mc = []
    for k in range(len(uniq)):
        members = order[bounds[k]:bounds[k + 1]]
        n = members.size
        if n < 2:
            continue
        n_mc = min(max(int(np.floor(fraction * n + 0.5)), 1), n - 1)
        mc.append(rng.choice(members, size=n_mc, replace=False))
    mc = np.sort(np.concatenate(mc)) if mc else np.zeros(0, dtype=np.int64)
    is_mc = np.zeros(len(table), dtype=bool)
    is_mc[mc] = True
    return mc.astype(np.int64), np.flatnonzero(~is_mc).astype(np.int64)


def _check_indices(indices, n, what):
    idx = np.asarray(indices)
    if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
        msg = f"{what} must be a 1-D array of integer row indices."
        raise ValueError(msg)
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        msg = f"{what} holds row indices outside 0..{n - 1}."
        raise ValueError(msg)
    if np.unique(idx).size != idx.size:
        msg = f"{what} holds repeated row indices."
        raise ValueError(msg)
    return idx


def _summary(true_codes, pred_codes, scheme, width):
    out = _rates_from_codes(true_codes, pred_codes, width)
    n = out.pop("n")
    summary = {"n": n, "best_rate": out["best"], "good_rate": out["good"],
               "miss_rate": out["miss"]}
    summary["correlation"] = (type_correlation(true_codes, pred_codes) if n >= 2
                              else float("nan"))
    summary["confusion"] = confusion_matrix(true_codes, pred_codes, scheme.types)
    summary["types"] = scheme.types
    summary["scheme"] = scheme.name
    summary["width"] = width
    return summary


def evaluate_retrieval(database, fraction=0.1, seed=0, width=2):
    """
    The retrieval test of Seo et al. (2023): classify MC against MD.

    The galaxies are split with `mc_md_split`; the MD rows form a new
    `~galmorphsearch.database.LatentDatabase` (whose H-similarity
    statistics, and so its "no similar galaxy" threshold, are recomputed),
    and every MC galaxy is classified with
    `~galmorphsearch.search.SimilaritySearcher.classify_latents` from its
    stored latent and background latent: the predicted type is that of its
    H-similarity galaxy, the MD galaxy of highest
    :math:`S_p = (1 - \\lVert T - D_i \\rVert / \\lVert T - B \\rVert) \\times 100`.

    Parameters
    ----------
    database : `~galmorphsearch.database.LatentDatabase`
        The full database (catalogue) to evaluate.
    fraction : float, optional
        Fraction of each type used as MC targets (0.1).
    seed : int, optional
        Seed of the split.
    width : int, optional
        Width of a good classification along the scheme's order (2).

    Returns
    -------
    result : `~astropy.table.Table`
        One row per MC galaxy: ``objid``, ``true_morphology``,
        ``true_type_index``, ``predicted_morphology``,
        ``predicted_type_index``, ``H_similarity``, ``no_similar``, ``best``
        and ``good`` (bools). Type indices are positions along the scheme.
    summary : dict
        ``n``, ``best_rate``, ``good_rate``, ``miss_rate`` (fractions),
        ``no_similar_rate``, ``correlation`` (Pearson r of type indices),
        ``confusion`` (`confusion_matrix` in per cent, rows predicted,
        columns true), ``types`` (the matrix axes), ``scheme`` (its name),
        ``width``, ``n_md`` and the MD threshold ``h_similarity_threshold``.

    Raises
    ------
    ValueError
        If ``fraction`` is not in (0, 1), or the split gives fewer than two
        targets (the database is too small to evaluate).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.database import LatentDatabase
    >>> from galmorphsearch.evaluation import evaluate_retrieval
    >>> rng = np.random.default_rng(0)
    >>> types = np.repeat(['Er', 'Sb', 'SBc'], 20)          # three well separated clusters
    >>> centres = {'Er': 0.0, 'Sb': 10.0, 'SBc': 20.0}
    >>> lat = np.array([centres[t] for t in types])[:, None] + rng.normal(size=(60, 4))
    >>> t = Table({'objid': np.arange(60), 'ra': np.zeros(60), 'dec': np.zeros(60),
    ...            'morphology': types, 'type_index': [{'Er': 0, 'Sb': 5, 'SBc': 10}[m]
    ...                                                for m in types],
    ...            'catalog': ['demo'] * 60, 'latent': lat,
    ...            'background_latent': lat + 30.0})
    >>> t.meta.update(ENCODER='demo', ENCARCH='none', ENCHASH='0' * 16, INSIZE=64,
    ...               LATDIM=4, SCHEME='gz2')
    >>> result, summary = evaluate_retrieval(LatentDatabase(t), seed=0)
    >>> summary['n'], summary['best_rate'], summary['good_rate']
    (6, 1.0, 1.0)
    """
    from ..database import LatentDatabase
    from ..search import SimilaritySearcher

    width = _check_width(width)
    scheme = _scheme_of(database)
    table = database.table
    mc, md = mc_md_split(database, fraction=fraction, seed=seed)
    if mc.size < 2:
        counts = ", ".join(f"{t}={n}" for t, n in zip(
            *np.unique(_names(table["morphology"], "morphology"), return_counts=True),
            strict=True))
        msg = (f"The database of {len(table)} galaxies ({counts}) is too small to evaluate "
               f"with fraction={fraction}: it gives {mc.size} morphology-check target(s), "
               "and the rates and the type correlation need at least two (a type gives "
               "targets only when it has two or more members). Use more galaxies per type "
               "or a larger fraction.")
        raise ValueError(msg)
    md_table = table[md]
    if "h_similarity" in md_table.colnames:
        md_table.remove_column("h_similarity")
    md_db = LatentDatabase(md_table, copy=False)
    searcher = SimilaritySearcher(md_db)
    lat = database.latents[mc]
    back = database.background_latents[mc]
    objid = np.asarray(table["objid"])[mc]
    found = searcher.classify_latents(lat, back, target_ids=objid)

    true_names = _names(table["morphology"], "morphology")[mc]
    pred_names = _names(found["predicted_morphology"], "predicted_morphology")
    true_codes = _codes(true_names, scheme.types, "true morphology")
    pred_codes = _codes(pred_names, scheme.types, "predicted morphology")
    diff = np.abs(true_codes - pred_codes)

    result = Table()
    result["objid"] = objid
    result["true_morphology"] = true_names
    result["true_type_index"] = true_codes
    result["predicted_morphology"] = pred_names
    result["predicted_type_index"] = pred_codes
    result["H_similarity"] = Column(np.asarray(found["H_similarity"], dtype=np.float64),
                                    description="highest Sp in MD (per cent)")
    result["no_similar"] = np.asarray(found["no_similar"], dtype=bool)
    result["best"] = diff == 0
    result["good"] = diff <= width

    summary = _summary(true_codes, pred_codes, scheme, width)
    summary["no_similar_rate"] = float(np.mean(result["no_similar"]))
    summary["n_md"] = int(md.size)
    summary["h_similarity_threshold"] = float(searcher.h_similarity_threshold)
    result.meta.update({"SCHEME": scheme.name, "FRACTION": float(fraction), "SEED": seed,
                        "NMD": int(md.size), "WIDTH": width})
    return result, summary


# ----------------------------------------------------------------------
# the balanced test (Fig. 14)
def _distances(queries, database):
    """Exact (float64) Euclidean distances, (Q, N)."""
    q = queries.astype(np.float64)
    d = database.astype(np.float64)
    d2 = np.sum(q * q, axis=1)[:, None] + np.sum(d * d, axis=1)[None, :] - 2.0 * (q @ d.T)
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def balanced_vote(database, mc_indices, md_indices, n_per_type=None, n_iterations=400,
                  seed=0, width=2):
    """
    The balanced test of Seo et al. (2023, Fig. 14): many small, equal databases.

    In every iteration, ``n_per_type`` galaxies of each type present in MD
    are drawn (without replacement) as a small database; every MC galaxy is
    classified by its H-similarity galaxy among them, the nearest drawn
    galaxy in latent space that is not identical to it (as the target's own
    background distance is the same for all candidates, the highest Sp is
    the smallest distance). Over ``n_iterations`` iterations, each MC
    galaxy's prediction is its most frequent (modal) type; ties go to the
    type earlier in the scheme's order.

    The (MC x drawn MD) distance matrix is computed once, in float64, and
    each iteration is an argmin over its drawn columns, so hundreds of
    iterations over thousands of galaxies take seconds.

    Parameters
    ----------
    database : `~galmorphsearch.database.LatentDatabase`
        The galaxies and their latents.
    mc_indices, md_indices : array-like of int
        Row indices of the targets and of the database pool (e.g. from
        `mc_md_split`).
    n_per_type : int, optional
        Galaxies drawn per type in every iteration; default the number of
        galaxies of the smallest type in MD.
    n_iterations : int, optional
        Number of draws (400).
    seed : int, optional
        Seed of the draws.
    width : int, optional
        Width of a good classification along the scheme's order (2).

    Returns
    -------
    result : `~astropy.table.Table`
        One row per MC galaxy: ``objid``, ``true_morphology``,
        ``true_type_index``, ``predicted_morphology`` and
        ``predicted_type_index`` (the modal prediction), ``agreement``
        (fraction of iterations that predicted it), ``H_similarity`` (mean
        over iterations of the highest Sp, NaN where the background distance
        is zero), ``best`` and ``good``.
    summary : dict
        As `evaluate_retrieval` (``n``, ``best_rate``, ``good_rate``,
        ``miss_rate``, ``correlation``, ``confusion``, ``types``,
        ``scheme``, ``width``) plus ``n_per_type``, ``n_iterations`` and
        ``mean_agreement``.

    Raises
    ------
    ValueError
        If the index arrays are invalid or overlap, ``n_per_type`` is not
        positive or exceeds the smallest type in MD, ``n_iterations`` is
        not positive, or a target has no non-identical galaxy to compare
        with in some draw.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.database import LatentDatabase
    >>> from galmorphsearch.evaluation import balanced_vote, mc_md_split
    >>> rng = np.random.default_rng(0)
    >>> types = np.repeat(['Er', 'Sb', 'SBc'], [40, 20, 10])
    >>> centres = {'Er': 0.0, 'Sb': 10.0, 'SBc': 20.0}
    >>> lat = np.array([centres[t] for t in types])[:, None] + rng.normal(size=(70, 4))
    >>> t = Table({'objid': np.arange(70), 'ra': np.zeros(70), 'dec': np.zeros(70),
    ...            'morphology': types, 'type_index': [{'Er': 0, 'Sb': 5, 'SBc': 10}[m]
    ...                                                for m in types],
    ...            'catalog': ['demo'] * 70, 'latent': lat,
    ...            'background_latent': lat + 30.0})
    >>> t.meta.update(ENCODER='demo', ENCARCH='none', ENCHASH='0' * 16, INSIZE=64,
    ...               LATDIM=4, SCHEME='gz2')
    >>> db = LatentDatabase(t)
    >>> mc, md = mc_md_split(db, seed=0)
    >>> result, summary = balanced_vote(db, mc, md, n_per_type=5, n_iterations=50)
    >>> summary['n'], summary['best_rate'], float(result['agreement'].min())
    (7, 1.0, 1.0)
    """
    width = _check_width(width)
    scheme = _scheme_of(database)
    table = database.table
    n_rows = len(table)
    mc = _check_indices(mc_indices, n_rows, "mc_indices")
    md = _check_indices(md_indices, n_rows, "md_indices")
    if mc.size == 0 or md.size == 0:
        msg = "mc_indices and md_indices must both be non-empty."
        raise ValueError(msg)
    if np.intersect1d(mc, md).size:
        msg = "mc_indices and md_indices overlap."
        raise ValueError(msg)
    n_iterations = int(n_iterations)
    if n_iterations < 1:
        msg = f"n_iterations must be at least 1; got {n_iterations}."
        raise ValueError(msg)

    codes_all = _codes(_names(table["morphology"], "morphology"), scheme.types, "morphology")
    md_codes = codes_all[md]
    present, counts = np.unique(md_codes, return_counts=True)
    if n_per_type is None:
        n_per_type = int(counts.min())
    n_per_type = int(n_per_type)
    if n_per_type < 1:
        msg = f"n_per_type must be at least 1; got {n_per_type}."
        raise ValueError(msg)
    if n_per_type > counts.min():
        small = scheme.types[present[np.argmin(counts)]]
        msg = (f"n_per_type={n_per_type} is larger than the smallest type in MD "
               f"({small!r}, {counts.min()} galaxies).")
        raise ValueError(msg)

    # Draws: (n_iterations, n_types * n_per_type) positions in md.
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(md_codes == c) for c in present]
    draws = np.empty((n_iterations, present.size * n_per_type), dtype=np.int64)
    for it in range(n_iterations):
        for k, pool in enumerate(members):
            draws[it, k * n_per_type:(k + 1) * n_per_type] = rng.choice(
                pool, size=n_per_type, replace=False)
    used, draws_u = np.unique(draws, return_inverse=True)
    draws_u = draws_u.reshape(draws.shape)
    draw_codes = md_codes[used][draws_u]                    # (n_iterations, m)

    lat = database.latents
    back_lat = database.background_latents
    q = lat[mc]
    pool_lat = lat[md[used]]
    q64 = q.astype(np.float64)
    q_norm = np.sqrt(np.sum(q64 * q64, axis=1))
    back = np.sqrt(np.sum((q64 - back_lat[mc].astype(np.float64)) ** 2, axis=1))

    n_mc = mc.size
    n_types = len(scheme.types)
    votes = np.zeros((n_mc, n_types), dtype=np.int64)
    dsum = np.zeros(n_mc)
    chunk = max(1, _MAX_BLOCK_ELEMENTS // max(1, used.size))
    for start in range(0, n_mc, chunk):
        stop = min(n_mc, start + chunk)
        dist = _distances(q[start:stop], pool_lat)
        dist[dist <= IDENTICAL_RTOL * q_norm[start:stop, None]] = np.inf
        rows = np.arange(stop - start)
        block_votes = np.zeros((stop - start) * n_types, dtype=np.int64)
        for it in range(n_iterations):
            sub = dist[:, draws_u[it]]
            best = np.argmin(sub, axis=1)
            dmin = sub[rows, best]
            if not np.all(np.isfinite(dmin)):
                bad = mc[start + np.flatnonzero(~np.isfinite(dmin))]
                msg = (f"Target row(s) {bad[:5].tolist()} have no non-identical galaxy "
                       f"in draw {it}.")
                raise ValueError(msg)
            dsum[start:stop] += dmin
            block_votes += np.bincount(rows * n_types + draw_codes[it, best],
                                       minlength=(stop - start) * n_types)
        votes[start:stop] = block_votes.reshape(stop - start, n_types)

    pred_codes = np.argmax(votes, axis=1)
    agreement = votes[np.arange(n_mc), pred_codes] / n_iterations
    dmean = dsum / n_iterations
    hsim = np.full(n_mc, np.nan)
    ok = back > 0
    hsim[ok] = (1.0 - dmean[ok] / back[ok]) * 100.0
    true_codes = codes_all[mc]
    diff = np.abs(true_codes - pred_codes)
    types = np.array(scheme.types)

    result = Table()
    result["objid"] = np.asarray(table["objid"])[mc]
    result["true_morphology"] = types[true_codes]
    result["true_type_index"] = true_codes
    result["predicted_morphology"] = types[pred_codes]
    result["predicted_type_index"] = pred_codes
    result["agreement"] = Column(agreement, description="fraction of iterations agreeing")
    result["H_similarity"] = Column(hsim, description="mean highest Sp over iterations")
    result["best"] = diff == 0
    result["good"] = diff <= width

    summary = _summary(true_codes, pred_codes, scheme, width)
    summary["n_per_type"] = n_per_type
    summary["n_iterations"] = n_iterations
    summary["mean_agreement"] = float(np.mean(agreement))
    result.meta.update({"SCHEME": scheme.name, "NPERTYPE": n_per_type, "NITER": n_iterations,
                        "SEED": seed, "WIDTH": width})
    return result, summary


# ----------------------------------------------------------------------
# H-similarity per type (Figs. 9 and 11)
def h_similarity_statistics(database):
    """
    Mean and standard deviation of the database's H-similarity, per type.

    The H-similarity of a database galaxy is its highest Sp against the
    other galaxies (`~galmorphsearch.database.LatentDatabase.h_similarity`);
    Seo et al. (2023, Figs. 9 and 11) show its distribution per type.
    Undefined (NaN) values are left out; the standard deviation is the
    population one (``ddof=0``), as for ``HSIMSTD``.

    Parameters
    ----------
    database : `~galmorphsearch.database.LatentDatabase`
        The database.

    Returns
    -------
    stats : `~astropy.table.Table`
        One row per type present, in the scheme's order, then a row
        ``'all'`` (``type_index`` -1): ``type``, ``type_index``, ``n``
        (galaxies with a defined H-similarity), ``mean`` and ``std`` (NaN
        when ``n`` is 0).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.database import LatentDatabase
    >>> from galmorphsearch.evaluation import h_similarity_statistics
    >>> lat = np.array([[0.0, 0], [1, 0], [0, 2], [0, 3]])
    >>> t = Table({'objid': [1, 2, 3, 4], 'ra': np.zeros(4), 'dec': np.zeros(4),
    ...            'morphology': ['Er', 'Er', 'Sb', 'Sb'], 'type_index': [0, 0, 5, 5],
    ...            'catalog': ['demo'] * 4, 'latent': lat,
    ...            'background_latent': lat + [4.0, 0]})
    >>> t.meta.update(ENCODER='demo', ENCARCH='none', ENCHASH='0' * 16, INSIZE=64,
    ...               LATDIM=2, SCHEME='gz2')
    >>> h_similarity_statistics(LatentDatabase(t))
    <Table length=3>
    type type_index   n     mean    std
    str3   int64    int64 float64 float64
    ---- ---------- ----- ------- -------
      Er          0     2    75.0     0.0
      Sb          5     2    75.0     0.0
     all         -1     4    75.0     0.0
    """
    scheme = _scheme_of(database)
    table = _table_of(database)
    codes = _codes(_names(table["morphology"], "morphology"), scheme.types, "morphology")
    hsim = np.asarray(database.h_similarity, dtype=np.float64)
    defined = np.isfinite(hsim)
    n_types = len(scheme.types)
    present = np.unique(codes)
    c = codes[defined]
    h = hsim[defined]
    n = np.bincount(c, minlength=n_types)
    s1 = np.bincount(c, weights=h, minlength=n_types)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, s1 / np.maximum(n, 1), np.nan)
        dev = h - mean[c]
        var = np.bincount(c, weights=dev * dev, minlength=n_types) / np.maximum(n, 1)
    std = np.where(n > 0, np.sqrt(var), np.nan)
    n_all = int(h.size)
    mean_all = float(np.mean(h)) if n_all else np.nan
    std_all = float(np.std(h)) if n_all else np.nan

    out = Table()
    out["type"] = [*(scheme.types[i] for i in present), "all"]
    out["type_index"] = np.array([*present.tolist(), -1], dtype=np.int64)
    out["n"] = np.array([*n[present].tolist(), n_all], dtype=np.int64)
    out["mean"] = np.array([*mean[present].tolist(), mean_all], dtype=np.float64)
    out["std"] = np.array([*std[present].tolist(), std_all], dtype=np.float64)
    out.meta["SCHEME"] = scheme.name
    return out
