# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Unit tests of galmorphsearch.preprocessing on synthetic Sersic galaxies."""

import warnings

import matplotlib
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.modeling.models import Gaussian2D, Sersic2D
from astropy.wcs import WCS

from galmorphsearch import GalaxyCutout
from galmorphsearch.preprocessing import (
    CutoutFlag,
    EmptyImageWarning,
    FallbackCropWarning,
    NaNPixelsWarning,
    NoSourceWarning,
    SaturatedWarning,
    TruncatedCutoutWarning,
    make_cutouts,
)
from galmorphsearch.preprocessing._detection import _deblend_target, _detect
from galmorphsearch.utils.exceptions import CutoutWarning

matplotlib.use("Agg")

SHAPE = (161, 181)
CENTRE = (90.0, 80.0)
STAR = (112.0, 92.0)
THETA = 30.0


def _moments_orientation(image, weights_mask):
    """Orientation (deg, CCW from +x) of the light inside a mask."""
    yy, xx = np.nonzero(weights_mask)
    w = np.clip(image[yy, xx], 0, None)
    xm, ym = np.average(xx, weights=w), np.average(yy, weights=w)
    cxx = np.average((xx - xm) ** 2, weights=w)
    cyy = np.average((yy - ym) ** 2, weights=w)
    cxy = np.average((xx - xm) * (yy - ym), weights=w)
    return 0.5 * np.degrees(np.arctan2(2 * cxy, cxx - cyy))


def _galaxy_bands(seed=0, sky=0.0):
    """g, r, i images of an inclined Sersic galaxy plus a star, with noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: SHAPE[0], : SHAPE[1]]
    model = Sersic2D(amplitude=1.0, r_eff=10, n=1.5, x_0=CENTRE[0], y_0=CENTRE[1],
                     ellip=0.6, theta=np.radians(THETA))
    star = Gaussian2D(amplitude=3.0, x_mean=STAR[0], y_mean=STAR[1], x_stddev=1.2, y_stddev=1.2)
    bands = []
    for scale in (0.6, 1.0, 1.3):
        image = scale * model(x, y) + star(x, y) + sky + rng.normal(0, 0.02, SHAPE)
        bands.append(image)
    return bands


@pytest.fixture(scope="module")
def bands():
    return _galaxy_bands()


@pytest.fixture(scope="module")
def cutout(bands):
    return GalaxyCutout(*bands, CENTRE, size=64, seed=1)


@pytest.fixture(scope="module")
def rotated(bands):
    return GalaxyCutout(*bands, CENTRE, size=64, rotate=True, seed=1)


def test_outputs(cutout):
    assert cutout.image.shape == (64, 64, 3)
    assert cutout.image.dtype == np.uint8
    assert cutout.background.shape == (64, 64, 3)
    assert cutout.background.dtype == np.uint8
    tensor = cutout.to_tensor()
    assert tuple(tensor.shape) == (3, 64, 64)
    assert str(tensor.dtype) == "torch.float32"
    assert 0.0 <= float(tensor.min()) <= float(tensor.max()) <= 1.0
    arr = cutout.as_array(channels_first=False, background=True)
    assert arr.shape == (64, 64, 3) and arr.dtype == np.float32
    assert cutout.flag == CutoutFlag(0)
    assert cutout.image.max() > 50  # the galaxy is visible
    assert cutout.background.mean() < cutout.image.mean()


def test_measurements(cutout):
    assert np.hypot(cutout.centroid[0] - CENTRE[0], cutout.centroid[1] - CENTRE[1]) < 1.0
    assert cutout.orientation.unit == "deg"
    assert abs(cutout.orientation.value - THETA) < 3
    assert 5 < cutout.kron_radius < 40
    # crop side is 2 * kron_factor * kron_radius
    assert abs(cutout.crop_size - 2 * 3 * cutout.kron_radius) <= 1
    bbox = cutout.bbox
    assert bbox.ixmax - bbox.ixmin == cutout.crop_size
    assert bbox.iymax - bbox.iymin == cutout.crop_size
    assert cutout.label > 0
    assert cutout.segmentation.data[int(CENTRE[1]), int(CENTRE[0])] == cutout.label
    assert cutout.position == CENTRE


def test_masking(cutout):
    n = cutout.crop_size
    # the star lies inside the crop and is replaced; the target never is
    sx = int(round(STAR[0] - cutout.bbox.ixmin))
    sy = int(round(STAR[1] - cutout.bbox.iymin))
    assert 0 <= sx < n and 0 <= sy < n
    assert cutout.mask[sy, sx]
    assert not (cutout.mask & cutout.target_mask).any()
    assert cutout.target_mask[n // 2, n // 2]
    assert cutout.crop_data[1, sy, sx] < 0.2  # star flux (>1) gone


def test_rotation(rotated):
    assert rotated.flag == CutoutFlag(0)
    angle = _moments_orientation(rotated.crop_data[1], rotated.target_mask)
    assert abs(angle) < 3  # major axis along the x axis
    lum = rotated.image.astype(float).sum(axis=-1)
    angle_out = _moments_orientation(lum, lum > 0.5 * lum.max() / 3)
    assert abs(angle_out) < 5


def test_reproducible(bands, cutout):
    again = GalaxyCutout(*bands, CENTRE, size=64, seed=1)
    np.testing.assert_array_equal(again.image, cutout.image)
    np.testing.assert_array_equal(again.background, cutout.background)
    other = GalaxyCutout(*bands, CENTRE, size=64, seed=2)
    assert not np.array_equal(other.crop_data, cutout.crop_data)
    gen = GalaxyCutout(*bands, CENTRE, size=64, seed=np.random.default_rng(1))
    np.testing.assert_array_equal(gen.image, cutout.image)


@pytest.mark.parametrize("size", [64, 128])
def test_sizes(bands, size):
    cut = GalaxyCutout(*bands, CENTRE, size=size, seed=0, deblend=False)
    assert cut.image.shape == (size, size, 3)
    assert cut.params["size"] == size


def test_params_and_header(cutout):
    params = cutout.params
    for key in ("kron_factor", "size", "rotate", "stretch", "Q", "scale_g", "scale_r",
                "scale_i", "deblend", "seed", "nsigma", "npixels"):
        assert key in params
    assert params is cutout.meta
    assert params["scale_i"] == 0.79 and params["scale_g"] == 1.1
    keys = cutout.header_keywords()
    assert all(len(k) <= 8 and k == k.upper() for k in keys)
    assert keys["KRONFACT"] == 3.0 and keys["CUTSIZE"] == 64
    header = fits.Header()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for key, value in cutout.header_keywords(comments=True).items():
            header[key] = value
    assert header["LUPTONQ"] == 10.0
    assert set(GalaxyCutout.header_keyword_names()) >= set(keys)


def test_background_auto(bands):
    raw = _galaxy_bands(sky=5.0)
    cut = GalaxyCutout(*raw, CENTRE, size=64, seed=0, deblend=False)
    assert cut.params["background_subtracted"] is True
    assert abs(float(np.median(cut.background_data[1]))) < 0.05
    cut = GalaxyCutout(*bands, CENTRE, size=64, seed=0, deblend=False)
    assert cut.params["background_subtracted"] is False
    forced = GalaxyCutout(*bands, CENTRE, size=64, seed=0, deblend=False,
                          subtract_background=True)
    assert forced.params["background_subtracted"] is True


def test_truncated(bands):
    g, r, i = (b[:, 75:] for b in bands)  # galaxy near the left edge
    with pytest.warns(TruncatedCutoutWarning, match="beyond the image"):
        cut = GalaxyCutout(g, r, i, (CENTRE[0] - 75, CENTRE[1]), size=64, seed=0)
    assert CutoutFlag.CROP_TRUNCATED in cut.flag
    assert cut.bbox.ixmin < 0
    assert cut.mask[:, 0].all()  # padded column


def test_nan_pixels(bands):
    g, r, i = (b.copy() for b in bands)
    r[70:73, 60:63] = np.nan
    with pytest.warns(NaNPixelsWarning, match="non-finite"):
        cut = GalaxyCutout(g, r, i, CENTRE, size=64, seed=0)
    assert cut.flag == CutoutFlag.NAN_PIXELS
    assert np.isfinite(cut.crop_data).all()


def test_no_source(bands):
    with pytest.warns(CutoutWarning) as record:
        cut = GalaxyCutout(*bands, (36.0, 126.0), size=64, seed=0)
    categories = {w.category for w in record}
    assert categories == {NoSourceWarning, FallbackCropWarning}
    assert cut.flag == CutoutFlag.NO_SOURCE_AT_POSITION | CutoutFlag.CENTRE_CROP_FALLBACK
    assert cut.crop_size == 64
    assert np.isnan(cut.kron_radius)
    assert cut.image.shape == (64, 64, 3)


def test_empty_image():
    blank = np.zeros((60, 60))
    with pytest.warns(CutoutWarning) as record:
        cut = GalaxyCutout(blank, blank, blank, (30, 30), size=32, seed=0, fallback_crop=32)
    assert {w.category for w in record} == {EmptyImageWarning, FallbackCropWarning}
    assert cut.flag == CutoutFlag.EMPTY_IMAGE | CutoutFlag.CENTRE_CROP_FALLBACK
    assert (cut.image == 0).all()


def test_saturated(bands):
    with pytest.warns(SaturatedWarning, match="saturated"):
        cut = GalaxyCutout(*bands, CENTRE, size=64, seed=0, saturation_level=0.5)
    assert cut.flag == CutoutFlag.SATURATED


def test_bad_input(bands):
    g, r, i = bands
    with pytest.raises(ValueError, match="same shape"):
        GalaxyCutout(g, r[:-1], i, CENTRE)
    with pytest.raises(ValueError, match="i band is missing"):
        GalaxyCutout(g, r, None, CENTRE)
    with pytest.raises(ValueError, match="off the image"):
        GalaxyCutout(g, r, i, (500.0, 10.0))
    with pytest.raises(ValueError, match="r band holds no finite pixel"):
        GalaxyCutout(g, np.full(SHAPE, np.nan), i, CENTRE)
    with pytest.raises(ValueError, match="no WCS"):
        GalaxyCutout(g, r, i, SkyCoord(10, 20, unit="deg"))
    with pytest.raises(TypeError, match="position must be"):
        GalaxyCutout(g, r, i, "centre")
    with pytest.raises(TypeError, match="g band must be"):
        GalaxyCutout("abc" and object(), r, i, CENTRE)
    with pytest.raises(ValueError, match="2D image"):
        GalaxyCutout(g[0], r, i, CENTRE)
    with pytest.raises(ValueError, match="size must be"):
        GalaxyCutout(g, r, i, CENTRE, size=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GalaxyCutout("/nonexistent/g.fits", r, i, CENTRE)


def test_mismatched_wcs(bands):
    def hdu(data, crval):
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = crval
        w.wcs.crpix = [90, 80]
        w.wcs.cdelt = [-0.0003, 0.0003]
        return fits.ImageHDU(data, header=w.to_header())

    g, r, i = bands
    with pytest.raises(ValueError, match="WCS of the r band differs"):
        GalaxyCutout(hdu(g, [10, 20]), hdu(r, [10.01, 20]), hdu(i, [10, 20]), CENTRE)
    cut = GalaxyCutout(hdu(g, [10, 20]), hdu(r, [10, 20]), hdu(i, [10, 20]),
                       SkyCoord(10, 20, unit="deg"), size=32, seed=0)
    assert abs(cut.position[0] - 89) < 1e-6 and abs(cut.position[1] - 79) < 1e-6


def test_plot(rotated):
    fig, axes = rotated.plot()
    assert len(axes) == 5
    fig.canvas.draw()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_make_cutouts(bands):
    cuts = make_cutouts(*bands, [CENTRE, STAR], size=32, seed=0)
    assert len(cuts) == 2
    assert cuts[0].label != cuts[1].label
    assert cuts[1].kron_radius < cuts[0].kron_radius
    with pytest.raises(TypeError, match="unknown parameters"):
        make_cutouts(*bands, [CENTRE], sizes=32)


def test_deblend_splits_blend():
    y, x = np.mgrid[:60, :80]
    data = (Gaussian2D(1, 30, 30, 4, 4)(x, y) + Gaussian2D(0.7, 46, 30, 3, 3)(x, y))
    bad = np.zeros(data.shape, bool)
    segm, convolved, _ = _detect(data + np.random.default_rng(0).normal(0, 0.005, data.shape),
                                 bad, 3.0, 10, 2.0)
    assert len(segm.labels) == 1
    deblended, mode = _deblend_target(convolved, segm, 1, 10, 0.045)
    assert mode == "exponential"
    assert len(deblended.labels) == 2
    assert deblended.data[30, 30] != deblended.data[30, 46]
    # a contrast above the fainter peak's share keeps the blend whole
    whole, _ = _deblend_target(convolved, segm, 1, 10, 0.6)
    assert len(whole.labels) == 1


def test_deblend_mode_switch_is_recorded():
    # photutils switches exponential levels to linear for a segment with a
    # non-positive minimum and warns; the switch is returned instead
    from photutils.segmentation import SegmentationImage

    y, x = np.mgrid[:40, :60]
    data = Gaussian2D(1, 20, 20, 3, 3)(x, y) + Gaussian2D(1, 38, 20, 3, 3)(x, y) - 0.01
    segm = SegmentationImage(np.ones(data.shape, int))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deblended, mode = _deblend_target(data, segm, 1, 10, 0.045)
    assert mode == "linear"
    assert len(deblended.labels) == 2


def test_deblend_parameters(bands):
    cut = GalaxyCutout(*bands, CENTRE, size=32, seed=0, deblend_contrast=0.1,
                       deblend_nlevels=8)
    assert cut.params["contrast"] == 0.1 and cut.params["nlevels"] == 8
    keys = cut.header_keywords()
    assert keys["DBCONTR"] == 0.1 and keys["DBNLEVEL"] == 8
    assert keys["DBMODE"] == "exponential"
    off = GalaxyCutout(*bands, CENTRE, size=32, seed=0, deblend=False)
    assert off.header_keywords()["DEBLEND"] is False
    # without deblending the star touching the galaxy is not split off
    assert off.segmentation is off._field.segm
    with pytest.raises(ValueError, match="deblend_nlevels"):
        GalaxyCutout(*bands, CENTRE, deblend_nlevels=0)
    with pytest.raises(ValueError, match="deblend_contrast"):
        GalaxyCutout(*bands, CENTRE, deblend_contrast=1.5)


def test_fits_image_in_display_order(bands):
    # FITS rows run bottom to top: the rendered cutout is flipped vertically
    cut = GalaxyCutout(*bands, CENTRE, size=32, seed=0, deblend=False)
    assert cut.origin == "lower"
    g, r, i = cut.crop_data
    p = cut.params
    from galmorphsearch.preprocessing._colour import _lupton_rgb, _resize

    rgb = _lupton_rgb(g, r, i, (p["scale_g"], p["scale_r"], p["scale_i"]), p["stretch"],
                      p["Q"]).astype(np.float32)
    np.testing.assert_array_equal(cut.image, _resize(rgb, 32)[::-1])
    np.testing.assert_array_equal(cut.to_tensor().numpy(),
                                  np.moveaxis(cut.image, -1, 0) / np.float32(255))


def _asymmetric_field():
    """
    g, r, i images (FITS order, row 0 at the bottom) of an inclined disc with
    a bright off-centre knot up and to the right of the centre (north-east
    on a north-up, east-left display... here: +x, +y of the pixel grid).
    """
    rng = np.random.default_rng(3)
    shape = (181, 181)
    y, x = np.mgrid[: shape[0], : shape[1]]
    disc = Sersic2D(amplitude=1.0, r_eff=12, n=1.0, x_0=90, y_0=90, ellip=0.5,
                    theta=np.radians(20))
    knot = Gaussian2D(amplitude=4.0, x_mean=101, y_mean=104, x_stddev=1.8, y_stddev=1.8)
    bands = []
    for scale, kscale in ((0.6, 1.6), (1.0, 1.0), (1.3, 0.6)):  # a blue knot
        bands.append(scale * disc(x, y) + kscale * knot(x, y)
                     + rng.normal(0, 0.02, shape))
    return bands, (101.0, 104.0)


@pytest.mark.parametrize("rotate", [False, True])
def test_fits_and_colour_cutouts_agree(rotate):
    from astropy.visualization import make_lupton_rgb

    (g, r, i), (kx, ky) = _asymmetric_field()
    ny = g.shape[0]
    # the colour image of the field as a JPEG would hold it: row 0 at the top
    rgb = make_lupton_rgb(i * 0.79, r, g * 1.1, minimum=0, stretch=0.5, Q=10)[::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CutoutWarning)
        # no deblending: the knot must stay part of the galaxy, not be masked
        fits_cut = GalaxyCutout(g, r, i, (90.0, 90.0), size=64, rotate=rotate, seed=0,
                                deblend=False)
        colour_cut = GalaxyCutout.from_image(rgb, (90.0, ny - 1 - 90.0), size=64,
                                             rotate=rotate, seed=0, deblend=False)
    assert fits_cut.origin == "lower" and colour_cut.origin == "upper"
    lum_f = fits_cut.image.astype(float).mean(axis=-1)
    lum_c = colour_cut.image.astype(float).mean(axis=-1)
    # the same picture: high correlation of the luminance images ...
    corr = np.corrcoef(lum_f.ravel(), lum_c.ravel())[0, 1]
    assert corr > 0.9
    # ... including their up-down asymmetric parts, which would anti-correlate
    # (correlation -1) if one of the cutouts were upside down
    asym_f, asym_c = lum_f - lum_f[::-1], lum_c - lum_c[::-1]
    assert np.corrcoef(asym_f.ravel(), asym_c.ravel())[0, 1] > 0.8

    # the knot (the brightest blue pixel) lands in the same quadrant of both
    def knot_quadrant(image):
        rgb = image.astype(float)
        blue = np.where(rgb.mean(axis=-1) > 60, rgb[..., 2] - rgb[..., 0], -np.inf)
        row, col = np.unravel_index(np.argmax(blue), blue.shape)
        return row < 31.5, col > 31.5  # (upper half, right half)

    assert knot_quadrant(fits_cut.image) == knot_quadrant(colour_cut.image)
    if not rotate:
        # the knot is at larger y (up on the sky) and larger x (right): top right
        assert knot_quadrant(fits_cut.image) == (True, True)
