# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the synthetic galaxy fields of `galmorphsearch.datasets`."""

import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.modeling.models import Sersic2D
from astropy.table import Table
from astropy.wcs import WCS
from astropy.wcs.utils import proj_plane_pixel_scales

from galmorphsearch.datasets import (
    GZ2_TYPE_DESCRIPTIONS,
    GZ2_TYPES,
    SyntheticField,
    iter_synthetic_sample,
    make_synthetic_galaxy,
    make_synthetic_sample,
)
from galmorphsearch.datasets._sersic import (
    elliptical_coordinates,
    gaussian_kernel,
    moffat_kernel,
    render_sersic,
    sersic_profile,
)

SMALL = (128, 128)
QUIET = {"noise": False, "neighbours": 0, "stars": 0, "shape": SMALL}


def _geometry(field, band="r"):
    """Image, disk-plane radius (pixels) and azimuth from the truth geometry."""
    truth = field.truth
    image = field.data(band)
    ny, nx = image.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    xd, yd = elliptical_coordinates(
        x, y, truth["x"], truth["y"], np.radians(truth["theta"]), truth["axis_ratio"]
    )
    return image, np.hypot(xd, yd), np.arctan2(yd, xd)


def _scale_length(field):
    truth = field.truth
    length = truth["disk_scale_length"] or truth["r_half"]
    return length / truth["pixel_scale"]


def _fourier_amplitude(field, r_lo, r_hi, m):
    image, radius, phi = _geometry(field)
    sel = (radius > r_lo) & (radius < r_hi)
    weights = image[sel]
    return abs(np.sum(weights * np.exp(1j * m * phi[sel]))) / np.sum(weights)


def _non_axisymmetric_fraction(field, r_lo, r_hi):
    """Flux fraction in the residual from the azimuthal median, in the disk plane."""
    image, radius, _ = _geometry(field)
    sel = (radius > r_lo) & (radius < r_hi)
    rings = np.floor(radius[sel]).astype(int)
    values = image[sel]
    median = np.zeros(rings.max() + 1)
    for ring in np.unique(rings):
        median[ring] = np.median(values[rings == ring])
    return np.sum(np.abs(values - median[rings])) / np.sum(values)


def _moments_axis_ratio(image, threshold):
    """Axis ratio from the second moments of the pixels above a threshold."""
    ny, nx = image.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    w = np.where(image > threshold, image, 0.0)
    xc, yc = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    cov = np.cov(np.vstack([(x - xc).ravel(), (y - yc).ravel()]), aweights=w.ravel())
    eig = np.linalg.eigvalsh(cov)
    return np.sqrt(eig[0] / eig[1])


def test_type_list():
    assert GZ2_TYPES == (
        "Er", "Ei", "Ec", "Edge-on", "Sa", "Sb", "Sc", "Sd", "SBa", "SBb", "SBc", "SBd"
    )
    assert set(GZ2_TYPE_DESCRIPTIONS) == set(GZ2_TYPES)
    # One source of truth for the type list: the catalogs' GZ2 scheme.
    from galmorphsearch.catalogs import GZ2_SCHEME

    assert GZ2_TYPES is GZ2_SCHEME.types


@pytest.mark.parametrize("morphology", GZ2_TYPES)
def test_every_type(morphology):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        field = make_synthetic_galaxy(morphology, seed=7, shape=SMALL)
        wcs = field.wcs
    assert isinstance(field, SyntheticField)
    assert field.bands == ("g", "r", "i")
    assert field.shape == SMALL
    truth = field.truth
    assert truth["morphology"] == morphology
    assert truth["type_index"] == GZ2_TYPES.index(morphology)
    assert truth["seed"] == 7
    for band, hdu in field.items():
        assert isinstance(hdu, fits.PrimaryHDU)
        assert hdu.data.dtype == np.float32
        assert np.isfinite(hdu.data).all()
        assert hdu.header["FILTER"] == band
        assert hdu.header["BUNIT"] == "nanomaggy"
        assert hdu.header["MORPHTYP"] == morphology
        assert hdu.header["TYPEIDX"] == GZ2_TYPES.index(morphology)
        assert truth["flux"][band] > 0
    scales = proj_plane_pixel_scales(wcs) * 3600
    np.testing.assert_allclose(scales, 0.396)
    assert wcs.wcs.ctype[0] == "RA---TAN"
    assert repr(field) == f"<SyntheticField {morphology!r} bands='gri' shape=128x128>"
    # The truth describes the right kind of galaxy.
    barred = morphology.startswith("SB")
    assert truth["bar"] is barred
    assert bool(truth["bar_length"] > 0) is barred
    assert bool(np.isnan(truth["bar_pa"])) is not barred
    spiral = morphology[0] == "S"
    assert bool(truth["n_arms"] > 0) is spiral
    if morphology in ("Er", "Ei", "Ec"):
        assert truth["bulge_fraction"] == 1.0
    if morphology.endswith("d"):
        assert truth["bulge_fraction"] == 0.0
    assert 0 <= truth["pa"] < 180
    assert 0 < truth["axis_ratio"] <= 1


def test_bulge_fraction_falls_from_a_to_d():
    for prefix in ("S", "SB"):
        fractions = [make_synthetic_galaxy(prefix + s, seed=3, **QUIET).truth["bulge_fraction"]
                     for s in "abcd"]
        assert fractions == sorted(fractions, reverse=True)
        assert fractions[0] >= 0.4
        assert fractions[3] == 0.0


def test_determinism():
    a = make_synthetic_galaxy("SBc", seed=123, shape=SMALL)
    b = make_synthetic_galaxy("SBc", seed=123, shape=SMALL)
    c = make_synthetic_galaxy("SBc", seed=124, shape=SMALL)
    for band in "gri":
        np.testing.assert_array_equal(a[band].data, b[band].data)
        assert not np.array_equal(a[band].data, c[band].data)
    assert a.truth["pa"] == b.truth["pa"]
    assert a.truth["position"] == b.truth["position"]
    # A Generator works too, and records no integer seed.
    d = make_synthetic_galaxy("Sa", seed=np.random.default_rng(1), shape=SMALL)
    assert d.truth["seed"] is None
    assert "SEED" not in d["r"].header


def test_flux_and_noise():
    field = make_synthetic_galaxy("Sb", seed=2, neighbours=0, stars=0, r_mag=16.0)
    truth = field.truth
    assert truth["mag"]["r"] == pytest.approx(16.0, abs=1e-6)
    assert truth["flux"]["r"] == pytest.approx(10 ** (0.4 * 6.5), rel=1e-6)
    image, radius, _ = _geometry(field)
    # Flux within 6.5 scale lengths recovers the truth despite the PSF and noise.
    aperture = radius < 6.5 * _scale_length(field)
    assert image[aperture].sum() == pytest.approx(truth["flux"]["r"], rel=0.05)
    # Far from the galaxy: sky noise only, as configured (nanomaggies per pixel).
    sky = image[radius > 9 * _scale_length(field)]
    assert abs(np.median(sky)) < 0.01
    assert np.std(sky) == pytest.approx(truth["sky_noise"]["r"], rel=0.1)
    assert 0.02 < truth["sky_noise"]["r"] < 0.1
    # A bright galaxy: high signal to noise.
    assert truth["flux"]["r"] / (truth["sky_noise"]["r"] * np.sqrt(aperture.sum())) > 30


def test_noiseless_and_custom_noise():
    quiet = make_synthetic_galaxy("Er", seed=4, **QUIET)
    corner = quiet.data("r")[:10, :10]
    assert np.abs(corner).max() < 0.05
    assert (quiet.data("r") > -1e-6).all()
    noisy = make_synthetic_galaxy("Er", seed=4, shape=SMALL, sky_noise=0.5, neighbours=0,
                                  stars=0)
    assert np.std(noisy.data("g")[:10, :10]) == pytest.approx(0.5, rel=0.3)
    coarse = make_synthetic_galaxy("Er", seed=4, shape=SMALL, pixel_scale=1.19 * u.arcsec)
    assert coarse.truth["sky_noise"]["r"] == pytest.approx(0.038 * 1.19 / 0.396)


def test_bars_present():
    for stage in "abc":
        barred, unbarred = [], []
        for seed in range(4):
            for morph, out in ((f"SB{stage}", barred), (f"S{stage}", unbarred)):
                field = make_synthetic_galaxy(morph, seed=seed, **QUIET)
                h = _scale_length(field)
                out.append(_fourier_amplitude(field, 0.3 * h, 1.0 * h, 2))
        assert np.mean(barred) > 1.8 * np.mean(unbarred), stage
        assert min(barred) > 0.08


def test_arms_present():
    def residual(morph, seed):
        field = make_synthetic_galaxy(morph, seed=seed, **QUIET)
        h = _scale_length(field)
        return _non_axisymmetric_fraction(field, 1.0 * h, 3.0 * h)

    for seed in range(3):
        assert residual("Er", seed) < 0.06
        assert residual("Sc", seed) > 0.3
        assert residual("Sb", seed) > 0.2
        for morph in ("Sa", "Sd", "SBa", "SBd"):
            assert residual(morph, seed) > 0.1, morph
    # The arm number shows in the Fourier spectrum of a grand-design spiral.
    field = make_synthetic_galaxy("Sc", seed=0, **QUIET)
    h = _scale_length(field)
    m = field.truth["n_arms"]
    assert _fourier_amplitude(field, h, 3 * h, m) > 3 * _fourier_amplitude(field, h, 3 * h, m + 1)


def test_axis_ratios():
    for seed in range(3):
        edge = make_synthetic_galaxy("Edge-on", seed=seed, **QUIET)
        assert edge.truth["axis_ratio"] < 0.15
        assert edge.truth["inclination"] >= 86
        threshold = 0.1 * edge.data("i").max()
        assert _moments_axis_ratio(edge.data("i"), threshold) < 0.3
        er = make_synthetic_galaxy("Er", seed=seed, **QUIET)
        ec = make_synthetic_galaxy("Ec", seed=seed, **QUIET)
        assert _moments_axis_ratio(er.data("r"), 0.05 * er.data("r").max()) > 0.8
        assert _moments_axis_ratio(ec.data("r"), 0.05 * ec.data("r").max()) < 0.55


def test_colours():
    def g_r(field):
        image_g, radius, _ = _geometry(field, "g")
        aperture = radius < 3 * _scale_length(field)
        return -2.5 * np.log10(image_g[aperture].sum() / field.data("r")[aperture].sum())

    for seed in range(3):
        ellipticals = [g_r(make_synthetic_galaxy(m, seed=seed, **QUIET)) for m in ("Er", "Ec")]
        late = [g_r(make_synthetic_galaxy(m, seed=seed, **QUIET)) for m in ("Sc", "Sd", "SBd")]
        assert min(ellipticals) > max(late) + 0.2
        assert 0.6 < min(ellipticals) < 0.9
        assert min(late) > 0.1


def test_wcs_roundtrip():
    center = SkyCoord(150.1 * u.deg, 2.2 * u.deg)
    field = make_synthetic_galaxy("Sb", seed=5, center=center, shape=SMALL)
    truth = field.truth
    wcs = WCS(field["g"].header)
    assert wcs.pixel_to_world(63.5, 63.5).separation(center) < 0.01 * u.arcsec
    x, y = wcs.world_to_pixel(truth["position"])
    assert x == pytest.approx(truth["x"], abs=1e-6)
    assert y == pytest.approx(truth["y"], abs=1e-6)
    assert abs(truth["x"] - 63.5) <= 1.5
    assert field["r"].header["GALX"] == pytest.approx(truth["x"], abs=1e-3)
    assert field.position is truth["position"]
    # North up, east left: RA decreases with x.
    east = wcs.pixel_to_world(0, 63.5)
    west = wcs.pixel_to_world(127, 63.5)
    assert east.ra > west.ra


def test_position_angle_convention():
    field = make_synthetic_galaxy("Ec", seed=9, **QUIET)
    image = field.data("r")
    ny, nx = image.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    w = np.where(image > 0.05 * image.max(), image, 0.0)
    xc, yc = (w * x).sum() / w.sum(), (w * y).sum() / w.sum()
    cov = np.cov(np.vstack([(x - xc).ravel(), (y - yc).ravel()]), aweights=w.ravel())
    vals, vecs = np.linalg.eigh(cov)
    major = vecs[:, 1]
    theta = np.degrees(np.arctan2(major[1], major[0])) % 180
    diff = abs(theta - field.truth["theta"]) % 180
    assert min(diff, 180 - diff) < 3
    # PA east of north for a north-up, east-left image.
    assert field.truth["pa"] == pytest.approx((field.truth["theta"] - 90) % 180)


def test_neighbours_and_stars():
    field = make_synthetic_galaxy("Sa", seed=11, neighbours=3, stars=4, noise=False)
    truth = field.truth
    assert len(truth["neighbours"]) == 3
    assert len(truth["stars"]) == 4
    assert isinstance(truth["stars"], Table)
    image = field.data("r")
    for row in truth["stars"]:
        peak = image[round(row["y"]), round(row["x"])]
        expected = 10 ** (-0.4 * (row["r_mag"] - 22.5))
        # A point source: the peak pixel holds a few per cent of its flux.
        assert peak > 0.01 * expected
        assert np.hypot(row["x"] - truth["x"], row["y"] - truth["y"]) > 0.25 * 256
    for row in truth["neighbours"]:
        assert image[round(row["y"]), round(row["x"])] > 0.05
    empty = make_synthetic_galaxy("Sa", seed=11, neighbours=0, stars=0)
    assert len(empty.truth["neighbours"]) == 0
    assert len(empty.truth["stars"]) == 0


def test_psf_options():
    gauss = make_synthetic_galaxy("Er", seed=1, psf="gaussian", psf_fwhm=2.0, **QUIET)
    assert gauss.truth["psf_fwhm"] == {"g": 2.0, "r": 2.0, "i": 2.0}
    assert gauss["r"].header["PSFFWHM"] == 2.0
    kernel = np.zeros((5, 5))
    kernel[2, 2] = 1.0
    sharp = make_synthetic_galaxy("Er", seed=1, psf=kernel, **QUIET)
    assert sharp.data("r").max() > gauss.data("r").max()
    with pytest.raises(ValueError, match="psf must be"):
        make_synthetic_galaxy("Er", seed=1, psf="airy", shape=SMALL)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown morphology"):
        make_synthetic_galaxy("S0")
    with pytest.raises(ValueError, match="bands"):
        make_synthetic_galaxy("Sa", bands="gz")
    with pytest.raises(ValueError, match="shape"):
        make_synthetic_galaxy("Sa", shape=(16, 16))
    with pytest.raises(ValueError, match="unknown morphology"):
        make_synthetic_sample(1, types=["Sa", "Irr"])
    with pytest.raises(ValueError, match="non-negative"):
        make_synthetic_sample(-1)


def test_band_subset():
    field = make_synthetic_galaxy("Sc", seed=1, bands="ig", shape=SMALL)
    assert field.bands == ("g", "i")
    assert set(field.truth["flux"]) == {"g", "i"}


@pytest.mark.parametrize("morphology", GZ2_TYPES)
@pytest.mark.parametrize("noise", [False, True])
def test_band_subset_gives_the_same_images(morphology, noise):
    """A band's image does not depend on which other bands are requested."""
    full = make_synthetic_galaxy(morphology, seed=3, noise=noise, shape=SMALL)
    for subset in ("ri", "gi", "r", "g", "i", ["i", "r"]):
        part = make_synthetic_galaxy(morphology, seed=3, noise=noise, shape=SMALL, bands=subset)
        assert part.bands == tuple(b for b in "gri" if b in subset)
        for band in part.bands:
            np.testing.assert_array_equal(part[band].data, full[band].data)
            assert part.truth["flux"][band] == full.truth["flux"][band]


def test_edge_on_dust_lane_opacity_by_band():
    # The review's repro: the r flux of an Edge-on galaxy changed with bands.
    gri = make_synthetic_galaxy("Edge-on", seed=3, noise=False)
    ri = make_synthetic_galaxy("Edge-on", seed=3, noise=False, bands="ri")
    assert gri["r"].data.sum() == pytest.approx(1368.28, abs=0.01)
    assert ri["r"].data.sum() == gri["r"].data.sum()


def test_sample():
    table, fields = make_synthetic_sample(1, seed=42, shape=(64, 64))
    assert len(table) == len(fields) == 12
    assert list(table["morphology"]) == list(GZ2_TYPES)
    assert list(table["type_index"]) == list(range(12))
    assert list(table["objid"]) == list(range(1, 13))
    assert table["ra"].unit == u.deg
    for row, field in zip(table, fields, strict=True):
        assert field.truth["morphology"] == row["morphology"]
        assert field.position.ra.deg == pytest.approx(row["ra"])
        assert row["bar"] == row["morphology"].startswith("SB")
    # Any field can be remade alone from its recorded seed.
    again = make_synthetic_galaxy(table["morphology"][5], seed=int(table["seed"][5]),
                                  shape=(64, 64))
    np.testing.assert_array_equal(again["r"].data, fields[5]["r"].data)
    # Same seed, same sample; the truth table writes to FITS.
    table2, _ = make_synthetic_sample(1, seed=42, shape=(64, 64))
    np.testing.assert_array_equal(table["ra"], table2["ra"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits.table_to_hdu(table)


def test_sample_options():
    table, fields = make_synthetic_sample(3, types=["Er", "SBc"], seed=1, shuffle=True,
                                          shape=(48, 48), objid_offset=100)
    assert len(table) == 6
    assert sorted(table["morphology"]) == ["Er"] * 3 + ["SBc"] * 3
    assert list(table["objid"]) == list(range(101, 107))
    empty, none = make_synthetic_sample(0, seed=1)
    assert len(empty) == 0
    assert none == []
    generator = iter_synthetic_sample(2, types=["Ec"], seed=3, shape=(48, 48))
    first = next(generator)
    assert first.truth["objid"] == 1
    assert first.truth["morphology"] == "Ec"


def test_sersic_matches_astropy():
    r_eff, n, q, theta = 6.0, 2.5, 0.6, 0.4
    model = Sersic2D(amplitude=1.0, r_eff=r_eff, n=n, x_0=30.0, y_0=25.0, ellip=1 - q,
                     theta=theta)
    y, x = np.mgrid[0:50, 0:60].astype(float)
    u_, v_ = elliptical_coordinates(x, y, 30.0, 25.0, theta, q)
    ours = sersic_profile(np.hypot(u_, v_), r_eff, n)
    far = np.hypot(x - 30, y - 25) > 3
    np.testing.assert_allclose(ours[far], model(x, y)[far], rtol=1e-6)
    image = render_sersic((50, 60), 30.0, 25.0, r_eff, n, q, theta)
    assert image.sum() == pytest.approx(1.0)
    # The oversampled centre is below the cusp value at the exact centre.
    assert image[25, 30] < sersic_profile(0.0, r_eff, n) / sersic_profile(
        np.hypot(u_, v_), r_eff, n
    ).sum()


def test_kernels():
    for kernel in (moffat_kernel(3.5), gaussian_kernel(3.5)):
        assert kernel.sum() == pytest.approx(1.0)
        assert kernel.shape[0] % 2 == 1
        centre = kernel.shape[0] // 2
        profile = kernel[centre, centre:]
        # Half maximum near 1.75 pixels from the centre.
        half = np.interp(0.5, profile[::-1] / profile[0], np.arange(profile.size)[::-1])
        assert half == pytest.approx(1.75, abs=0.1)

