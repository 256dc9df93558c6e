# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Private, vectorised surface-brightness profiles for the synthetic generator.

All functions work on pixel-centre coordinate arrays and return unnormalised
images; the generator scales each component to the flux it wants. The Sersic
profile is the one of `astropy.modeling.functional_models.Sersic2D`
(``I(r) = I_e exp(-b_n [(r / r_e)^(1/n) - 1])``), evaluated here without the
model machinery so that a full gri field takes milliseconds.
"""

import numpy as np
from scipy.special import gammaincinv

__all__ = [
    "sersic_bn",
    "sersic_profile",
    "elliptical_coordinates",
    "render_sersic",
    "moffat_kernel",
    "gaussian_kernel",
]


def sersic_bn(n):
    """Return b_n, such that r_e encloses half the light of a Sersic profile."""
    return gammaincinv(2.0 * n, 0.5)


def sersic_profile(r, r_eff, n, amplitude=1.0):
    """Sersic intensity at radius ``r`` (``amplitude`` is the value at ``r_eff``)."""
    bn = sersic_bn(n)
    return amplitude * np.exp(-bn * (np.power(r / r_eff, 1.0 / n) - 1.0))


def elliptical_coordinates(x, y, x0, y0, theta, q):
    """
    Coordinates along the major and minor axes, the minor one stretched by 1/q.

    Parameters
    ----------
    x, y : array-like
        Pixel coordinates.
    x0, y0 : float
        Centre.
    theta : float
        Angle of the major axis, radians counter-clockwise from +x.
    q : float
        Axis ratio (minor / major).

    Returns
    -------
    u, v : `~numpy.ndarray`
        ``u`` along the major axis, ``v`` along the minor axis divided by
        ``q`` (so that ``hypot(u, v)`` is the elliptical radius).
    """
    dx = x - x0
    dy = y - y0
    cos, sin = np.cos(theta), np.sin(theta)
    u = dx * cos + dy * sin
    v = (-dx * sin + dy * cos) / q
    return u, v


def render_sersic(shape, x0, y0, r_eff, n, q, theta, oversample=10, half_box=3):
    """
    Render a Sersic profile of unit total flux on a pixel grid.

    Pixels are sampled at their centres, except a small box around the
    centre, which is oversampled so that cuspy (high ``n``) profiles get the
    right central flux.

    Parameters
    ----------
    shape : tuple of int
        ``(ny, nx)``.
    x0, y0 : float
        Centre in pixels (0-based).
    r_eff : float
        Half-light radius along the major axis, pixels.
    n : float
        Sersic index.
    q : float
        Axis ratio.
    theta : float
        Major-axis angle, radians counter-clockwise from +x.
    oversample : int, optional
        Oversampling factor of the central box.
    half_box : int, optional
        Half size in pixels of the oversampled central box.

    Returns
    -------
    image : `~numpy.ndarray`
        The profile, normalised to a sum of 1 over the grid.
    """
    ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(float)
    u, v = elliptical_coordinates(x, y, x0, y0, theta, q)
    image = sersic_profile(np.hypot(u, v), r_eff, n)

    ix, iy = round(x0), round(y0)
    x_lo, x_hi = max(ix - half_box, 0), min(ix + half_box + 1, nx)
    y_lo, y_hi = max(iy - half_box, 0), min(iy + half_box + 1, ny)
    if x_hi > x_lo and y_hi > y_lo:
        offsets = (np.arange(oversample) + 0.5) / oversample - 0.5
        fy = (np.arange(y_lo, y_hi)[:, None] + offsets[None, :]).ravel()
        fx = (np.arange(x_lo, x_hi)[:, None] + offsets[None, :]).ravel()
        fyy, fxx = np.meshgrid(fy, fx, indexing="ij")
        fu, fv = elliptical_coordinates(fxx, fyy, x0, y0, theta, q)
        fine = sersic_profile(np.hypot(fu, fv), r_eff, n)
        fine = fine.reshape(y_hi - y_lo, oversample, x_hi - x_lo, oversample).mean(axis=(1, 3))
        image[y_lo:y_hi, x_lo:x_hi] = fine
    total = image.sum()
    return image / total if total > 0 else image


def moffat_kernel(fwhm, beta=3.0, size=None):
    """
    A normalised, circular Moffat PSF image.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum, pixels.
    beta : float, optional
        Moffat power index (about 3 for SDSS-like seeing wings).
    size : int, optional
        Odd side of the kernel; by default about 4 FWHM.

    Returns
    -------
    kernel : `~numpy.ndarray`
        Sums to 1.
    """
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    if size is None:
        size = int(2 * np.ceil(2.0 * fwhm) + 1)
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    kernel = (1.0 + (x**2 + y**2) / alpha**2) ** (-beta)
    return kernel / kernel.sum()


def gaussian_kernel(fwhm, size=None):
    """
    A normalised, circular Gaussian PSF image.

    Parameters
    ----------
    fwhm : float
        Full width at half maximum, pixels.
    size : int, optional
        Odd side of the kernel; by default about 3 FWHM.

    Returns
    -------
    kernel : `~numpy.ndarray`
        Sums to 1.
    """
    sigma = fwhm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    if size is None:
        size = int(2 * np.ceil(1.5 * fwhm) + 1)
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(float)
    kernel = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
    return kernel / kernel.sum()
