# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
A self-contained static HTML report of a similarity search.

One file holds everything: thumbnails and figures are embedded as base64 PNG
data URIs, and the style sheet and the small filtering script are inline, so
the page works offline, from ``file://``, and can be mailed or archived as is.
A Content-Security-Policy in the page forbids loading anything from elsewhere.
"""

import base64
import datetime
import html
import io
import numbers
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = ["make_report", "write_report"]

# Images wider or taller than this are reduced (Lanczos) before embedding, so
# that a report of many 256-px cutouts stays a few megabytes.
_THUMBNAIL_MAX = 128

_RESULT_COLUMNS = ("rank", "objid", "morphology", "Sp")
_CLASSIFICATION_COLUMNS = ("target", "predicted_morphology", "H_similarity", "no_similar")
_SUFFIXES = (".html", ".htm")
# Summary entries of evaluate_retrieval shown by make_report, with their labels
# (those ending in "rate" are shown as percentages).
_EVALUATION_LABELS = (
    ("n", "targets (MC)"), ("n_md", "database galaxies (MD)"), ("best_rate", "best rate"),
    ("good_rate", "good rate"), ("width", "good: within this many types"),
    ("miss_rate", "miss rate"), ("correlation", "type correlation r"),
    ("no_similar_rate", "no-similar-galaxy rate"),
    ("h_similarity_threshold", "no-similar-galaxy threshold"),
)
# Provenance keywords of search results and databases, in display order.
_META_LABELS = (
    ("ENCODER", "encoder"), ("ENCARCH", "encoder architecture"),
    ("ENCHASH", "encoder weights hash"), ("INSIZE", "encoder input size (px)"),
    ("LATDIM", "latent dimensions"), ("SCHEME", "morphology scheme"),
    ("CATALOG", "catalog"), ("NROWS", "database galaxies"),
    ("HSIMMEAN", "database H-similarity mean"), ("HSIMSTD", "database H-similarity std"),
    ("HSIMTHR", "no-similar-galaxy threshold (H-similarity)"), ("K", "matches per target"),
    ("BACKEND", "search backend"), ("DATE", "database built"),
    ("GMSVERS", "database built with galmorphsearch"),
)

_CSS = """
:root { --thumb: 96px; --fg: #1d2430; --muted: #5b6575; --line: #d5dae1;
        --card: #ffffff; --bg: #f3f5f8; --bad: #b3261e; --ok: #1e6b35; }
* { box-sizing: border-box; }
body { margin: 0; padding: 1.2rem 1.6rem 3rem; font: 14px/1.45 system-ui, -apple-system,
       "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: var(--fg); background: var(--bg); }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; }
h2 { font-size: 1.2rem; margin: 1.8rem 0 .6rem; border-bottom: 1px solid var(--line);
     padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 0 0 .3rem; word-break: break-all; }
.muted { color: var(--muted); }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem;
          margin: .6rem 0 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace;
             word-break: break-all; }
table.summary { border-collapse: collapse; background: var(--card); }
table.summary th, table.summary td { border: 1px solid var(--line); padding: .25rem .7rem;
                                     text-align: left; }
table.summary td { font-variant-numeric: tabular-nums; }
.controls { display: flex; flex-wrap: wrap; gap: .6rem 1.4rem; align-items: center;
            margin: 0 0 .8rem; }
.controls input[type=search] { padding: .25rem .4rem; min-width: 14rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 44rem), 1fr));
         gap: .9rem; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 6px;
        padding: .7rem; display: flex; gap: .9rem; align-items: flex-start; }
.card[hidden] { display: none; }
.card.miss { border-left: 4px solid var(--bad); }
.card .target { flex: 0 0 auto; width: calc(var(--thumb) + 5rem); }
.card .facts { margin: .3rem 0 0; font-size: .85rem; }
.card .facts div { display: flex; justify-content: space-between; gap: .4rem; }
.card .facts span:first-child { color: var(--muted); }
img.thumb, .noimage { width: var(--thumb); height: var(--thumb); display: block;
                      image-rendering: pixelated; border-radius: 3px; background: #000; }
.noimage { background: #e6e9ee; color: var(--muted); font-size: .75rem; display: flex;
           align-items: center; justify-content: center; text-align: center; }
.flag { display: inline-block; margin-top: .35rem; padding: .05rem .4rem; border-radius: 3px;
        font-size: .75rem; background: #fde7e4; color: var(--bad); }
.flag.good { background: #e3f3e7; color: var(--ok); }
ol.matches { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap;
             gap: .5rem; }
ol.matches li { width: var(--thumb); font-size: .75rem; line-height: 1.25; }
ol.matches .type { font-weight: 600; }
ol.matches .objid { color: var(--muted); word-break: break-all; }
.nomatch { color: var(--muted); font-style: italic; }
figure { display: inline-block; margin: 0 1rem 1rem 0; background: var(--card);
         border: 1px solid var(--line); padding: .5rem; vertical-align: top; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: var(--muted); margin-top: .3rem; }
footer { margin-top: 2rem; color: var(--muted); font-size: .8rem; }
"""

# Filtering of the cards and the image-load check used by the browser test:
# on load, body[data-images-loaded] is the number of decoded <img> elements
# and body[data-images-total] the number of <img> elements.
_JS = """
(function () {
  "use strict";
  function applyFilter() {
    var text = document.getElementById("filter-id");
    var type = document.getElementById("filter-type");
    var miss = document.getElementById("filter-miss");
    var needle = text ? text.value.trim().toLowerCase() : "";
    var wanted = type ? type.value : "";
    var onlyMiss = miss ? miss.checked : false;
    var cards = document.querySelectorAll("article.card");
    var shown = 0;
    for (var i = 0; i < cards.length; i++) {
      var card = cards[i];
      var ok = (!needle || card.getAttribute("data-id").indexOf(needle) !== -1)
        && (!wanted || card.getAttribute("data-type") === wanted)
        && (!onlyMiss || card.getAttribute("data-miss") === "1");
      card.hidden = !ok;
      if (ok) { shown++; }
    }
    var count = document.getElementById("shown");
    if (count) { count.textContent = String(shown); }
  }
  function countImages() {
    var images = document.images;
    var loaded = 0;
    for (var i = 0; i < images.length; i++) {
      if (images[i].complete && images[i].naturalWidth > 0) { loaded++; }
    }
    document.body.setAttribute("data-images-loaded", String(loaded));
    document.body.setAttribute("data-images-total", String(images.length));
  }
  document.addEventListener("DOMContentLoaded", function () {
    ["filter-id", "filter-type", "filter-miss"].forEach(function (name) {
      var element = document.getElementById(name);
      if (element) {
        element.addEventListener("input", applyFilter);
        element.addEventListener("change", applyFilter);
      }
    });
    applyFilter();
  });
  window.addEventListener("load", countImages);
})();
"""

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")


def _esc(value):
    """HTML-escape anything (quotes too, so it is safe in attributes)."""
    return html.escape(str(value), quote=True)


def _is_missing(value):
    return value is None or value is np.ma.masked or (
        isinstance(value, float | np.floating) and not np.isfinite(value))


def _key(value):
    """The identity of an id for matching: its string, bytes decoded."""
    if isinstance(value, bytes | np.bytes_):
        value = value.decode("utf-8", "replace")
    return str(value).strip()


# ----------------------------------------------------------------------
# Images
def _as_uint8_image(image, what):
    """An (H, W, 3|4) or (H, W) uint8 array from an image-like."""
    array = np.asarray(getattr(image, "image", image))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)) \
            or 0 in array.shape:
        msg = (f"{what} must be an image array of shape (H, W, 3), (H, W, 4) or (H, W); "
               f"got shape {array.shape}")
        raise ValueError(msg)
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if not np.issubdtype(array.dtype, np.number):
        msg = f"{what} must be a numeric image array, not {array.dtype}"
        raise TypeError(msg)
    values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if np.issubdtype(array.dtype, np.floating) and values.max(initial=0.0) <= 1.0:
        values = values * 255.0  # floats in [0, 1], as matplotlib takes them
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _png_uri(data):
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _image_uri(image, what):
    """A PNG data URI of an image array, reduced to at most _THUMBNAIL_MAX px."""
    from PIL import Image

    pil = Image.fromarray(_as_uint8_image(image, what))
    if max(pil.size) > _THUMBNAIL_MAX:
        pil.thumbnail((_THUMBNAIL_MAX, _THUMBNAIL_MAX), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=True)
    return _png_uri(buffer.getvalue())


def _figure_uri(figure, caption):
    """A PNG data URI of a matplotlib Figure or of a PNG file."""
    if hasattr(figure, "savefig"):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return _png_uri(buffer.getvalue())
    if isinstance(figure, str | Path):
        path = Path(figure)
        if not path.is_file():
            msg = f"the figure {caption!r} names {path}, which is not a file"
            raise ValueError(msg)
        data = path.read_bytes()
        if not data.startswith(b"\x89PNG\r\n\x1a\n"):
            msg = f"the figure {caption!r} file {path} is not a PNG image"
            raise ValueError(msg)
        return _png_uri(data)
    msg = (f"the figure {caption!r} must be a matplotlib Figure or the path of a PNG file, "
           f"not {type(figure).__name__}")
    raise TypeError(msg)


# ----------------------------------------------------------------------
# Inputs
def _target_images(targets):
    """The target images and default ids (or None) from the accepted forms."""
    table = getattr(targets, "table", None)
    if table is not None and hasattr(targets, "images"):  # a CutoutSet
        ids = ([_key(v) for v in table["objid"]] if "objid" in table.colnames else None)
        return list(np.asarray(targets.images)), ids
    if hasattr(targets, "image"):  # one GalaxyCutout
        return [targets.image], None
    if isinstance(targets, np.ndarray):
        if targets.ndim == 4:
            return list(targets), None
        if targets.ndim in (2, 3):
            return [targets], None
        msg = f"targets as an array must be one image or a stack (N, H, W, 3); got {targets.shape}"
        raise ValueError(msg)
    if isinstance(targets, str | bytes | Mapping) or not hasattr(targets, "__iter__"):
        msg = ("targets must be GalaxyCutout objects, image arrays or a CutoutSet, "
               f"not {type(targets).__name__}")
        raise TypeError(msg)
    images = list(targets)
    if not images:
        msg = "no targets given"
        raise ValueError(msg)
    return [getattr(t, "image", t) for t in images], None


def _check_table(table, required, name):
    colnames = getattr(table, "colnames", None)
    if colnames is None:
        msg = f"{name} must be an astropy Table, not {type(table).__name__}"
        raise TypeError(msg)
    missing = [c for c in required if c not in colnames]
    if missing:
        msg = (f"{name} lacks the column(s) {', '.join(missing)} "
               f"(it has {', '.join(colnames) or 'none'})")
        raise ValueError(msg)


def _database_lookup(database_images):
    """A function objid -> image or None."""
    if database_images is None:
        return lambda objid: None
    table = getattr(database_images, "table", None)
    if table is not None and hasattr(database_images, "images"):  # a CutoutSet
        if "objid" not in table.colnames:
            msg = "database_images is a cutout set without an objid column"
            raise ValueError(msg)
        rows = {_key(v): i for i, v in enumerate(table["objid"])}
        images = database_images.images
        return lambda objid: images[rows[objid]] if objid in rows else None
    if isinstance(database_images, Mapping):
        mapping = {_key(k): v for k, v in database_images.items()}
        return mapping.get
    msg = ("database_images must be a mapping objid -> image array or a CutoutSet, "
           f"not {type(database_images).__name__}")
    raise TypeError(msg)


def _true_types(true_types, ids):
    if true_types is None:
        return [None] * len(ids)
    if isinstance(true_types, Mapping):
        lookup = {_key(k): v for k, v in true_types.items()}
        values = [lookup.get(i) for i in ids]
    else:
        if isinstance(true_types, str):
            true_types = [true_types]
        values = list(true_types)
        if len(values) != len(ids):
            msg = f"true_types has {len(values)} entries for {len(ids)} targets"
            raise ValueError(msg)
    return [None if _is_missing(v) or _key(v) == "" else _key(v) for v in values]


def _is_scalar(value):
    return isinstance(value, str | bool | numbers.Number | np.generic) and np.ndim(value) == 0


def _format_value(key, value):
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value)}"
    if isinstance(value, numbers.Real):
        value = float(value)
        if not np.isfinite(value):
            return "n/a"
        if str(key).endswith("_rate") or str(key).endswith(" rate"):
            return f"{value:.1%}"
        return f"{value:.4g}"
    return str(value)


def _format_number(value, fmt="{:.2f}"):
    if _is_missing(value):
        return "n/a"
    try:
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def _as_bool(value):
    if _is_missing(value):
        return False
    if isinstance(value, str | np.str_):
        return value.strip().lower() in ("true", "t", "1", "yes")
    return bool(value)


# ----------------------------------------------------------------------
# HTML pieces
def _img(uri, alt):
    return f'<img class="thumb" src="{uri}" alt="{_esc(alt)}" width="96" height="96">'


def _noimage(text="no image"):
    return f'<div class="noimage">{_esc(text)}</div>'


def _meta_html(metas):
    merged = {}
    for meta in metas:
        for key, value in (meta or {}).items():
            if isinstance(key, str) and _is_scalar(value):
                merged.setdefault(key.upper(), value)
    rows = []
    for key, label in _META_LABELS:
        if key in merged and not _is_missing(merged[key]) and str(merged[key]) != "":
            value = merged[key]
            text = (_format_number(value, "{:.3f}") if key.startswith("HSIM")
                    else _format_value(key, value))
            rows.append(f"<dt>{_esc(label)}</dt><dd>{_esc(text)}</dd>")
    if not rows:
        return ""
    return '<dl class="meta">' + "".join(rows) + "</dl>"


def _summary_html(summary):
    if summary is None:
        return ""
    if not isinstance(summary, Mapping):
        msg = f"summary must be a dict, not {type(summary).__name__}"
        raise TypeError(msg)
    rows = [f"<tr><th>{_esc(key)}</th><td>{_esc(_format_value(key, value))}</td></tr>"
            for key, value in summary.items() if _is_scalar(value)]
    if not rows:
        return ""
    return ('<section id="summary"><h2>Summary</h2><table class="summary"><tbody>'
            + "".join(rows) + "</tbody></table></section>")


def write_report(path, results, targets, *, database_images=None, classification=None,
                 target_ids=None, true_types=None, figures=None, summary=None,
                 title="galmorphsearch report", k=None, overwrite=False):
    """
    Write a self-contained static HTML report of a similarity search.

    The page has a header with the title and the provenance of the search
    (encoder, weights hash, scheme, threshold, from the ``meta`` of
    ``results`` and ``classification``), a table of the ``summary``
    numbers, one card per target (its thumbnail and id, the predicted type,
    H-similarity and "no similar galaxy" flag, the true type when known,
    and its most similar database galaxies with their thumbnails, types and
    similarities Sp), and an evaluation section with the ``figures``.
    A small inline script filters the cards by target id, predicted type
    and, when true types are given, misclassification.

    Everything is in the one file: images are base64 PNG data URIs (reduced
    to at most 128 pixels a side), style and script are inline, and a
    Content-Security-Policy forbids loading anything else, so the page
    works offline and from ``file://``. Every string from the data is
    HTML-escaped.

    Parameters
    ----------
    path : str or path-like
        Output file, ending in ``.html`` or ``.htm``. It is written to a
        temporary name and renamed into place.
    results : `~astropy.table.Table`
        Search results as from
        `~galmorphsearch.search.SimilaritySearcher.search_latents`:
        ``rank``, ``objid``, ``morphology`` and ``Sp`` columns, and a
        ``target`` column unless there is a single target.
    targets : list, `~numpy.ndarray` or `~galmorphsearch.preprocessing.CutoutSet`
        The target galaxies, in the order of ``target_ids``: a list of
        `~galmorphsearch.GalaxyCutout` (their ``image``) or of ``(H, W, 3)``
        arrays (uint8, or floats in [0, 1]), one cutout or array, an
        ``(N, H, W, 3)`` stack, or a cutout set (whose ``objid`` column
        gives the default ids).
    database_images : mapping or `~galmorphsearch.preprocessing.CutoutSet`, optional
        Images of the database galaxies: a mapping ``objid -> (H, W, 3)``
        array, or a cutout set with an ``objid`` column. Matches without an
        image get a text-only cell; without ``database_images`` all do.
    classification : `~astropy.table.Table`, optional
        One row per target as from
        `~galmorphsearch.search.SimilaritySearcher.classify_latents`:
        ``target``, ``predicted_morphology``, ``H_similarity`` and
        ``no_similar`` (and optionally ``reason`` and ``matched_objid``).
    target_ids : sequence, optional
        Identifiers of the targets, as in the ``target`` columns. By
        default the cutout set's ``objid``, else the ``target`` column of
        ``classification`` or, failing that, of ``results`` (in order of
        first appearance), else 0 .. N-1.
    true_types : sequence or mapping, optional
        The known type of each target (one per target, ``None`` where
        unknown) or a mapping id -> type. Misclassified targets are marked
        and can be filtered.
    figures : dict, optional
        Caption -> matplotlib `~matplotlib.figure.Figure` (saved at 100 dpi,
        not closed) or path of a PNG file, shown in the evaluation section.
    summary : dict, optional
        Numbers to show in a table, such as the summary of
        `~galmorphsearch.evaluation.evaluate_retrieval`; entries that are not
        scalars (the confusion matrix, the list of types) are left out, and
        keys ending in ``_rate`` are shown as percentages.
    title : str, optional
        Title of the page.
    k : int, optional
        Show at most the k best matches per target (default: all rows of
        ``results``).
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    path : `pathlib.Path`
        The file written.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.html`` or ``.htm``, ``results`` or
        ``classification`` lack columns, the number of ``target_ids`` or
        ``true_types`` differs from the number of targets, ``results`` or
        ``classification`` name targets that are not among ``target_ids``,
        an image has the wrong shape, or ``k`` is not a positive integer.
    TypeError
        If an argument is of the wrong kind (not a Table, mapping, Figure).
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.visualization import write_report
    >>> red = np.zeros((32, 32, 3), dtype=np.uint8)
    >>> red[8:24, 8:24, 0] = 255
    >>> results = Table({'rank': [1, 2], 'objid': [11, 12], 'morphology': ['Sb', 'Sc'],
    ...                  'Sp': [91.5, 80.2]})
    >>> out = Path(tempfile.mkdtemp()) / 'report.html'
    >>> write_report(out, results, [red], database_images={11: red, 12: red},
    ...              target_ids=['NGC 6977'], title='One galaxy') == out
    True
    >>> '<h1>One galaxy</h1>' in out.read_text()
    True
    """
    from galmorphsearch import __version__
    from galmorphsearch.utils import atomic_path

    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        msg = f"the report {path} must have a .html or .htm extension"
        raise ValueError(msg)
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            msg = f"k must be a positive integer or None, not {k!r}"
            raise ValueError(msg)
        k = int(k)

    # -- the inputs -----------------------------------------------------
    images, default_ids = _target_images(targets)
    n_targets = len(images)
    _check_table(results, _RESULT_COLUMNS, "results")
    if classification is not None:
        _check_table(classification, _CLASSIFICATION_COLUMNS, "classification")
    has_target = "target" in results.colnames
    if not has_target and n_targets != 1:
        msg = (f"results have no 'target' column, which is needed for {n_targets} targets "
               "(search a batch, or pass target_ids to search_latents)")
        raise ValueError(msg)
    if target_ids is not None:
        if isinstance(target_ids, str | bytes) or np.ndim(target_ids) == 0:
            target_ids = [target_ids]
        ids = [_key(v) for v in target_ids]
        if len(ids) != n_targets:
            msg = f"target_ids has {len(ids)} entries for {n_targets} targets"
            raise ValueError(msg)
    elif default_ids is not None:
        ids = default_ids
    else:
        ids = None
        for table in (classification, results if has_target else None):
            if table is not None:
                seen = list(dict.fromkeys(_key(v) for v in table["target"]))
                if len(seen) == n_targets:
                    ids = seen
                    break
        if ids is None:
            ids = [str(i) for i in range(n_targets)]
    if len(set(ids)) != len(ids):
        msg = "the target ids are not unique"
        raise ValueError(msg)
    known = set(ids)

    matches = {i: [] for i in ids}
    if has_target:
        result_ids = [_key(v) for v in results["target"]]
        stray = sorted(set(result_ids) - known)
        if stray:
            msg = (f"results name target(s) {', '.join(stray[:5])} that are not among the "
                   f"target ids ({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})")
            raise ValueError(msg)
    else:
        result_ids = [ids[0]] * len(results)
    order = np.argsort(np.asarray(results["rank"], dtype=np.int64), kind="stable")
    for row in order:
        matches[result_ids[row]].append(results[int(row)])
    if k is not None:
        matches = {key: rows[:k] for key, rows in matches.items()}

    classes = {}
    if classification is not None:
        for row in classification:
            key = _key(row["target"])
            if key not in known:
                msg = (f"classification names target {key} that is not among the target ids "
                       f"({', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''})")
                raise ValueError(msg)
            classes[key] = row
    truths = _true_types(true_types, ids)
    lookup = _database_lookup(database_images)
    figure_items = []
    if figures is not None:
        if not isinstance(figures, Mapping):
            msg = f"figures must be a dict caption -> Figure or PNG path, not {type(figures)}"
            raise TypeError(msg)
        figure_items = [(str(caption), _figure_uri(fig, caption))
                        for caption, fig in figures.items()]

    # -- the cards --------------------------------------------------------
    cache = {}
    cards = []
    predicted_types = set()
    any_truth = any(t is not None for t in truths)
    for index, (tid, image, truth) in enumerate(zip(ids, images, truths, strict=True)):
        target_img = _img(_image_uri(image, f"target {tid}"), f"target {tid}")
        facts = []
        row = classes.get(tid)
        predicted = None
        flag = ""
        if row is not None:
            predicted = None if _is_missing(row["predicted_morphology"]) else _key(
                row["predicted_morphology"])
            facts.append(("predicted", predicted or "n/a"))
            facts.append(("H-similarity", _format_number(row["H_similarity"])))
            if "matched_objid" in row.colnames:
                facts.append(("matched", _key(row["matched_objid"])))
            reason = _key(row["reason"]) if "reason" in row.colnames else ""
            if _as_bool(row["no_similar"]):
                flag = (f'<span class="flag" title="{_esc(reason)}">no similar galaxy</span>')
            else:
                flag = '<span class="flag good">similar galaxy found</span>'
        elif matches[tid]:
            predicted = _key(matches[tid][0]["morphology"])
            facts.append(("best match type", predicted))
        if predicted:
            predicted_types.add(predicted)
        miss = truth is not None and predicted is not None and truth != predicted
        if truth is not None:
            facts.append(("true type", truth))
        facts_html = "".join(f"<div><span>{_esc(a)}</span><span>{_esc(b)}</span></div>"
                             for a, b in facts)
        if miss:
            flag += ' <span class="flag">misclassified</span>'
        items = []
        for match in matches[tid]:
            objid = _key(match["objid"])
            if objid not in cache:
                picture = lookup(objid)
                cache[objid] = (None if picture is None
                                else _image_uri(picture, f"database image of {objid}"))
            uri = cache[objid]
            cell = _img(uri, f"database galaxy {objid}") if uri else _noimage()
            items.append(
                f'<li>{cell}<div class="type">{_esc(_key(match["morphology"]))}</div>'
                f'<div>#{_esc(match["rank"])} Sp {_esc(_format_number(match["Sp"], "{:.1f}"))}'
                f'</div><div class="objid">{_esc(objid)}</div></li>')
        matches_html = ('<ol class="matches">' + "".join(items) + "</ol>" if items
                        else '<p class="nomatch">no matches in the results</p>')
        cards.append(
            f'<article class="card{" miss" if miss else ""}" id="target-{index}" '
            f'data-target="{_esc(tid)}" data-id="{_esc(tid.lower())}" '
            f'data-type="{_esc(predicted or "")}" data-miss="{1 if miss else 0}">'
            f'<div class="target">{target_img}<h3>{_esc(tid)}</h3>'
            f'<div class="facts">{facts_html}</div>{flag}</div>{matches_html}</article>')

    # -- the page ---------------------------------------------------------
    options = "".join(f'<option value="{_esc(t)}">{_esc(t)}</option>'
                      for t in sorted(predicted_types))
    miss_box = ('<label><input type="checkbox" id="filter-miss"> only misclassified</label>'
                if any_truth else "")
    controls = (
        '<div class="controls"><label>target id <input type="search" id="filter-id" '
        'placeholder="filter by id" autocomplete="off"></label>'
        f'<label>predicted type <select id="filter-type"><option value="">all</option>'
        f'{options}</select></label>{miss_box}'
        f'<span class="muted">showing <span id="shown">{n_targets}</span> of {n_targets}'
        "</span></div>")
    figures_html = ""
    if figure_items:
        figures_html = ('<section id="evaluation"><h2>Evaluation</h2>' + "".join(
            f'<figure><img src="{uri}" alt="{_esc(caption)}"><figcaption>{_esc(caption)}'
            "</figcaption></figure>" for caption, uri in figure_items) + "</section>")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    metas = [getattr(results, "meta", None),
             getattr(classification, "meta", None) if classification is not None else None]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="galmorphsearch {_esc(__version__)}">\n'
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f'<header><h1>{_esc(title)}</h1><p class="muted">{n_targets} target(s); written '
        f"{_esc(now)} by galmorphsearch {_esc(__version__)}.</p>{_meta_html(metas)}"
        "</header>\n"
        f"{_summary_html(summary)}\n"
        f'<section id="targets"><h2>Targets</h2>{controls}<div class="cards" id="cards">\n'
        + "\n".join(cards) + "\n</div></section>\n"
        f"{figures_html}\n"
        '<footer>Similarity Sp and H-similarity as in Seo et al. (2023, PASP 135, 084101).'
        "</footer>\n"
        f"<script>{_JS}</script>\n</body>\n</html>\n")
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def _known_types(table):
    """The ``morphology`` column of a target table as str or None per row."""
    if "morphology" not in table.colnames:
        return None
    column = table["morphology"]
    mask = np.ma.getmaskarray(column)
    values = [None if m else str(v).strip() or None for v, m in zip(column, mask, strict=True)]
    return values if any(v is not None for v in values) else None


def _map_types(database, morphology):
    """The types of the database's scheme in order, or None if they do not cover it."""
    from galmorphsearch.catalogs import get_scheme

    try:
        types = list(get_scheme(database.scheme).types)
    except (KeyError, ValueError):
        return None
    return types if set(morphology) <= set(types) else None


def make_report(searcher, targets, path, *, k=5, database_images=None, evaluate=False,
                fraction=0.1, seed=0, history=None, title="galmorphsearch report",
                overwrite=False, progress_bar=False):
    """
    Search and classify a cutout set and write the HTML report of it.

    What ``galmorphsearch report`` does: encode the targets with the
    searcher's encoder, search their ``k`` most similar database galaxies
    and classify them (`~galmorphsearch.search.SimilaritySearcher.search_latents`,
    `~galmorphsearch.search.SimilaritySearcher.classify_latents`), and write
    the page with `write_report`: a summary table (targets, those with no
    similar galaxy, the exact-type rate of the targets whose ``morphology``
    is known, the database's H-similarity statistics and threshold), one
    card per target, and figures of the database (the H-similarity
    histogram, overall and per type, and a PCA map of its latents), with
    the paper's MC/MD evaluation (rates and confusion matrix,
    `~galmorphsearch.evaluation.evaluate_retrieval`) and the training loss
    curve on request. The figures are closed once written.

    Parameters
    ----------
    searcher : `~galmorphsearch.search.SimilaritySearcher`
        A searcher of the database, with the encoder that built it.
    targets : `~galmorphsearch.preprocessing.CutoutSet`
        The target galaxies; their ``objid`` column (else their row
        numbers) identifies them, and their ``morphology`` column, if any,
        gives the known types.
    path : str or path-like
        The report file, ending in ``.html`` or ``.htm``.
    k : int, optional
        Matches shown per target (at most the size of the database).
    database_images : `~galmorphsearch.preprocessing.CutoutSet`, str, path-like or mapping, optional
        Images of the database galaxies, for the thumbnails of the matches:
        a cutout set with an ``objid`` column (or its file), or a mapping
        ``objid -> (H, W, 3)`` array.
    evaluate : bool, optional
        Also run the MC/MD evaluation of the database.
    fraction : float, optional
        Share of MC targets per type for ``evaluate``.
    seed : int, optional
        Seed of the MC/MD split and of the latent map.
    history : `~astropy.table.Table`, str or path-like, optional
        Loss history (as written by the trainers), for the loss curve.
    title : str, optional
        Title of the page.
    overwrite : bool, optional
        Replace an existing file.
    progress_bar : bool, optional
        Show progress bars while encoding the targets.

    Returns
    -------
    report : dict
        ``path`` (the `pathlib.Path` written), ``n_targets``,
        ``n_no_similar`` (targets with no similar galaxy), ``n_figures``,
        ``summary`` (the numbers of the summary table), and the search
        ``results`` and ``classification`` tables.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.html`` or ``.htm``, the searcher has
        no encoder, or ``database_images`` is a cutout set without an
        ``objid`` column; see also `write_report`.
    FileNotFoundError
        If ``history`` or the file of ``database_images`` does not exist.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.

    Warns
    -----
    ~galmorphsearch.utils.GalMorphSearchWarning
        If ``database_images`` holds none of the matched galaxies.

    See Also
    --------
    write_report : The page itself, from results computed elsewhere.

    Examples
    --------
    >>> from galmorphsearch.database import LatentDatabase
    >>> from galmorphsearch.model import Encoder
    >>> from galmorphsearch.preprocessing import CutoutSet
    >>> from galmorphsearch.search import SimilaritySearcher
    >>> from galmorphsearch.visualization import make_report
    >>> database = LatentDatabase.read('db.fits')  # doctest: +SKIP
    >>> encoder = Encoder.load('encoder.safetensors')  # doctest: +SKIP
    >>> searcher = SimilaritySearcher(database, encoder)  # doctest: +SKIP
    >>> report = make_report(searcher, CutoutSet.read('targets.fits'), 'report.html',
    ...                      database_images='references.fits', evaluate=True)  # doctest: +SKIP
    >>> report['n_targets'], report['n_figures']  # doctest: +SKIP
    (4, 4)
    """
    import warnings

    import matplotlib.pyplot as plt

    from galmorphsearch.evaluation import evaluate_retrieval, latent_map
    from galmorphsearch.preprocessing import CutoutSet
    from galmorphsearch.utils import GalMorphSearchWarning

    from .plots import (
        plot_confusion_matrix,
        plot_h_similarity_by_type,
        plot_h_similarity_histogram,
        plot_latent_map,
        plot_loss_history,
    )

    # Everything that can be refused is refused before the encoding.
    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        msg = f"the report {path} must have a .html or .htm extension"
        raise ValueError(msg)
    if path.exists() and not overwrite:
        msg = f"{path} already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    if isinstance(history, str | Path) and not Path(history).is_file():
        msg = f"the loss history {history} does not exist"
        raise FileNotFoundError(msg)
    where = "database_images"
    if isinstance(database_images, str | Path):
        where = str(database_images)
        database_images = CutoutSet.read(database_images)
    if isinstance(database_images, CutoutSet) and "objid" not in database_images.table.colnames:
        msg = f"{where} has no objid column to match the database galaxies"
        raise ValueError(msg)
    encoder = searcher.encoder
    if encoder is None:
        msg = ("make_report encodes the targets: give the searcher the encoder that built "
               "the database, SimilaritySearcher(database, encoder)")
        raise ValueError(msg)

    latents = encoder.encode(targets.images, progress_bar=progress_bar)
    backgrounds = encoder.encode(targets.backgrounds, progress_bar=progress_bar)
    table = targets.table
    ids = ([str(v) for v in table["objid"]] if "objid" in table.colnames
           else [str(i) for i in range(len(table))])
    database = searcher.database
    k = min(k, len(database))
    results = searcher.search_latents(latents, backgrounds, k=k, target_ids=ids)
    classification = searcher.classify_latents(latents, backgrounds, target_ids=ids)
    if database_images is not None:
        if isinstance(database_images, CutoutSet):
            have = {str(v) for v in database_images.table["objid"]}
        else:
            have = {str(v) for v in database_images}
        if not have & {str(v) for v in results["objid"]}:
            warnings.warn(f"None of the matched galaxies is in {where} (by objid): the "
                          "report shows no thumbnails of matches.", GalMorphSearchWarning,
                          stacklevel=2)

    true_types = _known_types(table)
    no_similar = np.asarray(classification["no_similar"], dtype=bool)
    summary = {"targets": len(ids), "targets with no similar galaxy": int(no_similar.sum())}
    if true_types is not None:
        pairs = [(t, str(p)) for t, p in zip(true_types, classification["predicted_morphology"],
                                             strict=True) if t is not None]
        summary["targets of known type"] = len(pairs)
        summary["targets of known type: exact-type rate"] = float(np.mean(
            [t == p for t, p in pairs]))
    summary["database galaxies"] = len(database)
    summary["database H-similarity mean"] = database.h_similarity_mean
    summary["database H-similarity std"] = database.h_similarity_std
    summary["no-similar-galaxy threshold"] = searcher.h_similarity_threshold

    morphology = np.asarray(database.table["morphology"]).astype(str)
    types = _map_types(database, morphology)
    figures = {}
    try:
        if evaluate:
            _, evaluation = evaluate_retrieval(database, fraction=fraction, seed=seed)
            summary.update({f"MC/MD test: {label}": evaluation[key]
                            for key, label in _EVALUATION_LABELS if key in evaluation})
            figures["Confusion matrix of the MC/MD test (per cent of each true type)"] = \
                plot_confusion_matrix(evaluation)
        figures["H-similarity of the database galaxies"] = plot_h_similarity_histogram(database)
        figures["H-similarity of the database galaxies per type"] = \
            plot_h_similarity_by_type(database)
        if len(database) >= 2:
            coords = latent_map(database.latents, "pca", seed=seed)
            figures["PCA map of the database latents"] = plot_latent_map(coords, morphology,
                                                                        types=types)
        if history is not None:
            figures["Training loss"] = plot_loss_history(history)
        write_report(path, results, targets, database_images=database_images,
                     classification=classification, target_ids=ids, true_types=true_types,
                     figures=figures, summary=summary, title=title, k=k,
                     overwrite=overwrite)
    finally:
        for figure in figures.values():
            plt.close(figure)
    return {"path": path, "n_targets": len(ids), "n_no_similar": int(no_similar.sum()),
            "n_figures": len(figures), "summary": summary, "results": results,
            "classification": classification}
