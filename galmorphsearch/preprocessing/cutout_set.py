# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Many preprocessed cutouts kept together, with their table, in one FITS file.

A `CutoutSet` is what the command line passes from ``preprocess`` to
``train``, ``build-db``, ``search`` and ``classify``: the colour images and
background patches of N galaxies as two image cubes, plus a binary table of
what is known about each galaxy (identifier, position, morphology) and what
the preprocessing measured (centroid, Kron radius, orientation, flag).
"""

import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..utils.exceptions import DatabaseFormatError
from ..utils.io import atomic_path

__all__ = ["CutoutSet"]

# Keywords that describe a FITS file or HDU, not how its cutouts were made.
_STRUCTURAL_KEYWORDS = frozenset({"EXTNAME", "EXTVER", "EXTLEVEL", "CHECKSUM", "DATASUM",
                                  "HDUVERS", "ORIGIN", "DATE", "TFIELDS", "NAXIS"})

_MEASURED = ("x", "y", "kron_radius", "orientation", "crop_size", "flag")


class CutoutSet:
    """
    Colour cutouts, their background patches and a table, one row per galaxy.

    Parameters
    ----------
    table : `~astropy.table.Table`
        One row per galaxy.
    images, backgrounds : `~numpy.ndarray`
        ``(N, size, size, 3)`` ``uint8`` colour images and background
        patches, in display order (row 0 at the top), as
        `~galmorphsearch.GalaxyCutout.image` gives them.

    Raises
    ------
    ValueError
        If the arrays do not have the shape ``(len(table), size, size, 3)``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.preprocessing import CutoutSet
    >>> images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    >>> cutouts = CutoutSet(Table({"objid": [1, 2]}), images, images.copy())
    >>> len(cutouts), cutouts.size
    (2, 32)
    """

    def __init__(self, table, images, backgrounds):
        table = Table(table, copy=False)
        images = np.asarray(images)
        backgrounds = np.asarray(backgrounds)
        for name, cube in (("images", images), ("backgrounds", backgrounds)):
            if (cube.ndim != 4 or cube.shape[0] != len(table) or cube.shape[3] != 3
                    or cube.shape[1] != cube.shape[2]):
                msg = (f"{name} must have the shape (N, size, size, 3) with N = {len(table)} "
                       f"rows of the table; got {cube.shape}")
                raise ValueError(msg)
            if cube.dtype != np.uint8:
                msg = f"{name} must be uint8 colour images, not {cube.dtype}"
                raise ValueError(msg)
        if images.shape != backgrounds.shape:
            msg = f"images {images.shape} and backgrounds {backgrounds.shape} differ in shape"
            raise ValueError(msg)
        self.table = table
        self.images = images
        self.backgrounds = backgrounds

    @classmethod
    def from_cutouts(cls, cutouts, table=None):
        """
        Collect `~galmorphsearch.GalaxyCutout` objects.

        Parameters
        ----------
        cutouts : sequence of `~galmorphsearch.GalaxyCutout`
            Cutouts of one size.
        table : `~astropy.table.Table`, optional
            What is known about each galaxy (same order); the measured
            columns ``x, y, kron_radius, orientation, crop_size, flag`` are
            added to a copy of it.

        Returns
        -------
        cutout_set : `CutoutSet`
            The preprocessing parameters shared by all cutouts are in
            ``table.meta`` as FITS keywords; those that differ between
            cutouts become columns.
        """
        cutouts = list(cutouts)
        if not cutouts:
            msg = "no cutouts given"
            raise ValueError(msg)
        table = Table() if table is None else Table(table, copy=True)
        if len(table.colnames) and len(table) != len(cutouts):
            msg = f"the table has {len(table)} rows but {len(cutouts)} cutouts were given"
            raise ValueError(msg)
        table["x"] = [float(c.centroid[0]) for c in cutouts]
        table["y"] = [float(c.centroid[1]) for c in cutouts]
        table["kron_radius"] = [float(c.kron_radius) for c in cutouts]
        table["kron_radius"].unit = "pix"
        table["orientation"] = [float(c.orientation.to_value("deg")) for c in cutouts]
        table["orientation"].unit = "deg"
        table["crop_size"] = [int(c.crop_size) for c in cutouts]
        table["flag"] = np.array([int(c.flag) for c in cutouts], dtype=np.int32)
        keywords = [c.header_keywords() for c in cutouts]
        for key in keywords[0]:
            values = [kw.get(key) for kw in keywords]
            if all(value == values[0] for value in values):
                if values[0] is not None:
                    table.meta[key] = values[0]
            else:
                table[key.lower()] = [str(v) for v in values]
        images = np.stack([c.image for c in cutouts])
        backgrounds = np.stack([c.background for c in cutouts])
        return cls(table, images, backgrounds)

    def __len__(self):
        return len(self.table)

    def __repr__(self):
        return f"<{type(self).__name__}: {len(self)} cutouts of {self.size}x{self.size} px>"

    def header_keywords(self):
        """
        The preprocessing keywords shared by all cutouts of the set.

        Returns
        -------
        keywords : dict
            The upper-case FITS keywords (8 characters at most) of
            ``table.meta``, without those that describe the file rather
            than the cutouts (``EXTNAME``, ``CHECKSUM``, ``DATASUM``...).
        """
        return {key: value for key, value in self.table.meta.items()
                if isinstance(key, str) and key.isupper() and len(key) <= 8
                and key not in _STRUCTURAL_KEYWORDS and not isinstance(value, (list, dict))}

    @property
    def size(self):
        """Side of the cutouts in pixels."""
        return int(self.images.shape[1])

    def write(self, path, overwrite=False):
        """
        Write the set as FITS: table ``CATALOG``, cubes ``IMAGES`` and ``BACKGRND``.

        Parameters
        ----------
        path : str or path-like
            Output file.
        overwrite : bool, optional
            Replace an existing file. The write goes to a temporary file that
            is renamed into place.
        """
        table_hdu = fits.table_to_hdu(self.table)
        table_hdu.name = "CATALOG"
        images = fits.ImageHDU(self.images, name="IMAGES")
        backgrounds = fits.ImageHDU(self.backgrounds, name="BACKGRND")
        for hdu in (images, backgrounds):
            hdu.header["ORDER"] = ("N,Y,X,RGB", "axis order of the numpy array")
            hdu.header["ROWORDER"] = ("display", "row 0 of each image is the top")
        hdulist = fits.HDUList([fits.PrimaryHDU(), table_hdu, images, backgrounds])
        hdulist[0].header["ORIGIN"] = "galmorphsearch"
        hdulist[0].header["CONTENT"] = "galmorphsearch cutout set"
        with atomic_path(path, overwrite=overwrite) as tmp:
            hdulist.writeto(tmp, checksum=True)

    @classmethod
    def read(cls, path):
        """
        Read a set written by `CutoutSet.write`.

        Raises
        ------
        galmorphsearch.utils.DatabaseFormatError
            If the file is not a cutout set or fails its checksums.
        """
        import warnings

        from ._io import _check_file

        _check_file(path, "cutout set file")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with fits.open(path, checksum=True) as hdulist:
                    names = [hdu.name for hdu in hdulist]
                    missing = [n for n in ("CATALOG", "IMAGES", "BACKGRND") if n not in names]
                    if missing:
                        msg = (f"{path} is not a galmorphsearch cutout set: no "
                               f"{', '.join(missing)} HDU")
                        raise DatabaseFormatError(msg)
                    table = Table.read(hdulist["CATALOG"])
                    images = np.array(hdulist["IMAGES"].data, dtype=np.uint8)
                    backgrounds = np.array(hdulist["BACKGRND"].data, dtype=np.uint8)
            except DatabaseFormatError:
                raise
            except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
                # astropy's own words, e.g. "Empty or corrupt FITS file", or a
                # data array shorter than its header says (a truncated file).
                detail = " ".join(str(exc).split())
                msg = f"{path} is not a readable galmorphsearch cutout set (FITS): {detail}"
                raise DatabaseFormatError(msg) from exc
        bad = [str(w.message) for w in caught if "checksum" in str(w.message).lower()]
        if bad:
            msg = f"{path} is corrupted: {bad[0]}"
            raise DatabaseFormatError(msg)
        for w in caught:
            if "checksum" not in str(w.message).lower():
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return cls(table, images, backgrounds)
