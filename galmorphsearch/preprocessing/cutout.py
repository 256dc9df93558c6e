# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Galaxy cutouts prepared the TSGICAS way (Seo et al. 2023, section 2.2).
"""

import math
import os
from functools import cached_property

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from photutils.aperture import BoundingBox

from ..utils.progress import progress_iter
from ._colour import _linearize, _lupton_rgb, _resize
from ._detection import (
    _BLEND_MERGED_DIP,
    _BLEND_MERGED_RATIO,
    _BLEND_MIN_SHIFT,
    _BLEND_SHIFT,
    _band_scale_mismatch,
    _deblend_target,
    _detect,
    _dilate,
    _fill_holes,
    _label_near,
    _measure,
    _merge_fragments,
    _second_peak,
    _sky_stats,
    _subtract_background,
)
from ._geometry import _free_window, _grid, _outside, _region, _sample
from ._io import _filter_band, _read_band, _read_colour_image, _same_grid
from .flags import CutoutFlag, _raise_flag
from .recipe import (
    _DEFAULTS,
    _FROM_IMAGE_DEFAULTS,
    _HEADER_KEYWORDS,
    RUN_KEYWORDS,
    _check_params,
    _header_keywords,
)

__all__ = ["GalaxyCutout", "make_cutouts"]


class _Field:
    """
    One image prepared for cutting: planes, detection, sky-pixel pool.

    Shared by all cutouts made from the same image (see `make_cutouts`).
    ``nonfinite`` marks the pixels that were non-finite in the input;
    ``bad`` those of them that `_fill_holes` could not interpolate, which
    detection and measurement ignore. Sky pixels are drawn only from
    pixels that were finite.
    """

    def __init__(self, planes, detection, bad, *, nonfinite, kind, wcs, saturated, nsigma,
                 npixels, kernel_fwhm, sky_dilation=5):
        self.planes = planes
        self.detection = detection
        self.bad = bad
        self.nonfinite = nonfinite
        self.kind = kind
        self.wcs = wcs
        self.saturated = saturated
        self.shape = detection.shape
        self.segm, self.convolved, self.rms = _detect(detection, bad, nsigma, npixels,
                                                      kernel_fwhm)
        sources = self.segm.data > 0 if self.segm is not None else np.zeros(self.shape, bool)
        self.busy = _dilate(sources, sky_dilation) | nonfinite
        self.pool = np.flatnonzero(~self.busy)
        self.busy_integral = np.pad(np.cumsum(np.cumsum(self.busy, 0, dtype=np.int64), 1),
                                    ((1, 0), (1, 0)))
        if kind == "fits":
            self.fill_values = np.zeros(len(planes))
        else:
            self.fill_values = np.array([np.nanmedian(p) for p in planes])

    def draw(self, k, rng):
        """(n_planes, k) values of ``k`` random object-free pixels."""
        if self.pool.size == 0:
            return np.repeat(self.fill_values[:, None], k, axis=1)
        idx = self.pool[rng.integers(self.pool.size, size=k)]
        return np.stack([p.ravel()[idx] for p in self.planes])

    def fill_sky(self, planes, where, rng):
        """Set ``planes`` (a list or array of planes) to random sky draws ``where``."""
        if where.any():
            values = self.draw(int(where.sum()), rng)
            for plane, vals in zip(planes, values, strict=True):
                plane[where] = vals
        return planes


class GalaxyCutout:
    """
    A galaxy cutout preprocessed as in TSGICAS (Seo et al. 2023, section 2.2).

    From g, r and i images and a target position, the cutout is made in
    these steps:

    1. enclosed holes of non-finite pixels (a NaN core, a bad column
       segment) are filled by interpolation from their surroundings
       (`~astropy.convolution.interpolate_replace_nans`, Gaussian kernel,
       iterated for holes wider than the kernel), so that they neither
       split nor shift the target; then the sky is subtracted where the
       images are not already background subtracted
       (``subtract_background``);
    2. sources are detected in the r band (photutils segmentation) and the
       target is the segment under the position, or the nearest one within
       ``tolerance``; with ``deblend=True`` that segment is deblended so
       that overlapping neighbours are split off;
    3. the target's Kron radius :math:`R_K`, centroid and orientation are
       measured on the r band (`~photutils.segmentation.SourceCatalog`);
    4. a square of side :math:`2 \\times` ``kron_factor`` :math:`\\times R_K`
       centred on the centroid is cropped, so that every galaxy fills the
       same fraction of its cutout; with ``rotate=True`` the square is
       aligned with the major axis so that the major axis comes out
       horizontal;
    5. every other detected source in the crop (and any non-finite pixel
       off the target, and any part of the square outside the image) is
       replaced by randomly drawn object-free background pixels of the
       same image; non-finite pixels on the target keep their
       interpolated values (``NAN_PIXELS`` is set either way);
    6. the bands are combined with `~astropy.visualization.make_lupton_rgb`
       (i x 0.79 red, r x 1.0 green, g x 1.1 blue, ``stretch=0.5``,
       ``Q=10``) and resized to ``size`` x ``size`` pixels with
       torchvision (bilinear, antialiased);
    7. a background patch of the same size is cut from object-free sky of
       the same image and processed in the same way.

    Ready-made colour images (SDSS JPEGs) go through the same detection,
    crop, masking and rotation with `GalaxyCutout.from_image`.

    **Orientation.** The outputs `image`, `background`, `as_array` and
    `to_tensor` are always in *display order*: row 0 is the top of the
    picture, as in a JPEG, so ``plt.imshow(cutout.image)`` (matplotlib's
    default ``origin='upper'``) shows them right. FITS bands have row 0 at
    the bottom, so their cutouts are flipped vertically at rendering: for
    bands with a standard north-up, east-left WCS (such as SDSS colour
    JPEGs have) the output is north up and east left, exactly like the
    SDSS JPEG of the same galaxy, and the two kinds of cutout can be
    compared pixel by pixel. The flip keeps the handedness of the sky, so
    with ``rotate=True`` cutouts from both inputs also agree whatever the
    rotation of the FITS grid. Bands on a rotated grid (e.g. raw SDSS
    frames, whose columns run roughly north-south) come out rotated by the
    same angle when ``rotate=False``; reproject them onto a north-up grid
    first to match JPEGs. Everything measured (`position`, `centroid`,
    `orientation`, `bbox`, `segmentation`) is in the pixel coordinates of
    the input, and the intermediate arrays (`crop_data`, `mask`,
    `target_mask`, `background_data`) keep the row order of the input,
    given by `origin`.

    Parameters
    ----------
    g, r, i : str, path-like, HDUList, image HDU, `~astropy.nddata.NDData` or array
        The three band images, on a common pixel grid, in linear flux units
        (the colour parameters assume SDSS nanomaggies).
    position : `~astropy.coordinates.SkyCoord` or tuple of float
        The target, either on the sky (needs a WCS) or as a zero-based
        ``(x, y)`` pixel position.
    wcs : `~astropy.wcs.WCS`, optional
        The WCS of the images. By default the WCS of the band files/HDUs is
        used; bands whose WCSs differ are rejected.
    size : int, optional
        Side of the output images, in pixels.
    kron_factor : float, optional
        Half-side of the crop in Kron radii: the crop side is
        ``2 * kron_factor * kron_radius``, i.e. the square reaches
        ``kron_factor`` Kron radii from the centre along the major axis.
        The default reads the paper's "cropped to 3 times the Kron radius"
        as 3 :math:`R_K` on each side of the centre, which contains the
        usual 2.5 :math:`R_K` Kron aperture and matches the framing of
        SDSS colour cutouts.
    rotate : bool, optional
        Rotate the crop about the centroid so that the major axis lies along
        the x axis (image rows): photutils orientation 0 deg, which is
        position angle 90 deg for a north-up, east-left display. The major
        axis then points to the right and to the left (the sign of an axis
        is undefined).
    deblend : bool, optional
        Deblend the target segment before measuring it
        (`~photutils.segmentation.deblend_sources`, exponentially spaced
        levels, on the smoothed detection image; no other segment is
        deblended).
    deblend_contrast : float, optional
        Minimum fraction of the segment's flux that a deblended child
        needs to be kept (``contrast`` of
        `~photutils.segmentation.deblend_sources`). photutils gives each
        child its whole watershed basin, so a star on a galaxy's outskirts
        claims the disc around it; with the default 0.045 (and
        ``deblend_nlevels=16``) the companions of NGC 6976 and NGC 6977
        are split off while the disc of NGC 6978 and the arms of the
        spirals are not, which 0.03 or less does.
    deblend_nlevels : int, optional
        Number of multi-thresholding levels (``n_levels`` of
        `~photutils.segmentation.deblend_sources`); 12 to 20 give the same
        result on the HCG 88 spirals, 24 or more shred them.
    merge_fragments : bool, optional
        After deblending, give back to the target the children of its
        segment that are pieces of the galaxy itself (spiral arms, bar,
        clumpy disc) rather than distinct sources; only children whose
        peak stands out as a compact source stay separate and are masked.
    merge_contrast : float, optional
        Minimum *peak contrast* :math:`1 - m / p` of a distinct source,
        where :math:`p` is the child's peak on the smoothed detection image
        and :math:`m` the median in an annulus around the peak. Stars and
        compact neighbours have 0.5 to 1, pieces of arms and bars 0.1
        to 0.42 (measured on synthetic spirals and the HCG 88 field).
    merge_radius : float, optional
        Mid radius of that annulus in pixels (the annulus runs from 0.75
        to 1.25 times it); about the FWHM of the smoothed PSF.
    nsigma : float, optional
        Detection threshold, in units of the sigma-clipped sky noise.
    npixels : int, optional
        Minimum number of connected pixels of a detection.
    kernel_fwhm : float, optional
        FWHM in pixels of the Gaussian kernel that smooths the detection
        image; 0 disables smoothing.
    subtract_background : {'auto', True, False}, optional
        Subtract a `~photutils.background.Background2D` map from each band.
        ``'auto'`` subtracts only when, in some band, the sigma-clipped sky
        median differs from zero by more than the sigma-clipped noise (raw
        frames); sky-subtracted survey images such as SDSS frames are left
        alone.
    box_size : int, optional
        Box size of `~photutils.background.Background2D`, in pixels.
    tolerance : float, optional
        When no segment lies under the position, the nearest segment pixel
        within this many pixels selects the target.
    mask_dilation : int, optional
        Neighbour segments are grown by this many pixels before being
        replaced, to cover their faint wings.
    min_crop : int, optional
        Minimum crop side in input pixels (for compact sources).
    fallback_crop : int, optional
        Side in input pixels of the crop used when no target is found
        (``CENTRE_CROP_FALLBACK``).
    saturation_level : float, optional
        Pixel value at or above which band pixels are saturated; by default
        saturation is not checked for FITS bands.
    stretch, Q : float, optional
        Parameters of `~astropy.visualization.make_lupton_rgb`.
    band_scales : tuple of float, optional
        Multipliers of the (g, r, i) bands before the colour rendering.
    seed : int, `numpy.random.Generator` or `None`, optional
        Seed of the random draws of background pixels. The same seed gives
        the same cutout.

    Attributes
    ----------
    image : `~numpy.ndarray`
        (size, size, 3) uint8 colour cutout in display order (row 0 at the
        top; north up and east left for a north-up, east-left input).
    background : `~numpy.ndarray`
        (size, size, 3) uint8 background patch, processed like `image`
        (display order).
    origin : {'lower', 'upper'}
        Row order of the input and so of the intermediate arrays
        `crop_data`, `mask`, `target_mask` and `background_data`:
        ``'lower'`` (row 0 at the bottom, FITS) or ``'upper'`` (row 0 at
        the top, colour images); pass it to ``imshow``. It does not apply
        to `image` and `background`, which are always in display order.
    kron_radius : float
        Kron radius along the semimajor axis in input pixels (NaN for a
        fallback crop).
    orientation : `~astropy.units.Quantity`
        Orientation of the major axis in the input, counter-clockwise from
        the +x axis, in (-90, 90] deg.
    centroid : tuple of float
        (x, y) centroid of the target in the input image.
    position : tuple of float
        The (x, y) pixel position that was asked for.
    bbox : `~photutils.aperture.BoundingBox`
        Pixels of the input image that the (possibly rotated) crop covers;
        it may extend beyond the image (``CROP_TRUNCATED``).
    crop_size : int
        Side of the crop in input pixels, before resizing.
    segmentation : `~photutils.segmentation.SegmentationImage` or `None`
        Segmentation of the whole image (with the target deblended).
    label : int
        Label of the target in `segmentation` (0 when none was found).
    crop_data : `~numpy.ndarray`
        (3, crop_size, crop_size) float32 planes after masking and rotation
        and before rendering: g, r, i fluxes, or R, G, B in [0, 1]; rows in
        the input's order (see `origin`).
    background_data : `~numpy.ndarray`
        (3, crop_size, crop_size) float32 planes of the background patch,
        like `crop_data`.
    mask : `~numpy.ndarray`
        (crop_size, crop_size) bool, True where pixels were replaced by
        background draws (neighbours, non-finite pixels off the target,
        padding); rows in the input's order.
    target_mask : `~numpy.ndarray`
        (crop_size, crop_size) bool, True on the target's segment; rows in
        the input's order.
    flag : `~galmorphsearch.preprocessing.CutoutFlag`
        Quality bitmask; each set bit was announced by a
        `~galmorphsearch.utils.exceptions.CutoutWarning` subclass.
    params : dict
        Every preprocessing parameter, flat, with short keys (also
        available as `meta`); see `header_keywords`.

    Raises
    ------
    ValueError
        A band is missing, empty (all NaN) or not 2D; the bands differ in
        shape or WCS; the position lies off the image; a
        `~astropy.coordinates.SkyCoord` is given without a WCS; a parameter
        is out of range. A band file is not FITS, is truncated or damaged
        (compressed files are decompressed in full, so that gzip, bzip2,
        xz and zip checksums are verified), or has a WCS that astropy cannot
        use (e.g. an unknown projection in ``CTYPE1``). The ``FILTER``
        keywords of the bands name other bands than g, r and i (bands in
        the wrong order, one band given twice, a z-band image); the same
        file is given for two bands.
    TypeError
        An input or a parameter has an unsupported type (e.g. a string
        for a number).

    Warns
    -----
    CutoutWarning
        A subclass of `~galmorphsearch.utils.exceptions.CutoutWarning` for
        every bit set in ``flag`` (see
        `~galmorphsearch.preprocessing.CutoutFlag`), among them a
        `~galmorphsearch.preprocessing.BandScaleWarning` when the bands
        differ in scale by orders of magnitude and a
        `~galmorphsearch.preprocessing.BlendWarning` when the target is
        probably blended with another source.

    See Also
    --------
    make_cutouts : many cutouts from the same field.
    CutoutRecipe : the settings in one object, that makes cutouts.

    Notes
    -----
    The orientation is measured from the second-order moments of the r
    band segment, counter-clockwise from the +x axis of the input pixel
    grid (photutils convention; for colour images, whose y axis points
    down, this is clockwise on the screen). With ``rotate=True`` the output
    shows the major axis horizontal, so that measuring the output gives an
    orientation near 0 deg (position angle 90 deg on a north-up display);
    the vertical flip to display order keeps the major axis horizontal.

    Filter keywords (``FILTER``, else ``BAND`` or ``FILTNAM``; of band
    files, HDUs, or the ``meta`` of NDData) are read where present, from
    the image's own header and else from the primary header of its file
    (where multi-extension DECam and HSC files keep them): values such as
    ``'g'``, ``"g'"``, ``'r2'``, ``'rSDSS'``, ``'SDSS g'``, ``'HSC-G'``,
    ``'g.MP9401'`` or DECam's ``'g DECam SDSS ...'`` name a band; others
    (``'R'``, ``'Halpha'``) are not checked. When all three bands carry
    the same filter the keyword is a copied header (as in the bundled HCG
    88 files) that says nothing about which image is which, and it is
    ignored. Two band files holding identical pixels (one image copied
    under another name) are refused.

    Examples
    --------
    >>> from astropy.coordinates import SkyCoord
    >>> from galmorphsearch import GalaxyCutout
    >>> path = 'galmorphsearch/data/hcg88/reprojected_sdss_{}.fits.bz2'
    >>> ngc6977 = SkyCoord('20h52m29.706s -05d44m45.97s')
    >>> cutout = GalaxyCutout(*(path.format(b) for b in 'gri'), ngc6977,
    ...                       size=64, rotate=True, seed=0)  # doctest: +SKIP
    >>> cutout.image.shape  # doctest: +SKIP
    (64, 64, 3)
    """

    def __init__(self, g, r, i, position, *, wcs=None, size=256, kron_factor=3.0,
                 rotate=False, deblend=True, deblend_contrast=0.045, deblend_nlevels=16,
                 merge_fragments=True, merge_contrast=0.45, merge_radius=4.0,
                 nsigma=1.5, npixels=10, kernel_fwhm=3.0, subtract_background="auto",
                 box_size=64, tolerance=5.0,
                 mask_dilation=2, min_crop=16, fallback_crop=64, saturation_level=None,
                 stretch=0.5, Q=10.0, band_scales=(1.1, 1.0, 0.79), seed=None):
        # the keyword parameters, by name (their defaults are _DEFAULTS)
        params = _check_params({k: v for k, v in locals().items() if k in _DEFAULTS})
        planes, wcs = _read_bands(g, r, i, wcs)
        field = _fits_field(planes, wcs, params)
        self._build(field, position, params)

    @classmethod
    def from_image(cls, image, position=None, *, size=256, kron_factor=3.0, rotate=False,
                   deblend=True, deblend_contrast=0.045, deblend_nlevels=16,
                   merge_fragments=True, merge_contrast=0.45, merge_radius=4.0, nsigma=1.5,
                   npixels=10,
                   kernel_fwhm=3.0, tolerance=None, mask_dilation=2, min_crop=16,
                   fallback_crop=None, linearize=True, stretch=0.5, Q=10.0, seed=None):
        """
        Preprocess a ready-made colour cutout (SDSS JPEG, PNG, array).

        Detection, Kron crop, masking and rotation run on the image's
        luminance (the mean of the three channels). With ``linearize`` the
        make_lupton_rgb arcsinh stretch (``stretch``, ``Q``) is undone
        first, so that Kron radii are measured on a near-linear intensity
        scale as for FITS input and cutouts from both sources come out
        alike. The colours are kept as they are (no new stretch). When no
        source is found, the largest square centred on the position is
        used (``CENTRE_CROP_FALLBACK``). The background patch is drawn from
        object-free pixels of the same image.

        Parameters
        ----------
        image : str, path-like, `PIL.Image.Image` or `~numpy.ndarray`
            A rendered colour image, in display order (row 0 at the top, as
            a JPEG; flip FITS-ordered arrays with ``[::-1]``): a
            JPEG/PNG/TIFF file or PIL image (greyscale is repeated in the
            three channels; 16-bit greyscale is scaled to [0, 1];
            floating-point images must hold values in [0, 1]), or an
            (ny, nx, 3) or (ny, nx, 4) array of uint8 (0..255), uint16
            (0..65535) or floats in [0, 1]. Fully transparent pixels (alpha
            0) are missing data, like NaN pixels (``NAN_PIXELS``). FITS
            files, single-band arrays and float images of flux are refused:
            give FITS bands to `GalaxyCutout` itself.
        position : tuple of float, optional
            (x, y) array position (x = column, y = row) of the target; by
            default the image centre, where the source nearest to the
            centre is taken.
        size, kron_factor, rotate, deblend, deblend_contrast, deblend_nlevels : optional
            As for `GalaxyCutout`.
        merge_fragments, merge_contrast, merge_radius : optional
            As for `GalaxyCutout`.
        nsigma, npixels : optional
            As for `GalaxyCutout`.
        kernel_fwhm, mask_dilation, min_crop, seed : optional
            As for `GalaxyCutout`.
        tolerance : float, optional
            Search radius in pixels for the nearest source; by default a
            quarter of the smaller image side.
        fallback_crop : int, optional
            Side of the fallback crop; by default the largest square
            centred on the position that fits in the image.
        linearize : bool, optional
            Undo the arcsinh stretch for detection and measurement.
        stretch, Q : float, optional
            Parameters of the stretch to undo.

        Returns
        -------
        cutout : `GalaxyCutout`
            The cutout; ``crop_data`` holds R, G, B in [0, 1].

        Raises
        ------
        ValueError
            The image is not (ny, nx, 3), holds values out of range, is too
            small, is fully transparent; the path is a directory, not an
            image PIL can read, a FITS file, or an image larger than
            ``PIL.Image.MAX_IMAGE_PIXELS`` (a possible decompression bomb);
            the position lies off the image, or a parameter is out of
            range.
        TypeError
            The image has an unsupported type.

        Examples
        --------
        >>> from galmorphsearch import GalaxyCutout
        >>> cutout = GalaxyCutout.from_image(
        ...     'galmorphsearch/data/gz2_gallery/Sc.jpeg', size=64,
        ...     rotate=True, seed=0)  # doctest: +SKIP
        >>> cutout.image.shape  # doctest: +SKIP
        (64, 64, 3)
        """
        # the keyword parameters, by name (their defaults are _FROM_IMAGE_DEFAULTS)
        options = {k: v for k, v in locals().items() if k in _FROM_IMAGE_DEFAULTS}
        linearize = options.pop("linearize")
        rgb = _read_colour_image(image)
        ny, nx = rgb.shape[:2]
        if position is None:
            position = ((nx - 1) / 2.0, (ny - 1) / 2.0)
        if tolerance is None:
            options["tolerance"] = min(ny, nx) / 4.0
        x, y = _pixel_position(position, None, (ny, nx))
        if fallback_crop is None:
            half = min(x + 0.5, nx - 0.5 - x, y + 0.5, ny - 0.5 - y)
            options["fallback_crop"] = max(int(np.floor(2 * half)), 2)
        params = _check_params({**options, "subtract_background": True, "box_size": None,
                                "band_scales": None})
        if not isinstance(linearize, (bool, np.bool_)):
            msg = f"linearize must be True or False, got {linearize!r}"
            raise TypeError(msg)
        params["input"] = "colour"
        params["linearize"] = bool(linearize)
        nonfinite = ~np.isfinite(rgb).all(axis=-1)
        planes, bad = _fill_holes([np.ascontiguousarray(rgb[..., k]) for k in range(3)],
                                  nonfinite)
        lum = np.where(bad, 0.0, np.mean(planes, axis=0))
        saturated = (rgb >= 1.0).any(axis=-1)
        if linearize:
            lum = _linearize(lum, params["stretch"], params["Q"])
        median, _ = _sky_stats(lum, bad)
        field = _Field(planes, lum - median, bad, nonfinite=nonfinite, kind="colour", wcs=None,
                       saturated=saturated, nsigma=params["nsigma"],
                       npixels=params["npixels"], kernel_fwhm=params["kernel_fwhm"])
        field.saturated_min = 5
        params["background_subtracted"] = True
        self = cls.__new__(cls)
        self._build(field, (x, y), params)
        return self

    # ------------------------------------------------------------------ pipeline

    def _build(self, field, position, params):
        self._field = field
        self.params = params
        self.wcs = field.wcs
        self.origin = "lower" if field.kind == "fits" else "upper"
        rng = params["seed"]
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.sky_position = position if isinstance(position, SkyCoord) else None
        x, y = _pixel_position(position, field.wcs, field.shape)
        self.position = (x, y)
        flag = CutoutFlag(0)
        if getattr(field, "scale_mismatch", None):
            flag = _raise_flag(flag, CutoutFlag.BAND_SCALE_MISMATCH, field.scale_mismatch)

        label = 0
        segm = field.segm
        if segm is None:
            flag = _raise_flag(flag, CutoutFlag.EMPTY_IMAGE,
                               "no source was detected anywhere in the image")
        else:
            label = _label_near(segm.data, x, y, params["tolerance"])
            if label == 0:
                flag = _raise_flag(
                    flag, CutoutFlag.NO_SOURCE_AT_POSITION,
                    f"no source within {params['tolerance']:g} pixels of the position "
                    f"(x, y) = ({x:.1f}, {y:.1f})")
        unmerged = segm  # the target as detected and deblended, before merging
        merged = []
        if label and params["deblend"]:
            parent_label = label
            deblended, mode_used = _deblend_target(
                field.convolved, segm, label, params["npixels"], params["contrast"],
                n_levels=params["nlevels"], mode=params["deblend_mode"])
            params["deblend_mode"] = mode_used
            new_label = _label_near(deblended.data, x, y, params["tolerance"])
            if new_label:
                segm, label = deblended, new_label
                unmerged = segm
                if params["merge_fragments"]:
                    segm, merged, _ = _merge_fragments(
                        field.convolved, segm, label, field.segm.data == parent_label,
                        params["merge_radius"], params["merge_contrast"])
                    params["n_merged"] = len(merged)
        if label:
            kron, centroid, theta, a, b = _measure(field.detection, field.bad, segm, label)
            flag = _check_blend(field, unmerged, segm, label, merged, kron, centroid, flag)
            half = max(params["kron_factor"] * kron, params["min_crop"] / 2.0)
            n = max(int(math.ceil(2 * half)), 2)
            angle = theta if params["rotate"] else 0.0
        else:
            flag = _raise_flag(
                flag, CutoutFlag.CENTRE_CROP_FALLBACK,
                f"no Kron crop possible: a {params['fallback_crop']}-pixel square centred on "
                "the position is used, without rotation")
            kron, centroid, theta, a, b = np.nan, (x, y), np.nan, np.nan, np.nan
            n = int(params["fallback_crop"])
            angle = 0.0
        self.segmentation = segm
        self.label = int(label)
        self.kron_radius = float(kron)
        self.centroid = (float(centroid[0]), float(centroid[1]))
        self.orientation = float(theta) * u.deg
        self._axes = (a, b)
        self._angle = float(angle)
        self.crop_size = n

        gx, gy, _ = _grid(centroid, n, angle, snap=(angle == 0.0))
        self._grid_xy = (gx, gy)
        self.bbox = BoundingBox(int(np.floor(gx.min() + 0.5)), int(np.floor(gx.max() + 0.5)) + 1,
                                int(np.floor(gy.min() + 0.5)), int(np.floor(gy.max() + 0.5)) + 1)
        order = 0 if angle == 0.0 else 1

        # ---- the crop: neighbours and bad pixels replaced, then sampled; on
        # the target, interpolated holes (_fill_holes) keep their values
        ys, xs = _region(gx, gy, field.shape)
        local_bad = field.nonfinite[ys, xs]
        if segm is not None and label:
            local_seg = segm.data[ys, xs]
            target = local_seg == label
            other = _dilate((local_seg > 0) & ~target, params["mask_dilation"]) & ~target
        else:
            target = np.zeros(local_bad.shape, bool)
            other = np.zeros(local_bad.shape, bool)
        interpolated = local_bad & target & ~field.bad[ys, xs]
        replace = other | (local_bad & ~interpolated)
        local = field.fill_sky([p[ys, xs].copy() for p in field.planes], replace, rng)
        lx, ly = gx - xs.start, gy - ys.start
        crop = np.stack([_sample(p, lx, ly, order) for p in local])
        replaced = _sample(replace.astype(np.float32), lx, ly, 0) > 0.5
        self.target_mask = _sample(target.astype(np.float32), lx, ly, 0) > 0.5
        nan_in_crop = _sample(local_bad.astype(np.float32), lx, ly, 0) > 0.5
        kept = _sample(interpolated.astype(np.float32), lx, ly, 0) > 0.5
        outside = _outside(gx, gy, field.shape)
        if outside.any():
            crop = field.fill_sky(crop, outside, rng)
            self.target_mask &= ~outside
            flag = _raise_flag(
                flag, CutoutFlag.CROP_TRUNCATED,
                f"the {n}x{n}-pixel crop extends beyond the image; "
                f"{int(outside.sum())} of its pixels were padded with background pixels")
        if (nan_in_crop & ~outside).any():
            n_bad = int((nan_in_crop & ~outside).sum())
            n_kept = int((kept & ~outside).sum())
            flag = _raise_flag(flag, CutoutFlag.NAN_PIXELS,
                               f"{n_bad} non-finite pixels in the crop: {n_kept} on the target "
                               f"were interpolated from their surroundings, "
                               f"{n_bad - n_kept} replaced by background pixels")
        if label and field.saturated is not None:
            n_sat = int(field.saturated[segm.data == label].sum())
            if n_sat >= getattr(field, "saturated_min", 1):
                flag = _raise_flag(flag, CutoutFlag.SATURATED,
                                   f"the target has {n_sat} saturated pixels")
        self.crop_data = crop.astype(np.float32)
        self.mask = replaced | outside

        # ---- the background patch, sampled like the crop from clean sky
        flag = self._build_background(field, n, angle, order, rng, flag)
        self.flag = CutoutFlag(flag)

    def _build_background(self, field, n, angle, order, rng, flag):
        t = np.radians(angle)
        width = int(math.ceil(n * (abs(math.cos(t)) + abs(math.sin(t))))) + 2
        if field.pool.size < 0.1 * n * n:
            flag = _raise_flag(
                flag, CutoutFlag.SMALL_BACKGROUND,
                f"only {field.pool.size} object-free pixels for a {n}x{n}-pixel background "
                "patch: each background pixel repeats more than ten times")
        corner = _free_window(field.busy_integral, width, rng)
        if corner is None:
            self.params["background_method"] = "random"
            bkg = field.draw(n * n, rng).reshape(len(field.planes), n, n)
        else:
            self.params["background_method"] = "window"
            iy, ix = corner
            ys, xs = slice(iy, iy + width), slice(ix, ix + width)
            busy = field.busy[ys, xs]
            local = field.fill_sky([p[ys, xs].copy() for p in field.planes], busy, rng)
            centre = ((width - 1) / 2.0, (width - 1) / 2.0)
            gx, gy, _ = _grid(centre, n, angle, snap=False)
            bkg = np.stack([_sample(p, gx, gy, order) for p in local])
            self._background_bbox = BoundingBox(ix, ix + width, iy, iy + width)
        self.background_data = bkg.astype(np.float32)
        return flag

    # ------------------------------------------------------------------ outputs

    def _render(self, planes):
        """Colour-render and resize ``planes``; return them in display order."""
        if self._field.kind == "fits":
            g, r, i = planes
            p = self.params
            rgb = _lupton_rgb(g, r, i, (p["scale_g"], p["scale_r"], p["scale_i"]),
                              p["stretch"], p["Q"]).astype(np.float32)
        else:
            rgb = np.moveaxis(np.clip(planes, 0, 1), 0, -1) * 255.0
        out = _resize(rgb, self.params["size"])
        if self.origin == "lower":  # FITS row order: flip to row 0 at the top
            out = np.ascontiguousarray(out[::-1])
        return out

    @cached_property
    def image(self):
        """The (size, size, 3) uint8 colour cutout, in display order (row 0 at the top)."""
        return self._render(self.crop_data)

    @cached_property
    def background(self):
        """The (size, size, 3) uint8 background patch, processed like `image`."""
        return self._render(self.background_data)

    @property
    def meta(self):
        """Alias of `params`."""
        return self.params

    def as_array(self, channels_first=True, background=False):
        """
        The cutout (or background patch) as float32 in [0, 1], in display order.

        Parameters
        ----------
        channels_first : bool, optional
            Return (3, size, size) (PyTorch order) rather than
            (size, size, 3).
        background : bool, optional
            Return the background patch instead of the cutout.

        Returns
        -------
        array : `~numpy.ndarray`
            float32 array in [0, 1].
        """
        img = (self.background if background else self.image).astype(np.float32) / 255.0
        return np.ascontiguousarray(np.moveaxis(img, -1, 0)) if channels_first else img

    def to_tensor(self, background=False):
        """
        The cutout (or background patch) as a (3, size, size) float32 tensor in [0, 1].

        Rows are in display order (row 0 at the top), as for `image`.

        Parameters
        ----------
        background : bool, optional
            Return the background patch instead of the cutout.

        Returns
        -------
        tensor : `torch.Tensor`
        """
        import torch

        return torch.from_numpy(self.as_array(channels_first=True, background=background))

    #: Keywords of `header_keywords` that describe one run (the package
    #: version, the seed of the sky-pixel draws) or a per-galaxy outcome
    #: (pieces merged back, the deblending spacing and background
    #: subtraction actually used, the radius searched for the target), not
    #: how the images were made: they are not compared when checking that
    #: two sets of cutouts match (`~galmorphsearch.preprocessing.recipe_differences`).
    #: The same as `CutoutRecipe.RUN_KEYWORDS`.
    RUN_KEYWORDS = RUN_KEYWORDS

    def header_keywords(self, comments=False):
        """
        The preprocessing parameters as flat FITS keywords (8 characters at most).

        Parameters
        ----------
        comments : bool, optional
            Return ``(value, comment)`` tuples, as accepted by
            `~astropy.io.fits.Header`, instead of bare values.

        Returns
        -------
        keywords : dict
            Upper-case keyword to value (`None` for an unset seed).

        Examples
        --------
        >>> from galmorphsearch.preprocessing import GalaxyCutout
        >>> sorted(GalaxyCutout.header_keyword_names())[:3]
        ['BKGBOX', 'BKGMODE', 'BKGSUB']
        """
        return _header_keywords(self.params, comments)

    @staticmethod
    def header_keyword_names():
        """
        Map of FITS keyword to `params` key of every recorded parameter.

        Returns
        -------
        names : dict
        """
        return {keyword: key for key, keyword, _ in _HEADER_KEYWORDS}

    def __repr__(self):
        return (f"<{type(self).__name__}(position=({self.position[0]:.1f}, "
                f"{self.position[1]:.1f}), kron_radius={self.kron_radius:.2f}, "
                f"crop_size={self.crop_size}, size={self.params['size']}, "
                f"flag={self.flag!r})>")

    # ------------------------------------------------------------------ plot

    def plot(self, fig=None):
        """
        Show the preprocessing steps side by side.

        Panels: input (r band or luminance) around the crop; the
        segmentation with the Kron ellipse (:math:`R_K`) and the crop
        square; the masked (and rotated) crop; the final colour cutout; the
        background patch. Every panel is drawn in the orientation of
        `image`: input-grid panels with ``origin=cutout.origin``, the
        outputs in display order.

        Parameters
        ----------
        fig : `matplotlib.figure.Figure`, optional
            Figure to draw in; a new 15 x 3.4 inch figure by default.

        Returns
        -------
        fig : `matplotlib.figure.Figure`
        axes : list of `matplotlib.axes.Axes`
        """
        import matplotlib.pyplot as plt
        from astropy.visualization import AsinhStretch, ImageNormalize, PercentileInterval
        from matplotlib.patches import Ellipse, Polygon

        if fig is None:
            fig = plt.figure(figsize=(15, 3.4))
        axes = fig.subplots(1, 5)
        field = self._field
        gx, gy = self._grid_xy
        pad = max(self.crop_size // 4, 4)
        ny, nx = field.shape
        x0 = max(int(np.floor(gx.min())) - pad, 0)
        x1 = min(int(np.ceil(gx.max())) + pad + 1, nx)
        y0 = max(int(np.floor(gy.min())) - pad, 0)
        y1 = min(int(np.ceil(gy.max())) + pad + 1, ny)
        extent = (x0 - 0.5, x1 - 0.5, y0 - 0.5, y1 - 0.5)
        if self.origin == "upper":
            extent = (x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5)
        det = field.detection[y0:y1, x0:x1]
        norm = ImageNormalize(det, interval=PercentileInterval(99.5), stretch=AsinhStretch(0.05))
        band = "r band" if field.kind == "fits" else "luminance"
        axes[0].imshow(det, origin=self.origin, cmap="gray", norm=norm, extent=extent)
        axes[0].set_title(f"input ({band})")
        if self.segmentation is not None:
            seg = self.segmentation.data[y0:y1, x0:x1]
            cmap = self.segmentation.make_cmap(seed=0)
            axes[1].imshow(seg, origin=self.origin, cmap=cmap, interpolation="nearest",
                           extent=extent, vmin=0, vmax=self.segmentation.max_label)
        else:
            axes[1].imshow(np.zeros_like(det), origin=self.origin, cmap="gray", extent=extent)
        corners = np.array([[gx[0, 0], gy[0, 0]], [gx[0, -1], gy[0, -1]],
                            [gx[-1, -1], gy[-1, -1]], [gx[-1, 0], gy[-1, 0]]])
        axes[1].add_patch(Polygon(corners, closed=True, fill=False, color="white", lw=1.5))
        if np.isfinite(self.kron_radius):
            a, b = self._axes
            ratio = b / a if a > 0 else 1.0
            axes[1].add_patch(Ellipse(self.centroid, 2 * self.kron_radius,
                                      2 * self.kron_radius * ratio,
                                      angle=self.orientation.to_value(u.deg), fill=False,
                                      color="red", lw=1.5))
        axes[1].set_xlim(extent[0], extent[1])
        axes[1].set_ylim(extent[2], extent[3])
        axes[1].set_title("segmentation, Kron, crop")
        plane = self.crop_data[1] if field.kind == "fits" else self.crop_data.mean(axis=0)
        norm2 = ImageNormalize(plane, interval=PercentileInterval(99.5),
                               stretch=AsinhStretch(0.05))
        axes[2].imshow(plane, origin=self.origin, cmap="gray", norm=norm2)
        axes[2].contour(self.mask, levels=[0.5], colors="cyan", linewidths=0.7,
                        origin=self.origin)
        axes[2].set_title("masked crop" + (" (rotated)" if self._angle else ""))
        # image and background are in display order (row 0 at the top)
        axes[3].imshow(self.image, origin="upper")
        axes[3].set_title(f"cutout {self.params['size']}px, flag={int(self.flag)}")
        axes[4].imshow(self.background, origin="upper")
        axes[4].set_title("background patch")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        return fig, list(axes)


# ---------------------------------------------------------------------- helpers


def _pixel_position(position, wcs, shape):
    """Zero-based (x, y) of ``position``, checked to lie on the image."""
    if isinstance(position, SkyCoord):
        if wcs is None:
            msg = ("the position is a SkyCoord but the images have no WCS: pass wcs=... or "
                   "give the position as pixels (x, y)")
            raise ValueError(msg)
        if not position.isscalar:
            msg = "position must be a single SkyCoord, not an array (see make_cutouts)"
            raise ValueError(msg)
        try:
            x, y = (float(v) for v in wcs.world_to_pixel(position))
        except Exception as exc:  # wcslib or frame errors: the WCS is at fault
            msg = f"the position {position} cannot be converted to pixels with the WCS: {exc}"
            raise ValueError(msg) from exc
    else:
        try:
            x, y = (float(v) for v in position)
        except (TypeError, ValueError) as exc:
            msg = (f"position must be a SkyCoord or a pixel position (x, y), got "
                   f"{position!r}")
            raise TypeError(msg) from exc
    ny, nx = shape
    if not (np.isfinite(x) and np.isfinite(y)):
        msg = f"the position (x, y) = ({x}, {y}) is not finite"
        raise ValueError(msg)
    if not (-0.5 <= x < nx - 0.5 and -0.5 <= y < ny - 0.5):
        msg = (f"the position (x, y) = ({x:.1f}, {y:.1f}) lies off the image "
               f"({nx} x {ny} pixels)")
        raise ValueError(msg)
    return x, y


def _read_bands(g, r, i, wcs):
    """Read and check the g, r, i bands; return the planes and the common WCS."""
    bands = {}
    wcss = {}
    infos = {}
    for name, band in (("g", g), ("r", r), ("i", i)):
        bands[name], wcss[name], infos[name] = _read_band(band, name)
    _check_distinct_files(infos)
    _check_filters(infos)
    _check_distinct_data(bands, infos)
    shapes = {name: data.shape for name, data in bands.items()}
    if len(set(shapes.values())) != 1:
        msg = ("the g, r and i images must have the same shape, got "
               + ", ".join(f"{k}: {v[1]}x{v[0]}" for k, v in shapes.items()))
        raise ValueError(msg)
    shape = bands["r"].shape
    if wcs is None:
        given = [(name, w) for name, w in wcss.items() if w is not None]
        if given:
            ref_name, wcs = given[0]
            for name, other in given[1:]:
                if not _same_grid(wcs, other, shape):
                    msg = (f"the WCS of the {name} band differs from that of the {ref_name} "
                           "band: the images must share one pixel grid (reproject them "
                           "first, e.g. with the reproject package)")
                    raise ValueError(msg)
    elif not getattr(wcs, "has_celestial", False):
        msg = "wcs must be a celestial astropy.wcs.WCS"
        raise TypeError(msg)
    return [bands["g"], bands["r"], bands["i"]], wcs


def _check_distinct_files(infos):
    """Refuse one file given for two bands (a copy-paste slip in the arguments)."""
    paths = [(name, info["path"]) for name, info in infos.items() if info["path"]]
    for k, (name1, path1) in enumerate(paths):
        for name2, path2 in paths[k + 1:]:
            try:
                same = os.path.samefile(path1, path2)
            except OSError:
                same = False
            if same:
                msg = (f"the same file {path1!r} is given as the {name1} and the {name2} "
                       "band: give one image per band (g, r, i)")
                raise ValueError(msg)


def _check_distinct_data(bands, infos):
    """
    Refuse two band files that hold identical pixels.

    Images of one field taken through two filters are never identical
    pixel for pixel: two such files are copies of one image (under
    another name, or compressed differently) given as two bands. Only
    files are compared (arrays, HDUs and NDData may legitimately repeat
    one image, e.g. for a grey cutout); the arrays are already in memory.
    """
    files = [name for name, info in infos.items() if info["path"]]
    for k, name1 in enumerate(files):
        for name2 in files[k + 1:]:
            if np.array_equal(bands[name1], bands[name2], equal_nan=True):
                msg = (f"{infos[name1]['what']} and {infos[name2]['what']} hold identical "
                       f"pixel data: one image (copied under two names?) is given as the "
                       f"{name1} and the {name2} band; give one image per band (g, r, i)")
                raise ValueError(msg)


def _check_filters(infos):
    """
    Check the filter keywords of the bands against g, r and i.

    The keyword of each band is ``FILTER``, ``BAND`` or ``FILTNAM``, from
    its image HDU or else from the primary header of its file (see
    `_header_filter`).

    A keyword that names a band (see `_filter_band`) must name the band it
    is given as; unrecognised or missing keywords are not checked. When
    all three bands carry the same recognised filter the keyword cannot
    tell them apart (a header copied from one band to the others, as in
    the bundled HCG 88 files): it carries no information and is ignored,
    silently, since nothing about the images is known to be wrong.

    Raises
    ------
    ValueError
        Some band's keyword names another band: the bands are in the
        wrong order (a permutation of g, r, i), a band is given twice, or
        an image of another band (u, z, y) is given. The message lists
        every band with its input and ``FILTER`` value.
    """
    claims = {name: _filter_band(info["filter"]) for name, info in infos.items()}
    known = {name: band for name, band in claims.items() if band is not None}
    if len(known) == 3 and len(set(known.values())) == 1:
        return  # a copied header: no information about which band is which
    wrong = [name for name, band in known.items() if band != name]
    if not wrong:
        return
    listing = "; ".join(f"{info['what']} has {info['filter_keyword']}={info['filter']!r}"
                        for name, info in infos.items() if info["filter"] is not None)
    if len(known) == 3 and sorted(known.values()) == ["g", "i", "r"]:
        problem = ("the bands are given in the wrong order ("
                   + ", ".join(f"the image given as {name} is the {known[name]} band"
                               for name in wrong)
                   + "): pass the images whose keyword says g, r and i as the g, r and i "
                   "arguments")
    else:
        problem = ", ".join(f"the {name} band is a {known[name]}-band image" for name in wrong)
    keywords = sorted({info["filter_keyword"] for info in infos.values()
                       if info["filter_keyword"]})
    msg = (f"the {'/'.join(keywords)} keywords do not match the bands: {problem} "
           f"({listing}). If the keywords themselves are wrong (e.g. a header copied from "
           f"another band), correct or delete {' and '.join(keywords)}, or pass the data as "
           "arrays (with wcs=...)")
    raise ValueError(msg)


def _fits_field(planes, wcs, params):
    """Fill holes in and background-subtract the bands; detect sources."""
    nonfinite = ~np.isfinite(planes[0]) | ~np.isfinite(planes[1]) | ~np.isfinite(planes[2])
    saturated = None
    level = params.get("saturation_level")
    if level is not None:
        with np.errstate(invalid="ignore"):
            saturated = (planes[0] >= level) | (planes[1] >= level) | (planes[2] >= level)
    # enclosed NaN/inf holes (e.g. a saturated core) are interpolated before
    # anything else, so that they neither split nor shift the target
    planes, bad = _fill_holes(planes, nonfinite)
    scale_mismatch = _band_scale_mismatch(planes, nonfinite)
    planes, subtracted = _subtract_background(planes, nonfinite, params["subtract_background"],
                                              params["box_size"])
    params["background_subtracted"] = subtracted
    field = _Field(planes, planes[1], bad, nonfinite=nonfinite, kind="fits", wcs=wcs,
                   saturated=saturated, nsigma=params["nsigma"], npixels=params["npixels"],
                   kernel_fwhm=params["kernel_fwhm"])
    field.scale_mismatch = scale_mismatch
    return field


def _check_blend(field, unmerged, segm, label, merged, kron, centroid, flag):
    """
    Set ``BLENDED`` when the target is probably two sources.

    Either the target's segment as deblended (``unmerged``, before merging
    fragments) holds a second bright, well separated peak within a Kron
    radius of the centroid (`_second_peak`), or merging fragments back
    (into ``segm``) moved the centroid by more than ``_BLEND_SHIFT`` Kron
    radii of the target alone and a merged piece holds such a peak.
    """
    before = unmerged.data == label
    peak = _second_peak(field.convolved, before, field.rms, centroid, kron)
    if peak is not None:
        px, py, ratio, dip = peak
        return _raise_flag(
            flag, CutoutFlag.BLENDED,
            f"the target is probably blended: its segment holds a second peak at (x, y) = "
            f"({px:.0f}, {py:.0f}), {ratio:.2f} times as bright as its main peak and "
            f"separated from it by a dip of {dip:.0%}, which deblending did not split off")
    if not merged:
        return flag
    kron0, centroid0, *_ = _measure(field.detection, field.bad, unmerged, label)
    shift = math.hypot(centroid[0] - centroid0[0], centroid[1] - centroid0[1])
    if shift < max(_BLEND_SHIFT * kron0, _BLEND_MIN_SHIFT):
        return flag
    after = segm.data == label
    peak = _second_peak(field.convolved, after, field.rms, candidates=after & ~before,
                        ratio=_BLEND_MERGED_RATIO, dip=_BLEND_MERGED_DIP)
    if peak is None:
        return flag
    px, py, ratio, _ = peak
    return _raise_flag(
        flag, CutoutFlag.BLENDED,
        f"the target is probably blended with a neighbour: merging {len(merged)} deblended "
        f"piece(s) back into it, one with a distinct peak at (x, y) = ({px:.0f}, {py:.0f}), "
        f"{ratio:.2f} times as bright as the target's, moved its centroid by {shift:.1f} "
        f"pixels ({shift / kron0:.2f} Kron radii) and its Kron radius from {kron0:.1f} to "
        f"{kron:.1f} pixels")


def _check_positions(positions, wcs, shape):
    """
    Check every position of `make_cutouts` before any cutout is made.

    Returns the positions as a list; raises `TypeError` when ``positions``
    is not a sequence of positions and one `ValueError` naming every
    invalid one by its index.
    """
    if isinstance(positions, SkyCoord):
        return [positions] if positions.isscalar else list(positions)
    if isinstance(positions, (str, bytes)) or not np.iterable(positions):
        msg = (f"positions must be a SkyCoord or a sequence of (x, y) pixel positions, "
               f"got {type(positions).__name__}")
        raise TypeError(msg)
    positions = list(positions)
    if positions and all(isinstance(p, (int, float, np.integer, np.floating))
                         for p in positions):
        msg = (f"positions must be a sequence of positions, got the numbers {positions!r}; "
               "for a single position give [(x, y)]")
        raise TypeError(msg)
    errors = []
    for index, position in enumerate(positions):
        try:
            _pixel_position(position, wcs, shape)
        except (TypeError, ValueError) as exc:
            errors.append((index, str(exc)))
    if errors:
        details = "; ".join(f"[{index}] {text}" for index, text in errors[:5])
        more = f"; and {len(errors) - 5} more" if len(errors) > 5 else ""
        msg = (f"{len(errors)} of the {len(positions)} positions are invalid, at indices "
               f"{[index for index, _ in errors]}: {details}{more}")
        raise ValueError(msg)
    return positions


def make_cutouts(g, r, i, positions, *, wcs=None, progress_bar=False, **kwargs):
    """
    Make many `GalaxyCutout` from the same g, r, i images.

    The images are read, background-subtracted and searched for sources
    once, then every position is cut from them. The cutouts are those that
    `GalaxyCutout` makes, except that the random background-pixel draws
    continue one generator, seeded once by ``seed``, from cutout to cutout.

    Parameters
    ----------
    g, r, i : str, path-like, HDU, NDData or array
        The band images, as for `GalaxyCutout`.
    positions : `~astropy.coordinates.SkyCoord` or sequence of (x, y)
        The targets. All of them are checked before any cutout is made.
    wcs : `~astropy.wcs.WCS`, optional
        WCS of the images, when not in the inputs.
    progress_bar : bool, optional
        Show a progress bar (needs tqdm).
    **kwargs
        Any other parameter of `GalaxyCutout`, with the same defaults.

    Returns
    -------
    cutouts : list of `GalaxyCutout`

    Raises
    ------
    ValueError
        Some positions lie off the image or are not finite (the message
        gives their indices), or as for `GalaxyCutout`.
    TypeError
        ``positions`` is not a `~astropy.coordinates.SkyCoord` or a
        sequence of positions, a parameter is unknown, or as for
        `GalaxyCutout`.

    Examples
    --------
    >>> from galmorphsearch.preprocessing import make_cutouts
    >>> path = 'galmorphsearch/data/hcg88/reprojected_sdss_{}.fits.bz2'
    >>> cutouts = make_cutouts(*(path.format(b) for b in 'gri'),
    ...                        [(163, 131), (78, 96)], size=64)  # doctest: +SKIP
    """
    params = _check_params(kwargs)
    if isinstance(params["seed"], np.random.Generator):
        rng = params["seed"]
    else:
        rng = np.random.default_rng(params["seed"])
    planes, wcs = _read_bands(g, r, i, wcs)
    positions = _check_positions(positions, wcs, planes[1].shape)
    field = _fits_field(planes, wcs, params)
    cutouts = []
    for position in progress_iter(positions, progress_bar=progress_bar, desc="cutouts"):
        cutout = GalaxyCutout.__new__(GalaxyCutout)
        cutout._build(field, position, {**params, "seed": rng})
        cutout.params["seed"] = params["seed"] if not isinstance(params["seed"],
                                                                  np.random.Generator) else None
        cutouts.append(cutout)
    return cutouts
