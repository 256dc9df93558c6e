# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Background, source detection, target selection and shape measurement
(private helpers of `GalaxyCutout`, built on photutils segmentation).
"""

import inspect
import warnings

import numpy as np
from astropy.convolution import Gaussian2DKernel, convolve, interpolate_replace_nans
from astropy.stats import SigmaClip, sigma_clipped_stats
from astropy.utils.exceptions import AstropyUserWarning
from photutils.aperture import ApertureStats, CircularAnnulus
from photutils.background import Background2D, MedianBackground
from photutils.segmentation import (
    SourceCatalog,
    deblend_sources,
    detect_sources,
    make_2dgaussian_kernel,
)
from photutils.utils.exceptions import NoDetectionsWarning
from scipy import ndimage

# photutils 3.0 renamed nlevels to n_levels (the old name is deprecated)
_NLEVELS_KEYWORD = ("n_levels" if "n_levels" in inspect.signature(deblend_sources).parameters
                    else "nlevels")

__all__ = []

# non-finite holes are filled by Gaussian-weighted interpolation of the
# surrounding pixels (sigma in pixels), repeated until the hole is closed;
# holes reaching farther than _FILL_MAX_RADIUS pixels from good data, and
# regions touching the image border (off-footprint padding of reprojected
# images), are left unfilled
_FILL_STDDEV = 1.0
_FILL_MAX_RADIUS = 32.0


def _fill_holes(planes, bad):
    """
    Interpolate the enclosed non-finite holes of the planes.

    Every connected region of ``bad`` (8-connectivity) that does not touch
    the image border and lies within ``_FILL_MAX_RADIUS`` pixels of good
    data is filled, in each plane, by
    `~astropy.convolution.interpolate_replace_nans` with a Gaussian kernel
    of ``_FILL_STDDEV`` pixels, iterated so that holes larger than the
    kernel are closed from their rim inwards. Other bad pixels never
    contribute to the interpolation.

    Parameters
    ----------
    planes : list of `~numpy.ndarray`
        The band images (not modified).
    bad : `~numpy.ndarray` of bool
        Pixels that are non-finite in any plane.

    Returns
    -------
    planes : list of `~numpy.ndarray`
        Copies of the planes with the holes filled (the inputs themselves
        when nothing was filled).
    unfilled : `~numpy.ndarray` of bool
        The bad pixels left unfilled.
    """
    if not bad.any():
        return planes, bad
    labels, _ = ndimage.label(bad, structure=np.ones((3, 3), bool))
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    kernel = Gaussian2DKernel(_FILL_STDDEV)
    reach = kernel.shape[0] // 2
    ny, nx = bad.shape
    out = [np.where(bad, np.nan, p) for p in planes]
    unfilled = bad.copy()
    for lab, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
        if lab in border:
            continue
        hole = labels[ys, xs] == lab
        radius = float(ndimage.distance_transform_edt(np.pad(hole, 1)).max())
        if radius > _FILL_MAX_RADIUS:
            continue
        win = (slice(max(ys.start - reach, 0), min(ys.stop + reach, ny)),
               slice(max(xs.start - reach, 0), min(xs.stop + reach, nx)))
        hole = labels[win] == lab
        others = bad[win] & ~hole
        for plane in out:
            local = plane[win].copy()
            for _ in range(int(np.ceil(radius / reach)) + 2):
                with warnings.catch_warnings():
                    # a hole wider than the kernel is closed over iterations
                    warnings.filterwarnings("ignore", message="nan_treatment='interpolate'",
                                            category=AstropyUserWarning)
                    local = interpolate_replace_nans(local, kernel, boundary="extend")
                local[others] = np.nan
                if np.isfinite(local[hole]).all():
                    break
            plane[win][hole] = local[hole]
        filled = np.logical_and.reduce([np.isfinite(plane[win]) for plane in out])
        unfilled[win] &= ~(hole & filled)
    return out, unfilled


def _sky_stats(data, bad):
    """Sigma-clipped median and standard deviation of the good pixels."""
    good = data[~bad]
    if good.size == 0:
        return 0.0, 0.0
    _, median, std = sigma_clipped_stats(good, sigma=3.0, maxiters=10)
    return float(median), float(std)


def _background_map(data, bad, box_size):
    """
    A 2D background map of ``data`` (photutils `Background2D`).

    Falls back to the scalar sigma-clipped median when the image is too
    small for two boxes or when too few boxes hold enough unmasked pixels.
    """
    ny, nx = data.shape
    box = int(min(box_size, ny // 2, nx // 2))
    median, _ = _sky_stats(data, bad)
    if box < 8:
        return np.full(data.shape, median)
    filled = np.where(bad, median, data)
    try:
        bkg = Background2D(filled, box, mask=bad, filter_size=(3, 3),
                           sigma_clip=SigmaClip(sigma=3.0, maxiters=10),
                           bkg_estimator=MedianBackground(), exclude_percentile=50.0)
    except ValueError:
        return np.full(data.shape, median)
    return np.asarray(bkg.background, dtype=np.float64)


def _subtract_background(planes, bad, mode, box_size, auto_threshold=1.0):
    """
    Subtract the sky from each plane according to ``mode``.

    Parameters
    ----------
    planes : list of `~numpy.ndarray`
        The band images.
    bad : `~numpy.ndarray` of bool
        Pixels to ignore.
    mode : {True, False, 'auto'}
        ``'auto'`` subtracts when, in any band, the sigma-clipped median of
        the sky differs from zero by more than ``auto_threshold`` times the
        sigma-clipped standard deviation (a sky level at least as large as
        the pixel noise: raw, not sky-subtracted frames).
    box_size : int
        Box size of `~photutils.background.Background2D`, in pixels.
    auto_threshold : float, optional
        Decision threshold of ``'auto'``.

    Returns
    -------
    planes : list of `~numpy.ndarray`
        The (possibly) background-subtracted planes.
    subtracted : bool
        Whether the background was subtracted.
    """
    if mode == "auto":
        subtract = False
        for data in planes:
            median, std = _sky_stats(data, bad)
            if abs(median) > auto_threshold * std:
                subtract = True
    else:
        subtract = bool(mode)
    if not subtract:
        return planes, False
    return [data - _background_map(data, bad, box_size) for data in planes], True


def _detect(data, bad, nsigma, npixels, kernel_fwhm):
    """
    Detect sources in ``data`` (background subtracted).

    Returns
    -------
    segm : `~photutils.segmentation.SegmentationImage` or `None`
        `None` when nothing is detected.
    convolved : `~numpy.ndarray`
        The smoothed detection image.
    rms : float
        The sigma-clipped sky noise of ``data``.
    """
    _, rms = _sky_stats(data, bad)
    filled = np.where(bad, 0.0, data)
    if kernel_fwhm and kernel_fwhm > 0:
        size = 2 * int(np.ceil(1.5 * kernel_fwhm)) + 1
        kernel = make_2dgaussian_kernel(kernel_fwhm, size=size)
        convolved = convolve(filled, kernel, boundary="extend")
    else:
        convolved = filled
    if not np.isfinite(rms) or rms <= 0:
        return None, convolved, rms
    with warnings.catch_warnings():
        # an image without sources is reported through EMPTY_IMAGE instead
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segm = detect_sources(convolved, nsigma * rms, npixels, mask=bad)
    return segm, convolved, rms


def _label_near(segm_data, x, y, tolerance):
    """
    The label under (x, y), else that of the nearest source pixel within
    ``tolerance`` pixels, else 0.
    """
    ny, nx = segm_data.shape
    ix, iy = int(round(x)), int(round(y))
    if 0 <= ix < nx and 0 <= iy < ny and segm_data[iy, ix] > 0:
        return int(segm_data[iy, ix])
    r = int(np.ceil(tolerance))
    if r <= 0:
        return 0
    x0, x1 = max(ix - r, 0), min(ix + r + 1, nx)
    y0, y1 = max(iy - r, 0), min(iy + r + 1, ny)
    local = segm_data[y0:y1, x0:x1]
    yy, xx = np.nonzero(local)
    if yy.size == 0:
        return 0
    dist = np.hypot(xx + x0 - x, yy + y0 - y)
    best = np.argmin(dist)
    if dist[best] > tolerance:
        return 0
    return int(local[yy[best], xx[best]])


def _deblend_target(convolved, segm, label, npixels, contrast, n_levels=16,
                    mode="exponential"):
    """
    Deblend the single segment ``label`` with photutils.

    Parameters
    ----------
    convolved : `~numpy.ndarray`
        The smoothed detection image that ``segm`` was made from.
    segm : `~photutils.segmentation.SegmentationImage`
        The segmentation of the whole image.
    label : int
        The target's label; no other segment is touched.
    npixels : int
        Minimum number of connected pixels of a deblended child.
    contrast, n_levels, mode
        As for `~photutils.segmentation.deblend_sources`.

    Returns
    -------
    segm : `~photutils.segmentation.SegmentationImage`
        The new segmentation image (relabelled consecutively by photutils).
    mode_used : str
        ``mode``, or ``'linear'`` where photutils switched to linear
        thresholds for this segment (its exponential levels gave more than
        200 markers, or its minimum was not positive).
    """
    with warnings.catch_warnings():
        # photutils announces a switch from exponential to linear levels with
        # an AstropyUserWarning and records it in ``info``; it is reported in
        # the returned mode (and so in the cutout's params) instead
        warnings.filterwarnings("ignore", message="The deblending mode of one or more",
                                category=AstropyUserWarning)
        deblended = deblend_sources(convolved, segm, npixels, labels=[label],
                                    contrast=contrast, mode=mode, progress_bar=False,
                                    **{_NLEVELS_KEYWORD: n_levels})
    info = getattr(deblended, "info", None) or {}
    mode_used = "linear" if info.get("warnings") else mode
    return deblended, mode_used


def _merge_fragments(convolved, segm, label, parent, radius, threshold):
    """
    Give back to the target the deblended children that are parts of it.

    A child of the target's parent segment is a distinct source (a star or
    another galaxy) when its peak stands out as a compact source on the
    smoothed detection image: its *peak contrast*

    .. math:: C = 1 - \\mathrm{median}_{\\rm annulus} / \\mathrm{peak},

    with the median taken in the annulus of radii 0.75 and 1.25 times
    ``radius`` around the peak (photutils `ApertureStats`), is at least
    ``threshold``. A PSF-sized source (star, compact neighbour) falls to a
    small fraction of its peak within a few pixels (C of 0.6 to 1), while
    a piece of spiral arm, bar or disc, elongated along the arm or sitting
    on a smooth slope, keeps most of its peak level in the annulus (C below
    about 0.45; a peak on the basin's edge, i.e. not a local maximum,
    gives C < 0). A child whose peak is at least the target's peak is
    always a distinct source (a bright, saturated or flat-topped
    neighbour: a piece of the galaxy is fainter than its centre). The
    other children are relabelled as the target.

    Parameters
    ----------
    convolved : `~numpy.ndarray`
        The smoothed detection image that was deblended.
    segm : `~photutils.segmentation.SegmentationImage`
        The deblended segmentation image.
    label : int
        The target child's label.
    parent : `~numpy.ndarray` of bool
        Footprint of the target's segment before deblending.
    radius : float
        Mid radius of the annulus, in pixels.
    threshold : float
        Minimum peak contrast of a distinct source.

    Returns
    -------
    segm : `~photutils.segmentation.SegmentationImage`
        The segmentation image with the fragments merged into ``label``
        (a copy; the input is left alone).
    merged : list of int
        Labels (in the input) of the children merged into the target.
    contrasts : dict
        Child label to its peak contrast, for every child other than the
        target.
    """
    labels = [int(v) for v in np.unique(segm.data[parent]) if v not in (0, label)]
    if not labels:
        return segm, [], {}
    cat = SourceCatalog(convolved, segm)
    select = cat.select_labels if hasattr(type(cat), "select_labels") else cat.get_labels
    sub = select(labels)
    # photutils 3.0 renamed maxval_[xy]index to max_value_[xy]index
    prefix = "max_value" if hasattr(type(sub), "max_value_xindex") else "maxval"
    xy = np.column_stack([np.atleast_1d(getattr(sub, f"{prefix}_xindex")),
                          np.atleast_1d(getattr(sub, f"{prefix}_yindex"))])
    peaks = np.atleast_1d(np.asarray(getattr(sub.max_value, "value", sub.max_value), float))
    annulus = CircularAnnulus(xy.astype(float), 0.75 * radius, 1.25 * radius)
    stats = ApertureStats(convolved, annulus)
    medians = np.atleast_1d(np.asarray(stats.median, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        contrast = np.where(peaks > 0, 1.0 - medians / peaks, -np.inf)
    contrast = np.nan_to_num(contrast, nan=-np.inf)
    contrasts = {lab: float(c) for lab, c in zip(labels, contrast, strict=True)}
    # a piece of the galaxy is never brighter than the galaxy's own peak: a
    # child that is (a bright, saturated or flat-topped neighbour) stays
    target_peak = float(np.max(convolved[segm.data == label]))
    merged = [lab for lab, c, p in zip(labels, contrast, peaks, strict=True)
              if c < threshold and p < target_peak]
    if merged:
        segm = segm.copy()
        segm.reassign_labels(merged, label, relabel=False)
    return segm, merged, contrasts


def _measure(data, bad, segm, label):
    """
    Kron radius, centroid and orientation of one source.

    Returns
    -------
    kron_radius : float
        Kron radius along the semimajor axis, in pixels (the unscaled
        photutils Kron radius times the semimajor axis of the moment
        ellipse).
    centroid : tuple of float
        (x, y) centroid.
    orientation : float
        Angle of the major axis from the +x axis, counter-clockwise, in
        degrees, in (-90, 90].
    semimajor, semiminor : float
        Moment-ellipse axes (standard deviations), in pixels.
    """
    filled = np.where(bad, 0.0, data)
    full = SourceCatalog(filled, segm, mask=bad)
    # photutils >= 3.0 renamed get_label to select_label
    select = full.select_label if hasattr(type(full), "select_label") else full.get_label
    cat = select(label)
    xc, yc = (float(v) for v in np.ravel(cat.centroid))
    cov = np.asarray(cat.covariance, dtype=np.float64).reshape(2, 2)
    evals = np.linalg.eigvalsh(cov)
    a = float(np.sqrt(max(evals[-1], 0.0)))
    b = float(np.sqrt(max(evals[0], 0.0)))
    theta = 0.5 * np.degrees(np.arctan2(2.0 * cov[0, 1], cov[0, 0] - cov[1, 1]))
    if theta <= -90.0:
        theta += 180.0
    kron = float(np.asarray(getattr(cat.kron_radius, "value", cat.kron_radius)))
    if not np.isfinite(kron) or kron <= 0:
        # unphysical Kron radius (photutils returns NaN): use the size of
        # the moment ellipse of an exponential disc instead
        kron = 2.0
    if not np.isfinite(xc) or not np.isfinite(yc):
        ys, xs = np.nonzero(segm.data == label)
        xc, yc = float(xs.mean()), float(ys.mean())
    return kron * a, (xc, yc), float(theta), a, b


def _dilate(mask, iterations):
    """Binary dilation with a 3x3 structuring element."""
    if iterations <= 0 or not mask.any():
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool),
                                   iterations=int(iterations))
