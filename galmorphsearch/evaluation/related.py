# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Evaluation of a latent space in the ways of related work.

Seo et al. (2023) judge their latents by similarity search. Other papers on
self-supervised galaxy morphology judge latents by what simple methods can do
with them, and these functions make the same checks on galmorphsearch latents:

* `knn_accuracy` -- k-nearest-neighbour classification accuracy, as in
  Wei et al. (2022), who report 94.7 per cent on three Galaxy Zoo 2 classes
  with k-NN over contrastive features;
* `cluster_scores` -- how well unsupervised clusters (k-means, agglomerative)
  recover the labels (adjusted Rand index, normalised mutual information);
* `latent_map` -- two-dimensional maps (PCA, t-SNE, optionally UMAP) for
  plots;
* `label_outliers` -- galaxies whose label disagrees with their latent
  neighbours, candidate mislabels (as Dai & Tong found with t-SNE maps);
* `latent_correlations` -- correlations of the latent principal components
  with physical properties, to see what the latents encode;
* `nonparametric_morphology` -- Gini, M20, CAS, ... of cutouts through the
  optional ``statmorph`` package, to compare with the latents.
"""

import importlib
import importlib.util

import numpy as np
from astropy.table import Table

from ..latents.kernel import check_k

__all__ = [
    "AUTO_THRESHOLD_FACTOR",
    "cluster_scores",
    "knn_accuracy",
    "label_outliers",
    "latent_correlations",
    "latent_map",
    "nonparametric_morphology",
]

#: Factor on the median nearest-neighbour distance that gives the
#: ``distance_threshold="auto"`` of `cluster_scores` (single linkage).
AUTO_THRESHOLD_FACTOR = 3.0


# ---------------------------------------------------------------------------
# Checks and neighbour helpers
# ---------------------------------------------------------------------------

def _as_latents(array, name):
    arr = np.asarray(array, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, np.newaxis]
    if arr.ndim != 2:
        msg = f"{name} must be a 2-D array (N, D); got shape {arr.shape}."
        raise ValueError(msg)
    if arr.shape[0] == 0:
        msg = f"{name} is empty."
        raise ValueError(msg)
    if not np.all(np.isfinite(arr)):
        msg = f"{name} contains NaN or infinite values."
        raise ValueError(msg)
    return arr


def _as_labels(labels, n, name, latents_name):
    lab = np.asarray(labels)
    if lab.ndim != 1:
        msg = f"{name} must be 1-D; got shape {lab.shape}."
        raise ValueError(msg)
    if len(lab) != n:
        msg = f"{name} has {len(lab)} entries but {latents_name} has {n} rows."
        raise ValueError(msg)
    return lab


def _neighbour_indices(queries, database, k, metric, leave_one_out):
    """Indices (Q, k) of the k nearest database rows, nearest first.

    With ``leave_one_out`` the queries are the database and each row's own
    index is removed from its neighbours.
    """
    from sklearn.neighbors import NearestNeighbors

    n_fetch = k + 1 if leave_one_out else k
    nn = NearestNeighbors(n_neighbors=n_fetch, algorithm="brute", metric=metric)
    nn.fit(database)
    dist, idx = nn.kneighbors(queries)
    # Order nearest first, ties by row number, independently of sklearn.
    order = np.lexsort((idx, dist), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    if not leave_one_out:
        return idx
    keep = idx != np.arange(len(queries))[:, np.newaxis]
    # Rows whose own index was not returned (exact duplicates): drop the last.
    missing = keep.all(axis=1)
    keep[missing, -1] = False
    return idx[keep].reshape(len(queries), k)


def _votes(neighbour_codes, n_classes, ks):
    """
    Majority vote among the first k neighbours for each k in ``ks``.

    Ties go to the tied class whose nearest member is nearest.
    Returns an int array (len(ks), Q) of class codes.
    """
    n_q, kmax = neighbour_codes.shape
    onehot = np.zeros((n_q, kmax, n_classes), dtype=np.int32)
    onehot[np.arange(n_q)[:, None], np.arange(kmax)[None, :], neighbour_codes] = 1
    counts = np.cumsum(onehot, axis=1)
    present = onehot.any(axis=1)
    first = np.where(present, onehot.argmax(axis=1), kmax)
    out = np.empty((len(ks), n_q), dtype=np.int64)
    for i, k in enumerate(ks):
        c = counts[:, k - 1, :]
        best = c == c.max(axis=1, keepdims=True)
        out[i] = np.argmin(np.where(best, first, kmax + 1), axis=1)
    return out


def _balanced_accuracy(true_codes, pred_codes):
    classes = np.unique(true_codes)
    recalls = [np.mean(pred_codes[true_codes == c] == c) for c in classes]
    return float(np.mean(recalls))


# ---------------------------------------------------------------------------
# k-NN accuracy
# ---------------------------------------------------------------------------

def knn_accuracy(train_latents, train_labels, test_latents=None, test_labels=None,
                 k=(1, 5, 10, 15, 20), metric="euclidean"):
    """
    k-nearest-neighbour classification accuracy of latents.

    Each test galaxy gets the majority label of its ``k`` nearest training
    latents; a tie goes to the tied label whose nearest member is nearest.
    One exact (brute-force) neighbour search with the largest ``k`` serves
    all values of ``k``. Without test latents the accuracy is leave-one-out:
    each training galaxy is classified by the others.

    Parameters
    ----------
    train_latents : array-like, shape (N, D)
        Latents of the labelled galaxies.
    train_labels : array-like, shape (N,)
        Their labels (any comparable type: strings, integers).
    test_latents : array-like, shape (M, D), optional
        Latents to classify. `None` (default) for leave-one-out on the
        training set.
    test_labels : array-like, shape (M,), optional
        True labels of the test latents; required with ``test_latents``.
    k : int or sequence of int, optional
        Numbers of neighbours (default 1, 5, 10, 15 and 20).
    metric : str, optional
        Distance, any metric of `sklearn.neighbors.NearestNeighbors`
        (default ``"euclidean"``).

    Returns
    -------
    table : `~astropy.table.Table`
        One row per ``k``: ``k``, ``accuracy`` (fraction correct) and
        ``balanced_accuracy`` (mean recall over the true classes). The
        metadata hold ``n_test``, ``metric`` and ``leave_one_out``.

    Raises
    ------
    ValueError
        If lengths do not match, ``k`` is not positive or is larger than the
        training set (less one for leave-one-out).

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.evaluation.related import knn_accuracy
    >>> train = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    >>> labels = np.array(["a", "a", "a", "b", "b"])
    >>> t = knn_accuracy(train, labels, [[0.5], [10.5]], ["a", "b"], k=(1, 3))
    >>> t["accuracy"].tolist()
    [1.0, 1.0]
    """
    train = _as_latents(train_latents, "train_latents")
    train_lab = _as_labels(train_labels, len(train), "train_labels", "train_latents")
    leave_one_out = test_latents is None
    if leave_one_out:
        if test_labels is not None:
            msg = "test_labels were given without test_latents."
            raise ValueError(msg)
        test, test_lab = train, train_lab
        n_available, what = len(train) - 1, "other training latents (leave-one-out)"
    else:
        if test_labels is None:
            msg = "test_labels are required with test_latents."
            raise ValueError(msg)
        test = _as_latents(test_latents, "test_latents")
        if test.shape[1] != train.shape[1]:
            msg = (f"test_latents have {test.shape[1]} dimensions but train_latents "
                   f"have {train.shape[1]}.")
            raise ValueError(msg)
        test_lab = _as_labels(test_labels, len(test), "test_labels", "test_latents")
        n_available, what = len(train), "training latents"
    ks = [k] if np.isscalar(k) else list(k)
    if not ks:
        msg = "k is empty."
        raise ValueError(msg)
    ks = [check_k(kk, n_available, what) for kk in ks]

    classes, train_codes = np.unique(train_lab, return_inverse=True)
    idx = _neighbour_indices(test, train, max(ks), metric, leave_one_out)
    pred = _votes(train_codes[idx], len(classes), ks)
    # Map the true test labels onto the training classes (-1: unseen class).
    pos = np.searchsorted(classes, test_lab)
    pos = np.clip(pos, 0, len(classes) - 1)
    true_codes = np.where(classes[pos] == test_lab, pos, -1)

    acc = [float(np.mean(p == true_codes)) for p in pred]
    bacc = [_balanced_accuracy(true_codes, p) for p in pred]
    table = Table([ks, acc, bacc], names=("k", "accuracy", "balanced_accuracy"))
    table.meta.update(n_test=len(test), metric=metric, leave_one_out=leave_one_out)
    return table


# ---------------------------------------------------------------------------
# Clustering
# ---------------------------------------------------------------------------

def _pca(latents, n_components, seed):
    from sklearn.decomposition import PCA

    n_components = min(n_components, latents.shape[0], latents.shape[1])
    return PCA(n_components=n_components, random_state=seed).fit_transform(latents)


def cluster_scores(latents, labels, *, n_clusters=None, pca_components=50,
                   distance_threshold=None, seed=0):
    """
    How well unsupervised clusters of the latents recover the labels.

    Two clusterings are made of the latents, both after a PCA to
    ``min(pca_components, N, D)`` dimensions:

    * ``"kmeans"`` -- `sklearn.cluster.KMeans` with ``n_clusters`` clusters
      (10 initialisations, seeded);
    * ``"agglomerative"`` -- `sklearn.cluster.AgglomerativeClustering`:
      with ``distance_threshold=None`` Ward linkage cut at ``n_clusters``
      clusters; with a threshold, single linkage ("friends of friends") cut
      at that distance, so the number of clusters follows from the data.
      ``distance_threshold="auto"`` uses `AUTO_THRESHOLD_FACTOR` (3) times
      the median nearest-neighbour distance in the PCA space: galaxies
      closer than three typical neighbour spacings are linked, so groups
      separated by less than that merge (neighbour distances grow with the
      dimension; give a threshold or use ``n_clusters`` when they do).

    Each clustering is compared with the labels by the adjusted Rand index
    (ARI; 1 for a perfect match, about 0 for chance) and the normalised
    mutual information (NMI; 1 perfect, 0 independent).

    Parameters
    ----------
    latents : array-like, shape (N, D)
        Latents.
    labels : array-like, shape (N,)
        Reference labels.
    n_clusters : int, optional
        Number of clusters; default the number of distinct labels.
    pca_components : int, optional
        Largest number of principal components kept (default 50).
    distance_threshold : float or "auto", optional
        Linkage distance for the agglomerative clustering; `None` (default)
        cuts at ``n_clusters`` instead.
    seed : int, optional
        Random seed of the PCA and k-means.

    Returns
    -------
    table : `~astropy.table.Table`
        Rows ``kmeans`` and ``agglomerative`` with columns ``method``,
        ``n_clusters`` (found), ``ARI`` and ``NMI``. The metadata hold
        ``pca_components`` (used) and ``distance_threshold`` (used, or
        `None`).

    Notes
    -----
    Agglomerative clustering needs memory and time growing as N squared;
    subsample large catalogues first.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.evaluation.related import cluster_scores
    >>> rng = np.random.default_rng(0)
    >>> centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    >>> labels = np.repeat([0, 1, 2], 20)
    >>> latents = centres[labels] + rng.normal(scale=0.3, size=(60, 2))
    >>> t = cluster_scores(latents, labels)
    >>> [round(float(x), 3) for x in t["ARI"]]
    [1.0, 1.0]
    """
    from sklearn.cluster import AgglomerativeClustering, KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = _as_latents(latents, "latents")
    lab = _as_labels(labels, len(x), "labels", "latents")
    if n_clusters is None:
        n_clusters = len(np.unique(lab))
    n_clusters = check_k(n_clusters, len(x), "latents")
    if isinstance(pca_components, bool) or not isinstance(pca_components, int | np.integer) \
            or pca_components < 1:
        msg = f"pca_components must be a positive integer; got {pca_components!r}."
        raise ValueError(msg)
    z = _pca(x, int(pca_components), seed) if len(x) > 1 else x

    km = KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(z)

    if distance_threshold is None:
        threshold = None
        agg = AgglomerativeClustering(n_clusters=n_clusters, linkage="ward")
    else:
        if isinstance(distance_threshold, str):
            if distance_threshold != "auto":
                msg = ("distance_threshold must be a positive number, 'auto' or None; "
                       f"got {distance_threshold!r}.")
                raise ValueError(msg)
            if len(z) < 2:
                msg = "distance_threshold='auto' needs at least two latents."
                raise ValueError(msg)
            nn = _neighbour_indices(z, z, 1, "euclidean", leave_one_out=True)[:, 0]
            nn_dist = np.linalg.norm(z - z[nn], axis=1)
            threshold = AUTO_THRESHOLD_FACTOR * float(np.median(nn_dist))
        else:
            threshold = float(distance_threshold)
        if not threshold > 0:
            msg = f"distance_threshold must be positive; got {threshold}."
            raise ValueError(msg)
        agg = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold,
                                      linkage="single")
    ag = agg.fit_predict(z) if len(z) > 1 else np.zeros(1, dtype=int)

    rows = []
    for name, pred in (("kmeans", km), ("agglomerative", ag)):
        rows.append((name, len(np.unique(pred)), float(adjusted_rand_score(lab, pred)),
                     float(normalized_mutual_info_score(lab, pred))))
    table = Table(rows=rows, names=("method", "n_clusters", "ARI", "NMI"))
    table.meta.update(pca_components=z.shape[1], distance_threshold=threshold)
    return table


# ---------------------------------------------------------------------------
# 2-D maps
# ---------------------------------------------------------------------------

def latent_map(latents, method="pca", seed=0, **kwargs):
    """
    A two-dimensional map of the latents, for plotting.

    Parameters
    ----------
    latents : array-like, shape (N, D)
        Latents, D >= 2.
    method : {"pca", "tsne", "umap"}, optional
        ``"pca"`` (default): the first two principal components
        (`sklearn.decomposition.PCA`). ``"tsne"``: `sklearn.manifold.TSNE`
        initialised by PCA; unless given, the perplexity is
        ``min(30, (N - 1) / 3)`` so that small samples work. ``"umap"``:
        ``umap.UMAP`` of the optional package ``umap-learn``, which
        galmorphsearch does not require.
    seed : int, optional
        Random seed (default 0); the same seed gives the same map.
    **kwargs
        Passed to the PCA, TSNE or UMAP constructor.

    Returns
    -------
    coords : `~numpy.ndarray`, shape (N, 2)
        Map coordinates.

    Raises
    ------
    ValueError
        For an unknown method, fewer than two latents or dimensions.
    ImportError
        For ``"umap"`` without ``umap-learn`` installed.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.evaluation.related import latent_map
    >>> latents = np.random.default_rng(1).normal(size=(30, 8))
    >>> latent_map(latents, "pca").shape
    (30, 2)
    """
    x = _as_latents(latents, "latents")
    if method not in ("pca", "tsne", "umap"):
        msg = f"Unknown method {method!r}; choose 'pca', 'tsne' or 'umap'."
        raise ValueError(msg)
    if len(x) < 2 or x.shape[1] < 2:
        msg = f"latent_map needs at least 2 latents of at least 2 dimensions; got {x.shape}."
        raise ValueError(msg)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed, **kwargs).fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        if len(x) < 4:
            msg = f"t-SNE needs at least 4 latents; got {len(x)}."
            raise ValueError(msg)
        kwargs.setdefault("perplexity", min(30.0, (len(x) - 1) / 3.0))
        kwargs.setdefault("init", "pca")
        return TSNE(n_components=2, random_state=seed, **kwargs).fit_transform(x)
    try:
        umap = importlib.import_module("umap")
    except ImportError as exc:
        msg = ("latent_map(method='umap') needs the optional package umap-learn, "
               "which is not installed: pip install umap-learn")
        raise ImportError(msg) from exc
    return np.asarray(umap.UMAP(n_components=2, random_state=seed, **kwargs).fit_transform(x))


# ---------------------------------------------------------------------------
# Label outliers
# ---------------------------------------------------------------------------

def label_outliers(latents, labels, k=10, threshold=0.5, ids=None):
    """
    Galaxies whose label disagrees with their latent neighbours.

    For each galaxy the labels of its ``k`` nearest other galaxies
    (Euclidean) are compared with its own. A galaxy is listed when more
    than ``threshold`` of them carry a different label: candidate mislabels
    (or unusual objects), such as Dai & Tong found by eye in t-SNE maps.

    Parameters
    ----------
    latents : array-like, shape (N, D)
        Latents.
    labels : array-like, shape (N,)
        Labels to check.
    k : int, optional
        Number of neighbours (default 10), less than N.
    threshold : float, optional
        Disagreement fraction above which a galaxy is listed (default 0.5),
        between 0 and 1.
    ids : array-like, shape (N,), optional
        Galaxy identifiers; default the row numbers.

    Returns
    -------
    table : `~astropy.table.Table`
        Columns ``id``, ``label``, ``majority_label`` (neighbours' vote; ties
        to the nearest) and ``disagreement`` (fraction of the ``k``
        neighbours with another label), most disagreeing first (ties by row).

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.evaluation.related import label_outliers
    >>> latents = np.array([[0.0], [0.1], [0.2], [0.3], [5.0], [5.1], [5.2]])
    >>> labels = np.array(["E", "E", "S", "E", "S", "S", "S"])
    >>> t = label_outliers(latents, labels, k=2)
    >>> t["id"].tolist(), t["majority_label"].tolist()
    ([2], ['E'])
    """
    x = _as_latents(latents, "latents")
    lab = _as_labels(labels, len(x), "labels", "latents")
    k = check_k(k, len(x) - 1, "other latents")
    if not 0 <= threshold <= 1:
        msg = f"threshold must lie between 0 and 1; got {threshold}."
        raise ValueError(msg)
    ident = np.arange(len(x)) if ids is None else _as_labels(ids, len(x), "ids", "latents")

    classes, codes = np.unique(lab, return_inverse=True)
    idx = _neighbour_indices(x, x, k, "euclidean", leave_one_out=True)
    neigh = codes[idx]
    disagreement = np.mean(neigh != codes[:, np.newaxis], axis=1)
    majority = _votes(neigh, len(classes), [k])[0]
    rows = np.flatnonzero(disagreement > threshold)
    rows = rows[np.argsort(-disagreement[rows], kind="stable")]
    table = Table([ident[rows], lab[rows], classes[majority[rows]], disagreement[rows]],
                  names=("id", "label", "majority_label", "disagreement"))
    table.meta.update(k=k, threshold=threshold)
    return table


# ---------------------------------------------------------------------------
# Correlations with properties
# ---------------------------------------------------------------------------

def _pearson(a, b):
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / den) if den > 0 else np.nan


def latent_correlations(latents, properties_table, n_components=10):
    """
    Correlations of the latents with galaxy properties.

    Each latent principal component (or each latent dimension) is
    correlated with each numeric column of a table of properties (colour,
    size, concentration, ...), to show what the latents encode. Rows with a
    missing (masked or non-finite) property are left out of that property's
    correlations.

    Parameters
    ----------
    latents : array-like, shape (N, D)
        Latents.
    properties_table : `~astropy.table.Table`, dict or structured array
        N rows of properties; non-numeric columns are skipped.
    n_components : int or None, optional
        Number of principal components (default 10; at most ``min(N, D)``).
        `None` correlates the raw latent dimensions instead.

    Returns
    -------
    table : `~astropy.table.Table`
        One row per (component, property): ``component`` (``"PC1"``, ... or
        ``"z0"``, ...), ``property``, ``pearson_r``, ``spearman_r`` and
        ``n`` (rows used). NaN where a column is constant.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.evaluation.related import latent_correlations
    >>> rng = np.random.default_rng(2)
    >>> size = rng.uniform(1, 5, 50)
    >>> latents = np.column_stack([2 * size, rng.normal(scale=0.01, size=50)])
    >>> t = latent_correlations(latents, Table({"size": size}), n_components=None)
    >>> round(float(t["pearson_r"][0]), 3)
    1.0
    """
    from scipy.stats import rankdata

    x = _as_latents(latents, "latents")
    props = properties_table if isinstance(properties_table, Table) else Table(properties_table)
    if len(props) != len(x):
        msg = f"properties_table has {len(props)} rows but latents has {len(x)}."
        raise ValueError(msg)
    if n_components is None:
        comps = x
        names = [f"z{i}" for i in range(x.shape[1])]
    else:
        if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer) \
                or n_components < 1:
            msg = f"n_components must be a positive integer or None; got {n_components!r}."
            raise ValueError(msg)
        comps = _pca(x, int(n_components), 0)
        names = [f"PC{i + 1}" for i in range(comps.shape[1])]

    columns = []
    for name in props.colnames:
        col = props[name]
        if col.ndim != 1 or col.dtype.kind not in "biuf":
            continue
        data = np.ma.filled(np.ma.asarray(col).astype(np.float64), np.nan)
        columns.append((name, data))
    if not columns:
        msg = "properties_table has no numeric 1-D columns."
        raise ValueError(msg)

    rows = []
    for j, cname in enumerate(names):
        for pname, values in columns:
            good = np.isfinite(values)
            a, b = comps[good, j], values[good]
            if good.sum() < 2:
                rows.append((cname, pname, np.nan, np.nan, int(good.sum())))
                continue
            rows.append((cname, pname, _pearson(a, b), _pearson(rankdata(a), rankdata(b)),
                         int(good.sum())))
    return Table(rows=rows, names=("component", "property", "pearson_r", "spearman_r", "n"))


# ---------------------------------------------------------------------------
# Non-parametric morphology (optional statmorph)
# ---------------------------------------------------------------------------

_STATMORPH_COLUMNS = ("gini", "m20", "concentration", "asymmetry", "smoothness",
                      "rpetro_circ", "flag")


def nonparametric_morphology(cutouts, *, gain=1.0, nsigma=2.0):
    """
    Non-parametric morphology (Gini, M20, CAS) of cutouts with statmorph.

    Needs the optional package ``statmorph`` (``pip install statmorph``),
    which galmorphsearch does not require. For each single-band image a
    segmentation map is the connected region above ``nsigma`` times the
    sigma-clipped background scatter that contains the central pixel (the
    brightest region if the centre is below the threshold).

    Parameters
    ----------
    cutouts : array-like, shape (N, H, W) or (H, W)
        Background-subtracted single-band images.
    gain : float, optional
        Gain passed to ``statmorph.source_morphology`` (default 1).
    nsigma : float, optional
        Detection threshold in background standard deviations (default 2).

    Returns
    -------
    table : `~astropy.table.Table`
        One row per image: ``gini``, ``m20``, ``concentration``,
        ``asymmetry``, ``smoothness``, ``rpetro_circ`` and statmorph's
        ``flag`` (NaN and flag -1 where no source was found).

    Raises
    ------
    ImportError
        If statmorph is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.evaluation.related import nonparametric_morphology
    >>> yy, xx = np.mgrid[:41, :41]
    >>> image = np.exp(-np.hypot(xx - 20, yy - 20) / 3)
    >>> image += np.random.default_rng(0).normal(scale=1e-3, size=image.shape)
    >>> t = nonparametric_morphology(image)  # doctest: +SKIP
    >>> len(t)  # doctest: +SKIP
    1
    """
    if importlib.util.find_spec("statmorph") is None:
        msg = ("nonparametric_morphology needs the optional package statmorph, which is "
               "not installed: pip install statmorph")
        raise ImportError(msg)
    import statmorph
    from astropy.stats import sigma_clipped_stats
    from scipy import ndimage

    images = np.asarray(cutouts, dtype=np.float64)
    if images.ndim == 2:
        images = images[np.newaxis]
    if images.ndim != 3:
        msg = f"cutouts must have shape (N, H, W) or (H, W); got {images.shape}."
        raise ValueError(msg)
    rows = []
    for image in images:
        _, median, std = sigma_clipped_stats(image)
        regions, n_regions = ndimage.label(image > median + nsigma * std)
        if n_regions == 0:
            rows.append((np.nan,) * (len(_STATMORPH_COLUMNS) - 1) + (-1,))
            continue
        cy, cx = image.shape[0] // 2, image.shape[1] // 2
        target = regions[cy, cx]
        if target == 0:
            sums = ndimage.sum(image, regions, index=np.arange(1, n_regions + 1))
            target = int(np.argmax(sums)) + 1
        segmap = (regions == target).astype(int)
        morph = statmorph.source_morphology(image - median, segmap, gain=gain)[0]
        rows.append(tuple(float(getattr(morph, c)) for c in _STATMORPH_COLUMNS[:-1])
                    + (int(morph.flag),))
    return Table(rows=rows, names=_STATMORPH_COLUMNS)
