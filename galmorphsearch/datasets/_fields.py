# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
A small container for multi-band images of one sky field.

`MultiBandField` is what `load_sample_field`, `fetch_sdss_images` and the
synthetic generator return: a dictionary mapping a band name to a
`~astropy.io.fits.PrimaryHDU` whose header holds the WCS, ``FILTER`` and
``BUNIT``.
"""

import os

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.visualization import make_lupton_rgb
from astropy.wcs import WCS

__all__ = ["MultiBandField"]

#: Bands that can be read as attributes (``field.g``).
_BAND_ATTRIBUTES = frozenset("ugriz")

#: Default channel scales of the colour rendering (Seo et al. 2023).
LUPTON_SCALES = {"i": 0.79, "r": 1.0, "g": 1.1}


class MultiBandField(dict):
    """
    Images of one sky field in several bands, sharing one WCS.

    A `dict` mapping band names (``'g'``, ``'r'``, ``'i'``, ...) to
    `~astropy.io.fits.PrimaryHDU` objects, in band order, so that it can be
    handed to anything that takes HDUs, for instance
    ``GalaxyCutout(field['g'], field['r'], field['i'], position)`` or
    ``GalaxyCutout(*field.values(), position)``. Every header carries the WCS,
    ``FILTER`` (the band) and ``BUNIT``.

    Bands can also be read as attributes (``field.g``), and the WCS common to
    all bands is `wcs`.

    Parameters
    ----------
    hdus : dict
        Band name to `~astropy.io.fits.PrimaryHDU` (or `~astropy.io.fits.ImageHDU`).
    meta : dict, optional
        Free-form information about the field (its origin, its position).
    """

    def __init__(self, hdus=(), meta=None):
        super().__init__(hdus)
        self.meta = dict(meta) if meta else {}

    def __getattr__(self, name):
        if name in _BAND_ATTRIBUTES:
            try:
                return self[name]
            except KeyError:
                msg = f"this field has no {name!r} band (bands: {', '.join(self.bands)})"
                raise AttributeError(msg) from None
        msg = f"{type(self).__name__!r} object has no attribute {name!r}"
        raise AttributeError(msg)

    def __repr__(self):
        shape = "x".join(str(n) for n in self.shape) if self else "empty"
        return f"<{type(self).__name__} bands={''.join(self.bands)!r} shape={shape}>"

    @property
    def bands(self):
        """The band names, in order (`tuple` of `str`)."""
        return tuple(self.keys())

    @property
    def shape(self):
        """The ``(ny, nx)`` shape of the images (`tuple`)."""
        if not self:
            return ()
        return next(iter(self.values())).data.shape

    @property
    def wcs(self):
        """The `~astropy.wcs.WCS` of the first band (all bands share it)."""
        if not self:
            return None
        return WCS(next(iter(self.values())).header)

    def data(self, band):
        """
        Return the image of one band as a native-byte-order float array.

        Parameters
        ----------
        band : str
            The band name.

        Returns
        -------
        data : `~numpy.ndarray`
            The image, in the unit given by the header's ``BUNIT``.
        """
        return np.asarray(self[band].data, dtype=np.float32)

    def to_rgb(self, bands="irg", scales=None, stretch=0.5, Q=10, minimum=0.0):
        """
        Render a colour image with `~astropy.visualization.make_lupton_rgb`.

        The defaults follow Seo et al. (2023): red, green and blue from the
        i, r and g images scaled by 0.79, 1.0 and 1.1, ``stretch=0.5``,
        ``Q=10``.

        Parameters
        ----------
        bands : str or sequence of str, optional
            The bands for the red, green and blue channels.
        scales : dict, optional
            Multiplicative scale of each band before rendering. Defaults to
            ``{'i': 0.79, 'r': 1.0, 'g': 1.1}`` (1 for other bands).
        stretch, Q, minimum : float, optional
            Passed to `~astropy.visualization.make_lupton_rgb`.

        Returns
        -------
        rgb : `~numpy.ndarray`
            A ``(ny, nx, 3)`` ``uint8`` image, with the first row at the
            bottom (display with ``origin='lower'``).
        """
        bands = tuple(bands)
        if len(bands) != 3:
            msg = f"to_rgb needs three bands, got {bands!r}"
            raise ValueError(msg)
        scales = LUPTON_SCALES if scales is None else scales
        channels = [self.data(band) * scales.get(band, 1.0) for band in bands]
        return make_lupton_rgb(*channels, minimum=minimum, stretch=stretch, Q=Q)

    def writeto(self, directory, prefix="field", overwrite=False):
        """
        Write one FITS file per band, ``<prefix>_<band>.fits``.

        Parameters
        ----------
        directory : str or path-like
            An existing directory.
        prefix : str, optional
            Start of the file names.
        overwrite : bool, optional
            Replace existing files.

        Returns
        -------
        paths : dict
            Band name to the path written.
        """
        paths = {}
        for band, hdu in self.items():
            path = os.path.join(os.fspath(directory), f"{prefix}_{band}.fits")
            fits.PrimaryHDU(hdu.data, hdu.header).writeto(path, overwrite=overwrite)
            paths[band] = path
        return paths


def fix_sdss_header(header, band, bunit="nanomaggy"):
    """
    Make an SDSS frame header self-consistent, in place.

    Sets ``FILTER`` and ``BUNIT``, and replaces the two cards that make
    `~astropy.wcs.WCS` emit a ``FITSFixedWarning`` (the deprecated
    ``RADECSYS``, and a ``DATE-OBS`` without ``MJD-OBS``) by their
    standard forms, so that building the WCS is silent.

    Parameters
    ----------
    header : `~astropy.io.fits.Header`
        The header to fix, in place.
    band : str
        The band the image was taken in.
    bunit : str, optional
        The pixel unit.

    Returns
    -------
    header : `~astropy.io.fits.Header`
        The same header.
    """
    if "RADECSYS" in header:
        value = header["RADECSYS"]
        comment = header.comments["RADECSYS"]
        if "RADESYS" not in header:
            header.insert("RADECSYS", ("RADESYS", str(value).strip(), comment), after=True)
        del header["RADECSYS"]
    if "DATE-OBS" in header and "MJD-OBS" not in header:
        scale = str(header.get("TIMESYS", "UTC")).strip().lower()
        scale = scale if scale in Time.SCALES else "utc"
        date = Time(str(header["DATE-OBS"]).strip(), scale=scale)
        header.insert(
            "DATE-OBS", ("MJD-OBS", round(float(date.mjd), 6), "[d] MJD of DATE-OBS"), after=True
        )
    header["FILTER"] = (band, "filter used")
    comment = "1 nanomaggy = 3.631e-6 Jy" if bunit == "nanomaggy" else "pixel unit"
    header["BUNIT"] = (bunit, comment)
    return header
