# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Crop/rotation sampling grids and background-window search (private)."""

import numpy as np
from scipy import ndimage

__all__ = []


def _grid(centre, n, angle, snap):
    """
    Pixel coordinates in the input image of an (n, n) output grid.

    The output column axis points along ``angle`` (degrees, counter-clockwise
    from +x), so a source whose major axis has that orientation comes out
    horizontal. With ``snap`` (no rotation) the centre is moved to the
    nearest position that puts the grid on whole pixels, so that cropping
    does not interpolate.

    Returns
    -------
    x, y : `~numpy.ndarray`
        (n, n) arrays of input-image coordinates.
    centre : tuple of float
        The centre actually used.
    """
    cx, cy = centre
    if snap:
        if n % 2:
            cx, cy = float(np.round(cx)), float(np.round(cy))
        else:
            cx, cy = float(np.floor(cx)) + 0.5, float(np.floor(cy)) + 0.5
    off = np.arange(n) - (n - 1) / 2.0
    u, v = np.meshgrid(off, off)
    t = np.radians(angle)
    c, s = np.cos(t), np.sin(t)
    x = cx + u * c - v * s
    y = cy + u * s + v * c
    return x, y, (cx, cy)


def _region(x, y, shape, margin=2):
    """Slices of the input image that cover the grid, clipped to the image."""
    ny, nx = shape
    x0 = int(np.clip(np.floor(x.min()) - margin, 0, nx))
    x1 = int(np.clip(np.ceil(x.max()) + margin + 1, 0, nx))
    y0 = int(np.clip(np.floor(y.min()) - margin, 0, ny))
    y1 = int(np.clip(np.ceil(y.max()) + margin + 1, 0, ny))
    return slice(y0, max(y1, y0 + 1)), slice(x0, max(x1, x0 + 1))


def _sample(plane, x, y, order):
    """Interpolate ``plane`` at (x, y) (edge values beyond the border)."""
    return ndimage.map_coordinates(plane, [y, x], order=order, mode="nearest")


def _outside(x, y, shape):
    ny, nx = shape
    return (x < -0.5) | (x > nx - 0.5) | (y < -0.5) | (y > ny - 0.5)


def _free_window(busy_integral, width, rng, max_busy_fraction=0.5):
    """
    Top-left corner of a ``width`` x ``width`` window with the fewest busy
    pixels, chosen at random among the best; `None` if the image is too
    small or every window is more than ``max_busy_fraction`` busy.
    """
    ny, nx = busy_integral.shape[0] - 1, busy_integral.shape[1] - 1
    if width > ny or width > nx:
        return None
    s = busy_integral
    counts = s[width:, width:] - s[:-width, width:] - s[width:, :-width] + s[:-width, :-width]
    best = counts.min()
    if best > max_busy_fraction * width * width:
        return None
    iy, ix = np.nonzero(counts == best)
    k = int(rng.integers(iy.size))
    return int(iy[k]), int(ix[k])
