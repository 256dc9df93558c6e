# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Background, source detection, target selection and shape measurement
(private helpers of `GalaxyCutout`, built on photutils segmentation).
"""

import inspect
import math
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


# bands whose robust pixel spreads differ by more than this factor are not in
# the same units: the g, r and i images of one survey differ by a factor of
# about 3 (sky noise and galaxy light alike; 2.6 on the bundled HCG 88 field)
_BAND_SCALE_LIMIT = 100.0
# at most this many pixels per band enter the spread (a regular subsample)
_BAND_SCALE_PIXELS = 200_000


def _band_scales(planes, bad):
    """
    A robust pixel spread of each band, or `None` when it cannot be measured.

    The spread is the normalised median absolute deviation of the good
    pixels (the sky noise, on survey images); where it is 0 in some band
    (noise-free models, mostly empty images) the 99th percentile of the
    absolute deviation from the median is used for every band instead.

    Returns
    -------
    scales : `~numpy.ndarray` or `None`
        One spread per plane, all positive; `None` when some plane has no
        spread at all (constant) or no good pixel.
    """
    mads, tails = [], []
    good = ~bad
    for plane in planes:
        values = plane[good]
        if values.size == 0:
            return None
        if values.size > _BAND_SCALE_PIXELS:
            values = values[:: values.size // _BAND_SCALE_PIXELS + 1]
        dev = np.abs(values - np.median(values))
        mads.append(1.4826 * float(np.median(dev)))
        tails.append(float(np.percentile(dev, 99)))
    for scales in (np.array(mads), np.array(tails)):
        if np.all(np.isfinite(scales)) and np.all(scales > 0):
            return scales
    return None


def _band_scale_mismatch(planes, bad, names="gri"):
    """
    A message when the bands differ in scale by more than `_BAND_SCALE_LIMIT`.

    Returns
    -------
    message : str or `None`
    """
    scales = _band_scales(planes, bad)
    if scales is None:
        return None
    ratio = float(scales.max() / scales.min())
    if not ratio > _BAND_SCALE_LIMIT:
        return None
    spreads = ", ".join(f"{name}: {value:.3g}" for name, value in zip(names, scales,
                                                                        strict=True))
    return (f"the bands differ in scale by a factor of {ratio:.3g} (robust pixel spread "
            f"{spreads}): they are probably not in the same units, and the colours of the "
            "cutout are meaningless")


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


# A second peak in the target's segment makes a blend when it is at least
# _BLEND_PEAK_RATIO of the target's peak on the smoothed detection image and
# is separated from it by a dip of at least _BLEND_DIP of its own height and
# _BLEND_NSIGMA sky sigma (of the unsmoothed image: some 20 sigma of the
# smoothed one), within one Kron radius of the centroid. Pairs of Sersic
# discs that photutils' deblending leaves together have peaks 0.75 to 0.95
# as high and dips of 0.2 to 0.35 at 20 to 50 sigma; the nucleus and bar of
# NGC 6976 (HCG 88c) a dip of 0.10; clumps of synthetic SBd discs peak at
# 0.3; a star on a galaxy's outskirts that deblending left in the segment
# lies beyond the Kron radius. Of 384 synthetic galaxies of the 12 types,
# one clumpy Sd is flagged; of the 554 sources of the HCG 88 field, one
# double source (and none of the three members).
_BLEND_PEAK_RATIO = 0.5
_BLEND_DIP = 0.2
_BLEND_NSIGMA = 5.0
# Merging deblended pieces back has blended a distinct neighbour into the
# target when it moved the centroid by at least _BLEND_SHIFT Kron radii of
# the target alone (and _BLEND_MIN_SHIFT pixels), and a merged piece holds a
# peak as above, but of at least _BLEND_MERGED_RATIO of the target's peak
# and a dip of _BLEND_MERGED_DIP (deblending already found it distinct).
# Neighbours 12 to 16 pixels away move the centroid by 0.5 to 0.75 Kron
# radii, with peaks at 20 to 50 sigma; the arms of synthetic spirals by up to
# 0.48 (clumpy Sd), with peaks under 6 sigma.
_BLEND_SHIFT = 0.4
_BLEND_MIN_SHIFT = 2.0
_BLEND_MERGED_RATIO = 0.3
_BLEND_MERGED_DIP = 0.1


def _saddle(image, inside, a, b, low, high, steps=12):
    """
    The highest level at which pixels ``a`` and ``b`` are connected.

    Bisects between ``low`` and ``high`` (the lower peak) on the
    8-connected regions of ``inside & (image >= level)``; returns ``low``
    when they are not connected even there.
    """
    structure = np.ones((3, 3), bool)
    for _ in range(steps):
        level = 0.5 * (low + high)
        labels, _ = ndimage.label(inside & (image >= level), structure=structure)
        if labels[a] and labels[a] == labels[b]:
            low = level
        else:
            high = level
    return low


def _second_peak(image, target, rms, centre=None, radius=np.inf, candidates=None,
                 ratio=_BLEND_PEAK_RATIO, dip=_BLEND_DIP, nsigma=_BLEND_NSIGMA):
    """
    The brightest secondary peak of ``target`` that makes it a blend, if any.

    Peaks are local maxima of ``image`` (5x5 pixels) inside ``target``; the
    main peak is the highest. A secondary peak counts when it lies in
    ``candidates`` (by default anywhere in ``target``) within ``radius``
    pixels of ``centre`` (x, y), is at least ``ratio`` times the main peak,
    and the dip between them (from its height down to the highest level
    that still connects them, see `_saddle`) is at least ``dip`` times its
    height and ``nsigma`` times ``rms``.

    Returns
    -------
    peak : tuple or `None`
        ``(x, y, ratio, dip)`` of the peak (``dip`` as a fraction of its
        height), or `None`.
    """
    if not target.any() or not np.isfinite(rms):
        return None
    (ys, xs), = ndimage.find_objects(target.astype(np.int8))
    ny, nx = target.shape
    ys = slice(max(ys.start - 2, 0), min(ys.stop + 2, ny))
    xs = slice(max(xs.start - 2, 0), min(xs.stop + 2, nx))
    sub = image[ys, xs]
    inside = target[ys, xs]
    peaks = inside & (sub == ndimage.maximum_filter(sub, size=5, mode="nearest"))
    py, px = np.nonzero(peaks)
    if py.size < 2:
        return None
    order = np.argsort(-sub[py, px], kind="stable")
    py, px = py[order], px[order]
    top = float(sub[py[0], px[0]])
    if not top > 0:
        return None
    floor = float(sub[inside].min())
    allowed = inside if candidates is None else candidates[ys, xs]
    for y, x in zip(py[1:], px[1:], strict=True):
        height = float(sub[y, x])
        if height < ratio * top:
            break
        if not allowed[y, x]:
            continue
        if centre is not None and math.hypot(x + xs.start - centre[0],
                                             y + ys.start - centre[1]) > radius:
            continue
        saddle = _saddle(sub, inside, (py[0], px[0]), (y, x), floor, height)
        depth = height - saddle
        if depth >= dip * height and depth >= nsigma * rms:
            return (float(x + xs.start), float(y + ys.start), height / top, depth / height)
    return None
