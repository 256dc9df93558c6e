# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The Galaxy Zoo 2 decision tree, written down as data.

Each node is one GZ2 task (a column prefix such as
``t01_smooth_or_features``) with its answers (``a01_smooth`` ...) and, for
each answer, what follows: another node, a type of the scheme (a leaf), or
`None` when the answer ends without a morphology (star or artifact).
`DecisionTree.classify` walks the tree for all rows of a vote-fraction table
at once, taking the plurality answer at every node it reaches.
"""

from dataclasses import dataclass

import numpy as np

from ..utils.exceptions import CatalogFormatError
from ._io import (
    FRACTION_SLACK,
    describe_rows,
    describe_values,
    numeric_values,
    other_catalog_hint,
    to_str_array,
)
from .schemes import GZ2_SCHEME

__all__ = ["DecisionNode", "DecisionTree", "GZ2_DECISION_TREE", "FRACTION_KINDS"]

#: Suffixes of the GZ2 vote-fraction columns that `DecisionTree` can use.
FRACTION_KINDS = ("fraction", "weighted_fraction", "debiased")


@dataclass(frozen=True)
class DecisionNode:
    """
    One task of a Galaxy Zoo decision tree.

    Parameters
    ----------
    task : str
        Column prefix of the task, e.g. ``'t01_smooth_or_features'``.
    answers : tuple of (str, str or None)
        ``(answer, child)`` pairs in the order of the published table, e.g.
        ``('a01_smooth', 't07')``. ``child`` is the name of another node, a
        type name of the tree's scheme, or `None` (no morphology). The order
        also breaks ties: the first of equal fractions wins.
    question : str, optional
        The question as shown to volunteers.
    """

    task: str
    answers: tuple
    question: str = ""

    def columns(self, kind="debiased"):
        """
        Names of the fraction columns of this task.

        Parameters
        ----------
        kind : {'debiased', 'fraction', 'weighted_fraction'}
            Which GZ2 fraction to use.

        Returns
        -------
        columns : list of str
            One column name per answer, e.g.
            ``'t01_smooth_or_features_a01_smooth_debiased'``.
        """
        return [f"{self.task}_{answer}_{kind}" for answer, _ in self.answers]


@dataclass(frozen=True)
class DecisionTree:
    """
    A decision tree that turns vote fractions into types of a scheme.

    Parameters
    ----------
    root : str
        Name of the first node.
    nodes : dict
        Node name to `DecisionNode`.
    scheme : `~galmorphsearch.catalogs.MorphologyScheme`
        The scheme the leaves belong to.

    Examples
    --------
    >>> from galmorphsearch.catalogs import GZ2_DECISION_TREE
    >>> GZ2_DECISION_TREE.nodes['t02'].answers
    (('a04_yes', 'Edge-on'), ('a05_no', 't03'))
    """

    root: str
    nodes: dict
    scheme: object

    def __post_init__(self):
        if self.root not in self.nodes:
            msg = f"Root node {self.root!r} is not among the nodes of the tree."
            raise ValueError(msg)
        for name, node in self.nodes.items():
            for answer, child in node.answers:
                if child is None or child in self.nodes or child in self.scheme:
                    continue
                msg = (
                    f"Answer {answer!r} of node {name!r} leads to {child!r}, which is "
                    f"neither a node nor a type of scheme {self.scheme.name!r}."
                )
                raise ValueError(msg)

    def required_columns(self, kind="debiased"):
        """
        All fraction columns the tree reads.

        Parameters
        ----------
        kind : {'debiased', 'fraction', 'weighted_fraction'}
            Which GZ2 fraction to use.

        Returns
        -------
        columns : list of str
            Column names, node by node.
        """
        _check_kind(kind)
        return [col for node in self.nodes.values() for col in node.columns(kind)]

    def classify(self, table, kind="debiased", min_fraction=0.0):
        """
        Walk the tree for every row of a vote-fraction table.

        At each node reached, the answer with the largest fraction wins (ties
        go to the answer listed first); the walk then goes on to that
        answer's child. A row ends without a morphology when the winning
        answer leads to `None`, when all fractions at a reached node are zero
        or not finite (nobody answered), or when the winning fraction is not
        above ``min_fraction``.

        Parameters
        ----------
        table : `~astropy.table.Table`
            Table with the columns of `required_columns`.
        kind : {'debiased', 'fraction', 'weighted_fraction'}, optional
            Which GZ2 fraction to use (default ``'debiased'``).
        min_fraction : float, optional
            The winning fraction at each node must be larger than this; a
            number in [0, 1) (default 0, i.e. a plain plurality).

        Returns
        -------
        morphology : `numpy.ma.MaskedArray` of str
            Type names, masked where no type was reached.
        reason : `numpy.ndarray` of str
            Empty where a type was reached; otherwise ``'<node>:<answer>'``
            for an answer leading to no morphology, ``'<node>:no_votes'`` or
            ``'<node>:below_min_fraction'``.

        Raises
        ------
        CatalogFormatError
            If a required column is missing, or holds text that is not a
            number, an infinity or a fraction outside [0, 1] (naming the
            column and the table rows, counted from 0). Blank (masked or NaN)
            fractions are not errors: they count as nobody answering.
        ValueError
            If ``kind`` is unknown or ``min_fraction`` is not in [0, 1).
        """
        return self._classify(table, kind, min_fraction, where="the given table")

    def _classify(self, table, kind, min_fraction, where):
        """`classify`, with ``where`` (see ``describe_source``) naming the table in messages."""
        _check_kind(kind)
        min_fraction = check_min_fraction(min_fraction)
        needed = list(dict.fromkeys(self.required_columns(kind)))
        missing = [c for c in needed if c not in table.colnames]
        if missing:
            shown = 5
            listed = ", ".join(missing[:shown])
            if len(missing) > shown:
                listed += f", ... ({len(missing)} in all)"
            read_from = "" if where == "the given table" else f" read from {where}"
            msg = (
                f"The table{read_from} lacks the GZ2 vote-fraction column(s) {listed} "
                f"needed by the decision tree (fraction kind {kind!r})."
                f"{other_catalog_hint(table, 'gz2')}"
            )
            raise CatalogFormatError(msg)
        fractions = {c: _fraction_values(table, c, where) for c in needed}
        n = len(table)
        width = max(len(t) for t in self.scheme.types)
        result = np.zeros(n, dtype=f"U{width}")
        resolved = np.zeros(n, dtype=bool)
        reason = np.zeros(n, dtype="U64")
        current = np.full(n, self.root, dtype=object)
        active = np.ones(n, dtype=bool)
        for _ in range(len(self.nodes) + 1):
            if not active.any():
                break
            for name, node in self.nodes.items():
                rows = np.flatnonzero(active & (current == name))
                if rows.size == 0:
                    continue
                fracs = np.column_stack([fractions[c][rows] for c in node.columns(kind)])
                fracs = np.where(np.isfinite(fracs), fracs, -np.inf)
                winner = np.argmax(fracs, axis=1)
                best = fracs[np.arange(rows.size), winner]
                novote = ~(best > 0)
                weak = ~novote & ~(best > min_fraction)
                active[rows[novote]] = False
                reason[rows[novote]] = f"{name}:no_votes"
                active[rows[weak]] = False
                reason[rows[weak]] = f"{name}:below_min_fraction"
                ok = ~novote & ~weak
                for k, (answer, child) in enumerate(node.answers):
                    sel = rows[ok & (winner == k)]
                    if sel.size == 0:
                        continue
                    if child is None:
                        active[sel] = False
                        reason[sel] = f"{name}:{answer}"
                    elif child in self.nodes:
                        current[sel] = child
                    else:
                        result[sel] = child
                        resolved[sel] = True
                        active[sel] = False
        return np.ma.MaskedArray(result, mask=~resolved), reason


def _fraction_values(table, col, where):
    """
    The vote fractions of column ``col`` as floats, NaN where blank.

    Text that is not a number, infinities and fractions outside [0, 1] are
    refused with a `CatalogFormatError` naming ``where``, the column and the
    rows: they are not votes (percentages, counts or a shifted column).
    """
    values, _, notnum = numeric_values(table[col])
    label = f"Galaxy Zoo 2 column {col!r} of {where}"
    if notnum.any():
        rows = np.flatnonzero(notnum)
        texts = to_str_array(np.ma.getdata(table[col])[rows])
        msg = (
            f"{label} holds non-numeric vote fraction(s) {describe_values(texts)} at "
            f"{describe_rows(rows)}."
        )
        raise CatalogFormatError(msg)
    with np.errstate(invalid="ignore"):
        bad = np.isinf(values) | (values < -FRACTION_SLACK) | (values > 1 + FRACTION_SLACK)
    if bad.any():
        rows = np.flatnonzero(bad)
        msg = (
            f"{label} holds vote fraction(s) {describe_values(values[rows])} outside [0, 1] at "
            f"{describe_rows(rows)} (a count or percentage column?)."
        )
        raise CatalogFormatError(msg)
    return values


def check_min_fraction(min_fraction):
    """``min_fraction`` as a float in [0, 1), or a `ValueError` saying why not."""
    ok = isinstance(min_fraction, int | float | np.integer | np.floating) and not isinstance(
        min_fraction, bool | np.bool_
    )
    if not ok or not 0.0 <= min_fraction < 1.0:
        msg = (
            f"min_fraction must be a number in [0, 1) (the winning vote fraction must "
            f"exceed it; 1 or more would reject every galaxy), got {min_fraction!r}."
        )
        raise ValueError(msg)
    return float(min_fraction)


def _check_kind(kind):
    if kind not in FRACTION_KINDS:
        msg = f"Unknown GZ2 fraction kind {kind!r}; choose one of {FRACTION_KINDS}."
        raise ValueError(msg)


#: The part of the GZ2 decision tree (Willett et al. 2013, Fig. 1) that decides
#: the 12 types of Seo et al. (2023). Tasks t04, t06 and t08-t11 (spiral arms,
#: odd features) are not needed for those types and are left out.
GZ2_DECISION_TREE = DecisionTree(
    root="t01",
    scheme=GZ2_SCHEME,
    nodes={
        "t01": DecisionNode(
            "t01_smooth_or_features",
            (
                ("a01_smooth", "t07"),
                ("a02_features_or_disk", "t02"),
                ("a03_star_or_artifact", None),
            ),
            "Is the galaxy simply smooth and rounded, with no sign of a disk?",
        ),
        "t07": DecisionNode(
            "t07_rounded",
            (("a16_completely_round", "Er"), ("a17_in_between", "Ei"), ("a18_cigar_shaped", "Ec")),
            "How rounded is it?",
        ),
        "t02": DecisionNode(
            "t02_edgeon",
            (("a04_yes", "Edge-on"), ("a05_no", "t03")),
            "Could this be a disk viewed edge-on?",
        ),
        "t03": DecisionNode(
            "t03_bar",
            (("a06_bar", "t05_barred"), ("a07_no_bar", "t05")),
            "Is there a sign of a bar feature through the centre of the galaxy?",
        ),
        "t05": DecisionNode(
            "t05_bulge_prominence",
            (
                ("a10_no_bulge", "Sd"),
                ("a11_just_noticeable", "Sc"),
                ("a12_obvious", "Sb"),
                ("a13_dominant", "Sa"),
            ),
            "How prominent is the central bulge, compared with the rest of the galaxy?",
        ),
        "t05_barred": DecisionNode(
            "t05_bulge_prominence",
            (
                ("a10_no_bulge", "SBd"),
                ("a11_just_noticeable", "SBc"),
                ("a12_obvious", "SBb"),
                ("a13_dominant", "SBa"),
            ),
            "How prominent is the central bulge, compared with the rest of the galaxy?",
        ),
    },
)
