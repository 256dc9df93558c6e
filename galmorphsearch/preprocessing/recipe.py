# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The preprocessing recipe: every setting of `GalaxyCutout`, in one place.

A `CutoutRecipe` holds the settings (with their defaults, FITS header
keywords and comments) and makes cutouts from data, in the manner of
photutils' ``SourceFinder``: the settings go to the constructor, the
images to the call. `recipe_differences` compares the header keywords of
two sets of cutouts (a cutout set and a latent database, say) and tells
whether they were made with the same recipe.
"""

import inspect
import warnings
from typing import NamedTuple

import astropy.units as u
import numpy as np

from ..utils.exceptions import GalMorphSearchWarning

__all__ = ["CutoutRecipe", "recipe_differences", "warn_recipe_differences"]


class _Absent:
    """Marks a setting that is not an argument of an entry point."""

    def __repr__(self):
        return "<absent>"


_ABSENT = _Absent()
_SAME = object()  # the from_image default is that of GalaxyCutout


class _Setting(NamedTuple):
    """
    One preprocessing setting or recorded value.

    ``name`` is the argument of `GalaxyCutout` / `GalaxyCutout.from_image`
    (or the ``params`` key of a value that is recorded but not an
    argument); ``key`` the ``params`` key when it differs; ``keyword`` the
    FITS keyword (`None`: not recorded under its own keyword); ``default``
    the default of `GalaxyCutout` and ``image_default`` that of
    `GalaxyCutout.from_image` (`_ABSENT`: not an argument). ``run`` marks a
    per-run or per-cutout value that does not define the recipe,
    ``outcome`` one that the cutting finds out (not known before),
    ``by_input`` one recorded for one kind of input only, or that follows
    from it.
    """

    name: str
    keyword: str | None
    comment: str = ""
    default: object = _ABSENT
    image_default: object = _SAME
    key: str | None = None
    run: bool = False
    outcome: bool = False
    by_input: bool = False


# Every setting, in the order of the FITS keywords; each is spelt out here
# only. The signatures of GalaxyCutout and GalaxyCutout.from_image repeat
# the defaults for help() and the docs, and a test checks them against this.
_S = _Setting
_SETTINGS = (
    _S("input", "PREPINP", "cutout input: fits (gri bands) or colour image",
       by_input=True),
    _S("size", "CUTSIZE", "[pix] side of the output cutout", 256),
    _S("kron_factor", "KRONFACT", "crop half-side in Kron radii (side 2*KRONFACT*R_K)", 3.0),
    _S("rotate", "ROTATE", "major axis rotated onto the x axis (PA 90 deg)", False),
    _S("deblend", "DEBLEND", "target segment deblended", True),
    _S("deblend_contrast", "DBCONTR", "photutils deblending contrast", 0.045,
       key="contrast"),
    _S("deblend_nlevels", "DBNLEVEL", "photutils deblending threshold levels", 16,
       key="nlevels"),
    _S("deblend_mode", "DBMODE", "photutils deblending level spacing used", run=True,
       outcome=True),
    _S("merge_fragments", "MRGFRAG", "deblended pieces of the target merged back", True),
    _S("merge_contrast", "MRGCONTR", "min peak contrast of a distinct deblended source", 0.45),
    _S("merge_radius", "MRGRAD", "[pix] mid radius of the peak-contrast annulus", 4.0),
    _S("n_merged", "NMERGED", "deblended pieces merged back into the target", run=True,
       outcome=True),
    _S("nsigma", "NSIGMA", "detection threshold in sky sigma", 1.5),
    _S("npixels", "NPIXELS", "minimum connected pixels of a detection", 10),
    _S("kernel_fwhm", "KERNFWHM", "[pix] FWHM of the detection smoothing kernel", 3.0),
    _S("subtract_background", "BKGMODE", "background subtraction mode (T, F or auto)", "auto",
       _ABSENT, by_input=True),
    _S("background_subtracted", "BKGSUB", "background actually subtracted", run=True,
       outcome=True),
    _S("box_size", "BKGBOX", "[pix] Background2D box size", 64, _ABSENT, by_input=True),
    # from_image: a quarter of the smaller image side (None)
    _S("tolerance", "TOLPIX", "[pix] target search radius around the position", 5.0, None,
       run=True),
    _S("mask_dilation", "MASKDIL", "[pix] dilation of masked neighbour segments", 2),
    _S("min_crop", "MINCROP", "[pix] minimum crop side in the input image", 16),
    # from_image: the largest square centred on the position (None)
    _S("fallback_crop", None, "", 64, None),
    _S("linearize", "LINEARIZ", "colour input: arcsinh stretch undone for detection",
       _ABSENT, True, by_input=True),
    _S("stretch", "STRETCH", "make_lupton_rgb stretch", 0.5),
    _S("Q", "LUPTONQ", "make_lupton_rgb Q", 10.0),
    _S("band_scales", None, "", (1.1, 1.0, 0.79), _ABSENT),
    _S("scale_g", "GSCALE", "g band multiplier (blue channel)", by_input=True),
    _S("scale_r", "RSCALE", "r band multiplier (green channel)", by_input=True),
    _S("scale_i", "ISCALE", "i band multiplier (red channel)", by_input=True),
    _S("seed", "PREPSEED", "seed of the background-pixel draws", None, run=True),
    _S("saturation_level", "SATLEVEL", "band pixel value at which saturation starts", None,
       _ABSENT),
    _S("version", "PREPVERS", "galmorphsearch version that made the cutout", run=True),
)
del _S

# The default of every GalaxyCutout parameter (make_cutouts and _check_params
# take them from here) and of every GalaxyCutout.from_image parameter: no
# background map, band scales or saturation level there; the search radius
# and fallback crop follow the image size (None).
_DEFAULTS = {s.name: s.default for s in _SETTINGS if s.default is not _ABSENT}
_FROM_IMAGE_DEFAULTS = {
    s.name: s.default if s.image_default is _SAME else s.image_default
    for s in _SETTINGS
    if (s.image_default is not _ABSENT
        and (s.image_default is not _SAME or s.default is not _ABSENT))}

# (params key, FITS keyword, comment) of every recorded preprocessing parameter
_HEADER_KEYWORDS = tuple((s.key or s.name, s.keyword, s.comment) for s in _SETTINGS
                         if s.keyword is not None)

#: FITS keywords of per-run values and per-cutout outcomes (see
#: `CutoutRecipe.RUN_KEYWORDS`).
RUN_KEYWORDS = frozenset(s.keyword for s in _SETTINGS if s.run)

# Keywords that follow from the kind of input (gri FITS bands or a colour image)
_INPUT_KIND_KEYWORDS = frozenset(s.keyword for s in _SETTINGS if s.by_input)

# Recorded values that the cutting finds out, not known before it
_OUTCOMES = frozenset(s.key or s.name for s in _SETTINGS if s.outcome)

# The arguments of CutoutRecipe: those of GalaxyCutout and from_image
_ARGUMENTS = {**_DEFAULTS, **_FROM_IMAGE_DEFAULTS, **_DEFAULTS}


def _header_keywords(params, comments=False):
    """The flat FITS keywords of a ``params`` dict (see `GalaxyCutout.header_keywords`)."""
    out = {}
    for key, keyword, comment in _HEADER_KEYWORDS:
        if key not in params:
            continue
        value = params[key]
        if isinstance(value, np.random.Generator):
            value = None
        elif key == "subtract_background":
            value = value if isinstance(value, str) else ("T" if value else "F")
        out[keyword] = (value, comment) if comments else value
    return out


class CutoutRecipe:
    """
    A preprocessing recipe: the settings of `GalaxyCutout`, checked once.

    The settings go to the constructor and the images to the call, as in
    photutils' ``SourceFinder``: ``recipe(g, r, i, position)`` makes a
    `GalaxyCutout` from three FITS bands, ``recipe.from_image(image)`` one
    from a colour image, ``recipe.make_cutouts(g, r, i, positions)`` many
    from the same field; ``recipe.header_keywords()`` gives the FITS
    keywords that its cutouts record, and `CutoutRecipe.from_header` makes
    the recipe back from them.

    Parameters
    ----------
    **settings
        Any keyword parameter of `GalaxyCutout` or
        `GalaxyCutout.from_image` (``size``, ``kron_factor``, ``rotate``,
        ..., ``seed``, ``linearize``), with the same meanings and
        defaults. Settings that one entry point does not take are left
        out of its cutouts: ``subtract_background``, ``box_size``,
        ``saturation_level`` and ``band_scales`` apply to FITS bands only,
        ``linearize`` to colour images only. ``tolerance=None`` and
        ``fallback_crop=None`` stand for the default of each entry point.

    Raises
    ------
    TypeError
        An unknown setting, or a setting of the wrong type.
    ValueError
        A setting out of range.

    Examples
    --------
    >>> from galmorphsearch.preprocessing import CutoutRecipe
    >>> recipe = CutoutRecipe(size=64, rotate=True, seed=0)
    >>> recipe
    CutoutRecipe(size=64, rotate=True, seed=0)
    >>> recipe.header_keywords()['CUTSIZE']
    64
    >>> path = 'galmorphsearch/data/hcg88/reprojected_sdss_{}.fits.bz2'
    >>> cutout = recipe(*(path.format(b) for b in 'gri'), (163, 131))  # doctest: +SKIP
    """

    #: FITS keywords that describe one run (the package version, the seed
    #: of the sky-pixel draws) or a per-galaxy outcome (pieces merged back,
    #: the deblending spacing and background subtraction actually used, the
    #: radius searched for the target), not how the images were made: they
    #: are not compared by `recipe_differences`.
    RUN_KEYWORDS = RUN_KEYWORDS

    def __init__(self, **settings):
        unknown = set(settings) - set(_ARGUMENTS)
        if unknown:
            msg = f"unknown parameters: {sorted(unknown)}"
            raise TypeError(msg)
        # None stands for the default of each entry point where from_image has None
        self._settings = {name: value for name, value in settings.items()
                          if not (value is None and _FROM_IMAGE_DEFAULTS.get(name, 0) is None
                                  and _DEFAULTS.get(name) is not None)}
        _check_params(self._options(_DEFAULTS))
        if "linearize" in self._settings:
            _check_bool("linearize", self._settings["linearize"])

    def _options(self, defaults):
        """The settings given that an entry point with these ``defaults`` takes."""
        return {name: value for name, value in self._settings.items() if name in defaults}

    @property
    def settings(self):
        """Every setting, with the `GalaxyCutout` defaults for those not given (dict)."""
        return {**_ARGUMENTS, **self._settings}

    def __repr__(self):
        given = ", ".join(f"{name}={value!r}" for name, value in self._settings.items())
        return f"{type(self).__name__}({given})"

    def __eq__(self, other):
        if not isinstance(other, CutoutRecipe):
            return NotImplemented
        return self.settings == other.settings

    __hash__ = None

    def __call__(self, g, r, i, position, *, wcs=None):
        """
        Make a `GalaxyCutout` from g, r and i band images.

        Parameters
        ----------
        g, r, i, position, wcs
            As for `GalaxyCutout`.

        Returns
        -------
        cutout : `GalaxyCutout`
        """
        from .cutout import GalaxyCutout

        return GalaxyCutout(g, r, i, position, wcs=wcs, **self._options(_DEFAULTS))

    def from_image(self, image, position=None):
        """
        Make a `GalaxyCutout` from a ready-made colour image.

        Parameters
        ----------
        image, position
            As for `GalaxyCutout.from_image`.

        Returns
        -------
        cutout : `GalaxyCutout`
        """
        from .cutout import GalaxyCutout

        return GalaxyCutout.from_image(image, position, **self._options(_FROM_IMAGE_DEFAULTS))

    def make_cutouts(self, g, r, i, positions, *, wcs=None, progress_bar=False):
        """
        Make many cutouts from the same g, r, i images (see `make_cutouts`).

        Parameters
        ----------
        g, r, i, positions, wcs, progress_bar
            As for `make_cutouts`.

        Returns
        -------
        cutouts : list of `GalaxyCutout`
        """
        from .cutout import make_cutouts

        return make_cutouts(g, r, i, positions, wcs=wcs, progress_bar=progress_bar,
                            **self._options(_DEFAULTS))

    def header_keywords(self, comments=False):
        """
        The FITS keywords that cutouts of FITS bands made with the recipe record.

        The outcomes of each cutout (``NMERGED``, ``DBMODE``, ``BKGSUB``)
        are left out.

        Parameters
        ----------
        comments : bool, optional
            Return ``(value, comment)`` tuples instead of bare values.

        Returns
        -------
        keywords : dict
            Upper-case keyword to value, as `GalaxyCutout.header_keywords`.
        """
        params = _check_params(self._options(_DEFAULTS))
        params = {key: value for key, value in params.items() if key not in _OUTCOMES}
        return _header_keywords(params, comments)

    @classmethod
    def from_header(cls, meta):
        """
        The recipe recorded in FITS keywords.

        Parameters
        ----------
        meta : mapping or object with a ``header_keywords()`` method
            The keywords of a cutout (`GalaxyCutout.header_keywords`), a
            `CutoutSet`, the ``meta`` of a latent database, or a FITS
            header. Keywords that are not preprocessing settings are
            ignored, and so are the outcomes of each cutout and, for colour
            input (``PREPINP = 'colour'``), the settings of FITS input and
            ``TOLPIX`` (it follows from the image size).

        Returns
        -------
        recipe : `CutoutRecipe`
            With the settings that the keywords record; the others (and
            ``fallback_crop``, which is not recorded) keep their defaults.

        Examples
        --------
        >>> from galmorphsearch.preprocessing import CutoutRecipe
        >>> CutoutRecipe.from_header({'CUTSIZE': 64, 'ROTATE': True, 'NMERGED': 2})
        CutoutRecipe(size=64, rotate=True)
        """
        meta = _as_keywords(meta)
        colour = meta.get("PREPINP") == "colour"
        settings = {}
        for s in _SETTINGS:
            if (s.keyword is None or s.keyword not in meta or s.outcome
                    or s.default is _ABSENT and s.image_default is _SAME
                    or (colour and (s.image_default is _ABSENT or s.name == "tolerance"))):
                continue
            value = meta[s.keyword]
            if s.name == "subtract_background" and value in ("T", "F"):
                value = value == "T"
            settings[s.name] = value
        scales = [meta.get(keyword) for keyword in ("GSCALE", "RSCALE", "ISCALE")]
        if all(scale is not None for scale in scales):
            settings["band_scales"] = tuple(scales)
        return cls(**settings)


def _signature():
    """The signature of `CutoutRecipe`, its settings spelt out with their defaults."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                   for name, default in _ARGUMENTS.items()]
    return inspect.Signature(parameters)


CutoutRecipe.__init__.__signature__ = _signature()


def _as_keywords(keywords):
    """
    A dict of FITS keywords from a mapping or an object with ``header_keywords()``.

    From a list or tuple of them, the keywords that all share with one value.
    """
    if isinstance(keywords, (list, tuple)):
        if not keywords:
            return {}
        first, *others = (_as_keywords(item) for item in keywords)
        return {key: value for key, value in first.items()
                if all(key in other and other[key] == value for other in others)}
    getter = getattr(keywords, "header_keywords", None)
    return dict(getter() if callable(getter) else keywords)


def recipe_differences(ours, theirs, *, size=None, other="database"):
    """
    How two sets of cutouts differ in their preprocessing recipe.

    Only the preprocessing keywords that both sides record are compared,
    less the `CutoutRecipe.RUN_KEYWORDS` (seed, package version, per-cutout
    outcomes). When the kinds of input differ (``PREPINP``: gri FITS bands
    or colour images) one sentence says so, in place of the keywords that
    follow from the kind of input.

    Parameters
    ----------
    ours, theirs : mapping, object with a ``header_keywords()`` method, or list
        FITS keywords: those of a `CutoutSet` (``header_keywords()``), a
        `GalaxyCutout`, a `CutoutRecipe`, the ``meta`` of a latent
        database, or an encoder's ``metadata``; of a list of them (cutouts,
        say), the keywords that all share with one value (those that vary
        are per-cutout values, not compared).
    size : int, optional
        Side of our cutouts in pixels, compared with the encoder input
        size ``INSIZE`` of ``theirs`` when it has one.
    other : str, optional
        What ``theirs`` are, in the messages: ``'(database 3.0)'``.

    Returns
    -------
    differences : list of str
        One human-readable difference per item, in keyword order; empty
        when the recipes agree.

    Examples
    --------
    >>> from galmorphsearch.preprocessing import recipe_differences
    >>> recipe_differences({'KRONFACT': 3.0, 'PREPSEED': 1},
    ...                    {'KRONFACT': 2.5, 'PREPSEED': 2, 'INSIZE': 128}, size=64)
    ['cutout size 64 px (encoder input 128 px)', 'KRONFACT 3.0 (database 2.5)']
    """
    ours = _as_keywords(ours)
    theirs = _as_keywords(theirs)
    compared = {keyword for _, keyword, _ in _HEADER_KEYWORDS} - RUN_KEYWORDS
    differ = sorted(key for key in ours.keys() & theirs.keys() & compared
                    if ours[key] != theirs[key])
    parts = []
    if size is not None and theirs.get("INSIZE") is not None and size != theirs["INSIZE"]:
        parts.append(f"cutout size {size} px (encoder input {theirs['INSIZE']} px)")
    if "PREPINP" in differ:
        # Cutouts from gri FITS bands and from ready-made colour images differ in
        # the keywords that follow from the kind of input: one plain sentence says so.
        parts.append(f"they were made from {ours['PREPINP']!r} input, the {other}'s from "
                     f"{theirs['PREPINP']!r} input (both are gri colour renderings, but not "
                     "identical ones)")
        differ = [key for key in differ if key not in _INPUT_KIND_KEYWORDS]
    parts += [f"{key} {ours[key]!r} ({other} {theirs[key]!r})" for key in differ]
    return parts


def warn_recipe_differences(ours, theirs, *, size=None, other="database", message=None,
                            stacklevel=1):
    """
    Warn when two sets of cutouts were not made with the same recipe.

    Parameters
    ----------
    ours, theirs, size, other
        As for `recipe_differences`.
    message : str, optional
        The start of the warning, before the differences; by default
        ``"The cutouts were not preprocessed like the {other}'s"``.
    stacklevel : int, optional
        As for `warnings.warn` called where this function is called: 1
        (default) points the warning at that call, 2 at its caller.

    Returns
    -------
    differences : list of str
        As `recipe_differences` returns them.

    Warns
    -----
    GalMorphSearchWarning
        When there are differences: ``message``, a colon and the
        differences separated by semicolons.
    """
    differences = recipe_differences(ours, theirs, size=size, other=other)
    if differences:
        if message is None:
            message = f"The cutouts were not preprocessed like the {other}'s"
        warnings.warn(f"{message}: " + "; ".join(differences) + ".", GalMorphSearchWarning,
                      stacklevel=stacklevel + 1)
    return differences


# ---------------------------------------------------------------------- checks


def _check_number(name, value, *, low=None, high=None, low_open=False, integer=False):
    """
    Check that ``value`` is a real number (an integer with ``integer``) in range.

    Raises `TypeError` for a value of the wrong type (including bool and
    strings) and `ValueError` for a non-finite or out-of-range one; the
    messages name the parameter and the value.
    """
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    what = "an integer" if integer else "a number"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kinds):
        msg = f"{name} must be {what}, got {value!r} ({type(value).__name__})"
        raise TypeError(msg)
    if not np.isfinite(value):
        msg = f"{name} must be a finite number, got {value!r}"
        raise ValueError(msg)
    if ((low is not None and (value < low or (low_open and value == low)))
            or (high is not None and value > high)):
        if high is None:
            bound = f"> {low:g}" if low_open else f">= {low:g}"
        else:
            bound = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
        msg = f"{name} must be {bound}, got {value!r}"
        raise ValueError(msg)
    return int(value) if integer else float(value)


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        msg = f"{name} must be True or False, got {value!r}"
        raise TypeError(msg)
    return bool(value)


def _check_params(options):
    """
    Validate the `GalaxyCutout` parameters and return the flat ``params`` dict.

    ``options`` maps parameter names to values; missing ones take their
    `_DEFAULTS`. Unknown names raise `TypeError`, values of the wrong type
    `TypeError` and out-of-range values `ValueError`, each naming the
    parameter and the value.
    """
    from .. import __version__

    unknown = set(options) - set(_DEFAULTS)
    if unknown:
        msg = f"unknown parameters: {sorted(unknown)}"
        raise TypeError(msg)
    o = {**_DEFAULTS, **options}
    tolerance = o["tolerance"]
    if isinstance(tolerance, u.Quantity):
        try:
            tolerance = tolerance.to_value(u.pix)
        except u.UnitConversionError as exc:
            msg = f"tolerance must be in pixels, got {tolerance!r}"
            raise ValueError(msg) from exc
    mode = o["subtract_background"]
    if not (isinstance(mode, (bool, np.bool_)) or (isinstance(mode, str) and mode == "auto")):
        msg = f"subtract_background must be True, False or 'auto', got {mode!r}"
        raise ValueError(msg)
    seed = o["seed"]
    if not (seed is None or isinstance(seed, np.random.Generator)):
        seed = _check_number("seed", seed, low=0, integer=True)
    params = {
        "input": "fits",
        "size": _check_number("size", o["size"], low=8, integer=True),
        "kron_factor": _check_number("kron_factor", o["kron_factor"], low=0, low_open=True),
        "rotate": _check_bool("rotate", o["rotate"]),
        "deblend": _check_bool("deblend", o["deblend"]),
        "contrast": _check_number("deblend_contrast", o["deblend_contrast"], low=0, high=1),
        "nlevels": _check_number("deblend_nlevels", o["deblend_nlevels"], low=1, integer=True),
        "deblend_mode": "exponential",
        "merge_fragments": _check_bool("merge_fragments", o["merge_fragments"]),
        "merge_contrast": _check_number("merge_contrast", o["merge_contrast"], low=0, high=1),
        "merge_radius": _check_number("merge_radius", o["merge_radius"], low=0, low_open=True),
        "n_merged": 0,
        "nsigma": _check_number("nsigma", o["nsigma"], low=0, low_open=True),
        "npixels": _check_number("npixels", o["npixels"], low=1, integer=True),
        "kernel_fwhm": _check_number("kernel_fwhm", o["kernel_fwhm"], low=0),
        "subtract_background": mode if isinstance(mode, str) else bool(mode),
        "box_size": (None if o["box_size"] is None
                     else _check_number("box_size", o["box_size"], low=1, integer=True)),
        "tolerance": _check_number("tolerance", tolerance, low=0),
        "mask_dilation": _check_number("mask_dilation", o["mask_dilation"], low=0,
                                       integer=True),
        "min_crop": _check_number("min_crop", o["min_crop"], low=2, integer=True),
        # None stands for the default square
        "fallback_crop": _check_number(
            "fallback_crop",
            _DEFAULTS["fallback_crop"] if o["fallback_crop"] is None else o["fallback_crop"],
            low=2, integer=True),
        "stretch": _check_number("stretch", o["stretch"], low=0, low_open=True),
        "Q": _check_number("Q", o["Q"], low=0, low_open=True),
        "seed": seed,
        "version": __version__,
    }
    if o["saturation_level"] is not None:
        params["saturation_level"] = _check_number("saturation_level", o["saturation_level"])
    band_scales = o["band_scales"]
    if band_scales is not None:
        if isinstance(band_scales, str) or np.ndim(band_scales) != 1 or len(band_scales) != 3:
            msg = f"band_scales must hold three numbers (g, r, i), got {band_scales!r}"
            raise ValueError(msg)
        params["scale_g"], params["scale_r"], params["scale_i"] = (
            _check_number(f"band_scales[{k}]", s, low=0, low_open=True)
            for k, s in enumerate(band_scales))
    return params

