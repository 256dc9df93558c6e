# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Parameter and input checking of galmorphsearch.preprocessing; provenance."""

import inspect

import numpy as np
import pytest
from astropy.modeling.models import Sersic2D

import galmorphsearch
from galmorphsearch import GalaxyCutout
from galmorphsearch.preprocessing import CutoutRecipe, make_cutouts
from galmorphsearch.preprocessing.recipe import _DEFAULTS, _FROM_IMAGE_DEFAULTS

SHAPE = (96, 96)
CENTRE = (48.0, 48.0)


@pytest.fixture(scope="module")
def bands():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    model = Sersic2D(amplitude=1.0, r_eff=6, n=1.0, x_0=CENTRE[0], y_0=CENTRE[1], ellip=0.4)
    return [s * model(x, y) + rng.normal(0, 0.02, SHAPE) for s in (0.6, 1.0, 1.3)]


@pytest.mark.parametrize(("name", "value", "error"), [
    ("kron_factor", "3", TypeError),
    ("kron_factor", 0, ValueError),
    ("saturation_level", "x", TypeError),
    ("saturation_level", np.nan, ValueError),
    ("seed", -1, ValueError),
    ("seed", 1.5, TypeError),
    ("seed", True, TypeError),
    ("tolerance", "3", TypeError),
    ("tolerance", np.nan, ValueError),
    ("tolerance", -1.0, ValueError),
    ("box_size", 0, ValueError),
    ("box_size", -5, ValueError),
    ("box_size", 32.5, TypeError),
    ("kernel_fwhm", -1, ValueError),
    ("kernel_fwhm", np.nan, ValueError),
    ("mask_dilation", -1, ValueError),
    ("mask_dilation", 1.5, TypeError),
    ("merge_contrast", -5, ValueError),
    ("merge_contrast", 1.5, ValueError),
    ("band_scales", (1.1, -1.0, 0.79), ValueError),
    ("band_scales", (1.1, "1", 0.79), TypeError),
    ("band_scales", (1.0, 1.0), ValueError),
    ("fallback_crop", 2.5, TypeError),
    ("fallback_crop", 1, ValueError),
    ("min_crop", "16", TypeError),
    ("size", 3, ValueError),
    ("size", 64.0, TypeError),
    ("npixels", True, TypeError),
    ("nsigma", np.inf, ValueError),
    ("stretch", -0.5, ValueError),
    ("Q", None, TypeError),
    ("deblend_contrast", 1.5, ValueError),
    ("deblend_nlevels", 0, ValueError),
    ("merge_radius", 0, ValueError),
    ("rotate", "no", TypeError),
    ("deblend", 1, TypeError),
    ("subtract_background", "yes", ValueError),
])
def test_bad_parameter(bands, name, value, error):
    # the message names the parameter and the value, for every entry point
    for make in (lambda **kw: GalaxyCutout(*bands, CENTRE, **kw),
                 lambda **kw: make_cutouts(*bands, [CENTRE], **kw),
                 lambda **kw: CutoutRecipe(**kw)):
        with pytest.raises(error, match=name.split("[")[0]) as info:
            make(**{name: value})
        assert repr(value if name != "band_scales" else value[1]) in str(info.value) or (
            name == "band_scales" and repr(value) in str(info.value))
    if name in _FROM_IMAGE_DEFAULTS:
        rgb = np.zeros((*SHAPE, 3))
        with pytest.raises(error, match=name):
            GalaxyCutout.from_image(rgb, **{name: value})


def test_good_parameter_types(bands):
    # numpy scalars, a Quantity tolerance and None fallback crop are fine
    import astropy.units as u

    cut = GalaxyCutout(*bands, CENTRE, size=np.int64(32), kron_factor=np.float32(3),
                       tolerance=3 * u.pix, fallback_crop=None, seed=np.int64(0),
                       rotate=np.bool_(True), saturation_level=100)
    assert cut.params["size"] == 32 and cut.params["tolerance"] == 3.0
    assert cut.params["fallback_crop"] == _DEFAULTS["fallback_crop"]
    assert cut.header_keywords()["SATLEVEL"] == 100.0


def test_make_cutouts_signature():
    # make_cutouts has no signature defaults: they come from the recipe (the
    # signatures of GalaxyCutout are checked against it in test_preprocessing_recipe)
    make = inspect.signature(make_cutouts).parameters
    assert set(make) == {"g", "r", "i", "positions", "wcs", "progress_bar", "kwargs"}


def test_make_cutouts_defaults_match(bands):
    one = GalaxyCutout(*bands, CENTRE, seed=0)
    (many,) = make_cutouts(*bands, [CENTRE], seed=0)
    assert one.params == many.params
    np.testing.assert_array_equal(one.image, many.image)


def test_make_cutouts_positions(bands):
    with pytest.raises(ValueError, match=r"2 of the 4 positions.*indices \[1, 3\]") as info:
        make_cutouts(*bands, [CENTRE, (500.0, 10.0), (10, 10), (np.nan, 3)], size=32)
    assert "off the image" in str(info.value) and "not finite" in str(info.value)
    with pytest.raises(ValueError, match=r"indices \[0\]"):
        make_cutouts(*bands, ["centre"], size=32)
    with pytest.raises(TypeError, match="positions must be .* got NoneType"):
        make_cutouts(*bands, None)
    with pytest.raises(TypeError, match=r"for a single position give \[\(x, y\)\]"):
        make_cutouts(*bands, CENTRE)
    assert make_cutouts(*bands, [], size=32) == []


def test_from_image_16bit_png(tmp_path):
    from PIL import Image

    y, x = np.mgrid[:80, :80]
    disc = Sersic2D(amplitude=1.0, r_eff=6, n=1.0, x_0=40, y_0=40, ellip=0.4)(x, y)
    rng = np.random.default_rng(1)
    grey = np.clip(0.05 + 0.6 * disc / disc.max() + rng.normal(0, 0.01, disc.shape), 0, 1)
    path = tmp_path / "galaxy16.png"
    Image.fromarray(np.round(grey * 65535).astype(np.uint16)).save(path)
    with Image.open(path) as pil:
        assert pil.mode in ("I;16", "I")
    cut = GalaxyCutout.from_image(path, size=32, seed=0)
    assert cut.flag == 0
    assert cut.label > 0 and abs(cut.centroid[0] - 40) < 1 and abs(cut.centroid[1] - 40) < 1
    # scaled to [0, 1], not saturated to white
    np.testing.assert_allclose(cut._field.planes[1], np.round(grey * 65535) / 65535)
    assert cut.image.min() < 40 and cut.image.max() > 100


def test_from_image_directory(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path.name}.* is a directory"):
        GalaxyCutout.from_image(tmp_path)
    with pytest.raises(ValueError, match="is a directory"):
        GalaxyCutout(tmp_path, tmp_path, tmp_path, CENTRE)


def test_version_recorded(bands):
    cut = GalaxyCutout(*bands, CENTRE, size=32, seed=0)
    assert cut.params["version"] == galmorphsearch.__version__
    assert cut.header_keywords()["PREPVERS"] == galmorphsearch.__version__
    assert GalaxyCutout.header_keyword_names()["PREPVERS"] == "version"
    rgb = np.random.default_rng(0).uniform(0.05, 0.1, (*SHAPE, 3))
    rgb[40:56, 40:56] = 0.8
    colour = GalaxyCutout.from_image(rgb, size=32, seed=0)
    assert colour.header_keywords()["PREPVERS"] == galmorphsearch.__version__
