# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Reading and checking the inputs of `GalaxyCutout` (private)."""

import os
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

__all__ = []


def _wcs_from_header(header):
    """
    Build the celestial WCS of a FITS header, or `None` if it has none.

    SDSS frame headers carry the deprecated ``RADECSYS`` keyword and a
    ``DATE-OBS`` that astropy silently normalises; the resulting
    `~astropy.wcs.FITSFixedWarning` only reports these cosmetic fixes, so
    it is ignored here (and only here).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    if not wcs.has_celestial:
        return None
    return wcs.celestial


def _check_file(path, what):
    """Raise a clear error unless ``path`` names an existing file."""
    if not os.path.exists(path):
        msg = f"the {what} {os.fspath(path)!r} does not exist"
        raise FileNotFoundError(msg)
    if os.path.isdir(path):
        msg = f"the {what} {os.fspath(path)!r} is a directory, not a file"
        raise ValueError(msg)


def _numeric_array(obj, must):
    """``obj`` as a numeric array, else `TypeError` with ``must`` and its type."""
    arr = np.asarray(obj)
    if arr.dtype.kind not in "biuf":
        msg = f"{must}, not {type(obj).__name__}"
        raise TypeError(msg)
    return arr


def _first_image_hdu(hdulist, name):
    for hdu in hdulist:
        if hdu.is_image and hdu.data is not None and np.ndim(hdu.data) == 2:
            return hdu.data, hdu.header
    msg = f"the {name} band contains no 2D image HDU"
    raise ValueError(msg)


def _read_band(band, name):
    """
    Return the data and WCS of one band.

    Parameters
    ----------
    band : str, path-like, `~astropy.io.fits.HDUList`, image HDU, NDData or array
        The band image.
    name : str
        Name of the band, used in error messages.

    Returns
    -------
    data : `~numpy.ndarray`
        2D float64 array in native byte order.
    wcs : `~astropy.wcs.WCS` or `None`
        The celestial WCS, if the input carries one.
    """
    if band is None:
        msg = f"the {name} band is missing: give g, r and i images"
        raise ValueError(msg)
    wcs = None
    if isinstance(band, (str, os.PathLike)):
        _check_file(band, f"{name} band file")
        try:
            with fits.open(band) as hdulist:
                data, header = _first_image_hdu(hdulist, name)
                data = np.array(data, dtype=np.float64)
        except OSError as exc:
            msg = f"the {name} band file {os.fspath(band)!r} is not a readable FITS file: {exc}"
            raise ValueError(msg) from exc
        wcs = _wcs_from_header(header)
    elif isinstance(band, fits.HDUList):
        data, header = _first_image_hdu(band, name)
        data = np.array(data, dtype=np.float64)
        wcs = _wcs_from_header(header)
    elif isinstance(band, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        if band.data is None:
            msg = f"the {name} band HDU holds no data"
            raise ValueError(msg)
        data = np.array(band.data, dtype=np.float64)
        wcs = _wcs_from_header(band.header)
    elif hasattr(band, "data") and hasattr(band, "wcs"):  # NDData, CCDData
        data = np.array(band.data, dtype=np.float64)
        wcs = band.wcs
    else:
        arr = _numeric_array(band, f"the {name} band must be a FITS file name, an HDU, an "
                                   "NDData or a numeric array")
        data = np.array(arr, dtype=np.float64)
    if data.ndim != 2:
        msg = f"the {name} band must be a 2D image, got an array of shape {data.shape}"
        raise ValueError(msg)
    if not np.isfinite(data).any():
        msg = f"the {name} band holds no finite pixel (all NaN or inf)"
        raise ValueError(msg)
    return data, wcs


def _same_grid(wcs1, wcs2, shape, tol=0.1):
    """Whether two WCSs map the corners and centre of ``shape`` to the same sky."""
    ny, nx = shape
    x = np.array([0.0, nx - 1.0, 0.0, nx - 1.0, (nx - 1) / 2])
    y = np.array([0.0, 0.0, ny - 1.0, ny - 1.0, (ny - 1) / 2])
    try:
        world = wcs1.pixel_to_world_values(x, y)
        x2, y2 = wcs2.world_to_pixel_values(*world)
    except Exception:  # any failure means the grids are not comparable
        return False
    return bool(np.all(np.hypot(np.asarray(x2) - x, np.asarray(y2) - y) < tol))


def _pil_to_array(pil):
    """
    A PIL image as an (ny, nx, 3) array: uint8, or float64 in [0, 1] for
    16-bit images.

    16-bit greyscale images (PNG opens them in mode ``'I;16'`` or ``'I'``)
    are scaled by 1/65535, not clipped to 8 bits as ``convert('RGB')``
    would (which turns everything above 255 white).
    """
    if pil.mode.startswith("I;16") or pil.mode == "I":
        arr = np.asarray(pil).astype(np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            msg = (f"{pil.mode!r} images must hold 16-bit values (0..65535), got "
                   f"{arr.min():g}..{arr.max():g}")
            raise ValueError(msg)
        return np.repeat((arr / 65535.0)[..., None], 3, axis=-1)
    return np.asarray(pil.convert("RGB"))


def _read_colour_image(image):
    """
    Return a colour image as an (ny, nx, 3) float64 array in [0, 1].

    Parameters
    ----------
    image : str, path-like, `PIL.Image.Image` or array
        JPEG/PNG file, PIL image, or (ny, nx, 3) or (ny, nx, 4) array of
        uint8 (0..255) or floats in [0, 1]. An alpha channel is dropped;
        16-bit greyscale images are scaled to [0, 1] and repeated in the
        three channels.

    Returns
    -------
    rgb : `~numpy.ndarray`
        (ny, nx, 3) float64 array in [0, 1].
    """
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        _check_file(image, "image file")
        try:
            with Image.open(image) as pil:
                arr = _pil_to_array(pil)
        except OSError as exc:  # UnidentifiedImageError is an OSError
            msg = f"{os.fspath(image)!r} is not an image file that PIL can read: {exc}"
            raise ValueError(msg) from exc
    elif isinstance(image, Image.Image):
        arr = _pil_to_array(image)
    else:
        arr = _numeric_array(image, "the image must be a file name, a PIL image or a numeric "
                                    "array")
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        msg = f"a colour image must have shape (ny, nx, 3) or (ny, nx, 4), got {arr.shape}"
        raise ValueError(msg)
    arr = arr[..., :3]
    if arr.dtype.kind in "biu":
        if arr.min() < 0 or arr.max() > 255:
            msg = "integer colour images must hold values in 0..255"
            raise ValueError(msg)
        rgb = arr.astype(np.float64) / 255.0
    else:
        rgb = arr.astype(np.float64)
        finite = np.isfinite(rgb)
        if not finite.any():
            msg = "the colour image holds no finite pixel (all NaN or inf)"
            raise ValueError(msg)
        if rgb[finite].min() < 0 or rgb[finite].max() > 1:
            msg = ("float colour images must hold values in [0, 1]; divide 0..255 data "
                   "by 255 or pass it as uint8")
            raise ValueError(msg)
    if min(rgb.shape[:2]) < 8:
        msg = f"the colour image is too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)"
        raise ValueError(msg)
    return rgb
