# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Synthetic SDSS-like gri fields of galaxies with known morphology.

The generator draws one galaxy of a requested Galaxy Zoo 2 type (the twelve
classes of Seo et al. 2023, Table 1) at the centre of a field with a TAN WCS,
adds neighbouring galaxies and stars, convolves with a seeing PSF and adds
sky and source noise in nanomaggies. Everything is drawn from a seeded
`numpy.random.Generator`, so a field is reproducible from its seed, and the
parameters it was drawn with are returned as its ``truth``.
"""

from dataclasses import dataclass

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from scipy.ndimage import gaussian_filter
from scipy.signal import fftconvolve

from ..catalogs import GZ2_SCHEME
from ..utils.progress import progress_iter
from ._bands import parse_bands
from ._fields import MultiBandField
from ._sersic import (
    elliptical_coordinates,
    gaussian_kernel,
    moffat_kernel,
    render_sersic,
)

__all__ = [
    "GZ2_TYPES",
    "GZ2_TYPE_DESCRIPTIONS",
    "SDSS_PIXEL_SCALE",
    "SyntheticField",
    "make_synthetic_galaxy",
    "make_synthetic_sample",
    "iter_synthetic_sample",
]

#: The twelve GZ2 morphological types of Seo et al. (2023, Table 1), in order
#: (``Er Ei Ec Edge-on Sa Sb Sc Sd SBa SBb SBc SBd``); ``type_index`` is the
#: position in this tuple. The same tuple as
#: ``galmorphsearch.catalogs.GZ2_SCHEME.types``, the single source of the list.
GZ2_TYPES = GZ2_SCHEME.types

#: What each type means in the GZ2 decision tree.
GZ2_TYPE_DESCRIPTIONS = {
    "Er": "smooth, completely round",
    "Ei": "smooth, in between round and cigar-shaped",
    "Ec": "smooth, cigar-shaped",
    "Edge-on": "disk viewed edge-on",
    "Sa": "unbarred spiral, dominant bulge",
    "Sb": "unbarred spiral, obvious bulge",
    "Sc": "unbarred spiral, just noticeable bulge",
    "Sd": "unbarred spiral, no bulge",
    "SBa": "barred spiral, dominant bulge",
    "SBb": "barred spiral, obvious bulge",
    "SBc": "barred spiral, just noticeable bulge",
    "SBd": "barred spiral, no bulge",
}

#: Native SDSS imaging pixel scale.
SDSS_PIXEL_SCALE = 0.396 * u.arcsec

_BANDS = "gri"
# Sky noise per native SDSS pixel (nanomaggies), typical of DR7-DR17 frames.
_SKY_NOISE = {"g": 0.028, "r": 0.038, "i": 0.068}
# Typical SDSS seeing FWHM (arcsec).
_PSF_FWHM = {"g": 1.5, "r": 1.4, "i": 1.3}
# Electrons per nanomaggy (gain ~4.7 e/DN, ~0.0046 nmgy/DN), for source noise.
_ELECTRONS_PER_NMGY = 1000.0
# Peak opacity of the dust lane of edge-on disks, by band (most opaque in g).
_DUST_OPACITY = {"g": 0.65, "r": 0.5, "i": 0.4}


@dataclass(frozen=True)
class _TypePrior:
    """Ranges the parameters of one type are drawn from (uniformly)."""

    kind: str  # "elliptical", "edgeon" or "spiral"
    bulge_fraction: tuple = (0.0, 0.0)  # r-band B/T of the disk galaxies
    bulge_n: tuple = (4.0, 4.0)
    bulge_size: tuple = (0.3, 0.4)  # bulge r_e / disk scale length
    axis_ratio: tuple = (0.8, 1.0)  # ellipticals: observed q
    inclination: tuple = (0.0, 55.0)  # disks, degrees
    arm_amplitude: tuple = (0.0, 0.0)
    pitch: tuple = (10.0, 15.0)  # degrees
    n_arms: tuple = (2,)
    arm_sharpness: int = 2
    flocculent: float = 0.0  # 0: grand design, 1: patchy arms
    clump_fraction: tuple = (0.0, 0.0)  # of the disk flux, in r
    bar: bool = False
    bar_length: tuple = (1.2, 1.7)  # semi-major axis / disk scale length
    bar_fraction: tuple = (0.15, 0.24)  # of the total flux, in r
    r_mag: tuple = (14.5, 16.3)
    colour_bulge: tuple = (0.78, 0.40)  # (g - r, r - i)
    colour_disk: tuple = (0.60, 0.32)


_ARM_COLOUR = (0.22, 0.10)
_CLUMP_COLOUR = (0.05, 0.0)
_BAR_COLOUR = (0.72, 0.38)


def _spiral(bt, bulge_n, size, amp, pitch, sharp, clumps, disk_colour, bar, **kwargs):
    return _TypePrior(
        kind="spiral",
        bulge_fraction=bt,
        bulge_n=bulge_n,
        bulge_size=size,
        arm_amplitude=amp,
        pitch=pitch,
        arm_sharpness=sharp,
        clump_fraction=clumps,
        colour_disk=disk_colour,
        bar=bar,
        **kwargs,
    )


_SA = {"bt": (0.4, 0.55), "bulge_n": (3.0, 4.0), "size": (0.4, 0.55), "amp": (0.6, 0.75),
       "pitch": (8.0, 12.0), "sharp": 3, "clumps": (0.0, 0.01), "disk_colour": (0.66, 0.35)}
_SB = {"bt": (0.2, 0.32), "bulge_n": (2.0, 3.0), "size": (0.3, 0.4), "amp": (0.65, 0.8),
       "pitch": (13.0, 18.0), "sharp": 3, "clumps": (0.01, 0.03), "disk_colour": (0.55, 0.30)}
_SC = {"bt": (0.05, 0.1), "bulge_n": (1.0, 1.5), "size": (0.2, 0.3), "amp": (0.8, 0.92),
       "pitch": (18.0, 25.0), "sharp": 2, "clumps": (0.04, 0.07), "disk_colour": (0.45, 0.24)}
_SD = {"bt": (0.0, 0.0), "bulge_n": (1.0, 1.0), "size": (0.2, 0.2), "amp": (0.5, 0.7),
       "pitch": (25.0, 35.0), "sharp": 2, "clumps": (0.08, 0.14), "disk_colour": (0.35, 0.18),
       "r_mag": (15.0, 16.3), "flocculent": 0.6}

_PRIORS = {
    "Er": _TypePrior("elliptical", axis_ratio=(0.85, 1.0)),
    "Ei": _TypePrior("elliptical", axis_ratio=(0.55, 0.78)),
    "Ec": _TypePrior("elliptical", axis_ratio=(0.28, 0.45)),
    "Edge-on": _TypePrior(
        "edgeon",
        bulge_fraction=(0.08, 0.25),
        bulge_n=(1.5, 3.0),
        bulge_size=(0.3, 0.5),
        inclination=(86.0, 90.0),
        colour_disk=(0.68, 0.36),
    ),
    "Sa": _spiral(bar=False, **_SA),
    "Sb": _spiral(bar=False, **_SB),
    "Sc": _spiral(bar=False, **_SC),
    "Sd": _spiral(bar=False, n_arms=(2, 3, 4), **_SD),
    "SBa": _spiral(bar=True, inclination=(0.0, 45.0), **_SA),
    "SBb": _spiral(bar=True, inclination=(0.0, 45.0), **_SB),
    "SBc": _spiral(bar=True, inclination=(0.0, 45.0), **_SC),
    "SBd": _spiral(bar=True, inclination=(0.0, 45.0), bar_length=(1.0, 1.4),
                   bar_fraction=(0.1, 0.16), **_SD),
}

# Intrinsic thickness of the stellar disks (minor / major axis edge-on).
_DISK_THICKNESS = 0.11


class SyntheticField(MultiBandField):
    """
    A synthetic field: gri images with a WCS and the truth they were made from.

    A `~galmorphsearch.datasets.MultiBandField` (band name to
    `~astropy.io.fits.PrimaryHDU`, in nanomaggies) with a `truth` dictionary.

    Attributes
    ----------
    truth : dict
        The parameters the central galaxy was drawn with. Keys:
        ``morphology`` (one of `GZ2_TYPES`), ``type_index``, ``x``, ``y``
        (0-based pixel position), ``position`` (`~astropy.coordinates.SkyCoord`),
        ``pa`` (major axis position angle, deg east of north), ``theta``
        (the same angle in pixels, deg counter-clockwise from +x),
        ``axis_ratio`` (observed minor / major of the disk, or of the
        elliptical), ``inclination`` (deg, disks only), ``r_half``
        (circular half-light radius in r before the PSF, arcsec), ``sersic_n``
        (of the bulge or elliptical), ``bulge_r_eff`` (arcsec),
        ``disk_scale_length`` (arcsec), ``bulge_fraction`` (r-band B/T),
        ``bar`` (bool), ``bar_length`` (semi-major axis, arcsec),
        ``bar_pa`` (deg east of north, on the sky), ``n_arms``,
        ``pitch_angle`` (deg), ``arm_amplitude``, ``flux`` (band to total
        flux in nanomaggies), ``mag`` (band to AB magnitude), ``psf_fwhm``
        (band to arcsec), ``sky_noise`` (band to nanomaggies per pixel),
        ``pixel_scale`` (arcsec), ``neighbours`` and ``stars``
        (`~astropy.table.Table` of the contaminants), ``seed``.
    """

    def __init__(self, hdus=(), truth=None, meta=None):
        super().__init__(hdus, meta=meta)
        self.truth = dict(truth) if truth else {}

    def __repr__(self):
        shape = "x".join(str(n) for n in self.shape) if self else "empty"
        morph = self.truth.get("morphology", "?")
        return f"<SyntheticField {morph!r} bands={''.join(self.bands)!r} shape={shape}>"

    @property
    def position(self):
        """Sky position of the central galaxy (`~astropy.coordinates.SkyCoord`)."""
        return self.truth.get("position")


def _as_generator(seed):
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _uniform(rng, bounds):
    lo, hi = bounds
    return float(lo) if lo == hi else float(rng.uniform(lo, hi))


def _colour_fluxes(flux_r, colour, bands):
    """Fluxes in ``bands`` for an r flux and a (g - r, r - i) colour."""
    g_r, r_i = colour
    scale = {"g": 10 ** (-0.4 * g_r), "r": 1.0, "i": 10 ** (0.4 * r_i)}
    return {band: flux_r * scale[band] for band in bands}


def _make_wcs(shape, center, pixel_scale_deg):
    ny, nx = shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crpix = [(nx + 1) / 2.0, (ny + 1) / 2.0]
    wcs.wcs.crval = [center.ra.deg, center.dec.deg]
    wcs.wcs.cdelt = [-pixel_scale_deg, pixel_scale_deg]
    wcs.wcs.radesys = "ICRS"
    return wcs


def _deposit(image, x, y, flux):
    """Add point sources with bilinear sub-pixel placement."""
    ny, nx = image.shape
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    flux = np.asarray(flux, dtype=float)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    fx = x - x0
    fy = y - y0
    for dx, dy, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi < nx) & (yi >= 0) & (yi < ny)
        np.add.at(image, (yi[inside], xi[inside]), (flux * weight)[inside])


def _half_light_radius(image, x0, y0):
    """Circular radius (pixels) enclosing half the flux of ``image``."""
    ny, nx = image.shape
    y, x = np.mgrid[0:ny, 0:nx]
    radius = np.hypot(x - x0, y - y0).ravel()
    order = np.argsort(radius)
    cumulative = np.cumsum(image.ravel()[order])
    k = np.searchsorted(cumulative, 0.5 * cumulative[-1])
    return float(radius[order][min(k, radius.size - 1)])


def _disk_plane(x, y, x0, y0, theta, q):
    """Pixel coordinates to disk-plane (radius, azimuth, x, y)."""
    xd, yd = elliptical_coordinates(x, y, x0, y0, theta, q)
    return np.hypot(xd, yd), np.arctan2(yd, xd), xd, yd


def _render_galaxy(rng, prior, shape, x0, y0, size, bands):
    """
    Noiseless, PSF-free images of the central galaxy.

    Returns (images per band, truth dict in pixels); fluxes are per unit
    total r flux and scaled by the caller.
    """
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    theta = float(rng.uniform(0.0, np.pi))
    truth = {"theta": theta, "bar": False, "bar_length": 0.0, "bar_angle": 0.0, "n_arms": 0,
             "pitch_angle": 0.0, "arm_amplitude": 0.0, "inclination": np.nan}
    images = {band: np.zeros(shape) for band in bands}

    if prior.kind == "elliptical":
        q = _uniform(rng, prior.axis_ratio)
        n = _uniform(rng, (3.5, 5.0))
        r_eff = size * _uniform(rng, (0.9, 1.3))
        profile = render_sersic(shape, x0, y0, r_eff, n, q, theta)
        colour = (prior.colour_bulge[0] + rng.normal(0, 0.02), prior.colour_bulge[1])
        for band, flux in _colour_fluxes(1.0, colour, bands).items():
            images[band] += flux * profile
        truth.update(axis_ratio=q, sersic_n=n, bulge_r_eff=r_eff, disk_scale_length=0.0,
                     bulge_fraction=1.0)
        return images, truth

    # Disk galaxies: exponential disk (with arms, clumps, bar) plus a bulge.
    h = size * _uniform(rng, (0.9, 1.15))
    inclination = _uniform(rng, prior.inclination)
    cos_i = np.cos(np.radians(inclination))
    q = float(np.sqrt(cos_i**2 * (1 - _DISK_THICKNESS**2) + _DISK_THICKNESS**2))
    radius, phi, xd, yd = _disk_plane(x, y, x0, y0, theta, q)
    disk = np.exp(-radius / h)

    bt = _uniform(rng, prior.bulge_fraction)
    bar_fraction = _uniform(rng, prior.bar_fraction) if prior.bar else 0.0
    bar_angle = float(rng.uniform(0.0, np.pi))  # in the disk plane, from the major axis
    bar_length = h * _uniform(rng, prior.bar_length) if prior.bar else 0.0

    arms = np.zeros(shape)
    clumps = np.zeros(shape)
    amplitude = _uniform(rng, prior.arm_amplitude)
    n_arms = 0
    pitch = 0.0
    if prior.kind == "spiral" and amplitude > 0:
        n_arms = int(rng.choice(prior.n_arms))
        pitch = _uniform(rng, prior.pitch)
        tan_pitch = np.tan(np.radians(pitch))
        sense = rng.choice((-1.0, 1.0))
        # Arms start at the bar ends, or near the bulge.
        r_start = bar_length if prior.bar else h * _uniform(rng, (0.5, 0.8))
        phase0 = bar_angle if prior.bar else float(rng.uniform(0, 2 * np.pi))
        log_r = np.log(np.maximum(radius, 0.5) / r_start)
        arm_phase = sense * (phi - phase0) - log_r / tan_pitch
        if prior.flocculent > 0:
            # Patchy arms: perturb the phase with a smooth random field.
            noise_field = gaussian_filter(rng.normal(size=shape), 0.35 * h)
            noise_field /= noise_field.std() + 1e-12
            arm_phase = arm_phase + prior.flocculent * noise_field
        pattern = (0.5 * (1.0 + np.cos(n_arms * arm_phase))) ** prior.arm_sharpness
        mean_pattern = {1: 0.5, 2: 0.375, 3: 0.3125, 4: 0.2734375}[prior.arm_sharpness]
        window = 1.0 / (1.0 + np.exp(-(radius - r_start) / (0.25 * h)))
        modulation = amplitude * window
        arms = disk * modulation * pattern / mean_pattern
        disk = disk * (1.0 - modulation)

        clump_fraction = _uniform(rng, prior.clump_fraction)
        if clump_fraction > 0:
            n_clumps = int(rng.integers(25, 60))
            r_clump = r_start + rng.gamma(2.0, 0.8 * h, n_clumps)
            k_arm = rng.integers(0, n_arms, n_clumps)
            phi_clump = phase0 + sense * (
                np.log(r_clump / r_start) / tan_pitch + 2 * np.pi * k_arm / n_arms
            )
            phi_clump += rng.normal(0, 0.15 + prior.flocculent, n_clumps)
            xu = r_clump * np.cos(phi_clump)
            yv = r_clump * np.sin(phi_clump) * q
            cx = x0 + xu * np.cos(theta) - yv * np.sin(theta)
            cy = y0 + xu * np.sin(theta) + yv * np.cos(theta)
            weights = rng.exponential(1.0, n_clumps)
            _deposit(clumps, cx, cy, weights / weights.sum())
            clumps = gaussian_filter(clumps, 0.7)
            total = clumps.sum()
            clumps = clumps / total if total > 0 else clumps
            truth["clump_fraction"] = clump_fraction
        truth.update(n_arms=n_arms, pitch_angle=pitch, arm_amplitude=amplitude)
    clump_fraction = truth.get("clump_fraction", 0.0)

    disk_total = disk.sum() + arms.sum()
    disk_share = 1.0 - bt - bar_fraction
    disk_flux = disk_share * (1.0 - clump_fraction)
    for band, flux in _colour_fluxes(disk_flux / disk_total, prior.colour_disk, bands).items():
        images[band] += flux * disk
    arm_colour = (prior.colour_disk[0] - 0.25, prior.colour_disk[1] - 0.12)
    arm_colour = (max(arm_colour[0], _ARM_COLOUR[0]), max(arm_colour[1], _ARM_COLOUR[1]))
    for band, flux in _colour_fluxes(disk_flux / disk_total, arm_colour, bands).items():
        images[band] += flux * arms
    if clump_fraction > 0:
        fluxes = _colour_fluxes(disk_share * clump_fraction, _CLUMP_COLOUR, bands)
        for band, flux in fluxes.items():
            images[band] += flux * clumps

    if prior.bar:
        bar_q = _uniform(rng, (0.2, 0.3))
        cos_b, sin_b = np.cos(bar_angle), np.sin(bar_angle)
        bx = xd * cos_b + yd * sin_b
        by = -xd * sin_b + yd * cos_b
        m2 = (bx / bar_length) ** 2 + (by / (bar_q * bar_length)) ** 2
        bar = np.where(m2 < 1.0, (1.0 - np.minimum(m2, 1.0)) ** 1.5, 0.0)
        bar = gaussian_filter(bar, 0.5)
        for band, flux in _colour_fluxes(bar_fraction / bar.sum(), _BAR_COLOUR, bands).items():
            images[band] += flux * bar
        # Bar angle on the sky, counter-clockwise from +x.
        sky_bar = theta + np.arctan2(np.sin(bar_angle) * q, np.cos(bar_angle))
        truth.update(
            bar=True, bar_length=bar_length, bar_angle=float(sky_bar), bar_axis_ratio=bar_q
        )

    n_bulge = _uniform(rng, prior.bulge_n)
    r_bulge = h * _uniform(rng, prior.bulge_size)
    if bt > 0:
        q_bulge = 1.0 - 0.3 * (1.0 - q)
        bulge = render_sersic(shape, x0, y0, r_bulge, n_bulge, q_bulge, theta)
        for band, flux in _colour_fluxes(bt, prior.colour_bulge, bands).items():
            images[band] += flux * bulge

    if prior.kind == "edgeon":
        # A dust lane slightly off the mid-plane, most opaque in g.
        u_major, v_minor = elliptical_coordinates(x, y, x0, y0, theta, 1.0)
        offset = rng.choice((-1.0, 1.0)) * 0.25 * q * h
        width = 0.35 * q * h + 0.6
        lane = np.exp(-0.5 * ((v_minor - offset) / width) ** 2) * np.exp(-np.abs(u_major) / (4 * h))
        for band in bands:
            images[band] *= 1.0 - _DUST_OPACITY[band] * lane

    truth.update(axis_ratio=q, inclination=inclination, sersic_n=n_bulge if bt > 0 else np.nan,
                 bulge_r_eff=r_bulge if bt > 0 else 0.0, disk_scale_length=h,
                 bulge_fraction=bt)
    return images, truth


def make_synthetic_galaxy(
    morphology,
    *,
    seed=None,
    shape=(256, 256),
    pixel_scale=SDSS_PIXEL_SCALE,
    center=None,
    size=None,
    r_mag=None,
    bands="gri",
    psf="moffat",
    psf_fwhm=None,
    sky_noise=None,
    noise=True,
    neighbours=None,
    stars=None,
):
    """
    Make a synthetic gri field holding one galaxy of a given GZ2 type.

    The galaxy sits at the centre of the field (within a pixel or two):

    * ``Er``, ``Ei``, ``Ec``: a Sersic spheroid (n = 3.5 to 5) with axis
      ratio 0.85-1, 0.55-0.78 and 0.28-0.45 respectively, red (g - r ~ 0.78);
    * ``Edge-on``: an exponential disk of intrinsic thickness 0.11 seen at
      86-90 degrees, a small bulge and a dust lane;
    * ``Sa``..``Sd``: an exponential disk inclined by 0-55 degrees, with
      logarithmic spiral arms (bluer than the disk, pitch angle growing and
      bulge fraction falling from a to d: B/T 0.4-0.55, 0.2-0.32, 0.05-0.1, 0)
      and blue star-forming clumps (more in c and d; d has patchy arms);
    * ``SBa``..``SBd``: the same with a stellar bar (a Ferrers-like ellipse of
      axis ratio 0.2-0.3, semi-major axis 1.2-1.7 disk scale lengths,
      15-24 per cent of the light), inclined by at most 45 degrees, with the
      arms starting at the bar ends.

    Parameters
    ----------
    morphology : str
        One of `GZ2_TYPES`.
    seed : int, `numpy.random.Generator` or None, optional
        Random seed; the same seed gives the same field.
    shape : tuple of int, optional
        ``(ny, nx)`` of the images.
    pixel_scale : `~astropy.units.Quantity` or float, optional
        Pixel scale (arcsec if a float); defaults to the native SDSS 0.396".
    center : `~astropy.coordinates.SkyCoord`, optional
        Sky position of the field centre; random by default.
    size : float, optional
        Disk scale length or elliptical effective radius in pixels; by
        default 5.5 to 7.5 per cent of the smaller image side (1.0 to 1.5 times
        that for ellipticals).
    r_mag : float, optional
        Total r-band AB magnitude of the galaxy; by default 14.5 to 16.3
        (15.0 to 16.3 for Sd and SBd), like the GZ2 sample.
    bands : str or sequence of str, optional
        Any of ``'g'``, ``'r'``, ``'i'`` (the field holds them in that
        order). A band's image does not depend on which other bands are
        requested: with the same seed, ``bands='r'`` gives the same r image
        as ``bands='gri'``, noise included.
    psf : {'moffat', 'gaussian'} or `~numpy.ndarray`, optional
        Seeing PSF: a Moffat (beta = 3) or Gaussian of FWHM ``psf_fwhm``, or
        a kernel image used for every band.
    psf_fwhm : float or dict, optional
        FWHM in arcsec, one for all bands or per band; defaults to
        1.5, 1.4 and 1.3 arcsec in g, r and i.
    sky_noise : float or dict, optional
        Standard deviation of the sky noise in nanomaggies per pixel;
        defaults to 0.028, 0.038 and 0.068 in g, r and i for 0.396" pixels,
        scaled with the pixel size for other scales.
    noise : bool, optional
        Add sky noise and the Poisson noise of the sources; ``False`` gives
        the noiseless (but PSF-convolved) images.
    neighbours : int, optional
        Number of small background galaxies; random (Poisson, mean 1.5) by
        default. They are kept out of the central 25 per cent of the field.
    stars : int, optional
        Number of stars; random (Poisson, mean 3) by default.

    Returns
    -------
    field : `~galmorphsearch.datasets.SyntheticField`
        Band name to `~astropy.io.fits.PrimaryHDU` (``float32``,
        nanomaggies, TAN WCS with north up and east left), with the truth
        in ``field.truth`` and a few header cards (``MORPHTYP``,
        ``TYPEIDX``, ``SEED``).

    Raises
    ------
    ValueError
        If ``morphology`` is not one of `GZ2_TYPES`, a band is not g, r or
        i, or ``shape`` is too small.

    Examples
    --------
    >>> from galmorphsearch.datasets import make_synthetic_galaxy
    >>> field = make_synthetic_galaxy('SBb', seed=42)
    >>> field
    <SyntheticField 'SBb' bands='gri' shape=256x256>
    >>> field.truth['bar'], field.truth['n_arms']
    (True, 2)
    >>> field['r'].header['BUNIT']
    'nanomaggy'
    """
    if morphology not in _PRIORS:
        msg = f"unknown morphology {morphology!r}: choose among {', '.join(GZ2_TYPES)}"
        raise ValueError(msg)
    requested = parse_bands(bands, _BANDS)
    bands = tuple(band for band in _BANDS if band in requested)
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or min(shape) < 32:
        msg = f"shape must be (ny, nx) with both at least 32 pixels, got {shape!r}"
        raise ValueError(msg)

    seed_value = int(seed) if isinstance(seed, int | np.integer) else None
    rng = _as_generator(seed)
    prior = _PRIORS[morphology]
    scale = u.Quantity(pixel_scale, u.arcsec).to_value(u.arcsec)
    ny, nx = shape
    side = min(shape)

    if center is None:
        ra = rng.uniform(0.0, 360.0)
        dec = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-10)), np.sin(np.radians(70)))))
        center = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs")
    else:
        center = SkyCoord(center).icrs
    wcs = _make_wcs(shape, center, scale / 3600.0)

    x0 = (nx - 1) / 2.0 + rng.uniform(-1.5, 1.5)
    y0 = (ny - 1) / 2.0 + rng.uniform(-1.5, 1.5)
    if size is None:
        size = side * _uniform(rng, (0.055, 0.075))
        if prior.kind == "elliptical":
            size *= _uniform(rng, (1.0, 1.5))
        elif prior.kind == "edgeon":
            size *= 1.25
    mag = _uniform(rng, prior.r_mag) if r_mag is None else float(r_mag)
    flux_r = 10 ** (-0.4 * (mag - 22.5))

    images, shape_truth = _render_galaxy(rng, prior, shape, x0, y0, float(size), bands)
    for band in bands:
        images[band] *= flux_r
    galaxy_flux = {band: float(images[band].sum()) for band in bands}
    r_half = _half_light_radius(images["r"] if "r" in images else images[bands[0]], x0, y0)

    # Contaminants, kept out of the central part of the field.
    def _positions(count):
        xs, ys = [], []
        while len(xs) < count:
            px, py = rng.uniform(0, nx - 1), rng.uniform(0, ny - 1)
            if np.hypot(px - x0, py - y0) > 0.25 * side:
                xs.append(px)
                ys.append(py)
        return np.array(xs), np.array(ys)

    n_neighbours = int(rng.poisson(1.5)) if neighbours is None else int(neighbours)
    n_stars = int(rng.poisson(3.0)) if stars is None else int(stars)
    nb_x, nb_y = _positions(n_neighbours)
    nb_mag = rng.uniform(17.0, 19.5, n_neighbours)
    nb_reff = rng.uniform(0.012, 0.03, n_neighbours) * side
    nb_n = rng.uniform(0.8, 4.0, n_neighbours)
    nb_q = rng.uniform(0.3, 1.0, n_neighbours)
    nb_theta = rng.uniform(0, np.pi, n_neighbours)
    nb_gr = rng.uniform(0.5, 1.0, n_neighbours)
    for k in range(n_neighbours):
        half = int(min(max(8 * nb_reff[k], 8), side // 2))
        xlo, xhi = max(int(nb_x[k]) - half, 0), min(int(nb_x[k]) + half + 1, nx)
        ylo, yhi = max(int(nb_y[k]) - half, 0), min(int(nb_y[k]) + half + 1, ny)
        stamp = render_sersic(
            (yhi - ylo, xhi - xlo), nb_x[k] - xlo, nb_y[k] - ylo, nb_reff[k], nb_n[k], nb_q[k],
            nb_theta[k],
        )
        colour = (nb_gr[k], 0.45 * nb_gr[k])
        for band, flux in _colour_fluxes(10 ** (-0.4 * (nb_mag[k] - 22.5)), colour, bands).items():
            images[band][ylo:yhi, xlo:xhi] += flux * stamp

    st_x, st_y = _positions(n_stars)
    st_mag = rng.uniform(15.0, 20.5, n_stars)
    st_gr = rng.uniform(0.3, 1.4, n_stars)
    for band in bands:
        fluxes = [
            _colour_fluxes(10 ** (-0.4 * (m - 22.5)), (gr, 0.4 * gr), (band,))[band]
            for m, gr in zip(st_mag, st_gr, strict=True)
        ]
        if n_stars:
            _deposit(images[band], st_x, st_y, fluxes)

    # Seeing.
    if psf_fwhm is None:
        psf_fwhm = _PSF_FWHM
    if not isinstance(psf_fwhm, dict):
        psf_fwhm = dict.fromkeys(bands, float(psf_fwhm))
    for band in bands:
        if isinstance(psf, np.ndarray):
            kernel = psf / psf.sum()
        elif psf == "moffat":
            kernel = moffat_kernel(psf_fwhm[band] / scale)
        elif psf == "gaussian":
            kernel = gaussian_kernel(psf_fwhm[band] / scale)
        else:
            msg = f"psf must be 'moffat', 'gaussian' or a kernel array, got {psf!r}"
            raise ValueError(msg)
        images[band] = fftconvolve(images[band], kernel, mode="same")

    # Noise.
    if sky_noise is None:
        sky_noise = {band: _SKY_NOISE[band] * scale / 0.396 for band in bands}
    elif not isinstance(sky_noise, dict):
        sky_noise = dict.fromkeys(bands, float(sky_noise))
    if noise:
        # One noise image is drawn for each of g, r, i whichever bands are
        # requested, so that a band gets the same noise in any band subset.
        for band in _BANDS:
            deviates = rng.standard_normal(shape)
            if band not in images:
                continue
            variance = sky_noise[band] ** 2 + np.maximum(images[band], 0) / _ELECTRONS_PER_NMGY
            images[band] = images[band] + deviates * np.sqrt(variance)

    position = wcs.pixel_to_world(x0, y0)
    theta_deg = np.degrees(shape_truth.pop("theta")) % 180.0
    bar_angle = np.degrees(shape_truth.pop("bar_angle")) % 180.0
    to_arcsec = ("bulge_r_eff", "disk_scale_length", "bar_length")
    for key in to_arcsec:
        shape_truth[key] = float(shape_truth[key]) * scale
    truth = {
        "morphology": morphology,
        "type_index": GZ2_TYPES.index(morphology),
        "x": float(x0),
        "y": float(y0),
        "position": position,
        "theta": float(theta_deg),
        "pa": float((theta_deg - 90.0) % 180.0),
        **shape_truth,
        "r_half": r_half * scale,
        "bar_pa": float((bar_angle - 90.0) % 180.0) if shape_truth["bar"] else np.nan,
        "flux": galaxy_flux,
        "mag": {band: float(22.5 - 2.5 * np.log10(f)) for band, f in galaxy_flux.items()},
        "psf_fwhm": {band: float(psf_fwhm[band]) for band in bands},
        "sky_noise": {band: float(sky_noise[band]) for band in bands},
        "pixel_scale": scale,
        "neighbours": Table(
            {"x": nb_x, "y": nb_y, "r_mag": nb_mag, "r_eff": nb_reff * scale, "sersic_n": nb_n},
            units={"r_eff": u.arcsec},
        ),
        "stars": Table({"x": st_x, "y": st_y, "r_mag": st_mag, "g_r": st_gr}),
        "seed": seed_value,
    }

    header = wcs.to_header()
    hdus = {}
    for band in bands:
        hdu = fits.PrimaryHDU(data=images[band].astype(np.float32), header=header.copy())
        hdr = hdu.header
        hdr["FILTER"] = (band, "filter")
        hdr["BUNIT"] = ("nanomaggy", "1 nanomaggy = 3.631e-6 Jy")
        hdr["ORIGIN"] = ("galmorphsearch", "synthetic field")
        hdr["MORPHTYP"] = (morphology, "GZ2 type of the central galaxy")
        hdr["TYPEIDX"] = (truth["type_index"], "index in GZ2_TYPES")
        hdr["GALX"] = (round(x0, 3), "[pix] 0-based x of the galaxy")
        hdr["GALY"] = (round(y0, 3), "[pix] 0-based y of the galaxy")
        hdr["PSFFWHM"] = (round(psf_fwhm[band], 4), "[arcsec] seeing FWHM")
        hdr["SKYSIG"] = (round(float(sky_noise[band]), 5), "[nanomaggy] sky noise per pixel")
        if seed_value is not None:
            hdr["SEED"] = (seed_value, "random seed")
        hdus[band] = hdu
    return SyntheticField(hdus, truth=truth, meta={"origin": "galmorphsearch synthetic"})


def _sample_plan(n_per_type, types, seed, shuffle):
    types = GZ2_TYPES if types is None else tuple(types)
    unknown = [t for t in types if t not in _PRIORS]
    if unknown:
        msg = f"unknown morphology {unknown!r}: choose among {', '.join(GZ2_TYPES)}"
        raise ValueError(msg)
    if int(n_per_type) < 0:
        msg = f"n_per_type must be non-negative, got {n_per_type}"
        raise ValueError(msg)
    plan = [t for t in types for _ in range(int(n_per_type))]
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**62, size=len(plan))
    if shuffle:
        order = rng.permutation(len(plan))
        plan = [plan[k] for k in order]
    return plan, [int(s) for s in seeds]


def iter_synthetic_sample(n_per_type=1, types=None, *, seed=None, shuffle=False,
                          progress_bar=False, **kwargs):
    """
    Yield synthetic fields one at a time, for samples too large to hold.

    Parameters are those of `make_synthetic_sample`; each field is made
    with its own integer seed (recorded in ``field.truth['seed']``), drawn
    from ``seed``, so any one field can be remade alone with
    `make_synthetic_galaxy`.

    Yields
    ------
    field : `~galmorphsearch.datasets.SyntheticField`
        The next field; ``field.truth['objid']`` is its running number.
    """
    plan, seeds = _sample_plan(n_per_type, types, seed, shuffle)
    objid_offset = int(kwargs.pop("objid_offset", 0))
    for k in progress_iter(range(len(plan)), progress_bar, desc="synthetic", total=len(plan)):
        field = make_synthetic_galaxy(plan[k], seed=seeds[k], **kwargs)
        field.truth["objid"] = objid_offset + k + 1
        yield field


def make_synthetic_sample(n_per_type=1, types=None, *, seed=None, shuffle=False,
                          progress_bar=False, **kwargs):
    """
    Make a labelled sample of synthetic fields, and the table of their truth.

    Parameters
    ----------
    n_per_type : int, optional
        Number of galaxies of each type.
    types : sequence of str, optional
        The types to make; all of `GZ2_TYPES` by default.
    seed : int or None, optional
        Seed of the whole sample; the same seed gives the same sample.
    shuffle : bool, optional
        Shuffle the order (by default types come in blocks, in the order of
        ``types``).
    progress_bar : bool, optional
        Show a progress bar (needs tqdm).
    **kwargs
        Passed to `make_synthetic_galaxy` (``shape``, ``pixel_scale``,
        ``noise``, ``neighbours``, ...), plus ``objid_offset`` (int, added
        to the running ``objid``, which starts at 1).

    Returns
    -------
    table : `~astropy.table.Table`
        One row per galaxy: ``objid``, ``ra``, ``dec`` (deg), ``morphology``,
        ``type_index``, ``pa`` (deg), ``axis_ratio``, ``r_half`` (arcsec),
        ``bulge_fraction``, ``bar``, ``n_arms``, ``pitch_angle`` (deg),
        ``mag_r``, ``g_r`` and ``seed``.
    fields : list of `~galmorphsearch.datasets.SyntheticField`
        The fields, in the order of the table rows.

    Raises
    ------
    ValueError
        If a type is unknown or ``n_per_type`` negative.

    Examples
    --------
    >>> from galmorphsearch.datasets import make_synthetic_sample
    >>> table, fields = make_synthetic_sample(1, types=['Er', 'Sc'], seed=0, shape=(64, 64))
    >>> table['morphology'].tolist()
    ['Er', 'Sc']
    >>> len(fields)
    2
    """
    fields = list(iter_synthetic_sample(n_per_type, types, seed=seed, shuffle=shuffle,
                                        progress_bar=progress_bar, **kwargs))
    return _truth_table(fields), fields


def _truth_table(fields):
    """Table of the scalar truth of synthetic fields (one row per field)."""
    rows = []
    for field in fields:
        truth = field.truth
        flux = truth["flux"]
        g_r = -2.5 * np.log10(flux["g"] / flux["r"]) if {"g", "r"} <= flux.keys() else np.nan
        rows.append(
            (
                truth.get("objid", 0),
                truth["position"].ra.deg,
                truth["position"].dec.deg,
                truth["morphology"],
                truth["type_index"],
                truth["pa"],
                truth["axis_ratio"],
                truth["r_half"],
                truth["bulge_fraction"],
                truth["bar"],
                truth["n_arms"],
                truth["pitch_angle"],
                truth["mag"].get("r", np.nan),
                g_r,
                -1 if truth["seed"] is None else truth["seed"],
            )
        )
    names = ("objid", "ra", "dec", "morphology", "type_index", "pa", "axis_ratio", "r_half",
             "bulge_fraction", "bar", "n_arms", "pitch_angle", "mag_r", "g_r", "seed")
    dtypes = (np.int64, float, float, "U7", np.int16, float, float, float, float, bool,
              np.int16, float, float, float, np.int64)
    if rows:
        columns = list(zip(*rows, strict=True))
    else:
        columns = [[] for _ in names]
    table = Table([np.array(col, dtype=dt) for col, dt in zip(columns, dtypes, strict=True)],
                  names=names)
    for name, unit in (("ra", u.deg), ("dec", u.deg), ("pa", u.deg), ("r_half", u.arcsec),
                       ("pitch_angle", u.deg), ("mag_r", u.mag)):
        table[name].unit = unit
    table.meta["ORIGIN"] = "galmorphsearch synthetic sample"
    return table
