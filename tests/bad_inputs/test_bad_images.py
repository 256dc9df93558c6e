# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Hostile and careless images given to galmorphsearch.preprocessing: bands in
the wrong order or units, damaged and truncated files, images that are not
colour images, blended galaxies. Each either raises a clear error (a
ValueError or TypeError naming the file or band) or makes a cutout with a
warning and a quality flag; none gives silent garbage or a raw traceback.
"""

import bz2
import gzip
import lzma
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from astropy.wcs import WCS
from scipy.signal import fftconvolve

from galmorphsearch import GalaxyCutout
from galmorphsearch.datasets import get_sample_field_paths
from galmorphsearch.datasets._sersic import moffat_kernel, render_sersic
from galmorphsearch.preprocessing import (
    BandScaleWarning,
    BlendWarning,
    CutoutFlag,
    NaNPixelsWarning,
    make_cutouts,
)
from galmorphsearch.utils.exceptions import CutoutWarning

SHAPE = (64, 64)
CENTRE = (31.6, 32.3)


def _galaxy(shape=SHAPE, centre=CENTRE, seed=0):
    """One noisy exponential disc, as g, r, i arrays (r brightest after i)."""
    rng = np.random.default_rng(seed)
    disc = 300.0 * render_sersic(shape, *centre, r_eff=5.0, n=1.0, q=0.6, theta=0.4)
    return [s * disc + rng.normal(0, 0.02, shape) for s in (0.6, 1.0, 1.3)]


def _wcs(shape=SHAPE):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    wcs.wcs.cdelt = [-0.396 / 3600, 0.396 / 3600]
    return wcs


def _hdu(data, band=None, **cards):
    header = _wcs(data.shape).to_header()
    if band is not None:
        header["FILTER"] = band
    for key, value in cards.items():
        header[key] = value
    return fits.PrimaryHDU(np.asarray(data, np.float32), header=header)


def _write_bands(tmp_path, filters, data=None, suffix=".fits"):
    """Write g, r, i FITS files whose FILTER keywords are ``filters``."""
    data = _galaxy() if data is None else data
    paths = []
    for name, plane, band in zip("gri", data, filters, strict=True):
        path = tmp_path / f"band_{name}{suffix}"
        _hdu(plane, band).writeto(path)
        paths.append(path)
    return paths


def _pair(sep, ratio, shape=(128, 128), seed=0):
    """g, r, i images of two overlapping discs ``sep`` pixels apart (PSF 3.5 px)."""
    rng = np.random.default_rng(seed)
    x0, y0 = shape[1] / 2 - 0.3, shape[0] / 2 + 0.2
    angle = np.radians(20.0)
    x1, y1 = x0 + sep * np.cos(angle), y0 + sep * np.sin(angle)
    model = (400.0 * render_sersic(shape, x0, y0, 6.0, 1.0, 0.6, 0.3)
             + ratio * 400.0 * render_sersic(shape, x1, y1, 5.0, 1.5, 0.7, 1.2))
    model = fftconvolve(model, moffat_kernel(3.5), mode="same")
    return [s * model + rng.normal(0, 0.02, shape) for s in (0.6, 1.0, 1.3)], (x0, y0), (x1, y1)


# --------------------------------------------------------------- band order


@pytest.mark.parametrize("style", ["{}", "{}'", "SDSS {}", "HSC-{upper}",
                                   "{} DECam SDSS c0001 4720.0 1520.0", "{}.MP9401", "{}_SDSS"])
def test_bands_in_wrong_order_refused(tmp_path, style):
    # files of the r, g and i bands given as g, r, i: the colours would be
    # swapped without a word
    filters = [style.format(b, upper=b.upper()) for b in "rgi"]
    paths = _write_bands(tmp_path, filters)
    with pytest.raises(ValueError, match="wrong order") as info:
        GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    text = str(info.value)
    assert "band_g.fits" in text and "band_r.fits" in text
    assert repr(filters[0]) in text and repr(filters[1]) in text
    with pytest.raises(ValueError, match="wrong order"):
        make_cutouts(*paths, [CENTRE], size=32)


def test_band_order_read_from_hdus_and_nddata():
    g, r, i = _galaxy()
    with pytest.raises(ValueError, match="wrong order"):
        GalaxyCutout(_hdu(g, "i"), _hdu(r, "r"), _hdu(i, "g"), CENTRE, size=32)
    with pytest.raises(ValueError, match="wrong order"):
        GalaxyCutout(fits.HDUList([_hdu(g, "r")]), fits.HDUList([_hdu(r, "g")]),
                     fits.HDUList([_hdu(i, "i")]), CENTRE, size=32)
    with pytest.raises(ValueError, match="wrong order"):
        GalaxyCutout(*(CCDData(d, unit="adu", meta={"FILTER": f})
                       for d, f in zip((g, r, i), "irg", strict=True)), CENTRE, size=32)


@pytest.mark.parametrize(("filters", "expect"), [
    (("g", "g", "i"), "r band is a g-band image"),  # the g image given twice
    (("g", "r", "z"), "i band is a z-band image"),  # an image of another band
    (("g", None, "g"), "i band is a g-band image"),
])
def test_band_of_another_filter_refused(tmp_path, filters, expect):
    paths = _write_bands(tmp_path, filters)
    with pytest.raises(ValueError, match=expect):
        GalaxyCutout(*paths, CENTRE, size=32, seed=0)


def test_same_file_for_two_bands_refused(tmp_path):
    paths = _write_bands(tmp_path, (None, None, None))
    with pytest.raises(ValueError, match="same file .*band_g.fits.* g and the r band"):
        GalaxyCutout(paths[0], paths[0], paths[2], CENTRE, size=32, seed=0)


def test_untrustworthy_filter_keywords_ignored(tmp_path):
    # All three claim the same filter (a header copied from one band, like
    # the bundled HCG 88 files): the keyword cannot tell the bands apart and
    # is ignored. Unknown values (Johnson R, H-alpha) are not checked.
    data = _galaxy()
    reference = GalaxyCutout(*[_hdu(d) for d in data], CENTRE, size=32, seed=0)
    for filters in (("g", "g", "g"), ("R", "V", "B"), ("Halpha", "", "i")):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cut = GalaxyCutout(*[_hdu(d, f) for d, f in zip(data, filters, strict=True)],
                               CENTRE, size=32, seed=0)
        np.testing.assert_array_equal(cut.image, reference.image)
        assert cut.flag == 0
    # the bundled files (FILTER = 'g' in all three) are accepted as they are
    # (see test_preprocessing_real), while the same data in the wrong order
    # with honest keywords are not
    paths = get_sample_field_paths()
    with fits.open(paths["r"]) as hdul:
        assert hdul[0].header["FILTER"].strip() == "g"
    bands = []
    for name in "gri":
        with fits.open(paths[name]) as hdul:
            bands.append(fits.PrimaryHDU(np.asarray(hdul[0].data), header=hdul[0].header))
        bands[-1].header["FILTER"] = name
    with pytest.raises(ValueError, match="wrong order"):
        GalaxyCutout(bands[1], bands[0], bands[2], (163, 131), size=32)


# --------------------------------------------------------------- band scales


@pytest.mark.parametrize("factor", [1e30, 1e-30, 500.0])
def test_bands_on_different_scales_flagged(factor):
    g, r, i = _galaxy()
    with pytest.warns(BandScaleWarning, match="differ in scale") as record:
        cut = GalaxyCutout(g, r, i * factor, CENTRE, size=32, seed=0)
    assert CutoutFlag.BAND_SCALE_MISMATCH in cut.flag
    assert "i: " in str(record[0].message)
    with pytest.warns(BandScaleWarning):
        cuts = make_cutouts(g * factor, r, i, [CENTRE, (20.0, 40.0)], size=32, seed=0)
    assert all(CutoutFlag.BAND_SCALE_MISMATCH in c.flag for c in cuts)


def test_bands_on_similar_scales_not_flagged():
    # colours of real galaxies and the noise of one survey differ by a few
    g, r, i = _galaxy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = GalaxyCutout(g * 0.2, r, i * 5.0, CENTRE, size=32, seed=0)
    assert cut.flag == 0
    # noise-free models (no sky spread at all) are compared on their light
    model = [300.0 * s * render_sersic(SHAPE, *CENTRE, 5.0, 1.0, 0.6, 0.4) for s in (1, 1, 1e6)]
    with pytest.warns(CutoutWarning) as record:
        cut = GalaxyCutout(*model, CENTRE, size=32, seed=0)
    assert CutoutFlag.BAND_SCALE_MISMATCH in cut.flag
    assert any(isinstance(w.message, BandScaleWarning) for w in record)


# --------------------------------------------------------- damaged compressed


def _compressed_bands(tmp_path, compress, suffix):
    paths = _write_bands(tmp_path, "gri")
    out = []
    for path in paths:
        target = path.with_name(path.name + suffix)
        target.write_bytes(compress(path.read_bytes()))
        out.append(target)
    return out


def test_corrupted_gzip_band_detected(tmp_path):
    # deflate data carry no checksum of their own: a flipped byte decodes to
    # wrong pixels, and only the CRC-32 at the end of the stream, which
    # astropy never reads, reveals it
    paths = _compressed_bands(tmp_path, gzip.compress, ".gz")
    clean = paths[1].read_bytes()
    silent = 0
    for position in range(200, len(clean) - 8, max((len(clean) - 208) // 12, 1)):
        damaged = bytearray(clean)
        damaged[position] ^= 0x10
        paths[1].write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match="band_r.fits.gz.* damaged gzip file"):
            GalaxyCutout(*paths, CENTRE, size=32, seed=0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with fits.open(paths[1]) as hdul:
                    hdul[0].data.sum()
            silent += 1
        except Exception:  # only counting silent reads
            pass
    assert silent > 0  # astropy alone reads some of them without complaint
    paths[1].write_bytes(clean[: len(clean) // 2])  # truncated stream
    with pytest.raises(ValueError, match="band_r.fits.gz.* damaged gzip"):
        GalaxyCutout(*paths, CENTRE, size=32, seed=0)


@pytest.mark.parametrize(("compress", "suffix", "kind"), [
    (bz2.compress, ".bz2", "bzip2"),
    (lzma.compress, ".xz", "xz"),
])
def test_corrupted_bz2_xz_band_detected(tmp_path, compress, suffix, kind):
    paths = _compressed_bands(tmp_path, compress, suffix)
    clean = paths[2].read_bytes()
    damaged = bytearray(clean)
    damaged[len(clean) // 2] ^= 0x10
    paths[2].write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match=f"i band file .*band_i.fits{suffix}.* damaged {kind}"):
        GalaxyCutout(*paths, CENTRE, size=32, seed=0)


def test_corrupted_band_with_datasum_detected(tmp_path):
    # uncompressed files have no checksum of their own, but a FITS file
    # written with checksum=True records DATASUM, which must then hold
    paths = []
    for name, plane in zip("gri", _galaxy(), strict=True):
        path = tmp_path / f"sum_{name}.fits"
        _hdu(plane, name).writeto(path, checksum=True)
        paths.append(path)
    reference = GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    # a header edited afterwards (stale CHECKSUM, intact DATASUM) is fine
    with fits.open(paths[0], mode="update") as hdul:
        hdul[0].header["OBSERVER"] = "someone"
        hdul.flush(output_verify="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    np.testing.assert_array_equal(cut.image, reference.image)
    raw = bytearray(paths[1].read_bytes())
    raw[2 * 2880 + 4 * (32 * 64 + 32)] ^= 0x01  # one bit of one pixel near the centre
    paths[1].write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="r band file .*sum_r.fits.* DATASUM"):
        GalaxyCutout(*paths, CENTRE, size=32, seed=0)


def test_intact_compressed_bands_unchanged(tmp_path):
    # guard: verifying the checksums changes nothing for intact files
    plain = GalaxyCutout(*_write_bands(tmp_path, "gri"), CENTRE, size=32, seed=0)
    for compress, suffix in ((gzip.compress, ".gz"), (bz2.compress, ".bz2")):
        folder = tmp_path / suffix[1:]
        folder.mkdir()
        cut = GalaxyCutout(*_compressed_bands(folder, compress, suffix), CENTRE, size=32,
                           seed=0)
        np.testing.assert_array_equal(cut.image, plain.image)


# --------------------------------------------------- non-colour images as colour


def test_fits_given_as_colour_image_refused(tmp_path):
    g, r, i = _galaxy()
    single = tmp_path / "r.fits"
    _hdu(r).writeto(single)
    cube = tmp_path / "cube.fit"
    fits.PrimaryHDU(np.stack([g, r, i]).astype(np.float32)).writeto(cube)
    packed = tmp_path / "r.fits.gz"
    packed.write_bytes(gzip.compress(single.read_bytes()))
    renamed = tmp_path / "r.png"  # a FITS file whatever its name says
    renamed.write_bytes(single.read_bytes())
    for path in (single, cube, packed, renamed):
        with pytest.raises(ValueError, match=f"{path.name}.* is a FITS image.*GalaxyCutout"):
            GalaxyCutout.from_image(path, size=32)


def test_float_tiff_colour_image(tmp_path):
    from PIL import Image

    _, r, _ = _galaxy()
    flux = tmp_path / "flux.tif"
    Image.fromarray(r.astype(np.float32)).save(flux)
    with pytest.raises(ValueError, match=r"flux.tif.* floating-point values .* \[0, 1\]"):
        GalaxyCutout.from_image(flux, size=32)
    # display intensities in [0, 1]: a grey image, not clipped to black
    grey = np.clip(0.05 + r / r.max(), 0, 1).astype(np.float32)
    path = tmp_path / "grey.tif"
    Image.fromarray(grey).save(path)
    cut = GalaxyCutout.from_image(path, size=32, seed=0)
    as_array = GalaxyCutout.from_image(np.dstack([grey] * 3).astype(np.float64), size=32,
                                       seed=0)
    np.testing.assert_array_equal(cut.image, as_array.image)
    assert cut.image.max() > 100


def test_colour_array_kinds():
    _, r, _ = _galaxy()
    grey = np.clip(0.05 + r / r.max(), 0, 1)
    rgb8 = np.round(np.dstack([grey] * 3) * 255).astype(np.uint8)
    ref = GalaxyCutout.from_image(rgb8, size=32, seed=0)
    # 16-bit arrays are scaled like 16-bit PNG files, not read as 8-bit
    cut16 = GalaxyCutout.from_image(rgb8.astype(np.uint16) * 257, size=32, seed=0)
    np.testing.assert_array_equal(cut16.image, ref.image)
    with pytest.raises(ValueError, match="single-band"):
        GalaxyCutout.from_image(rgb8[..., 0])
    with pytest.raises(ValueError, match="channels-first"):
        GalaxyCutout.from_image(np.moveaxis(rgb8, -1, 0))
    with pytest.raises(TypeError, match="boolean"):
        GalaxyCutout.from_image(rgb8 > 128)


def test_transparent_pixels_are_missing(tmp_path):
    from PIL import Image

    _, r, _ = _galaxy()
    grey = np.round(np.clip(0.05 + r / r.max(), 0, 1) * 255).astype(np.uint8)
    rgba = np.dstack([grey] * 3 + [np.full_like(grey, 255)])
    hole = (slice(40, 46), slice(20, 26))
    rgba[hole + (3,)] = 0  # a transparent patch (black under the alpha)
    rgba[hole + (slice(0, 3),)] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(path)
    for image in (path, rgba):
        with pytest.warns(NaNPixelsWarning):
            cut = GalaxyCutout.from_image(image, size=32, seed=0)
        assert cut.flag == CutoutFlag.NAN_PIXELS
        missing = np.zeros(SHAPE, bool)
        missing[hole] = True
        np.testing.assert_array_equal(cut._field.nonfinite, missing)
    rgba[..., 3] = 0
    with pytest.raises(ValueError, match="fully transparent"):
        GalaxyCutout.from_image(rgba)


# ------------------------------------------------------------------- blends


def test_close_pair_not_deblended_is_flagged():
    # two equal discs 12 pixels apart: photutils' exponential levels miss
    # the dip between them and the cutout shows (and measures) both
    bands, target, _ = _pair(12, 1.0)
    with pytest.warns(BlendWarning, match="second peak") as record:
        cut = GalaxyCutout(*bands, target, size=32, seed=0)
    assert len(record) == 1
    assert cut.flag == CutoutFlag.BLENDED
    assert cut.params["n_merged"] == 0


def test_neighbour_merged_as_fragment_is_flagged():
    # a disc half as bright 14 pixels away is deblended, then merged back as
    # if it were a spiral arm: the centroid moves towards it
    bands, target, neighbour = _pair(14, 0.5)
    with pytest.warns(BlendWarning, match="merging 1 deblended piece") as record:
        cut = GalaxyCutout(*bands, target, size=32, seed=0)
    assert len(record) == 1
    assert cut.flag == CutoutFlag.BLENDED and cut.params["n_merged"] == 1
    shift = np.hypot(cut.centroid[0] - target[0], cut.centroid[1] - target[1])
    assert shift > 3
    # without merging the neighbour stays masked, and nothing is flagged
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        alone = GalaxyCutout(*bands, target, size=32, seed=0, merge_fragments=False)
    assert alone.flag == 0
    assert np.hypot(alone.centroid[0] - target[0], alone.centroid[1] - target[1]) < 1.5


def test_separated_pair_and_single_galaxy_not_flagged():
    # guard against false alarms
    # a neighbour 25 pixels away is deblended and masked; a lone disc is one peak
    bands, target, _ = _pair(25, 1.0)
    single = _galaxy(shape=(128, 128), centre=target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for data in (bands, single):
            cut = GalaxyCutout(*data, target, size=32, seed=0)
            assert cut.flag == 0


# ------------------------------------------------------ no traceback for users


def test_truncated_fits_band(tmp_path):
    paths = _write_bands(tmp_path, "gri")
    raw = paths[0].read_bytes()
    paths[0].write_bytes(raw[: 2880 + 1000])  # cut inside the data
    with pytest.raises(ValueError, match="g band file .*band_g.fits.* truncated"):
        GalaxyCutout(*paths, CENTRE, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's own truncation warning
        hdul = fits.open(paths[0])
    with hdul, pytest.raises(ValueError, match="g band .*band_g.fits.* truncated"):
        GalaxyCutout(hdul, *paths[1:], CENTRE, size=32)


@pytest.mark.parametrize(("cards", "expect"), [
    ({"CTYPE1": "RA---XYZ", "CTYPE2": "DEC--XYZ"}, "CTYPE1='RA---XYZ'.*projection code"),
    ({"PC1_1": 1.0, "PC1_2": 1.0, "PC2_1": 1.0, "PC2_2": 1.0}, "cannot map its pixels"),
])
def test_unusable_wcs_names_the_band(tmp_path, cards, expect):
    data = _galaxy()
    paths = []
    for name, plane in zip("gri", data, strict=True):
        path = tmp_path / f"wcs_{name}.fits"
        _hdu(plane, name, **(cards if name == "r" else {})).writeto(path)
        paths.append(path)
    with pytest.raises(ValueError, match=f"r band file .*wcs_r.fits.*{expect}"):
        GalaxyCutout(*paths, CENTRE, size=32)


@pytest.mark.parametrize("limit", [1000, 3000])  # PIL raises / warns
@pytest.mark.parametrize("filters", ["error", "ignore"])
def test_decompression_bomb_refused(tmp_path, monkeypatch, limit, filters):
    from PIL import Image

    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(path)  # 4096 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings():
        warnings.simplefilter(filters)
        with pytest.raises(ValueError, match="bomb.png.* decompression bomb"):
            GalaxyCutout.from_image(path, size=32)


def test_damaged_colour_image_file(tmp_path):
    from PIL import Image

    _, r, _ = _galaxy()
    grey = np.round(np.clip(r / r.max(), 0, 1) * 255).astype(np.uint8)
    path = tmp_path / "cut.png"
    Image.fromarray(np.dstack([grey] * 3)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="cut.png.* not an image file that PIL can read"):
        GalaxyCutout.from_image(path, size=32)
    # the same file opened by the caller: PIL reads the header only, and the
    # damage shows when the pixels are loaded
    with Image.open(path) as pil, pytest.raises(ValueError, match="PIL image cannot be read"):
        GalaxyCutout.from_image(pil, size=32)


# ------------------------------------------- band order in multi-extension files


def _write_mef(tmp_path, filters, data=None, keyword="FILTER", compress=False):
    """g, r, i files laid out as DECam/HSC ones: the filter keyword in an empty
    primary header, the image (plain or tile-compressed) in extension 1."""
    data = _galaxy() if data is None else data
    paths = []
    for name, plane, band in zip("gri", data, filters, strict=True):
        primary = fits.PrimaryHDU()
        primary.header[keyword] = band
        header = _wcs(plane.shape).to_header()
        if compress:
            image = fits.CompImageHDU(np.asarray(plane, np.float32), header=header,
                                      compression_type="GZIP_2")
        else:
            image = fits.ImageHDU(np.asarray(plane, np.float32), header=header)
        path = tmp_path / f"mef_{name}.fits{'.fz' if compress else ''}"
        fits.HDUList([primary, image]).writeto(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("compress", [False, True])
def test_band_order_read_from_primary_header_of_mef(tmp_path, compress):
    # FILTER in the primary header, the image in extension 1: the r and g
    # files given as g and r must be refused as for single-HDU files
    paths = _write_mef(tmp_path, "rgi", compress=compress)
    with pytest.raises(ValueError, match="wrong order") as info:
        GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    assert "mef_g.fits" in str(info.value) and "mef_r.fits" in str(info.value)
    with fits.open(paths[0]) as g, fits.open(paths[1]) as r, fits.open(paths[2]) as i:
        with pytest.raises(ValueError, match="wrong order"):
            GalaxyCutout(g, r, i, CENTRE, size=32, seed=0)
    # the image HDU's own keyword comes first: a primary header copied from
    # the r file to all three does not hide the swap it records
    folder = tmp_path / "own"
    folder.mkdir()
    paths = _write_mef(folder, "rrr", compress=compress)
    for path, band in zip(paths, "rgi", strict=True):
        with fits.open(path, mode="update") as hdul:
            hdul[1].header["FILTER"] = band
    with pytest.raises(ValueError, match="wrong order"):
        GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    # guard: honest files in the right order give the same cutout as arrays
    folder = tmp_path / "ok"
    folder.mkdir()
    reference = GalaxyCutout(*_galaxy(), CENTRE, wcs=_wcs(), size=32, seed=0)
    if not compress:
        cut = GalaxyCutout(*_write_mef(folder, "gri"), CENTRE, size=32, seed=0)
        np.testing.assert_allclose(cut.image, reference.image, atol=1e-6)
        assert cut.flag == reference.flag


@pytest.mark.parametrize(("keyword", "style"), [
    ("BAND", "{}"), ("FILTNAM", "{}"), ("FILTER", "{}SDSS"), ("FILTER", "SDSS{}"),
    ("FILTER", "{}2"), ("FILTER", "'{}'"),
])
def test_band_order_from_other_keywords_and_spellings(tmp_path, keyword, style):
    filters = [style.format(b) for b in "rgi"]
    paths = []
    for name, plane, value in zip("gri", _galaxy(), filters, strict=True):
        path = tmp_path / f"band_{name}.fits"
        _hdu(plane, **{keyword: value}).writeto(path)
        paths.append(path)
    with pytest.raises(ValueError, match="wrong order") as info:
        GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    assert f"{keyword}={filters[0]!r}" in str(info.value)
    # the same spellings are read from a single-HDU file's primary header
    # and from NDData meta
    with pytest.raises(ValueError, match="wrong order"):
        GalaxyCutout(*(CCDData(d, unit="adu", meta={keyword: f})
                       for d, f in zip(_galaxy(), filters, strict=True)), CENTRE, size=32)


def test_filter_spellings_read_only_when_unambiguous():
    # glued, numbered and quoted spellings name their band; ambiguous ones none
    from galmorphsearch.preprocessing._io import _filter_band

    expected = {"rSDSS": "r", "gSDSS": "g", "SDSSi": "i", "r2": "r", "i2": "i", "'r'": "r",
                "''g''": "g", "z sloan": "z"}
    assert {value: _filter_band(value) for value in expected} == expected
    for value in ("R", "R2", "DESI", "gri", "Halpha", "'", "W1", 1, "rg", "grSDSS"):
        assert _filter_band(value) is None, value


def test_identical_copy_given_as_another_band(tmp_path):
    # a copy of the g file (another name, same pixels) given as the r band:
    # two real bands never hold identical data
    paths = _write_bands(tmp_path, (None, None, None))
    copy = tmp_path / "copy_of_g.fits"
    copy.write_bytes(paths[0].read_bytes())
    with pytest.raises(ValueError, match="band_g.fits.*copy_of_g.fits.*identical") as info:
        GalaxyCutout(paths[0], copy, paths[2], CENTRE, size=32, seed=0)
    assert "g" in str(info.value) and "r band" in str(info.value)
    # the same pixels in a compressed copy
    gz = tmp_path / "copy_of_i.fits.gz"
    gz.write_bytes(gzip.compress(paths[2].read_bytes()))
    with pytest.raises(ValueError, match="copy_of_i.fits.gz.*band_i.fits.*identical"):
        GalaxyCutout(paths[0], gz, paths[2], CENTRE, size=32, seed=0)


# ------------------------------------------------ decompression bombs (FITS)


def _bomb(tmp_path, name, trailer_mib):
    """A valid gzip FITS band followed by gzip members of zeros."""
    path = _write_bands(tmp_path, "gri")
    member = gzip.compress(bytes(2**20))
    bomb = tmp_path / name
    bomb.write_bytes(gzip.compress(path[1].read_bytes()) + member * trailer_mib)
    return path, bomb


def test_gzip_bomb_band_refused(tmp_path):
    # 1 MB on disk, 1 GiB once decompressed: refused from the sizes its FITS
    # headers describe, after reading little more than them
    paths, bomb = _bomb(tmp_path, "bomb_r.fits.gz", 1024)
    assert bomb.stat().st_size < 2 * 2**20
    with pytest.raises(ValueError, match=r"r band file .*bomb_r.fits.gz.* decompression bomb") \
            as info:
        GalaxyCutout(paths[0], bomb, paths[2], CENTRE, size=32, seed=0)
    text = str(info.value)
    assert f"its FITS headers describe {paths[1].stat().st_size} bytes" in text
    # the same class of file through bzip2, xz and zip
    fits_bytes = paths[1].read_bytes() + bytes(8 * 2**20)
    for suffix, compress in ((".bz2", bz2.compress), (".xz", lzma.compress)):
        other = tmp_path / f"bomb_r.fits{suffix}"
        other.write_bytes(compress(fits_bytes))
        with pytest.raises(ValueError, match=f"bomb_r.fits{suffix}.* decompression bomb"):
            GalaxyCutout(paths[0], other, paths[2], CENTRE, size=32, seed=0)
    import zipfile
    other = tmp_path / "bomb_r.fits.zip"
    with zipfile.ZipFile(other, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb_r.fits", fits_bytes)
    with pytest.raises(ValueError, match="bomb_r.fits.zip.* decompression bomb"):
        GalaxyCutout(paths[0], other, paths[2], CENTRE, size=32, seed=0)


def test_decompressed_size_limit(tmp_path, monkeypatch):
    from galmorphsearch.preprocessing import _io

    paths = _write_bands(tmp_path, "gri")
    # headers that describe more than the limit are refused at once
    header = fits.PrimaryHDU().header
    header["BITPIX"] = -64
    header["NAXIS"] = 2
    header["NAXIS1"] = header["NAXIS2"] = 200_000  # 3.2e11 bytes, + header, padded
    huge = tmp_path / "huge_r.fits.gz"
    huge.write_bytes(gzip.compress(header.tostring().encode() + bytes(2880)))
    with pytest.raises(ValueError, match=r"huge_r.fits.gz.* describe 320000005440 bytes.* "
                                         r"limit of 4294967296 bytes"):
        GalaxyCutout(paths[0], huge, paths[2], CENTRE, size=32, seed=0)
    # a stream that does not parse as FITS is read up to the limit only
    monkeypatch.setattr(_io, "_MAX_DECOMPRESSED_BYTES", 2**20)
    noise = tmp_path / "noise_r.fits.gz"
    noise.write_bytes(gzip.compress(b"not a FITS header " * 200_000))
    with pytest.raises(ValueError, match=r"noise_r.fits.gz.* more than 1048576 bytes.* bomb"):
        GalaxyCutout(paths[0], noise, paths[2], CENTRE, size=32, seed=0)
    # tile-compressed images are held to the same limit
    fz = tmp_path / "big_r.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.zeros((600, 600), np.float32),
                                                      compression_type="RICE_1")]).writeto(fz)
    with pytest.raises(ValueError, match=r"big_r.fits.fz.* 1440000 bytes .*once decompressed"):
        GalaxyCutout(paths[0], fz, paths[2], CENTRE, size=32, seed=0)


def test_memory_error_names_the_band(tmp_path, monkeypatch):
    paths = _compressed_bands(tmp_path, gzip.compress, ".gz")

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate output buffer.")

    with monkeypatch.context() as patch:
        patch.setattr(gzip.GzipFile, "read", no_memory)
        with pytest.raises(ValueError, match=r"g band file .*band_g.fits.gz.* memory"):
            GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    (tmp_path / "plain").mkdir()
    plain = _write_bands(tmp_path / "plain", "gri")
    with monkeypatch.context() as patch:
        patch.setattr(fits.PrimaryHDU, "data", property(no_memory))
        with pytest.raises(ValueError, match=r"g band file .*band_g.fits.* memory"):
            GalaxyCutout(*plain, CENTRE, size=32, seed=0)


def test_intact_multi_extension_compressed_bands_unchanged(tmp_path):
    # guard: files of several HDUs (a table with a heap after the image),
    # compressed, read exactly as the uncompressed ones
    data = _galaxy()
    plain, packed = [], []
    column = fits.Column(name="v", format="PJ()",
                         array=np.array([np.arange(5), np.arange(700)], dtype=object))
    for name, plane in zip("gri", data, strict=True):
        hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(plane.astype(np.float32),
                                                              _wcs().to_header()),
                             fits.BinTableHDU.from_columns([column])])
        path = tmp_path / f"multi_{name}.fits"
        hdul.writeto(path)
        plain.append(path)
        target = tmp_path / f"multi_{name}.fits.xz"
        target.write_bytes(lzma.compress(path.read_bytes()))
        packed.append(target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reference = GalaxyCutout(*plain, CENTRE, size=32, seed=0)
        cut = GalaxyCutout(*packed, CENTRE, size=32, seed=0)
    np.testing.assert_array_equal(cut.image, reference.image)


# ------------------------------------------------- damaged tile-compressed


def _tile_compressed(path, data, compression, zdatasum=False, checksum=False):
    """Write a tile-compressed (.fz) band; ``zdatasum`` records the DATASUM
    of the uncompressed image as ZDATASUM (as fpack does for a file that
    had one), ``checksum`` the DATASUM of the compressed HDU itself."""
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, _wcs().to_header(),
                                                      compression_type=compression)]
                 ).writeto(path, checksum=checksum)
    if zdatasum:
        with fits.open(path, mode="update", disable_image_compression=True) as hdul:
            hdul[1].header["ZDATASUM"] = str(fits.ImageHDU(data).add_datasum())
    with fits.open(path, disable_image_compression=True) as hdul:
        return hdul[1]._data_offset + hdul[1].header["NAXIS1"] * hdul[1].header["NAXIS2"]


@pytest.mark.parametrize("compression", ["PLIO_1", "HCOMPRESS_1"])
def test_damaged_tile_compressed_band_detected(tmp_path, compression):
    # PLIO and HCOMPRESS tiles carry no checksum of their own: damaged heap
    # bytes decode to wrong pixels without a word unless a checksum is kept
    planes = [np.round(200 + 50 * d).astype(np.int32) for d in _galaxy()]
    paths = _write_bands(tmp_path, "gri", data=planes)
    reference = GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    for kind in ("zdatasum", "checksum"):
        fz = tmp_path / f"{kind}_r.fits.fz"
        heap = _tile_compressed(fz, planes[1], compression, **{kind: True})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cut = GalaxyCutout(paths[0], fz, paths[2], CENTRE, size=32, seed=0)
        np.testing.assert_array_equal(cut.image, reference.image)  # intact: read as before
        raw = bytearray(fz.read_bytes())
        raw[heap + 40] ^= 0x10  # silently changes 50 (PLIO) or 722 pixels (found by trial)
        fz.write_bytes(bytes(raw))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(fz) as hdul:
                assert (hdul[1].data != planes[1]).any()  # astropy alone: wrong pixels
        expect = "ZDATASUM" if kind == "zdatasum" else "DATASUM"
        with pytest.raises(ValueError, match=f"r band file .*{kind}_r.fits.fz.* {expect}"):
            GalaxyCutout(paths[0], fz, paths[2], CENTRE, size=32, seed=0)


def test_intact_tile_compressed_unsigned_band_with_zdatasum(tmp_path):
    # guard: a lossless uint16 image (stored with BZERO = 32768) passes its
    # ZDATASUM; a lossy one (quantised floats) is not checked against it
    planes = [np.round(1000 + 100 * d).astype(np.uint16) for d in _galaxy()]
    paths = _write_bands(tmp_path, "gri", data=planes)
    reference = GalaxyCutout(*paths, CENTRE, size=32, seed=0)
    fz = tmp_path / "u16_r.fits.fz"
    _tile_compressed(fz, planes[1], "RICE_1", zdatasum=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = GalaxyCutout(paths[0], fz, paths[2], CENTRE, size=32, seed=0)
    np.testing.assert_array_equal(cut.image, reference.image)
    lossy = tmp_path / "lossy_r.fits.fz"
    _tile_compressed(lossy, planes[1].astype(np.float32) + 0.3, "RICE_1", zdatasum=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GalaxyCutout(paths[0], lossy, paths[2], CENTRE, size=32, seed=0)


def test_damaged_hcompress_tile_size_refused_before_decoding(tmp_path):
    # astropy's HCOMPRESS decoder takes a tile's size from the compressed
    # stream and writes that many pixels into a buffer sized from the header
    # (CFITSIO issue 131): a damaged size corrupts memory (a crash, at best)
    # unless it is caught before decoding. No DATASUM here to catch it first.
    planes = [np.round(200 + 50 * d).astype(np.int32) for d in _galaxy()]
    paths = _write_bands(tmp_path, "gri", data=planes)
    fz = tmp_path / "hc_r.fits.fz"
    heap = _tile_compressed(fz, planes[1], "HCOMPRESS_1")
    raw = bytearray(fz.read_bytes())
    assert raw[heap:heap + 2] == b"\xdd\x99"  # tile 1: code, then 16 x 64 (int32)
    raw[heap + 9] ^= 0x10  # 16 x 64 -> 16 x 80 pixels
    fz.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"r band file .*hc_r.fits.fz.* tile 1 of its "
                                         r"HCOMPRESS_1 image declares 16 x 80 pixels where "
                                         r"the tile holds 1024 \(refused before decoding"):
        GalaxyCutout(paths[0], fz, paths[2], CENTRE, size=32, seed=0)
