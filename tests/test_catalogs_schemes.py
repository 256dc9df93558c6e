# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the morphology schemes and the GZ2 decision tree data."""

import numpy as np
import pytest

from galmorphsearch.catalogs import (
    EFIGI_SCHEME,
    EFIGI_TTYPES,
    GZ2_DECISION_TREE,
    GZ2_SCHEME,
    NA10_SCHEME,
    DecisionNode,
    DecisionTree,
    MorphologyScheme,
    get_scheme,
)
from galmorphsearch.utils.exceptions import UnknownMorphologyError


def test_gz2_scheme_order_is_seo_table1():
    assert GZ2_SCHEME.types == (
        "Er", "Ei", "Ec", "Edge-on", "Sa", "Sb", "Sc", "Sd", "SBa", "SBb", "SBc", "SBd",
    )  # fmt: skip
    assert len(GZ2_SCHEME) == 12
    assert [GZ2_SCHEME.index(t) for t in GZ2_SCHEME] == list(range(12))


def test_efigi_scheme_follows_t():
    assert len(EFIGI_SCHEME) == 18
    for t, name in EFIGI_TTYPES.items():
        assert EFIGI_SCHEME.index(name) == t + 6
    assert EFIGI_SCHEME.type_at(0) == "cE"
    assert EFIGI_SCHEME.type_at(17) == "dE"


def test_na10_scheme_has_14_types():
    assert len(NA10_SCHEME) == 14
    assert NA10_SCHEME.types[0] == "E"
    assert NA10_SCHEME.types[-1] == "Sm/Im"


def test_adjacent_and_is_good_paper_example():
    assert EFIGI_SCHEME.adjacent("Sc") == ("Sb", "Sbc", "Sc", "Scd", "Sd")
    assert EFIGI_SCHEME.adjacent("cE") == ("cE", "E", "cD")
    assert EFIGI_SCHEME.adjacent("Sc", width=0) == ("Sc",)
    assert EFIGI_SCHEME.is_good("Sc", "Sd") is True
    assert EFIGI_SCHEME.is_good("Sc", "Sdm") is False
    good = GZ2_SCHEME.is_good(["Er", "Er", "Sb", "SBd"], ["Ec", "Edge-on", "Sd", "SBb"])
    assert good.tolist() == [True, False, True, True]
    masked = np.ma.MaskedArray(["Er", "Er"], mask=[False, True])
    assert GZ2_SCHEME.is_good(masked, ["Er", "Er"]).tolist() == [True, False]
    with pytest.raises(ValueError, match="width"):
        GZ2_SCHEME.adjacent("Er", width=-1)


def test_unknown_type_names_the_string():
    with pytest.raises(UnknownMorphologyError, match="'S0/b'"):
        EFIGI_SCHEME.index("S0/b")
    with pytest.raises(UnknownMorphologyError, match="'Sx'"):
        GZ2_SCHEME.is_good("Sx", "Sa")
    with pytest.raises(UnknownMorphologyError, match="outside"):
        GZ2_SCHEME.type_at(12)


def test_indices_masked():
    idx = GZ2_SCHEME.indices(np.ma.MaskedArray(["Sa", "", "SBc"], mask=[False, False, True]))
    assert idx.tolist() == [4, None, None]


def test_get_scheme():
    assert get_scheme("GZ2") is GZ2_SCHEME
    assert get_scheme(" efigi ") is EFIGI_SCHEME
    assert get_scheme(NA10_SCHEME) is NA10_SCHEME
    with pytest.raises(ValueError, match="'hubble'"):
        get_scheme("hubble")


def test_scheme_validation():
    with pytest.raises(ValueError, match="duplicate"):
        MorphologyScheme("x", ["a", "b", "a"])
    with pytest.raises(ValueError, match="at least one"):
        MorphologyScheme("x", [])
    s = MorphologyScheme("x", ["a", "b"])
    assert "a" in s and "c" not in s
    assert s == MorphologyScheme("x", ("a", "b"))
    assert "2 types" in repr(s)


def test_gz2_tree_reaches_every_type():
    leaves = {
        child
        for node in GZ2_DECISION_TREE.nodes.values()
        for _, child in node.answers
        if child is not None and child not in GZ2_DECISION_TREE.nodes
    }
    assert leaves == set(GZ2_SCHEME.types)
    cols = GZ2_DECISION_TREE.required_columns("fraction")
    assert "t05_bulge_prominence_a13_dominant_fraction" in cols
    with pytest.raises(ValueError, match="fraction kind"):
        GZ2_DECISION_TREE.required_columns("votes")


def test_tree_validation():
    with pytest.raises(ValueError, match="neither a node nor a type"):
        DecisionTree("a", {"a": DecisionNode("t01", (("a01", "Elliptical"),))}, GZ2_SCHEME)
    with pytest.raises(ValueError, match="Root"):
        DecisionTree("b", {"a": DecisionNode("t01", (("a01", "Er"),))}, GZ2_SCHEME)
