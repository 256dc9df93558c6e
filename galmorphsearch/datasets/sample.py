# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Real sample data bundled with the package.

Two small sets of real SDSS data ship inside ``galmorphsearch/data`` so that
examples and tests work on a fresh installation without network access:

* ``hcg88/``: one SDSS field around the compact group Hickson 88, as g, r and
  i images in nanomaggies, reprojected onto a common TAN WCS (about
  1.19 arcsec per pixel);
* ``gz2_gallery/``: twelve SDSS colour JPEG cutouts (256x256), one example of
  each of the twelve commonest Galaxy Zoo 2 class strings.
"""

import os
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.table import Table

from ._bands import parse_bands
from ._fields import MultiBandField, fix_sdss_header

__all__ = ["get_sample_field_paths", "load_sample_field", "load_gz2_gallery", "load_hcg88_members"]

_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
_SAMPLE_BANDS = "gri"


def get_sample_field_paths(bands="gri"):
    """
    Return the paths of the bundled SDSS images of Hickson Compact Group 88.

    Parameters
    ----------
    bands : str or sequence of str, optional
        Any of ``'g'``, ``'r'``, ``'i'``.

    Returns
    -------
    paths : dict
        Band name to the path (`str`) of a bzip2-compressed FITS image,
        which `astropy.io.fits` reads directly.

    Raises
    ------
    ValueError
        If a band is not one of g, r, i.

    Notes
    -----
    The three files were all written with ``FILTER = 'g'`` in their headers;
    the band is the one in the file name. `load_sample_field` returns
    corrected headers.

    Examples
    --------
    >>> from galmorphsearch.datasets import get_sample_field_paths
    >>> paths = get_sample_field_paths()
    >>> sorted(paths)
    ['g', 'i', 'r']
    >>> paths['r'].endswith('reprojected_sdss_r.fits.bz2')
    True
    """
    bands = parse_bands(bands, _SAMPLE_BANDS)
    return {band: str(_DATA_DIR / "hcg88" / f"reprojected_sdss_{band}.fits.bz2") for band in bands}


def load_sample_field(bands="gri"):
    """
    Load the bundled SDSS g, r and i images of Hickson Compact Group 88.

    The field is 682x496 pixels of about 1.19 arcsec, covering RA 313.07 to
    313.27 deg and Dec -5.79 to -5.59 deg: the three spirals of the compact
    group, a few background galaxies and many stars. Pixel values are in
    nanomaggies (sky subtracted, as in SDSS ``frame`` files); the three bands
    share one TAN WCS.

    Parameters
    ----------
    bands : str or sequence of str, optional
        Any of ``'g'``, ``'r'``, ``'i'``.

    Returns
    -------
    field : `~galmorphsearch.datasets.MultiBandField`
        Band name to `~astropy.io.fits.PrimaryHDU` with ``float32`` data in
        native byte order. The headers have the correct ``FILTER`` (the
        files themselves all say ``'g'``), ``BUNIT = 'nanomaggy'``, and the
        deprecated ``RADECSYS`` card replaced by ``RADESYS`` plus an
        ``MJD-OBS``, so that `~astropy.wcs.WCS` reads them without warning.

    Raises
    ------
    ValueError
        If a band is not one of g, r, i.

    Examples
    --------
    >>> from galmorphsearch.datasets import load_sample_field
    >>> field = load_sample_field()
    >>> field
    <MultiBandField bands='gri' shape=496x682>
    >>> field['r'].header['FILTER'], field['r'].header['BUNIT']
    ('r', 'nanomaggy')
    >>> field.wcs.pixel_to_world(341, 248)  # doctest: +FLOAT_CMP
    <SkyCoord (ICRS): (ra, dec) in deg
        (313.1703783, -5.69321191)>
    """
    paths = get_sample_field_paths(bands)
    hdus = {}
    for band, path in paths.items():
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            data = np.asarray(hdul[0].data, dtype=np.float32)
        fix_sdss_header(header, band)
        header["OBJECT"] = ("HCG 88", "Hickson Compact Group 88")
        hdus[band] = fits.PrimaryHDU(data=data, header=header)
    meta = {
        "name": "HCG 88",
        "origin": "SDSS DR9 frames, reprojected",
        "pixel_scale": 1.19 * u.arcsec,
    }
    return MultiBandField(hdus, meta=meta)


def load_gz2_gallery(images=False):
    """
    Load the bundled gallery of twelve SDSS colour cutouts with GZ2 classes.

    One real SDSS galaxy for each of the twelve commonest Galaxy Zoo 2
    class strings (Willett et al. 2013): ``Ec Ei Er Sb SbB Sc Sc2m Sc?t
    ScB Sd Sen Ser``. The images are the 256x256 colour JPEGs of the SDSS
    cutout service, already rendered like the output of
    `~astropy.visualization.make_lupton_rgb`.

    Parameters
    ----------
    images : bool, optional
        Also read the images into an ``image`` column of shape
        ``(12, 256, 256, 3)`` and dtype ``uint8`` (rows top to bottom as in
        the JPEG files). Requires Pillow.

    Returns
    -------
    table : `~astropy.table.Table`
        Columns ``gz2_class`` (str), ``ra`` and ``dec`` (deg), ``file``
        (absolute path of the JPEG, where ``'?'`` of the class string is
        written ``'Q'``) and, if asked, ``image``.

    Examples
    --------
    >>> from galmorphsearch.datasets import load_gz2_gallery
    >>> gallery = load_gz2_gallery()
    >>> len(gallery)
    12
    >>> gallery.colnames
    ['gz2_class', 'ra', 'dec', 'file']
    >>> str(gallery['ra'].unit)
    'deg'
    """
    directory = _DATA_DIR / "gz2_gallery"
    table = Table.read(directory / "labels.csv", format="ascii.csv")
    table["gz2_class"] = table["gz2_class"].astype(str)
    table["ra"] = np.asarray(table["ra"], dtype=float) * u.deg
    table["dec"] = np.asarray(table["dec"], dtype=float) * u.deg
    table["file"] = [os.fspath(directory / name) for name in table["file"]]
    table.meta["name"] = "GZ2 class gallery"
    table.meta["origin"] = "SDSS colour cutouts; classes from Galaxy Zoo 2 (Willett et al. 2013)"
    if images:
        from PIL import Image

        stack = np.empty((len(table), 256, 256, 3), dtype=np.uint8)
        for k, path in enumerate(table["file"]):
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != (256, 256):
                    image = image.resize((256, 256), Image.Resampling.LANCZOS)
                stack[k] = np.asarray(image)
        table["image"] = stack
    return table


# Members of Hickson Compact Group 88 inside the bundled field. NGC 6977 and
# NGC 6976: NED positions. NGC 6978: no catalogue position was at hand offline,
# so this is its r-band centroid measured on the bundled field (it lies 2.5
# arcmin NE of NGC 6977, as published). HCG 88d (MCG -01-53-014) is outside.
_HCG88_MEMBERS = (
    ("NGC 6978", "HCG 88a", "313.14763d -5.71123d", "r-band centroid on the bundled field"),
    ("NGC 6977", "HCG 88b", "20h52m29.706s -05d44m45.97s", "NED"),
    ("NGC 6976", "HCG 88c", "20h52m26.032s -05d46m20.29s", "NED"),
)


def load_hcg88_members():
    """
    Positions of the Hickson 88 spirals inside the bundled SDSS field.

    Returns
    -------
    members : `~astropy.table.Table`
        One row per member with ``name`` (NGC designation), ``hcg``
        (Hickson designation), ``coord`` (`~astropy.coordinates.SkyCoord`),
        ``ra`` and ``dec`` (deg) and ``position_source``. HCG 88d lies
        outside the field and is not listed.

    Examples
    --------
    >>> from galmorphsearch.datasets import load_hcg88_members
    >>> members = load_hcg88_members()
    >>> members["hcg"].tolist()
    ['HCG 88a', 'HCG 88b', 'HCG 88c']
    """
    from astropy.coordinates import SkyCoord

    coords = SkyCoord([row[2] for row in _HCG88_MEMBERS], frame="icrs")
    table = Table()
    table["name"] = [row[0] for row in _HCG88_MEMBERS]
    table["hcg"] = [row[1] for row in _HCG88_MEMBERS]
    table["coord"] = coords
    table["ra"] = coords.ra.to(u.deg)
    table["dec"] = coords.dec.to(u.deg)
    table["position_source"] = [row[3] for row in _HCG88_MEMBERS]
    table.meta["name"] = "Hickson Compact Group 88 members in the bundled field"
    return table
