# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Realism tests of galmorphsearch.preprocessing on real SDSS data (bundled)."""

import csv
import warnings
from importlib.resources import files

import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from galmorphsearch import GalaxyCutout
from galmorphsearch.preprocessing import CutoutFlag, TruncatedCutoutWarning, make_cutouts
from galmorphsearch.utils.exceptions import CutoutWarning

DATA = files("galmorphsearch") / "data"

# HCG 88 members in the field. B and C: NED positions (as quoted by Wikipedia);
# A: r-band centroid measured on this field, 2.5' NE of B as published. HCG 88d
# (MCG -01-53-014, ~4' SW of C) lies outside the field.
HCG88 = {
    "NGC 6978 (HCG 88a)": SkyCoord(313.14763, -5.71123, unit="deg"),
    "NGC 6977 (HCG 88b)": SkyCoord("20h52m29.706s -05d44m45.97s"),
    "NGC 6976 (HCG 88c)": SkyCoord("20h52m26.032s -05d46m20.29s"),
}


def _band_paths():
    return [str(DATA / "hcg88" / f"reprojected_sdss_{b}.fits.bz2") for b in "gri"]


def _orientation(image, mask):
    yy, xx = np.nonzero(mask)
    w = image[yy, xx]
    xm, ym = np.average(xx, weights=w), np.average(yy, weights=w)
    cxx = np.average((xx - xm) ** 2, weights=w)
    cyy = np.average((yy - ym) ** 2, weights=w)
    cxy = np.average((xx - xm) * (yy - ym), weights=w)
    return 0.5 * np.degrees(np.arctan2(2 * cxy, cxx - cyy)), (xm, ym)


@pytest.fixture(scope="module")
def hcg88_cutouts():
    return make_cutouts(*_band_paths(), list(HCG88.values()), size=64, rotate=True, seed=0)


def test_hcg88_members_line_up(hcg88_cutouts):
    # A, B, C lie on a NE-SW line: increasing RA and Dec from C to A
    sky = [c.wcs.pixel_to_world(*c.centroid) for c in hcg88_cutouts]
    a, b, c = sky
    assert c.ra < b.ra < a.ra and c.dec < b.dec < a.dec
    assert 2.2 < a.separation(b).arcmin < 2.8


@pytest.mark.parametrize("index", range(3))
def test_hcg88_cutout(hcg88_cutouts, index):
    cut = hcg88_cutouts[index]
    name = list(HCG88)[index]
    assert cut.flag == CutoutFlag(0), name
    assert cut.image.shape == (64, 64, 3)
    # the catalogue position lies on the measured target
    assert np.hypot(cut.position[0] - cut.centroid[0], cut.position[1] - cut.centroid[1]) < 3
    assert 8 < cut.kron_radius < 30
    # galaxy centred: light-weighted centre of the brightest component near the middle
    lum = cut.image.astype(float).sum(axis=-1)
    bright = lum > 0.5 * lum.max()
    _, (xm, ym) = _orientation(lum, bright)
    assert abs(xm - 31.5) < 3 and abs(ym - 31.5) < 3
    # target never masked, other sources masked
    assert not (cut.mask & cut.target_mask).any()
    assert cut.mask.any()
    n = cut.crop_size
    assert cut.target_mask[n // 2, n // 2]
    # rotation: the major axis of the output lies along the x axis
    angle, _ = _orientation(np.clip(cut.crop_data[1], 0, None), cut.target_mask)
    assert abs(angle) < 5, (name, angle)


def test_hcg88_edge_on_rotated(hcg88_cutouts):
    # NGC 6978 is the elongated member: after rotation it is wider than tall
    cut = hcg88_cutouts[0]
    yy, xx = np.nonzero(cut.target_mask)
    assert np.ptp(xx) > 1.5 * np.ptp(yy)


def test_hcg88_single_cutout_matches_options():
    cut = GalaxyCutout(*_band_paths(), HCG88["NGC 6977 (HCG 88b)"], size=64, seed=0,
                       deblend=False)
    assert cut.flag == CutoutFlag(0)
    assert cut.params["deblend"] is False
    assert cut.params["background_subtracted"] is False  # SDSS frames are sky-subtracted
    assert cut.background.mean() < 0.5 * cut.image.mean()


def test_hcg88_deblending_keeps_spirals_whole(hcg88_cutouts):
    # photutils deblending with the default contrast splits the neighbours off
    # NGC 6977 (the chain to its south-east) and NGC 6976 (its companion)
    # without shredding the discs and arms of the spirals into masked pieces
    for name, cut in zip(HCG88, hcg88_cutouts, strict=True):
        field = cut._field
        parent = field.segm.data == field.segm.data[int(round(cut.position[1])),
                                                    int(round(cut.position[0]))]
        target = cut.segmentation.data == cut.label
        assert not (target & ~parent).any(), name
        flux = np.clip(field.detection, 0, None)
        kept = flux[target].sum() / flux[parent].sum()
        children = np.unique(cut.segmentation.data[parent])
        if name.startswith("NGC 6978"):
            assert kept == 1.0 and children.size == 1, name  # its disc stays whole
        else:
            assert 0.9 < kept < 0.97 and children.size == 2, (name, kept, children)


def test_hcg88_edge_source_truncated():
    with pytest.warns(TruncatedCutoutWarning):
        cut = GalaxyCutout(*_band_paths(), (671.6, 440.0), size=64, seed=0)
    assert CutoutFlag.CROP_TRUNCATED in cut.flag


def _gallery():
    with open(DATA / "gz2_gallery" / "labels.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("row", _gallery(), ids=lambda row: row["file"])
def test_from_image_gallery(row):
    path = DATA / "gz2_gallery" / row["file"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", CutoutWarning)
        cut = GalaxyCutout.from_image(str(path), size=64, rotate=True, seed=0)
    allowed = CutoutFlag.CROP_TRUNCATED | CutoutFlag.SATURATED | CutoutFlag.SMALL_BACKGROUND
    assert cut.flag & ~allowed == 0
    assert len(record) == bin(int(cut.flag)).count("1")
    assert cut.image.shape == (64, 64, 3) and cut.image.dtype == np.uint8
    assert cut.origin == "upper"
    assert np.hypot(cut.centroid[0] - 127.5, cut.centroid[1] - 127.5) < 12
    assert not (cut.mask & cut.target_mask).any()
    lum = cut.image.astype(float).sum(axis=-1)
    _, (xm, ym) = _orientation(lum, lum > 0.5 * lum.max())
    assert abs(xm - 31.5) < 4 and abs(ym - 31.5) < 4


@pytest.mark.filterwarnings("ignore::galmorphsearch.utils.exceptions.CutoutWarning")
def test_from_image_inputs():
    from PIL import Image

    path = DATA / "gz2_gallery" / "Sen.jpeg"
    ref = GalaxyCutout.from_image(str(path), size=64, seed=0)
    with Image.open(path) as pil:
        arr = np.asarray(pil)
        from_pil = GalaxyCutout.from_image(pil, size=64, seed=0)
    np.testing.assert_array_equal(ref.image, from_pil.image)
    from_float = GalaxyCutout.from_image(arr / 255.0, size=64, seed=0)
    np.testing.assert_array_equal(ref.image, from_float.image)
    # the edge-on Sen galaxy comes out horizontal when rotated
    rot = GalaxyCutout.from_image(arr, size=64, rotate=True, seed=0)
    angle, _ = _orientation(rot.crop_data.mean(axis=0), rot.target_mask)
    assert abs(angle) < 5
    with pytest.raises(ValueError, match="shape"):
        GalaxyCutout.from_image(arr[..., 0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        GalaxyCutout.from_image(arr.astype(float))
    with pytest.raises(ValueError, match="off the image"):
        GalaxyCutout.from_image(arr, position=(300, 10))


def test_from_image_fallback():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 3, size=(100, 120, 3)).astype(np.uint8)
    with pytest.warns(CutoutWarning):
        cut = GalaxyCutout.from_image(noise, size=32, seed=0)
    assert CutoutFlag.CENTRE_CROP_FALLBACK in cut.flag
    assert cut.crop_size == 100
    assert cut.image.shape == (32, 32, 3)


@pytest.fixture(scope="module")
def sample_bands():
    from galmorphsearch.datasets import load_sample_field

    field = load_sample_field()
    return [np.array(field.data(b), dtype=float) for b in "gri"]


def _with_hole(bands, rows, cols):
    holed = [b.copy() for b in bands]
    for band in holed:
        band[rows, cols] = np.nan
    return holed


@pytest.mark.parametrize(("rows", "cols", "max_shift", "min_overlap"), [
    # a 4x4 NaN core: interpolated, the cutout is that of the clean data
    (slice(129, 133), slice(161, 165), 1.0, 0.95),
    # a 6x6 NaN core swallows the nucleus (peak 13.6, rim 1.2 to 1.8): no
    # interpolation brings it back and photutils' deblending levels, spaced
    # up to the segment's peak, then split off a compact knot at (147, 153)
    # that the clean data keep; before the fix the hole split the galaxy
    # itself (centroid 9.5 pixels off, overlap 0.42, mask 2.6 times larger)
    (slice(128, 134), slice(160, 166), 3.0, 0.75),
])
def test_nan_core_is_interpolated(sample_bands, rows, cols, max_shift, min_overlap):
    clean = GalaxyCutout(*sample_bands, (163, 131), seed=0, size=128)
    with pytest.warns(CutoutWarning, match="non-finite") as record:
        holed = GalaxyCutout(*_with_hole(sample_bands, rows, cols), (163, 131), seed=0,
                             size=128)
    assert {type(w.message).__name__ for w in record} == {"NaNPixelsWarning"}
    assert holed.flag == CutoutFlag.NAN_PIXELS
    shift = np.hypot(holed.centroid[0] - clean.centroid[0],
                     holed.centroid[1] - clean.centroid[1])
    assert shift < max_shift
    target_clean = clean.segmentation.data == clean.label
    target_holed = holed.segmentation.data == holed.label
    overlap = (target_clean & target_holed).sum() / (target_clean | target_holed).sum()
    assert overlap > min_overlap
    assert holed.mask.sum() < 1.5 * clean.mask.sum()
    assert abs(holed.kron_radius - clean.kron_radius) < 0.1 * clean.kron_radius
    # the core keeps interpolated galaxy light (not black sky) and is not masked
    x0, y0 = holed.bbox.ixmin, holed.bbox.iymin
    core = (slice(rows.start - y0, rows.stop - y0), slice(cols.start - x0, cols.stop - x0))
    assert not holed.mask[core].any()
    assert holed.target_mask[core].all()
    assert np.isfinite(holed.crop_data).all()
    assert holed.crop_data[1][core].min() > 0.8  # the sky is ~0, the rim 1.2 to 1.8
    assert holed.image.max() > 150
