# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Morphology schemes: the ordered lists of type names used by each catalog.

A scheme is data, not code: it is a name, an ordered tuple of type names and
a short description of what the order means. Everything that depends on the
order (the ``type_index`` column of the catalog readers, the "good
classification" of Seo et al. 2023, correlation coefficients between true
and predicted types) goes through a `MorphologyScheme`.
"""

import numpy as np

from ..utils.exceptions import UnknownMorphologyError

__all__ = [
    "MorphologyScheme",
    "GZ2_SCHEME",
    "EFIGI_SCHEME",
    "NA10_SCHEME",
    "EFIGI_TTYPES",
    "get_scheme",
]


class MorphologyScheme:
    """
    An ordered sequence of galaxy morphological types.

    Parameters
    ----------
    name : str
        Short name of the scheme (e.g. ``'gz2'``).
    types : sequence of str
        The type names, in the order of the scheme. The position of a type in
        this sequence is its ``type_index``.
    description : str, optional
        What the order means and where the types come from.
    reference : str, optional
        Bibliographic reference of the catalog that defines the types.

    Raises
    ------
    ValueError
        If ``types`` is empty or holds duplicate or empty names.

    Examples
    --------
    >>> from galmorphsearch.catalogs import EFIGI_SCHEME
    >>> EFIGI_SCHEME.index('Sc')
    11
    >>> EFIGI_SCHEME.adjacent('Sc')
    ('Sb', 'Sbc', 'Sc', 'Scd', 'Sd')
    >>> EFIGI_SCHEME.is_good('Sc', 'Sbc')
    True
    """

    def __init__(self, name, types, description="", reference=""):
        types = tuple(str(t) for t in types)
        if not types:
            msg = f"Morphology scheme {name!r} needs at least one type."
            raise ValueError(msg)
        if any(not t for t in types):
            msg = f"Morphology scheme {name!r} has an empty type name."
            raise ValueError(msg)
        if len(set(types)) != len(types):
            seen = set()
            dups = sorted({t for t in types if t in seen or seen.add(t)})
            msg = f"Morphology scheme {name!r} has duplicate type names: {dups}."
            raise ValueError(msg)
        self.name = str(name)
        self.types = types
        self.description = description
        self.reference = reference
        self._lookup = {t: i for i, t in enumerate(types)}

    def __repr__(self):
        return f"<MorphologyScheme {self.name!r}: {len(self)} types ({', '.join(self.types)})>"

    def __len__(self):
        return len(self.types)

    def __iter__(self):
        return iter(self.types)

    def __contains__(self, morphology):
        return morphology in self._lookup

    def __eq__(self, other):
        if not isinstance(other, MorphologyScheme):
            return NotImplemented
        return self.name == other.name and self.types == other.types

    def __hash__(self):
        return hash((self.name, self.types))

    def index(self, morphology):
        """
        Position of a type along the scheme's sequence.

        Parameters
        ----------
        morphology : str
            A type name of this scheme.

        Returns
        -------
        index : int
            The ``type_index`` of ``morphology`` (0 for the first type).

        Raises
        ------
        UnknownMorphologyError
            If ``morphology`` is not a type of this scheme.

        Examples
        --------
        >>> from galmorphsearch.catalogs import GZ2_SCHEME
        >>> GZ2_SCHEME.index('Edge-on')
        3
        """
        try:
            return self._lookup[morphology]
        except (KeyError, TypeError):
            msg = (
                f"Unknown morphology {morphology!r} for scheme {self.name!r}; "
                f"known types are: {', '.join(self.types)}."
            )
            raise UnknownMorphologyError(msg) from None

    def type_at(self, index):
        """
        Type name at a position of the sequence.

        Parameters
        ----------
        index : int
            Position along the sequence, ``0 <= index < len(scheme)``.

        Returns
        -------
        morphology : str
            The type name.

        Raises
        ------
        UnknownMorphologyError
            If ``index`` is outside the sequence.

        Examples
        --------
        >>> from galmorphsearch.catalogs import GZ2_SCHEME
        >>> GZ2_SCHEME.type_at(8)
        'SBa'
        """
        i = int(index)
        if not 0 <= i < len(self.types):
            msg = f"Type index {index} is outside 0..{len(self.types) - 1} of scheme {self.name!r}."
            raise UnknownMorphologyError(msg)
        return self.types[i]

    def indices(self, morphologies):
        """
        Type indices of many type names at once.

        Parameters
        ----------
        morphologies : array-like of str
            Type names; masked entries (and empty strings) give masked
            indices.

        Returns
        -------
        indices : `numpy.ma.MaskedArray` of int
            The type indices, masked where the input is masked.

        Raises
        ------
        UnknownMorphologyError
            If a (non-masked) name is not a type of this scheme.

        Examples
        --------
        >>> from galmorphsearch.catalogs import GZ2_SCHEME
        >>> GZ2_SCHEME.indices(['Er', 'SBd']).tolist()
        [0, 11]
        """
        values = np.ma.asarray(morphologies)
        mask = np.ma.getmaskarray(values).copy()
        data = np.ma.getdata(values)
        out = np.zeros(data.shape, dtype=np.int64)
        for pos in np.ndindex(data.shape):
            if mask[pos]:
                continue
            name = data[pos]
            if isinstance(name, bytes):
                name = name.decode("ascii", errors="replace")
            name = str(name)
            if name == "":
                mask[pos] = True
                continue
            out[pos] = self.index(name)
        return np.ma.MaskedArray(out, mask=mask)

    def adjacent(self, morphology, width=2):
        """
        Types within ``width`` steps of a type along the sequence.

        This is the "good classification" window of Seo et al. (2023): a
        prediction is good when it lies within two adjacent types of the true
        type (for EFIGI ``Sc``: ``Sb, Sbc, Sc, Scd, Sd``).

        Parameters
        ----------
        morphology : str
            The central type.
        width : int, optional
            Number of steps on each side (default 2). ``width=0`` returns the
            type alone.

        Returns
        -------
        types : tuple of str
            The neighbouring types, in scheme order, including ``morphology``.

        Raises
        ------
        UnknownMorphologyError
            If ``morphology`` is not a type of this scheme.
        ValueError
            If ``width`` is negative.

        Examples
        --------
        >>> from galmorphsearch.catalogs import GZ2_SCHEME
        >>> GZ2_SCHEME.adjacent('Er')
        ('Er', 'Ei', 'Ec')
        """
        width = int(width)
        if width < 0:
            msg = f"width must be >= 0, got {width}."
            raise ValueError(msg)
        i = self.index(morphology)
        return self.types[max(0, i - width) : i + width + 1]

    def is_good(self, true, predicted, width=2):
        """
        Whether predicted types lie within ``width`` steps of the true types.

        Parameters
        ----------
        true, predicted : str or array-like of str
            True and predicted type names (broadcast against each other).
            Masked or empty entries are never good.
        width : int, optional
            Largest allowed distance along the sequence (default 2, the
            "good classification" of Seo et al. 2023).

        Returns
        -------
        good : bool or `numpy.ndarray` of bool
            A Python bool for scalar inputs, an array otherwise.

        Raises
        ------
        UnknownMorphologyError
            If a name is not a type of this scheme.

        Examples
        --------
        >>> from galmorphsearch.catalogs import EFIGI_SCHEME
        >>> EFIGI_SCHEME.is_good(['Sc', 'Sc'], ['Sd', 'Sdm']).tolist()
        [True, False]
        """
        width = int(width)
        if width < 0:
            msg = f"width must be >= 0, got {width}."
            raise ValueError(msg)
        scalar = np.ndim(true) == 0 and np.ndim(predicted) == 0
        ti = self.indices(np.atleast_1d(np.ma.asarray(true)))
        pi = self.indices(np.atleast_1d(np.ma.asarray(predicted)))
        diff = np.ma.abs(ti - pi)
        good = np.ma.filled(diff <= width, False)
        if scalar:
            return bool(good[0])
        return np.asarray(good, dtype=bool)


GZ2_SCHEME = MorphologyScheme(
    "gz2",
    ["Er", "Ei", "Ec", "Edge-on", "Sa", "Sb", "Sc", "Sd", "SBa", "SBb", "SBc", "SBd"],
    description=(
        "The 12 Galaxy Zoo 2 types of Seo et al. (2023, Table 1): smooth galaxies by "
        "roundness (Er completely round, Ei in between, Ec cigar-shaped), edge-on disks, "
        "then face-on disks without a bar (Sa bulge dominant, Sb obvious, Sc just "
        "noticeable, Sd no bulge) and with a bar (SBa..SBd). The order is that of "
        "Seo et al. (2023) Table 1 and Fig. 12: round to elongated smooth galaxies, "
        "edge-on disks, then bulge prominence decreasing within the unbarred and the "
        "barred sequences. Sd and SBa are neighbours in this order only by convention."
    ),
    reference="Willett et al. 2013, MNRAS 435, 2835; Seo et al. 2023, PASP 135, 084101",
)

#: EFIGI T-type (-6..11) to type name, Baillard et al. (2011) Table 2.
EFIGI_TTYPES = {
    -6: "cE",
    -5: "E",
    -4: "cD",
    -3: "S0-",
    -2: "S0",
    -1: "S0+",
    0: "S0a",
    1: "Sa",
    2: "Sab",
    3: "Sb",
    4: "Sbc",
    5: "Sc",
    6: "Scd",
    7: "Sd",
    8: "Sdm",
    9: "Sm",
    10: "Im",
    11: "dE",
}

EFIGI_SCHEME = MorphologyScheme(
    "efigi",
    [EFIGI_TTYPES[t] for t in sorted(EFIGI_TTYPES)],
    description=(
        "The 18 EFIGI morphological types ordered by EFIGI T-type, from T=-6 (cE) to "
        "T=11 (dE); type_index = T + 6. dE closes the sequence after Im, as in the "
        "EFIGI catalogue, although it is not a late-type spiral."
    ),
    reference="Baillard et al. 2011, A&A 532, A74",
)

NA10_SCHEME = MorphologyScheme(
    "na10",
    ["E", "S0-", "S0", "S0+", "S0/a", "Sa", "Sab", "Sb", "Sbc", "Sc", "Scd", "Sd", "Sdm", "Sm/Im"],
    description=(
        "14 types from the Nair & Abraham (2010) T-type codes, ordered along the Hubble "
        "sequence: all ellipticals (codes for c0, E0, E+ share T=-5) as E, the three S0 "
        "stages, S0/a, the spirals Sa..Sdm, and the Magellanic types Sm and Im merged "
        "into Sm/Im. See galmorphsearch.catalogs.na10 for the code table and its caveats."
    ),
    reference="Nair & Abraham 2010, ApJS 186, 427",
)

_SCHEMES = {s.name: s for s in (GZ2_SCHEME, EFIGI_SCHEME, NA10_SCHEME)}


def get_scheme(name):
    """
    Look up a morphology scheme by name.

    Parameters
    ----------
    name : str or `MorphologyScheme`
        ``'gz2'``, ``'efigi'`` or ``'na10'`` (case-insensitive). A
        `MorphologyScheme` is returned unchanged.

    Returns
    -------
    scheme : `MorphologyScheme`
        The scheme.

    Raises
    ------
    ValueError
        If no scheme has that name.

    Examples
    --------
    >>> from galmorphsearch.catalogs import get_scheme
    >>> len(get_scheme('EFIGI'))
    18
    """
    if isinstance(name, MorphologyScheme):
        return name
    key = str(name).strip().lower()
    if key not in _SCHEMES:
        msg = f"Unknown morphology scheme {name!r}; choose one of {sorted(_SCHEMES)}."
        raise ValueError(msg)
    return _SCHEMES[key]
