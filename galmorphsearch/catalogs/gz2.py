# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Galaxy Zoo 2 (Willett et al. 2013; Hart et al. 2016) catalog reader.

Two published table shapes are understood:

* vote-fraction tables (Willett et al. 2013 Tables 5-9, e.g. the Stripe 82
  coadd table), with ``t01_smooth_or_features_a01_smooth_debiased`` and the
  like; the 12 types of Seo et al. (2023) are derived by walking
  `~galmorphsearch.catalogs.GZ2_DECISION_TREE`;
* main tables with a ``gz2_class`` string column (``Ei``, ``Ser``,
  ``SBc2m(r)``, ...), which `parse_gz2_class` reduces to the same 12 types.
"""

import re

import numpy as np
from astropy.table import Column

from ..utils.exceptions import CatalogFormatError, UnknownMorphologyError
from ._io import (
    add_standard_columns,
    check_ids,
    coordinate_column,
    describe_rows,
    describe_source,
    describe_values,
    find_column,
    guess_format,
    read_table,
    require_column,
    to_str_array,
    warn_no_morphology,
)
from .decision_tree import FRACTION_KINDS, GZ2_DECISION_TREE, check_min_fraction
from .schemes import GZ2_SCHEME

__all__ = [
    "read_gz2",
    "parse_gz2_class",
    "gz2_types_from_fractions",
    "select_clean_sample",
    "clean_sample_masks",
    "CLEAN_SAMPLE_THRESHOLDS",
]

GZ2_REFERENCE = "Willett et al. 2013, MNRAS 435, 2835"

# gz2_class grammar (Willett et al. 2013, section 6.1, and Hart et al. 2016):
#   A                         star or artifact
#   E[r|i|c]                  smooth; completely round / in between / cigar-shaped
#   Se[r|b|n]                 edge-on disk; rounded / boxy / no bulge
#   S[B][a|b|c|d][arms]       face-on disk; SB = barred; bulge dominant/obvious/
#                             just noticeable/none; arm number 1 2 3 4 + ?
#                             and winding t m l, in either order
#   (x)...                    odd features: r ring, l lens/arc, d disturbed,
#                             i irregular, o other, m merger, u dust lane
# Some redistributed copies write the bar flag after the bulge letter (``SbB``
# for ``SBb``; see the GZ2 class gallery in the shared data); a capital B is
# accepted in either place, but not in both.
_GZ2_CLASS_RE = re.compile(
    r"""^(?:
        (?P<artifact>A)
      | E(?P<round>[ric])
      | Se(?P<edge>[rbn]?)
      | S(?P<bar1>B?)(?P<bulge>[abcd])(?P<bar2>B?)
          (?P<arms>[1234+?][tml]?|[tml][1234+?]?)?
    )
    (?P<odd>(?:\([rldioum]\))*)$""",
    re.VERBOSE,
)

_ROUND = {"r": "Er", "i": "Ei", "c": "Ec"}
_GZ2_EXPECTED = (
    "a Galaxy Zoo 2 table as FITS, CSV, ECSV, VOTable or HDF5 (possibly compressed; "
    "pass format= for other files)"
)

#: Thresholds of the "clean" GZ2 samples: for each class, the minimum vote
#: fraction (``>=``) of each answer. These are the five classes of Zhu et al.
#: (2019) and Dai & Tong (2018), built on the thresholds recommended by Willett
#: et al. (2013): completely round, in-between and cigar-shaped smooth
#: galaxies, edge-on disks and face-on spirals. Keys are answer column stems
#: (the fraction kind is appended), or full column names.
CLEAN_SAMPLE_THRESHOLDS = {
    "round": {
        "t01_smooth_or_features_a01_smooth": 0.469,
        "t07_rounded_a16_completely_round": 0.50,
    },
    "in_between": {
        "t01_smooth_or_features_a01_smooth": 0.469,
        "t07_rounded_a17_in_between": 0.50,
    },
    "cigar": {
        "t01_smooth_or_features_a01_smooth": 0.469,
        "t07_rounded_a18_cigar_shaped": 0.50,
    },
    "edge_on": {
        "t01_smooth_or_features_a02_features_or_disk": 0.430,
        "t02_edgeon_a04_yes": 0.602,
    },
    "spiral": {
        "t01_smooth_or_features_a02_features_or_disk": 0.430,
        "t02_edgeon_a05_no": 0.715,
        "t04_spiral_a08_spiral": 0.619,
    },
}


def parse_gz2_class(gz2_class, strict=True):
    """
    Reduce GZ2 ``gz2_class`` strings to the 12 types of Seo et al. (2023).

    Bar and bulge prominence (or roundness, or edge-on) are kept; spiral arm
    number and winding and the odd features in parentheses (rings, mergers,
    disturbances, irregulars, ...) are dropped, as in Seo et al. (2023).
    ``A`` (star or artifact) has no type and gives a masked entry.

    ====================  =============
    gz2_class             type
    ====================  =============
    ``Er`` ``Ei`` ``Ec``  ``Er`` ``Ei`` ``Ec``
    ``Ser Seb Sen``       ``Edge-on``
    ``Sa Sb Sc Sd...``    ``Sa``..``Sd``
    ``SBa SBb...``        ``SBa``..``SBd``
    ``SbB`` ``ScB``       ``SBb`` ``SBc``
    ``A``                 masked
    ====================  =============

    Parameters
    ----------
    gz2_class : str or array-like of str
        One or many ``gz2_class`` strings (surrounding blanks ignored).
    strict : bool, optional
        If `True` (default), a string that does not follow the GZ2 grammar
        raises `UnknownMorphologyError`; if `False`, it gives a masked entry.

    Returns
    -------
    morphology : str, `numpy.ma.masked` or `numpy.ma.MaskedArray`
        Type names of `GZ2_SCHEME`; a scalar for a scalar input.

    Raises
    ------
    UnknownMorphologyError
        If ``strict`` and a string is not a valid ``gz2_class``.

    Examples
    --------
    >>> from galmorphsearch.catalogs import parse_gz2_class
    >>> parse_gz2_class('SBc2m(r)')
    'SBc'
    >>> parse_gz2_class(['Ei', 'Sen', 'Sc?t', 'ScB', 'A']).tolist()
    ['Ei', 'Edge-on', 'Sc', 'SBc', None]
    """
    scalar = np.ndim(gz2_class) == 0
    values = np.ma.atleast_1d(np.ma.asarray(gz2_class))
    inmask = np.ma.getmaskarray(values)
    strings = to_str_array(values)
    out = np.zeros(strings.shape, dtype="U7")
    mask = np.ones(strings.shape, dtype=bool)
    cache = {}
    for i, text in enumerate(strings.ravel().tolist()):
        if inmask.ravel()[i]:
            continue
        if text not in cache:
            cache[text] = _parse_one(text, strict)
        morph = cache[text]
        if morph is not None:
            out.ravel()[i] = morph
            mask.ravel()[i] = False
    result = np.ma.MaskedArray(out, mask=mask)
    if scalar:
        return np.ma.masked if mask[0] else str(out[0])
    return result


def _valid_class(text):
    """Whether ``text`` follows the gz2_class grammar."""
    match = _GZ2_CLASS_RE.match(text)
    return match is not None and not (match["bar1"] and match["bar2"])


def _parse_one(text, strict):
    match = _GZ2_CLASS_RE.match(text)
    if match is None or (match["bar1"] and match["bar2"]):
        if strict:
            msg = (
                f"Unknown gz2_class string {text!r}: expected A, E[ric], Se[rbn] or "
                "S[B][abcd] followed by arm number/winding and odd features in "
                "parentheses (Willett et al. 2013)."
            )
            raise UnknownMorphologyError(msg)
        return None
    if match["artifact"]:
        return None
    if match["round"]:
        return _ROUND[match["round"]]
    if text.startswith("Se"):
        return "Edge-on"
    bar = "B" if (match["bar1"] or match["bar2"]) else ""
    return f"S{bar}{match['bulge']}"


def gz2_types_from_fractions(table, fraction="debiased", min_fraction=0.0, tree=None):
    """
    Derive the 12 GZ2 types from vote fractions with the GZ2 decision tree.

    At each task reached, the answer with the largest fraction wins (ties go
    to the first answer of the task): t01 smooth / features / star-artifact;
    smooth galaxies take their t07 roundness (Er, Ei, Ec); featured ones go
    to t02 edge-on (Edge-on), otherwise t03 bar decides the barred or
    unbarred sequence and t05 bulge prominence the letter (dominant a,
    obvious b, just noticeable c, no bulge d).

    Parameters
    ----------
    table : `~astropy.table.Table`
        A GZ2 vote-fraction table.
    fraction : {'debiased', 'fraction', 'weighted_fraction'}, optional
        Which fraction columns to use (default ``'debiased'``).
    min_fraction : float, optional
        The winning fraction at every node must exceed this; otherwise the
        row gets no type (default 0: plain plurality).
    tree : `~galmorphsearch.catalogs.DecisionTree`, optional
        The tree to walk (default `GZ2_DECISION_TREE`).

    Returns
    -------
    morphology : `numpy.ma.MaskedArray` of str
        Type names, masked where no type was reached.
    reason : `numpy.ndarray` of str
        Why a row has no type (empty where it has one), see
        `DecisionTree.classify`.

    Raises
    ------
    CatalogFormatError
        If a needed fraction column is missing.
    ValueError
        If ``fraction`` is not a known fraction kind, or ``min_fraction`` is
        not a number in [0, 1).
    """
    tree = GZ2_DECISION_TREE if tree is None else tree
    return tree.classify(table, kind=fraction, min_fraction=min_fraction)


def read_gz2(source, *, fraction="debiased", use="auto", min_fraction=0.0, format=None):
    """
    Read a Galaxy Zoo 2 catalog and give every galaxy one of 12 types.

    Parameters
    ----------
    source : str, path-like or `~astropy.table.Table`
        A GZ2 table file (FITS, CSV, VOTable, ... as `Table.read` reads
        them; compressed files too) or a Table (it is copied, not changed).
    fraction : {'debiased', 'fraction', 'weighted_fraction'}, optional
        Which vote fractions drive the decision tree (default
        ``'debiased'``).
    use : {'auto', 'fractions', 'gz2_class'}, optional
        Where the types come from. ``'auto'`` (default) parses the
        ``gz2_class`` column when there is one and walks the decision tree on
        the vote fractions otherwise.
    min_fraction : float, optional
        For the decision tree: the winning fraction at each node must exceed
        this; a number in [0, 1) (default 0, plain plurality).
    format : str, optional
        Astropy table format of the file; guessed from the extension by
        default.

    Returns
    -------
    table : `~astropy.table.Table`
        The catalog's own columns, preceded by ``objid`` (from ``objid`` or
        ``dr7objid``), ``ra``, ``dec`` (deg), ``morphology`` (a
        `~galmorphsearch.catalogs.GZ2_SCHEME` type, masked for stars and
        artifacts or rows nobody answered) and ``type_index``. ``meta``
        records the catalog, scheme, reference, where the types came from,
        the fraction kind and the rule.

    Raises
    ------
    CatalogFormatError
        If the file cannot be read, is empty or has no data rows, or a
        needed column (``objid``/``dr7objid``, ``gz2_class`` or a fraction
        column) is missing; if an object id is blank, appears twice, or was
        stored as a float that cannot hold it exactly; if a vote fraction is
        text, infinite or outside [0, 1]; or if ``ra``/``dec`` hold text
        that is not a number. Messages name the file (or "the given
        table"), the column and the table rows, counted from 0 over the data
        rows.
    UnknownMorphologyError
        If a ``gz2_class`` string does not follow the GZ2 grammar.
    ValueError
        If ``use`` or ``fraction`` is not one of the allowed values, or
        ``min_fraction`` is not a number in [0, 1).

    Warns
    -----
    CatalogWarning
        When some rows get no morphology (star/artifact winners, a blank
        ``gz2_class`` (naming its rows), or no votes at a node reached), with
        how many and why; and when ``ra`` or ``dec`` are blank, not finite
        or outside [0, 360] or [-90, 90] degrees (those values are masked).

    Examples
    --------
    >>> from astropy.table import Table
    >>> from galmorphsearch.catalogs import read_gz2
    >>> main = Table({'dr7objid': [587722981741363294, 587722981741363323],
    ...               'ra': [179.1, 179.2], 'dec': [-0.5, -0.4],
    ...               'gz2_class': ['Ei', 'SBb2m(r)']})
    >>> cat = read_gz2(main)
    >>> cat['morphology'].tolist(), cat['type_index'].tolist()
    (['Ei', 'SBb'], [1, 9])
    """
    if use not in ("auto", "fractions", "gz2_class"):
        msg = f"use must be 'auto', 'fractions' or 'gz2_class', got {use!r}."
        raise ValueError(msg)
    if fraction not in FRACTION_KINDS:
        msg = f"Unknown GZ2 fraction kind {fraction!r}; choose one of {FRACTION_KINDS}."
        raise ValueError(msg)
    min_fraction = check_min_fraction(min_fraction)
    if format is None and not hasattr(source, "colnames"):
        format = guess_format(source)
    kwargs = {} if format is None else {"format": format}
    table = read_table(source, "Galaxy Zoo 2 table", expected=_GZ2_EXPECTED, kind="gz2", **kwargs)
    where = describe_source(source)

    idcol = require_column(
        table, ["objid", "dr7objid", "OBJID"], "object id", "Galaxy Zoo 2", source=where
    )
    ids = check_ids(table, idcol, where=where, catalog="Galaxy Zoo 2")
    class_col = find_column(table, ["gz2_class"])
    if use == "auto":
        use = "gz2_class" if class_col is not None else "fractions"
    meta = {
        "CATALOG": "GZ2",
        "SCHEME": GZ2_SCHEME.name,
        "REF": GZ2_REFERENCE,
    }
    blank = np.zeros(len(table), dtype=bool)
    if use == "gz2_class":
        class_col = require_column(table, ["gz2_class"], "gz2_class", "Galaxy Zoo 2", source=where)
        morphology, reason, blank = _classes_of_column(table, class_col, where)
        meta["MORPHSRC"] = "gz2_class"
        meta["RULE"] = "gz2_class reduced to 12 types (bar, bulge, roundness, edge-on)"
    else:
        morphology, reason = GZ2_DECISION_TREE._classify(table, fraction, min_fraction, where=where)
        meta["MORPHSRC"] = "fractions"
        meta["FRACKIND"] = fraction
        meta["MINFRAC"] = min_fraction
        meta["RULE"] = "plurality at t01; t07 | t02, t03, t05"

    objid = Column(ids, name="objid", description="SDSS DR7 objID")
    ra = coordinate_column(table, ["ra", "RAdeg", "RAJ2000"], "ra", "GZ2", where)
    dec = coordinate_column(table, ["dec", "DEdeg", "DEJ2000"], "dec", "GZ2", where)
    add_standard_columns(table, objid, ra, dec, morphology, GZ2_SCHEME)

    nomask = np.ma.getmaskarray(morphology)
    nomorph = int(nomask.sum())
    meta["NOMORPH"] = nomorph
    table.meta.update(meta)
    if nomorph:
        warn_no_morphology("GZ2", len(table), where, nomask, reason, blank,
                           "gz2_class" if use == "gz2_class" else None)
    return table


def _classes_of_column(table, col, where):
    """
    Types from the gz2_class column ``col``: (morphology, reason, blank).

    Blank entries (masked, or empty strings) give no type; strings outside
    the grammar raise `UnknownMorphologyError` naming file, column and rows.
    """
    column = table[col]
    strings = to_str_array(column)
    blank = np.ma.getmaskarray(column) | (strings == "")
    valid = {text: _valid_class(text) for text in np.unique(strings[~blank]).tolist()}
    unknown = ~blank & np.array([not valid.get(t, True) for t in strings.tolist()], dtype=bool)
    if unknown.any():
        rows = np.flatnonzero(unknown)
        msg = (
            f"Galaxy Zoo 2 column {col!r} of {where} holds unknown gz2_class string(s) "
            f"{describe_values(strings[rows])} at {describe_rows(rows)}: expected A, E[ric], "
            "Se[rbn] or S[B][abcd] followed by arm number/winding and odd features in "
            "parentheses (Willett et al. 2013)."
        )
        raise UnknownMorphologyError(msg)
    morphology = parse_gz2_class(np.ma.MaskedArray(strings, mask=blank), strict=False)
    reason = np.where(
        blank, "blank", np.where(np.ma.getmaskarray(morphology), "gz2_class:" + strings, "")
    )
    return morphology, reason, blank


def _threshold_column(table, key, fraction):
    for name in (f"{key}_{fraction}", key):
        if name in table.colnames:
            return name
    msg = (
        f"The table has no column {key}_{fraction!s} (or {key}) needed by the clean-sample "
        "thresholds."
    )
    raise CatalogFormatError(msg)


def clean_sample_masks(table, thresholds=None, fraction="debiased"):
    """
    Boolean masks of the GZ2 clean samples, one per class.

    A row belongs to a class when every fraction listed for the class is at
    least its threshold.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A GZ2 vote-fraction table (for example the output of `read_gz2`).
    thresholds : dict, optional
        ``{class: {answer: minimum}}``; ``answer`` is an answer column stem
        such as ``'t01_smooth_or_features_a01_smooth'`` (``_<fraction>`` is
        appended) or a full column name. Defaults to
        `CLEAN_SAMPLE_THRESHOLDS`.
    fraction : {'debiased', 'fraction', 'weighted_fraction'}, optional
        Which fraction columns the stems refer to (default ``'debiased'``).

    Returns
    -------
    masks : dict of str to `numpy.ndarray`
        One boolean array per class, `True` for rows in the clean sample.
        Masked or non-finite fractions never pass.

    Raises
    ------
    CatalogFormatError
        If a column named by the thresholds is missing.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from galmorphsearch.catalogs import clean_sample_masks
    >>> t = Table({'t01_smooth_or_features_a01_smooth_debiased': [0.9, 0.2]})
    >>> masks = clean_sample_masks(
    ...     t, {'elliptical': {'t01_smooth_or_features_a01_smooth': 0.8}})
    >>> masks['elliptical'].tolist()
    [True, False]
    """
    thresholds = CLEAN_SAMPLE_THRESHOLDS if thresholds is None else thresholds
    masks = {}
    for name, conditions in thresholds.items():
        ok = np.ones(len(table), dtype=bool)
        for key, minimum in conditions.items():
            col = table[_threshold_column(table, key, fraction)]
            values = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
            with np.errstate(invalid="ignore"):
                ok &= values >= float(minimum)
        masks[name] = ok
    return masks


def select_clean_sample(table, thresholds=None, fraction="debiased"):
    """
    Select the GZ2 galaxies that belong to exactly one clean sample.

    Parameters
    ----------
    table : `~astropy.table.Table`
        A GZ2 vote-fraction table (for example the output of `read_gz2`).
    thresholds : dict, optional
        ``{class: {answer: minimum}}``, see `clean_sample_masks`. Defaults to
        `CLEAN_SAMPLE_THRESHOLDS` (round, in_between, cigar, edge_on,
        spiral).
    fraction : {'debiased', 'fraction', 'weighted_fraction'}, optional
        Which fraction columns to use (default ``'debiased'``).

    Returns
    -------
    clean : `~astropy.table.Table`
        The selected rows with a new ``clean_class`` column. Rows that pass
        the thresholds of more than one class (possible because debiased
        fractions need not sum to one) are left out; ``meta['CLEANAMB']``
        counts them and ``meta['CLEANTHR']`` records the thresholds.

    Raises
    ------
    CatalogFormatError
        If a column named by the thresholds is missing.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from galmorphsearch.catalogs import select_clean_sample
    >>> t = Table({'t01_smooth_or_features_a01_smooth_debiased': [0.9, 0.2, 0.7],
    ...            't01_smooth_or_features_a02_features_or_disk_debiased': [0.1, 0.8, 0.3]})
    >>> strict = {'elliptical': {'t01_smooth_or_features_a01_smooth': 0.8},
    ...           'disk': {'t01_smooth_or_features_a02_features_or_disk': 0.8}}
    >>> select_clean_sample(t, strict)['clean_class'].tolist()
    ['elliptical', 'disk']
    """
    thresholds = CLEAN_SAMPLE_THRESHOLDS if thresholds is None else thresholds
    masks = clean_sample_masks(table, thresholds, fraction=fraction)
    names = list(masks)
    n = len(table)
    stack = np.column_stack([masks[k] for k in names]) if names else np.zeros((n, 0), bool)
    nclass = stack.sum(axis=1)
    keep = nclass == 1
    width = max((len(k) for k in names), default=1)
    labels = np.full(n, "", dtype=f"U{width}")
    for k, name in enumerate(names):
        labels[stack[:, k] & keep] = name
    clean = table[keep]
    clean["clean_class"] = labels[keep]
    clean.meta["CLEANAMB"] = int((nclass > 1).sum())
    clean.meta["CLEANTHR"] = "; ".join(
        f"{name}: " + ", ".join(f"{key}>={val}" for key, val in cond.items())
        for name, cond in thresholds.items()
    )
    clean.meta["FRACKIND"] = fraction
    return clean
