# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Figures of retrieval and evaluation, after the figures of Seo et al. (2023).

Every function draws with matplotlib and returns the
`matplotlib.figure.Figure` it drew in. Functions that draw one panel take
``ax=`` (an existing `~matplotlib.axes.Axes`); those that draw a grid of
panels take ``fig=``. Without them a new figure is made with
``matplotlib.pyplot.figure`` (constrained layout), so it shows in notebooks
and with ``plt.show()``; close it with ``plt.close(fig)`` when done.
matplotlib is imported only when a function is called, and the backend is
never changed here.
"""

import os
from collections.abc import Mapping

import numpy as np

__all__ = [
    "plot_retrieval_gallery",
    "plot_reconstructions",
    "plot_loss_history",
    "plot_confusion_matrix",
    "plot_h_similarity_histogram",
    "plot_h_similarity_by_type",
    "plot_latent_map",
    "plot_knn_accuracy",
]


# ----------------------------------------------------------------------
# helpers
def _new_figure(figsize):
    import matplotlib.pyplot as plt

    return plt.figure(figsize=figsize, layout="constrained")


def _figure(fig, figsize):
    """``fig`` checked, or a new figure."""
    from matplotlib.figure import FigureBase

    if fig is None:
        return _new_figure(figsize)
    if not isinstance(fig, FigureBase):
        msg = f"fig must be a matplotlib Figure, not {type(fig).__name__}"
        raise TypeError(msg)
    return fig


def _axes(ax, figsize):
    """(figure, axes): ``ax`` and its figure, or a new figure with one axes."""
    from matplotlib.axes import Axes

    if ax is None:
        fig = _new_figure(figsize)
        return fig, fig.add_subplot()
    if not isinstance(ax, Axes):
        msg = f"ax must be a matplotlib Axes, not {type(ax).__name__}"
        raise TypeError(msg)
    return ax.figure, ax


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        msg = f"{name} must be a positive integer, got {value!r}"
        raise ValueError(msg)
    return int(value)


def _floats(values, name):
    """A 1-D float64 array, masked entries as NaN."""
    try:
        arr = np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)
    except (TypeError, ValueError):
        msg = f"{name} must hold numbers"
        raise TypeError(msg) from None
    return np.asarray(arr)


def _table(obj, name, required, hint):
    """``obj`` as an astropy Table holding the ``required`` columns."""
    from astropy.table import Table

    if not isinstance(obj, Table):
        msg = f"{name} must be an astropy Table ({hint}), not {type(obj).__name__}"
        raise TypeError(msg)
    missing = [c for c in required if c not in obj.colnames]
    if missing:
        msg = (f"{name} lacks the column(s) {', '.join(repr(c) for c in missing)} "
               f"({hint}); it has {obj.colnames}")
        raise ValueError(msg)
    return obj


def _is_database(obj):
    from ..database import LatentDatabase

    return isinstance(obj, LatentDatabase)


def _type_names(types, what="types"):
    """Type names from a scheme, a scheme name or a sequence of names."""
    from ..catalogs import MorphologyScheme, get_scheme

    if isinstance(types, MorphologyScheme):
        return [str(t) for t in types.types]
    if isinstance(types, str):
        return [str(t) for t in get_scheme(types).types]
    try:
        names = [str(t) for t in types]
    except TypeError:
        msg = (f"{what} must be a MorphologyScheme, a scheme name or a sequence of type "
               f"names, not {type(types).__name__}")
        raise TypeError(msg) from None
    if len(set(names)) != len(names):
        msg = f"{what} holds duplicate names: {names}"
        raise ValueError(msg)
    return names


def _type_colours(n):
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n)]
    return [tuple(c) for c in matplotlib.colormaps["turbo"](np.linspace(0.05, 0.95, n))]


def _display_image(image, what):
    """An image ready for ``imshow``: (H, W) or (H, W, 3|4), RGB as uint8 or float in [0, 1]."""
    if not isinstance(image, np.ndarray) and hasattr(image, "image"):  # a GalaxyCutout
        image = image.image
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)  # channels first, as from to_tensor
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))) or 0 in arr.shape:
        msg = (f"{what} must be an (H, W, 3) colour image or an (H, W) array; "
               f"got shape {arr.shape}")
        raise ValueError(msg)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype.kind not in "uif":
        msg = f"{what} must hold numbers, not {arr.dtype}"
        raise TypeError(msg)
    if arr.ndim == 2:
        return arr
    if arr.dtype.kind in "ui":
        if arr.min() < 0 or arr.max() > 255:
            msg = f"{what}: integer colour images must lie in 0..255"
            raise ValueError(msg)
        return arr.astype(np.uint8, copy=False)
    if not np.all(np.isfinite(arr)):
        msg = f"{what} holds NaN or infinite values"
        raise ValueError(msg)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        msg = (f"{what}: floating-point colour images must lie in [0, 1]; this one ranges "
               f"from {lo:g} to {hi:g}")
        raise ValueError(msg)
    return np.clip(arr, 0.0, 1.0)


def _image_panel(ax, image):
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    ax.set_axis_off()


# ----------------------------------------------------------------------
# retrieval gallery (Seo et al. 2023, Fig. 10)
def _gallery_targets(targets):
    if hasattr(targets, "images") and hasattr(targets, "table"):  # a CutoutSet
        targets = targets.images
    if not isinstance(targets, np.ndarray) and hasattr(targets, "image"):  # one GalaxyCutout
        targets = [targets]
    if isinstance(targets, np.ndarray) and targets.ndim in (2, 3):
        targets = [targets]
    try:
        items = list(targets)
    except TypeError:
        msg = (f"targets must be a sequence of GalaxyCutout or of image arrays, not "
               f"{type(targets).__name__}")
        raise TypeError(msg) from None
    if not items:
        msg = "targets is empty"
        raise ValueError(msg)
    return [_display_image(t, f"targets[{i}]") for i, t in enumerate(items)]


def _python_scalars(values):
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _gallery_ids(results, target_ids, n):
    column = (np.asarray(results["target"]).astype(str) if "target" in results.colnames
              else None)
    if target_ids is not None:
        ids = np.asarray(target_ids).reshape(-1)
        if ids.size != n:
            msg = f"target_ids has {ids.size} entries but {n} targets were given"
            raise ValueError(msg)
        ids = _python_scalars(ids)
        if column is None and n > 1:
            msg = ("results has no 'target' column, so it holds the matches of a single "
                   f"target, but {n} targets were given")
            raise ValueError(msg)
        return ids, column
    if column is None:
        if n > 1:
            msg = ("results has no 'target' column, so it holds the matches of a single "
                   f"target, but {n} targets were given")
            raise ValueError(msg)
        return [0], None
    _, first = np.unique(column, return_index=True)
    ids = _python_scalars(np.asarray(results["target"])[np.sort(first)])
    if len(ids) != n:
        msg = (f"results hold the matches of {len(ids)} targets but {n} target images were "
               "given; give target_ids to say which results rows belong to each target")
        raise ValueError(msg)
    return ids, column


def _database_lookup(database_images):
    """A function objid -> image (or None when missing), or None for no images."""
    if database_images is None:
        return None
    if hasattr(database_images, "images") and hasattr(database_images, "table"):  # CutoutSet
        cutouts = database_images
        if "objid" not in cutouts.table.colnames:
            msg = "the CutoutSet of database_images has no 'objid' column to match results with"
            raise ValueError(msg)
        index = {str(o): i for i, o in enumerate(np.asarray(cutouts.table["objid"]))}

        def get(objid):
            i = index.get(str(objid))
            return None if i is None else cutouts.images[i]

        return get
    if isinstance(database_images, Mapping):
        def get(objid):
            key = objid.item() if isinstance(objid, np.generic) else objid
            for candidate in (key, str(key)):
                try:
                    return database_images[candidate]
                except (KeyError, TypeError):
                    continue
            return None

        return get
    msg = (f"database_images must be a mapping objid -> image, a CutoutSet or None, not "
           f"{type(database_images).__name__}")
    raise TypeError(msg)


def plot_retrieval_gallery(targets, results, database_images, *, k=5, target_ids=None,
                           true_types=None, max_targets=None, fig=None):
    """
    Each target beside its most similar database galaxies (Seo et al. 2023, Fig. 10).

    One row per target: the target, then its top ``k`` matches in the order
    of the search results, each titled with its morphology and similarity
    :math:`S_p` (``"Sb  Sp=87.3"``, one decimal). There are as many match
    columns as the longest row needs (at most ``k``).

    Parameters
    ----------
    targets : sequence of `~galmorphsearch.GalaxyCutout` or of arrays, or a CutoutSet
        The target images, in the order of ``target_ids``: cutouts (their
        `~galmorphsearch.GalaxyCutout.image` is shown), (H, W, 3) colour
        arrays (uint8, or float in [0, 1]), (H, W) arrays, or the images of
        a `~galmorphsearch.preprocessing.CutoutSet`.
    results : `~astropy.table.Table`
        The matches, as returned by
        `~galmorphsearch.search.SimilaritySearcher.search` or
        `~galmorphsearch.search.SimilaritySearcher.search_latents`: columns
        ``objid``, ``morphology`` and ``Sp``, ``target`` for a batch of
        targets, and ``rank`` (optional; matches are sorted by it).
    database_images : mapping, `~galmorphsearch.preprocessing.CutoutSet` or None
        The database images: a mapping from ``objid`` (the key itself or
        its `str`) to an image array, or a `~galmorphsearch.preprocessing.CutoutSet`
        whose table has an ``objid`` column. With `None` each match is an
        empty panel with its objid, titled with its type and Sp.
    k : int, optional
        Matches shown per target (fewer when the results hold fewer).
    target_ids : sequence, optional
        The identifier of each target in the ``target`` column of
        ``results`` (compared as strings). Default: the distinct values of
        that column in order of appearance, or ``[0]`` for the results of a
        single target (no ``target`` column).
    true_types : sequence of str, optional
        The known type of each target, shown in its title (empty strings or
        `None` for unknown ones).
    max_targets : int, optional
        Show only the first ``max_targets`` targets.
    fig : `~matplotlib.figure.Figure`, optional
        Figure to draw in; by default a new one of 1.6 x 1.75 inches per
        panel.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
        The figure, with ``n_targets x (k + 1)`` axes (fewer columns when
        no target has ``k`` matches), row by row.

    Raises
    ------
    TypeError
        If ``results`` is not a Table, ``database_images`` is of an
        unsupported kind, or ``fig`` is not a Figure.
    ValueError
        If ``results`` lacks a needed column, the number of targets does not
        match the results or ``target_ids``, a target has no matches, an
        image has a wrong shape or range, or ``database_images`` lacks the
        image of a match.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from astropy.table import Table
    >>> from galmorphsearch.visualization import plot_retrieval_gallery
    >>> rng = np.random.default_rng(0)
    >>> targets = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    >>> results = Table({'target': ['a', 'a', 'b', 'b'], 'rank': [1, 2, 1, 2],
    ...                  'objid': [10, 11, 11, 12], 'morphology': ['Er', 'Ei', 'Ei', 'Sb'],
    ...                  'Sp': [91.3, 80.0, 75.5, 60.0]})
    >>> images = {o: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for o in (10, 11, 12)}
    >>> fig = plot_retrieval_gallery(targets, results, images, k=2, true_types=['Er', 'Sb'])
    >>> len(fig.axes)
    6
    >>> [ax.get_title() for ax in fig.axes[:3]]
    ['target\\na\\ntrue Er', 'Er  Sp=91.3', 'Ei  Sp=80.0']
    >>> plt.close(fig)
    """
    k = _positive_int("k", k)
    results = _table(results, "results", ("objid", "morphology", "Sp"),
                     "as returned by SimilaritySearcher.search or search_latents")
    images = _gallery_targets(targets)
    n = len(images)
    ids, column = _gallery_ids(results, target_ids, n)
    if true_types is not None:
        true_types = ["" if t is None else str(t) for t in true_types]
        if len(true_types) != n:
            msg = f"true_types has {len(true_types)} entries but {n} targets were given"
            raise ValueError(msg)
    n_rows = n if max_targets is None else min(n, _positive_int("max_targets", max_targets))

    matches = []
    for i in range(n_rows):
        rows = results if column is None else results[column == str(ids[i])]
        if len(rows) == 0:
            msg = f"results hold no matches for the target {ids[i]!r}"
            raise ValueError(msg)
        if "rank" in rows.colnames:
            rows = rows[np.argsort(np.asarray(rows["rank"]), kind="stable")]
        matches.append(rows[:k])

    lookup = _database_lookup(database_images)
    db_images = {}
    if lookup is not None:
        missing = []
        for rows in matches:
            for objid in rows["objid"]:
                key = str(objid)
                if key in db_images:
                    continue
                image = lookup(objid)
                if image is None:
                    missing.append(objid)
                else:
                    db_images[key] = _display_image(image, f"the image of objid {objid}")
        if missing:
            shown = ", ".join(str(m) for m in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            msg = f"database_images has no image for the objid(s) {shown}{more}"
            raise ValueError(msg)

    n_cols = max(len(rows) for rows in matches)
    fig = _figure(fig, (1.6 * (n_cols + 1), 1.75 * n_rows))
    axes = fig.subplots(n_rows, n_cols + 1, squeeze=False)
    for row in range(n_rows):
        ax = axes[row, 0]
        _image_panel(ax, images[row])
        title = f"target\n{ids[row]}"
        if true_types is not None and true_types[row]:
            title += f"\ntrue {true_types[row]}"
        ax.set_title(title, fontsize=7, color="tab:blue")
        for col in range(1, n_cols + 1):
            ax = axes[row, col]
            if col > len(matches[row]):
                ax.set_axis_off()
                continue
            match = matches[row][col - 1]
            if lookup is None:
                ax.set_facecolor("0.93")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.5, f"objid\n{match['objid']}", ha="center", va="center",
                        fontsize=7, transform=ax.transAxes)
            else:
                _image_panel(ax, db_images[str(match["objid"])])
            ax.set_title(f"{match['morphology']}  Sp={float(match['Sp']):.1f}", fontsize=7)
    return fig


# ----------------------------------------------------------------------
# autoencoder reconstructions (Fig. 6) and loss curves (Fig. 5)
def _first_images(images, n):
    """The first ``n`` of any image input that `Encoder.encode` accepts."""
    if hasattr(images, "images") and hasattr(images, "table"):  # a CutoutSet
        return images.images[:n]
    if isinstance(images, list | tuple):
        return list(images[:n])
    if hasattr(images, "ndim") and images.ndim == 4:  # arrays and tensors
        return images[:n]
    return images


def _display(image):
    """An (H, W, C) image in [0, 1] as ``imshow`` arguments: colour or grey."""
    if image.shape[-1] >= 3:  # colour, or colour + residual: show the colour
        return (np.clip(image[..., :3], 0, 1),)
    return np.clip(image[..., 0], 0, 1), "gray"


def plot_reconstructions(autoencoder, images, *, n=6, fig=None):
    """
    Images, their autoencoder reconstructions and the residuals (Seo et al. 2023, Fig. 6).

    Three rows of ``n`` panels: the input images (resized to the model's
    ``input_size``, as the model sees them; for an encoder with another
    input mode, what it reconstructs, shown in grey for grey input and as
    the colour part for colour plus residual), their reconstructions,
    titled with the mean squared error of each, and the residual input minus
    reconstruction averaged over the channels, on a diverging
    colour map with limits symmetric about zero shared by all panels, and a
    colour bar. The model runs in eval mode without gradients, on the device
    of its weights; its training mode is restored afterwards.

    Parameters
    ----------
    autoencoder : `~galmorphsearch.model.Autoencoder` or `~galmorphsearch.model.AutoencoderModule`
        The model (a module's ``autoencoder`` is used).
    images : `~galmorphsearch.GalaxyCutout`, list, array or tensor
        Images in any form `~galmorphsearch.model.Encoder.encode` accepts
        (cutouts, (N, H, W, 3) uint8 arrays, (N, 3, H, W) float arrays or
        tensors in [0, 1], file paths, a
        `~galmorphsearch.preprocessing.CutoutSet`); the first ``n`` are
        shown.
    n : int, optional
        Number of images shown.
    fig : `~matplotlib.figure.Figure`, optional
        Figure to draw in; by default a new one.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
        The figure: 3 x n image axes, then the colour bar.

    Raises
    ------
    TypeError
        If ``autoencoder`` is not an `~galmorphsearch.model.Autoencoder`, or
        the images are of an unsupported type.
    ValueError
        If ``n`` is not a positive integer or the images are invalid (as for
        `~galmorphsearch.model.Encoder.encode`).

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from galmorphsearch.model import Autoencoder, Decoder, Encoder
    >>> from galmorphsearch.visualization import plot_reconstructions
    >>> model = Autoencoder(Encoder(input_size=32, latent_dim=8),
    ...                     Decoder(input_size=32, latent_dim=8, channels=(8,), fc_channels=8))
    >>> images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    >>> fig = plot_reconstructions(model, images, n=2)
    >>> len(fig.axes)  # 3 rows of 2 panels and the colour bar
    7
    >>> plt.close(fig)
    """
    import torch

    from ..model import Autoencoder
    from ..model._inputs import to_float
    from ..model.training import _image_tensor

    model = getattr(autoencoder, "autoencoder", autoencoder)
    if not isinstance(model, Autoencoder):
        msg = f"autoencoder must be an Autoencoder, not {type(autoencoder).__name__}"
        raise TypeError(msg)
    n = _positive_int("n", n)
    x = to_float(_image_tensor(_first_images(images, n), model.input_size)[:n])
    param = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            xd = x.to(device=param.device, dtype=param.dtype)
            recon = model(xd)
            # What the autoencoder reconstructs: the colour images, or their
            # grey level / residual channel for other input modes.
            target = model.target(xd)
    finally:
        model.train(was_training)
    inputs = target.float().cpu().permute(0, 2, 3, 1).numpy()
    outputs = recon.float().cpu().permute(0, 2, 3, 1).numpy()
    residual = (inputs - outputs).mean(axis=-1)
    limit = max(float(np.max(np.abs(residual))), 1e-6)
    mse = ((inputs - outputs) ** 2).mean(axis=(1, 2, 3))

    count = len(inputs)
    fig = _figure(fig, (1.6 * count + 1.0, 5.2))
    axes = fig.subplots(3, count, squeeze=False)
    for i in range(count):
        axes[0, i].imshow(*_display(inputs[i]))
        axes[1, i].imshow(*_display(outputs[i]))
        axes[1, i].set_title(f"MSE {mse[i]:.4f}", fontsize=8)
        im = axes[2, i].imshow(residual[i], cmap="RdBu_r", vmin=-limit, vmax=limit)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, label in zip(axes[:, 0], ("input", "reconstruction", "residual"), strict=True):
        ax.set_ylabel(label)
    fig.colorbar(im, ax=list(axes[2]), label="input − reconstruction")
    return fig


def _read_history(history):
    from astropy.table import Table

    if isinstance(history, str | os.PathLike):
        path = os.fspath(history)
        if not os.path.isfile(path):
            msg = f"loss history file {path!r} does not exist"
            raise FileNotFoundError(msg)
        try:
            history = Table.read(path, format="ascii.ecsv")
        except Exception as exc:  # astropy raises many kinds for a bad file
            msg = f"cannot read the loss history {path!r} as ECSV: {exc}"
            raise ValueError(msg) from None
    return _table(history, "history", ("epoch", "train_loss"),
                  "as returned by train_autoencoder or read from loss_history.ecsv")


def plot_loss_history(history, *, ax=None, log=True):
    """
    Training and validation loss per epoch (Seo et al. 2023, Fig. 5).

    Parameters
    ----------
    history : `~astropy.table.Table`, str or path-like
        The loss history returned by
        `~galmorphsearch.model.train_autoencoder` (columns ``epoch``,
        ``train_loss`` and ``val_loss``, which may be NaN), or the path of
        the ``loss_history.ecsv`` file it writes; the histories of
        `~galmorphsearch.model.train_contrastive` and
        `~galmorphsearch.model.train_classifier` too (the axis names their
        loss). A finite ``TESTLOSS`` in its metadata is drawn as a dotted
        horizontal line.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw in; by default a new figure.
    log : bool, optional
        Logarithmic loss axis.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
        The figure of ``ax``, or the new figure.

    Raises
    ------
    TypeError
        If ``history`` is neither a Table nor a path, or ``ax`` is not an Axes.
    ValueError
        If the history lacks ``epoch`` or ``train_loss``, is empty, cannot be
        read, or holds non-positive losses with ``log=True``.
    FileNotFoundError
        If the history file does not exist.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from astropy.table import Table
    >>> from galmorphsearch.visualization import plot_loss_history
    >>> history = Table({'epoch': [0, 1, 2], 'step': [4, 8, 12],
    ...                  'train_loss': [0.09, 0.05, 0.03], 'val_loss': [0.1, 0.06, 0.04]})
    >>> fig = plot_loss_history(history)
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['training', 'validation']
    >>> plt.close(fig)
    """
    from matplotlib.ticker import MaxNLocator

    table = _read_history(history)
    if len(table) == 0:
        msg = "the loss history is empty (no epoch was trained)"
        raise ValueError(msg)
    epoch = _floats(table["epoch"], "epoch")
    train = _floats(table["train_loss"], "train_loss")
    val = (_floats(table["val_loss"], "val_loss") if "val_loss" in table.colnames
           else np.full(len(table), np.nan))
    test = table.meta.get("TESTLOSS")
    try:
        test = float(test)
    except (TypeError, ValueError):
        test = np.nan
    if log:
        values = np.concatenate([train, val, [test]])
        values = values[np.isfinite(values)]
        if np.any(values <= 0):
            msg = "log=True needs positive losses; the history holds zero or negative ones"
            raise ValueError(msg)
    fig, ax = _axes(ax, (5.0, 3.5))
    style = {"marker": "o", "ms": 3} if len(table) <= 30 else {}
    ax.plot(epoch, train, label="training", **style)
    if np.isfinite(val).any():
        ax.plot(epoch, val, label="validation", **style)
    if np.isfinite(test):
        ax.axhline(test, color="0.4", ls=":", label=f"test ({test:.3g})")
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(table) == 1:  # one epoch: no fractional ticks around it
        ax.set_xticks(epoch)
    ax.set_xlabel("epoch")
    ax.set_ylabel(_loss_label(table))
    ax.legend(fontsize=8)
    return fig


def _loss_label(table):
    """What the loss of a history is: from its training method."""
    meta = table.meta
    if meta.get("METHOD") == "contrastive" or "TEMP" in meta:
        return "contrastive loss (InfoNCE)"
    if "CLASSES" in meta or "train_accuracy" in table.colnames:
        return "classification loss (cross-entropy)"
    return "reconstruction loss (MSE)"


# ----------------------------------------------------------------------
# evaluation: confusion matrix (Fig. 12), H-similarity (Figs. 9 and 11)
def _is_percent(matrix):
    """True for a matrix in per cent of each column (columns sum to 100 or are NaN)."""
    columns = [c for c in matrix.T if not np.all(np.isnan(c))]
    return bool(columns) and all(abs(np.nansum(c) - 100.0) < 1e-6 for c in columns)


def _colormap(cmap):
    import matplotlib
    from matplotlib.colors import Colormap

    if isinstance(cmap, str):
        try:
            cmap = matplotlib.colormaps[cmap]
        except KeyError:
            msg = f"unknown colormap {cmap!r}"
            raise ValueError(msg) from None
    if not isinstance(cmap, Colormap):
        msg = f"cmap must be a colormap or its name, not {type(cmap).__name__}"
        raise TypeError(msg)
    return cmap.with_extremes(bad="0.85")


def _summary_title(summary):
    parts = []
    for key, label in (("best_rate", "best"), ("good_rate", "good")):
        value = summary.get(key)
        if value is not None and np.isfinite(value):
            parts.append(f"{label} {100 * value:.1f}%")
    r = summary.get("correlation")
    if r is not None and np.isfinite(r):
        parts.append(f"r = {r:.3f}")
    scheme = summary.get("scheme")
    text = ", ".join(parts)
    if scheme:
        text = f"{scheme}: {text}" if text else str(scheme)
    return text or None


def plot_confusion_matrix(matrix, types=None, *, ax=None, annotate=True, cmap="Blues",
                          title=None):
    """
    A confusion matrix of predicted against true types (Seo et al. 2023, Fig. 12).

    Cell ``[p, t]`` (row ``p``, column ``t``) is drawn at x = true type
    ``t``, y = predicted type ``p``, the first type at the bottom left, so
    that good classifications lie along the rising diagonal. Cells of true
    types without galaxies (NaN columns) are grey.

    Parameters
    ----------
    matrix : array-like, shape (T, T), or dict
        A matrix as from `~galmorphsearch.evaluation.confusion_matrix` (rows
        predicted, columns true), in per cent of each true type or in
        counts; a matrix whose columns each sum to 100 (or are NaN) is taken
        as per cent. Or the ``summary`` dict returned by
        `~galmorphsearch.evaluation.evaluate_retrieval` or
        `~galmorphsearch.evaluation.balanced_vote`: its ``confusion`` and
        ``types`` are used, and its ``scheme``, ``best_rate``,
        ``good_rate`` and ``correlation`` make the default title.
    types : sequence of str, str or `~galmorphsearch.catalogs.MorphologyScheme`, optional
        The type names along both axes (a scheme or scheme name gives its
        types); by default those of the summary, else 0 .. T-1.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw in; by default a new figure.
    annotate : bool, optional
        Write the value of every non-zero cell in it (per cent to the
        nearest unit, or counts).
    cmap : str or `~matplotlib.colors.Colormap`, optional
        Colour map of the cells.
    title : str, optional
        Title; by default the rates of a summary, or none.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
        The figure of ``ax``, or the new figure (the matrix axes and its
        colour bar).

    Raises
    ------
    TypeError
        If ``matrix`` does not hold numbers, ``cmap`` is not a colour map, or
        ``ax`` is not an Axes.
    ValueError
        If ``matrix`` is not square, holds negative values, or a summary
        lacks ``confusion``; if ``types`` does not have one name per row;
        for an unknown colour map.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from galmorphsearch.evaluation import confusion_matrix
    >>> from galmorphsearch.visualization import plot_confusion_matrix
    >>> m = confusion_matrix(['E', 'E', 'S', 'S'], ['E', 'S', 'S', 'S'], ['E', 'S', 'Irr'])
    >>> fig = plot_confusion_matrix(m, ['E', 'S', 'Irr'])
    >>> [text.get_text() for text in fig.axes[0].texts]
    ['50', '50', '100']
    >>> plt.close(fig)
    """
    summary = None
    if isinstance(matrix, Mapping):
        if "confusion" not in matrix:
            msg = ("a summary dict must hold 'confusion' (the summary of evaluate_retrieval "
                   f"or balanced_vote); it has {sorted(matrix)}")
            raise ValueError(msg)
        summary = matrix
        matrix = summary["confusion"]
        if types is None:
            types = summary.get("types")
    try:
        m = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        msg = "matrix must be a square array of numbers"
        raise TypeError(msg) from None
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        msg = f"matrix must be a square (T, T) array; got shape {m.shape}"
        raise ValueError(msg)
    if np.any(m < 0):
        msg = "matrix holds negative values; give per cent or counts"
        raise ValueError(msg)
    n_types = m.shape[0]
    names = [str(i) for i in range(n_types)] if types is None else _type_names(types)
    if len(names) != n_types:
        msg = f"types has {len(names)} names but the matrix is {n_types} x {n_types}"
        raise ValueError(msg)
    cmap = _colormap(cmap)
    percent = _is_percent(m)
    finite = m[np.isfinite(m)]
    vmax = 100.0 if percent else max(float(finite.max()) if finite.size else 1.0, 1.0)

    size = max(4.0, 0.42 * n_types + 2.2)
    fig, ax = _axes(ax, (size + 1.0, size))
    image = ax.imshow(m, origin="lower", cmap=cmap, vmin=0.0, vmax=vmax,
                      interpolation="nearest")
    ticks = np.arange(n_types)
    ax.set_xticks(ticks, labels=names, rotation=45 if n_types > 4 else 0,
                  ha="right" if n_types > 4 else "center", rotation_mode="anchor")
    ax.set_yticks(ticks, labels=names)
    ax.set_xlabel("true type")
    ax.set_ylabel("predicted type")
    if annotate:
        fontsize = 8 if n_types <= 12 else 6
        for p, t in zip(*np.nonzero(np.isfinite(m) & (m != 0)), strict=True):
            value = m[p, t]
            if percent:
                text = f"{value:.0f}" if round(value) >= 1 else f"{value:.1g}"
            else:
                text = f"{value:g}"
            ax.text(t, p, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if value > 0.6 * vmax else "black")
    fig.colorbar(image, ax=ax, label="per cent of the true type" if percent else "galaxies")
    if title is None and summary is not None:
        title = _summary_title(summary)
    if title:
        ax.set_title(title)
    return fig


def _h_samples(databases, labels):
    """[(label, finite values, mean, std)] of one or more H-similarity samples."""
    single = _is_database(databases) or not isinstance(databases, list | tuple)
    if not single and databases and all(np.ndim(d) == 0 and not _is_database(d)
                                        for d in databases):
        single = True  # a list of numbers: one sample
    items = [databases] if single else list(databases)
    if not items:
        msg = "databases is empty"
        raise ValueError(msg)
    if labels is not None:
        labels = [labels] if isinstance(labels, str) else [str(label) for label in labels]
        if len(labels) != len(items):
            msg = f"labels has {len(labels)} entries but {len(items)} samples were given"
            raise ValueError(msg)
    samples = []
    for i, item in enumerate(items):
        what = "databases" if single else f"databases[{i}]"
        if _is_database(item):
            values = item.h_similarity
            mean, std = item.h_similarity_mean, item.h_similarity_std
            catalogs = (sorted(set(np.asarray(item.table["catalog"]).astype(str).tolist()))
                        if "catalog" in item.table.colnames else [])
            default = ", ".join(catalogs) if catalogs else f"database {i + 1}"
        else:
            try:
                values = np.ma.filled(np.ma.asarray(item, dtype=np.float64), np.nan)
            except (TypeError, ValueError):
                msg = (f"{what} must be a LatentDatabase or an array of H-similarity values, "
                       f"not {type(item).__name__}")
                raise TypeError(msg) from None
            values = np.asarray(values)
            if values.ndim != 1:
                msg = f"{what} must be one-dimensional; got shape {values.shape}"
                raise ValueError(msg)
            mean = std = np.nan
            default = f"sample {i + 1}"
        values = values[np.isfinite(values)]
        if values.size == 0:
            msg = f"{what} holds no finite H-similarity value"
            raise ValueError(msg)
        if not (np.isfinite(mean) and np.isfinite(std)):
            mean, std = float(np.mean(values)), float(np.std(values))
        label = labels[i] if labels is not None else (None if single else default)
        samples.append((label, values, mean, std))
    return samples


def plot_h_similarity_histogram(databases, *, labels=None, bins=30, ax=None,
                                show_threshold=True):
    """
    Histograms of the H-similarity of database galaxies (Seo et al. 2023, Fig. 9).

    The H-similarity of a database galaxy is its highest :math:`S_p`
    against the other galaxies. For each sample the histogram is drawn with
    its mean (solid vertical line) and the "no similar galaxy" threshold
    mean - 1 standard deviation (dashed): a target whose H-similarity falls
    below it has no similar galaxy in the database. NaN values (undefined
    H-similarity) are left out. Several samples share the same bins.

    Parameters
    ----------
    databases : `~galmorphsearch.database.LatentDatabase`, array-like, or a list of them
        A database (its ``h_similarity``, and its ``HSIMMEAN`` and
        ``HSIMSTD`` for the lines), a 1-D array of H-similarity values (per
        cent; the population mean and standard deviation of its finite
        values are used), or a list of either.
    labels : str or sequence of str, optional
        One legend label per sample; by default the catalog names of a
        database, or ``"sample 1"``, ... for several arrays.
    bins : int, sequence or str, optional
        Bins, as for `numpy.histogram_bin_edges`, over all samples together.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw in; by default a new figure.
    show_threshold : bool, optional
        Draw the threshold line.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
        The figure of ``ax``, or the new figure.

    Raises
    ------
    TypeError
        If a sample is neither a database nor numbers, or ``ax`` is not an
        Axes.
    ValueError
        If a sample is not 1-D or has no finite value, ``labels`` does not
        have one entry per sample, or ``bins`` is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from galmorphsearch.visualization import plot_h_similarity_histogram
    >>> values = np.array([70.0, 75.0, 80.0, 85.0, 90.0, np.nan])
    >>> fig = plot_h_similarity_histogram(values, bins=5)
    >>> [round(float(line.get_xdata()[0]), 2) for line in fig.axes[0].get_lines()]
    [80.0, 72.93]
    >>> plt.close(fig)
    """
    samples = _h_samples(databases, labels)
    every = np.concatenate([values for _, values, _, _ in samples])
    try:
        edges = np.histogram_bin_edges(every, bins=bins)
    except (TypeError, ValueError) as exc:
        msg = f"invalid bins {bins!r}: {exc}"
        raise ValueError(msg) from None
    fig, ax = _axes(ax, (5.5, 3.8))
    one = len(samples) == 1
    colours = _type_colours(len(samples))
    for (label, values, mean, std), colour in zip(samples, colours, strict=True):
        counts, _ = np.histogram(values, bins=edges)
        prefix = f"{label}: " if label and not one else ""
        ax.stairs(counts, edges, fill=one, alpha=0.55 if one else 1.0, color=colour,
                  lw=1.5, label=f"{label or 'H-similarity'} ({values.size} galaxies)")
        ax.axvline(mean, color="black" if one else colour, lw=1.5,
                   label=f"{prefix}mean {mean:.1f}")
        if show_threshold:
            ax.axvline(mean - std, color="black" if one else colour, lw=1.5, ls="--",
                       label=f"{prefix}no similar galaxy below {mean - std:.1f} (mean − 1σ)")
    ax.set_xlabel("H-similarity (per cent)")
    ax.set_ylabel("galaxies")
    ax.legend(fontsize=7)
    return fig


def plot_h_similarity_by_type(stats, *, ax=None):
    """
    Mean H-similarity of each type with its standard deviation (Seo et al. 2023, Fig. 11).

    One point per type, in the order of the table, with error bars of one
    standard deviation; the row ``'all'`` (``type_index`` -1) is drawn as a
    horizontal line at the mean of all galaxies in a band of one standard
    deviation, whose lower edge is the "no similar galaxy" threshold.

    Parameters
    ----------
    stats : `~astropy.table.Table` or `~galmorphsearch.database.LatentDatabase`
        The table of `~galmorphsearch.evaluation.h_similarity_statistics`
        (columns ``type``, ``mean``, ``std``, and ``type_index``, -1 for the
        row of all galaxies), or a database to compute it from.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw in; by default a new figure.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
        The figure of ``ax``, or the new figure.

    Raises
    ------
    TypeError
        If ``stats`` is neither a Table nor a database, or ``ax`` is not an
        Axes.
    ValueError
        If the table lacks a needed column or has no row of a type.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from astropy.table import Table
    >>> from galmorphsearch.visualization import plot_h_similarity_by_type
    >>> stats = Table({'type': ['Er', 'Sb', 'all'], 'type_index': [0, 5, -1],
    ...                'n': [10, 12, 22], 'mean': [80.0, 70.0, 74.5],
    ...                'std': [3.0, 5.0, 6.4]})
    >>> fig = plot_h_similarity_by_type(stats)
    >>> [label.get_text() for label in fig.axes[0].get_xticklabels()]
    ['Er', 'Sb']
    >>> plt.close(fig)
    """
    if _is_database(stats):
        from ..evaluation import h_similarity_statistics

        stats = h_similarity_statistics(stats)
    stats = _table(stats, "stats", ("type", "mean", "std"),
                   "as returned by h_similarity_statistics")
    names = np.asarray(stats["type"]).astype(str)
    if "type_index" in stats.colnames:
        is_all = np.asarray(stats["type_index"]) == -1
    else:
        is_all = names == "all"
    mean = _floats(stats["mean"], "mean")
    std = _floats(stats["std"], "std")
    typed = np.flatnonzero(~is_all)
    if typed.size == 0:
        msg = "stats has no row of a type (only the row of all galaxies)"
        raise ValueError(msg)
    fig, ax = _axes(ax, (max(4.0, 0.45 * typed.size + 2.0), 3.8))
    x = np.arange(typed.size)
    if np.any(is_all):
        row = np.flatnonzero(is_all)[0]
        m, s = mean[row], std[row]
        ax.axhspan(m - s, m + s, color="0.5", alpha=0.15, lw=0)
        ax.axhline(m, color="0.3", lw=1.2, label=f"all galaxies: {m:.1f} ± {s:.1f}")
    ax.errorbar(x, mean[typed], yerr=std[typed], fmt="o", color="tab:blue", capsize=3,
                label="mean ± 1σ of each type")
    rotate = typed.size > 6
    ax.set_xticks(x, labels=list(names[typed]), rotation=45 if rotate else 0,
                  ha="right" if rotate else "center", rotation_mode="anchor")
    ax.set_xlim(-0.6, typed.size - 0.4)
    ax.set_xlabel("type")
    ax.set_ylabel("H-similarity (per cent)")
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------------------------
# related methods: latent maps and k-NN accuracy
def _outlier_rows(outliers, n):
    from astropy.table import Table

    if isinstance(outliers, Table):
        if "id" not in outliers.colnames:
            msg = "an outliers Table must have the 'id' column of label_outliers"
            raise ValueError(msg)
        outliers = outliers["id"]
    arr = np.asarray(outliers)
    if arr.ndim != 1:
        msg = f"outliers must be a 1-D mask or index array; got shape {arr.shape}"
        raise ValueError(msg)
    if arr.dtype.kind == "b":
        if arr.size != n:
            msg = f"the outliers mask has {arr.size} entries but there are {n} points"
            raise ValueError(msg)
        return np.flatnonzero(arr)
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        msg = ("outliers must be a boolean mask or integer row indices (label_outliers run "
               f"without ids), not {arr.dtype}")
        raise TypeError(msg)
    if arr.min() < -n or arr.max() >= n:
        msg = f"outliers holds row indices outside 0..{n - 1}"
        raise ValueError(msg)
    return np.unique(arr % n)


def plot_latent_map(coordinates, labels, *, ax=None, outliers=None, types=None, title=None,
                    s=8):
    """
    A two-dimensional map of the latent space, coloured by type.

    Parameters
    ----------
    coordinates : array-like, shape (N, 2)
        Map coordinates, e.g. from `~galmorphsearch.evaluation.latent_map`.
    labels : array-like, shape (N,)
        The type of each point.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw in; by default a new figure.
    outliers : array-like or `~astropy.table.Table`, optional
        Points to circle in black: a boolean mask of length N, row indices,
        or the table of `~galmorphsearch.evaluation.label_outliers` made
        without ``ids`` (its ``id`` column holds row numbers).
    types : sequence of str, str or `~galmorphsearch.catalogs.MorphologyScheme`, optional
        The order of the types in the legend and their colours; by default
        the sorted distinct labels. Types without points are left out of
        the legend.
    title : str, optional
        Title of the axes.
    s : float, optional
        Marker size (points squared).

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
        The figure of ``ax``, or the new figure.

    Raises
    ------
    TypeError
        If ``coordinates`` do not hold numbers, ``outliers`` are neither a
        mask nor integers, or ``ax`` is not an Axes.
    ValueError
        If ``coordinates`` are not (N, 2) or not finite, ``labels`` or the
        outlier mask do not have N entries, an outlier index is out of
        range, or a label is not among ``types``.

    Examples
    --------
    >>> import numpy as np
    >>> import matplotlib.pyplot as plt
    >>> from galmorphsearch.visualization import plot_latent_map
    >>> xy = np.array([[0.0, 0.0], [0.1, 0.2], [5.0, 5.0], [5.2, 4.9]])
    >>> fig = plot_latent_map(xy, ['Sb', 'Er', 'Sb', 'Sb'], types=['Er', 'Sb'], outliers=[0])
    >>> [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    ['Er (1)', 'Sb (3)', 'label outliers (1)']
    >>> plt.close(fig)
    """
    try:
        xy = np.asarray(coordinates, dtype=np.float64)
    except (TypeError, ValueError):
        msg = "coordinates must be an (N, 2) array of numbers"
        raise TypeError(msg) from None
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] == 0:
        msg = f"coordinates must be an (N, 2) array; got shape {xy.shape}"
        raise ValueError(msg)
    if not np.all(np.isfinite(xy)):
        msg = "coordinates hold NaN or infinite values"
        raise ValueError(msg)
    n = len(xy)
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.size != n:
        msg = f"labels must have one entry per point ({n}); got shape {lab.shape}"
        raise ValueError(msg)
    lab = lab.astype(str)
    present = sorted(set(lab.tolist()))
    order = present if types is None else _type_names(types)
    unknown = sorted(set(present) - set(order))
    if unknown:
        msg = f"labels hold type(s) {unknown[:5]} that are not in types {order}"
        raise ValueError(msg)
    rows = None if outliers is None else _outlier_rows(outliers, n)

    fig, ax = _axes(ax, (5.5, 4.5))
    for name, colour in zip(order, _type_colours(len(order)), strict=True):
        members = lab == name
        if members.any():
            ax.scatter(xy[members, 0], xy[members, 1], s=s, color=colour, lw=0,
                       label=f"{name} ({int(members.sum())})")
    if rows is not None and rows.size:
        ax.scatter(xy[rows, 0], xy[rows, 1], s=6 * s, facecolors="none", edgecolors="black",
                   lw=0.8, label=f"label outliers ({rows.size})")
    ax.set_xlabel("map coordinate 1")
    ax.set_ylabel("map coordinate 2")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, markerscale=max(1.0, 20.0 / max(s, 1e-3)) ** 0.5,
              loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def plot_knn_accuracy(table, *, ax=None, label=None):
    """
    k-nearest-neighbour classification accuracy against k.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The table of `~galmorphsearch.evaluation.knn_accuracy` (columns
        ``k``, ``accuracy`` and, optionally, ``balanced_accuracy``, as
        fractions); drawn in per cent.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw in; by default a new figure.
    label : str, optional
        Name of the encoder (or features) measured, for comparing several
        on one axes: the lines are labelled ``label`` and ``label
        (balanced)``; by default ``accuracy`` and ``balanced accuracy``.

    Returns
    -------
    fig : `~matplotlib.figure.Figure`
        The figure of ``ax``, or the new figure.

    Raises
    ------
    TypeError
        If ``table`` is not a Table or ``ax`` is not an Axes.
    ValueError
        If the table lacks ``k`` or ``accuracy`` or is empty.

    Examples
    --------
    >>> import matplotlib.pyplot as plt
    >>> from astropy.table import Table
    >>> from galmorphsearch.visualization import plot_knn_accuracy
    >>> t = Table({'k': [1, 5, 10], 'accuracy': [0.8, 0.85, 0.83],
    ...            'balanced_accuracy': [0.7, 0.72, 0.7]})
    >>> fig = plot_knn_accuracy(t)
    >>> fig.axes[0].get_lines()[0].get_ydata().tolist()
    [80.0, 85.0, 83.0]
    >>> plt.close(fig)
    """
    table = _table(table, "table", ("k", "accuracy"), "as returned by knn_accuracy")
    if len(table) == 0:
        msg = "the k-NN table is empty"
        raise ValueError(msg)
    k = _floats(table["k"], "k")
    fig, ax = _axes(ax, (4.5, 3.4))
    names = (("accuracy", "balanced accuracy") if label is None
             else (str(label), f"{label} (balanced)"))
    line = ax.plot(k, 100.0 * _floats(table["accuracy"], "accuracy"), marker="o",
                   label=names[0])[0]
    if "balanced_accuracy" in table.colnames:
        ax.plot(k, 100.0 * _floats(table["balanced_accuracy"], "balanced_accuracy"),
                marker="s", ls="--", label=names[1], color=line.get_color())
    meta = table.meta
    if meta.get("leave_one_out"):
        ax.set_title(f"leave-one-out, {meta.get('n_test', len(table))} galaxies", fontsize=9)
    elif "n_test" in meta:
        ax.set_title(f"{meta['n_test']} test galaxies", fontsize=9)
    ax.set_xlabel("k (neighbours)")
    ax.set_ylabel("accuracy (per cent)")
    ax.legend(fontsize=8)
    return fig
