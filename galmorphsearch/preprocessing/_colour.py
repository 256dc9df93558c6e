# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Colour rendering and resizing of cutouts (private)."""

import numpy as np

__all__ = []

# make_lupton_rgb maps intensity I to arcsinh(Q I / stretch) * slope with
# slope = frac / arcsinh(frac Q), frac = 0.1 (astropy's AsinhMapping)
_LUPTON_FRAC = 0.1


def _lupton_rgb(g, r, i, scales, stretch, Q):
    """
    Render g, r, i fluxes as a uint8 colour image with make_lupton_rgb.

    Parameters
    ----------
    g, r, i : `~numpy.ndarray`
        Band images (background subtracted).
    scales : tuple of float
        Multipliers of (g, r, i); i goes to red, r to green and g to blue.
    stretch, Q : float
        Parameters of `~astropy.visualization.make_lupton_rgb`.

    Returns
    -------
    rgb : `~numpy.ndarray`
        (ny, nx, 3) uint8 image.
    """
    from astropy.visualization import make_lupton_rgb

    sg, sr, si = scales
    with np.errstate(invalid="ignore", divide="ignore"):
        return make_lupton_rgb(i * si, r * sr, g * sg, minimum=0, stretch=stretch, Q=Q)


def _linearize(value, stretch, Q):
    """
    Undo the make_lupton_rgb arcsinh stretch of a [0, 1] intensity.

    Used to measure Kron radii of ready-made colour images on an intensity
    scale close to linear flux; the result is in units of ``stretch``.
    """
    slope = _LUPTON_FRAC / np.arcsinh(_LUPTON_FRAC * Q)
    return np.sinh(np.asarray(value) / slope) * stretch / Q


def _resize(image, size):
    """
    Resize an (n, m, 3) image in 0..255 to (size, size, 3) uint8.

    Uses `torchvision.transforms.v2.functional.resize` with bilinear
    interpolation and antialiasing.
    """
    import torch
    from torchvision.transforms.v2.functional import resize

    arr = np.ascontiguousarray(np.moveaxis(np.asarray(image, dtype=np.float32), -1, 0))
    tensor = torch.from_numpy(arr)
    if tensor.shape[-2:] != (size, size):
        tensor = resize(tensor, [size, size], antialias=True)
    out = tensor.clamp(0, 255).round().to(torch.uint8).numpy()
    return np.ascontiguousarray(np.moveaxis(out, 0, -1))
