# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The preprocessing recipe: one table of settings, and the recipe comparison."""

import inspect
import warnings

import numpy as np
import pytest
from astropy.modeling.models import Sersic2D

from galmorphsearch import GalaxyCutout
from galmorphsearch.preprocessing import (
    CutoutRecipe,
    CutoutSet,
    make_cutouts,
    recipe_differences,
    warn_recipe_differences,
)
from galmorphsearch.preprocessing.recipe import (
    _DEFAULTS,
    _FROM_IMAGE_DEFAULTS,
    _HEADER_KEYWORDS,
    _INPUT_KIND_KEYWORDS,
)
from galmorphsearch.utils import GalMorphSearchWarning

SHAPE = (80, 80)
CENTRE = (40.0, 40.0)


@pytest.fixture(scope="module")
def bands():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    model = Sersic2D(amplitude=1.0, r_eff=5, n=1.0, x_0=CENTRE[0], y_0=CENTRE[1], ellip=0.4)
    return [s * model(x, y) + rng.normal(0, 0.02, SHAPE) for s in (0.6, 1.0, 1.3)]


@pytest.fixture(scope="module")
def rgb():
    image = np.random.default_rng(0).uniform(0.05, 0.1, (*SHAPE, 3))
    image[32:48, 32:48] = 0.8
    return image


def _keyword_defaults(function):
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.kind is p.KEYWORD_ONLY}


def test_signatures_follow_the_recipe():
    # GalaxyCutout's signatures spell out the defaults (public API); they
    # must be those of the recipe table
    init = _keyword_defaults(GalaxyCutout.__init__)
    assert init.pop("wcs") is None
    assert init == _DEFAULTS
    assert _keyword_defaults(GalaxyCutout.from_image) == _FROM_IMAGE_DEFAULTS
    # the recipe takes every setting of both, with the GalaxyCutout defaults
    recipe = _keyword_defaults(CutoutRecipe)
    assert recipe == {**_FROM_IMAGE_DEFAULTS, **_DEFAULTS}
    assert CutoutRecipe().settings == recipe


def test_keywords_unchanged():
    # the file formats: keyword order, params keys and run keywords
    assert [keyword for _, keyword, _ in _HEADER_KEYWORDS] == [
        "PREPINP", "CUTSIZE", "KRONFACT", "ROTATE", "DEBLEND", "DBCONTR", "DBNLEVEL",
        "DBMODE", "MRGFRAG", "MRGCONTR", "MRGRAD", "NMERGED", "NSIGMA", "NPIXELS",
        "KERNFWHM", "BKGMODE", "BKGSUB", "BKGBOX", "TOLPIX", "MASKDIL", "MINCROP",
        "LINEARIZ", "STRETCH", "LUPTONQ", "GSCALE", "RSCALE", "ISCALE", "PREPSEED",
        "SATLEVEL", "PREPVERS"]
    names = GalaxyCutout.header_keyword_names()
    assert names["DBCONTR"] == "contrast" and names["DBNLEVEL"] == "nlevels"
    assert GalaxyCutout.RUN_KEYWORDS == CutoutRecipe.RUN_KEYWORDS == {
        "PREPVERS", "PREPSEED", "NMERGED", "DBMODE", "BKGSUB", "TOLPIX"}
    assert {"PREPINP", "BKGMODE", "BKGBOX", "LINEARIZ", "GSCALE",
                                    "RSCALE", "ISCALE"} == _INPUT_KIND_KEYWORDS


def _same(one, two):
    assert one.params == two.params
    np.testing.assert_array_equal(one.image, two.image)
    np.testing.assert_array_equal(one.background, two.background)


def test_recipe_makes_the_same_cutouts(bands, rgb):
    settings = {"size": 32, "rotate": True, "seed": 3, "kron_factor": 2.5}
    recipe = CutoutRecipe(**settings, band_scales=(1.0, 1.0, 1.0), linearize=False)
    _same(recipe(*bands, CENTRE),
          GalaxyCutout(*bands, CENTRE, **settings, band_scales=(1.0, 1.0, 1.0)))
    _same(recipe.from_image(rgb), GalaxyCutout.from_image(rgb, **settings, linearize=False))
    _same(recipe.from_image(rgb, (39, 41)),
          GalaxyCutout.from_image(rgb, (39, 41), **settings, linearize=False))
    (many,) = recipe.make_cutouts(*bands, [CENTRE])
    (expected,) = make_cutouts(*bands, [CENTRE], **settings, band_scales=(1.0, 1.0, 1.0))
    _same(many, expected)


def test_recipe_header_keywords(bands):
    recipe = CutoutRecipe(size=32, seed=0, saturation_level=50)
    cutout = recipe(*bands, CENTRE)
    expected = {key: value for key, value in cutout.header_keywords().items()
                if key not in ("NMERGED", "DBMODE", "BKGSUB")}
    assert recipe.header_keywords() == expected
    with_comments = recipe.header_keywords(comments=True)
    assert with_comments["CUTSIZE"] == (32, "[pix] side of the output cutout")


def test_from_header_round_trip(bands, rgb, tmp_path):
    recipe = CutoutRecipe(size=32, rotate=True, seed=2, subtract_background=False,
                          band_scales=(1.2, 1.0, 0.8), saturation_level=50.0, tolerance=3.0)
    cutout = recipe(*bands, CENTRE)
    assert CutoutRecipe.from_header(cutout.header_keywords()) == recipe
    assert CutoutRecipe.from_header(cutout) == recipe
    # through a cutout set written to FITS and read back
    path = tmp_path / "set.fits"
    CutoutSet.from_cutouts([cutout]).write(path)
    again = CutoutRecipe.from_header(CutoutSet.read(path))
    assert again == recipe
    _same(again(*bands, CENTRE), cutout)
    # colour input: the FITS-only settings and the image-dependent TOLPIX are skipped
    colour = CutoutRecipe(size=32, seed=1, linearize=False).from_image(rgb)
    back = CutoutRecipe.from_header(colour.header_keywords())
    assert back == CutoutRecipe(size=32, seed=1, linearize=False)
    _same(back.from_image(rgb), colour)
    # unknown keywords and outcomes are ignored
    assert CutoutRecipe.from_header({"ENCODER": "x", "NMERGED": 3, "KRONFACT": 2.0}) == \
        CutoutRecipe(kron_factor=2.0)


def test_recipe_checks_settings():
    with pytest.raises(TypeError, match="kron_factor must be a number, got '3'"):
        CutoutRecipe(kron_factor="3")
    with pytest.raises(ValueError, match="size must be >= 8"):
        CutoutRecipe(size=4)
    with pytest.raises(TypeError, match=r"unknown parameters: \['sise'\]"):
        CutoutRecipe(sise=64)
    with pytest.raises(TypeError, match="linearize must be True or False"):
        CutoutRecipe(linearize="yes")
    # None: the default of each entry point
    assert CutoutRecipe(tolerance=None, fallback_crop=None) == CutoutRecipe()
    assert repr(CutoutRecipe(size=64, seed=0)) == "CutoutRecipe(size=64, seed=0)"


# ---------------------------------------------------------------- comparison

FITS_KEYS = {"PREPINP": "fits", "CUTSIZE": 64, "KRONFACT": 3.0, "ROTATE": False,
             "BKGMODE": "auto", "BKGBOX": 64, "GSCALE": 1.1, "RSCALE": 1.0, "ISCALE": 0.79,
             "NMERGED": 0, "DBMODE": "exponential", "BKGSUB": False, "TOLPIX": 5.0,
             "PREPSEED": 0, "PREPVERS": "0.1"}
COLOUR_KEYS = {"PREPINP": "colour", "CUTSIZE": 64, "KRONFACT": 3.0, "ROTATE": False,
               "BKGMODE": "T", "BKGBOX": None, "LINEARIZ": True, "NMERGED": 2,
               "TOLPIX": 16.0, "PREPSEED": 1, "PREPVERS": "0.2"}


def test_differences_same_recipe():
    # run keywords (seed, version, per-cutout outcomes, TOLPIX) are not compared
    other = {**FITS_KEYS, "PREPSEED": 7, "PREPVERS": "9.9", "NMERGED": 4, "DBMODE": "linear",
             "BKGSUB": True, "TOLPIX": 10.0}
    assert recipe_differences(FITS_KEYS, other) == []
    # nor keywords that only one side has, nor those that are not preprocessing
    # keywords (a database's encoder and date)
    assert recipe_differences({**FITS_KEYS, "SATLEVEL": 10.0},
                              {**FITS_KEYS, "ENCODER": "a", "DATE": "x", "INSIZE": 64}) == []
    assert recipe_differences({**FITS_KEYS, "DATE": "y"}, {**FITS_KEYS, "DATE": "x"}) == []


def test_differences_cli_rule():
    # the rule of the command line (search/classify): target cutout set
    # against the database meta, the cutout size against INSIZE first
    database = {**FITS_KEYS, "KRONFACT": 2.5, "ROTATE": True, "INSIZE": 128,
                "ENCODER": "resnet"}
    assert recipe_differences(FITS_KEYS, database, size=64) == [
        "cutout size 64 px (encoder input 128 px)",
        "KRONFACT 3.0 (database 2.5)",
        "ROTATE False (database True)"]
    assert recipe_differences(FITS_KEYS, {**database, "INSIZE": 64}, size=64) == [
        "KRONFACT 3.0 (database 2.5)", "ROTATE False (database True)"]
    # no size given, or no INSIZE: the size is not compared
    assert recipe_differences(FITS_KEYS, FITS_KEYS | {"INSIZE": 128}) == []
    assert recipe_differences(FITS_KEYS, FITS_KEYS, size=32) == []


def test_differences_build_rule():
    # the rule of LatentDatabase.build: cutouts against the encoder's training
    # images; a different kind of input is one sentence, in place of the
    # keywords that follow from it
    assert recipe_differences(FITS_KEYS, COLOUR_KEYS, other="encoder") == [
        ("they were made from 'fits' input, the encoder's from 'colour' input (both are "
         "gri colour renderings, but not identical ones)")]
    assert recipe_differences(FITS_KEYS, {**COLOUR_KEYS, "CUTSIZE": 128},
                              other="encoder")[1:] == ["CUTSIZE 64 (encoder 128)"]
    # with the same input, the input keywords are compared like the others
    assert recipe_differences(FITS_KEYS, {**FITS_KEYS, "BKGMODE": "T", "GSCALE": 1.0},
                              other="encoder") == ["BKGMODE 'auto' (encoder 'T')",
                                                   "GSCALE 1.1 (encoder 1.0)"]


def test_differences_of_objects(bands):
    recipe = CutoutRecipe(size=32, seed=0)
    cutouts = recipe.make_cutouts(*bands, [CENTRE, (30.0, 42.0)])
    cutout_set = CutoutSet.from_cutouts(cutouts)
    assert recipe_differences(cutout_set, recipe) == []
    assert recipe_differences(cutouts[0], CutoutRecipe(size=32, seed=5)) == []
    assert recipe_differences(cutout_set, CutoutRecipe(size=64, rotate=True)) == [
        "CUTSIZE 32 (database 64)", "ROTATE False (database True)"]
    # a list of cutouts: the keywords they share; one that varies is not compared
    other = CutoutRecipe(size=32, seed=0, kron_factor=2.0)(*bands, CENTRE)
    assert recipe_differences([*cutouts, other], recipe) == []
    assert recipe_differences([other, other], recipe) == ["KRONFACT 2.0 (database 3.0)"]
    assert recipe_differences([], recipe) == []


def test_warn_recipe_differences():
    database = {**FITS_KEYS, "KRONFACT": 2.5, "INSIZE": 128}
    with pytest.warns(GalMorphSearchWarning) as record:
        found = warn_recipe_differences(FITS_KEYS, database, size=64,
                                        message="The targets in t.fits were not "
                                        "preprocessed like the database galaxies")
    assert found == ["cutout size 64 px (encoder input 128 px)", "KRONFACT 3.0 (database 2.5)"]
    assert len(record) == 1
    assert str(record[0].message) == (
        "The targets in t.fits were not preprocessed like the database galaxies: cutout "
        "size 64 px (encoder input 128 px); KRONFACT 3.0 (database 2.5).")
    assert record[0].filename == __file__  # stacklevel: the caller
    with pytest.warns(GalMorphSearchWarning, match="^The cutouts were not preprocessed like "
                      "the encoder's: they were made from 'fits' input"):
        warn_recipe_differences(FITS_KEYS, COLOUR_KEYS, other="encoder")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_recipe_differences(FITS_KEYS, dict(FITS_KEYS)) == []
