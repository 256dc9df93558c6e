# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the real sample data bundled with galmorphsearch."""

import os
import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from galmorphsearch.datasets import (
    MultiBandField,
    get_sample_field_paths,
    load_gz2_gallery,
    load_sample_field,
)

HCG88A = SkyCoord(313.1478 * u.deg, -5.7111 * u.deg)


@pytest.fixture(scope="module")
def field():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading must be silent
        return load_sample_field()


def test_paths():
    paths = get_sample_field_paths()
    assert list(paths) == ["g", "r", "i"]
    for band, path in paths.items():
        assert os.path.isfile(path)
        assert path.endswith(f"reprojected_sdss_{band}.fits.bz2")
    assert list(get_sample_field_paths("ri")) == ["r", "i"]


@pytest.mark.parametrize("bands", ["gz", "", "gg", ["u"]])
def test_bad_bands(bands):
    with pytest.raises(ValueError, match="band"):
        get_sample_field_paths(bands)
    with pytest.raises(ValueError, match="band"):
        load_sample_field(bands)


def test_files_say_g_but_field_is_fixed(field):
    # The bundled files all claim FILTER = 'g'; the loader trusts the file name.
    with fits.open(get_sample_field_paths()["r"]) as hdul:
        assert hdul[0].header["FILTER"].strip() == "g"
    assert isinstance(field, MultiBandField)
    assert field.bands == ("g", "r", "i")
    for band, hdu in field.items():
        assert isinstance(hdu, fits.PrimaryHDU)
        assert hdu.header["FILTER"] == band
        assert hdu.header["BUNIT"] == "nanomaggy"
        assert hdu.header["RADESYS"] == "ICRS"
        assert "RADECSYS" not in hdu.header
        assert hdu.header["MJD-OBS"] == pytest.approx(51814.0)
        assert hdu.data.shape == (496, 682)
        assert hdu.data.dtype == np.dtype(np.float32)  # native byte order
        assert np.isfinite(hdu.data).all()
    assert field.g is field["g"]
    assert field.shape == (496, 682)
    assert repr(field) == "<MultiBandField bands='gri' shape=496x682>"
    with pytest.raises(AttributeError, match="no 'u' band"):
        field.u  # noqa: B018
    with pytest.raises(AttributeError):
        field.not_a_band  # noqa: B018


def test_wcs_is_silent_and_common(field):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wcss = [WCS(hdu.header) for hdu in field.values()]
    scales = proj_plane_pixel_scales(wcss[0]) * 3600
    np.testing.assert_allclose(scales, 1.19, atol=0.02)
    for wcs in wcss[1:]:
        np.testing.assert_allclose(wcs.wcs.cd, wcss[0].wcs.cd)
        np.testing.assert_allclose(wcs.wcs.crval, wcss[0].wcs.crval)
    # HCG 88a lies in the field and is bright in every band.
    x, y = field.wcs.world_to_pixel(HCG88A)
    assert 0 < x < 682
    assert 0 < y < 496
    for band in "gri":
        centre = field.data(band)[round(float(y)) - 2 : round(float(y)) + 3,
                                  round(float(x)) - 2 : round(float(x)) + 3]
        assert centre.mean() > 0.5


def test_sky_noise_is_sdss_like(field):
    # Sky-subtracted nanomaggies: median near zero, small noise.
    for band in "gri":
        data = field.data(band)
        assert abs(np.median(data)) < 0.01
        mad = np.median(np.abs(data - np.median(data))) * 1.4826
        assert 0.001 < mad < 0.05


def test_to_rgb_and_writeto(field, tmp_path):
    rgb = field.to_rgb()
    assert rgb.shape == (496, 682, 3)
    assert rgb.dtype == np.uint8
    assert rgb.max() == 255
    with pytest.raises(ValueError, match="three bands"):
        field.to_rgb(bands="gr")
    sub = load_sample_field("r")
    paths = sub.writeto(tmp_path, prefix="hcg88")
    assert os.path.basename(paths["r"]) == "hcg88_r.fits"
    with fits.open(paths["r"]) as hdul:
        assert hdul[0].header["FILTER"] == "r"
        np.testing.assert_array_equal(hdul[0].data, sub["r"].data)
    with pytest.raises(OSError, match="already exists"):
        sub.writeto(tmp_path, prefix="hcg88")


def test_gz2_gallery():
    table = load_gz2_gallery()
    assert len(table) == 12
    assert table.colnames == ["gz2_class", "ra", "dec", "file"]
    assert set(table["gz2_class"]) == {
        "Ec", "Ei", "Er", "Sb", "SbB", "Sc", "Sc2m", "Sc?t", "ScB", "Sd", "Sen", "Ser"
    }
    assert table["ra"].unit == u.deg
    assert table["dec"].unit == u.deg
    assert ((table["ra"] >= 0) & (table["ra"] < 360)).all()
    for row in table:
        assert os.path.isfile(row["file"])
        assert os.path.basename(row["file"]) == row["gz2_class"].replace("?", "Q") + ".jpeg"


def test_gz2_gallery_images():
    table = load_gz2_gallery(images=True)
    assert table["image"].shape == (12, 256, 256, 3)
    assert table["image"].dtype == np.uint8
    # Colour images of galaxies: the centre is brighter than the corners.
    images = np.asarray(table["image"], dtype=float)
    assert (images[:, 118:138, 118:138].mean(axis=(1, 2, 3))
            > images[:, :20, :20].mean(axis=(1, 2, 3))).all()


@pytest.mark.parametrize("bad", ["", "gg", "gx", ["g", "R"]])
def test_band_errors_are_the_same_everywhere(bad):
    """The three dataset functions share one band parser and its messages."""
    from galmorphsearch.datasets import fetch_sdss_images, make_synthetic_galaxy

    messages = []
    for call in (
        lambda: get_sample_field_paths(bad),
        lambda: make_synthetic_galaxy("Er", bands=bad),
        lambda: fetch_sdss_images(SkyCoord(0, 0, unit="deg"), bands=bad),  # fails offline
    ):
        with pytest.raises(ValueError, match="^bands must be") as info:
            call()
        messages.append(str(info.value))
    assert all(repr(tuple(bad)) in message for message in messages)
