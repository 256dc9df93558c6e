# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Turning the many accepted image inputs into batches of tensors (private)."""

import os

import numpy as np
import torch

__all__ = []

_ACCEPTED = ("a GalaxyCutout or a list of them, a (N, H, W, 3) or (H, W, 3) uint8 array, "
             "a (N, 3, H, W) tensor or float array in [0, 1], or a list of image file paths")


class ImageSource:
    """
    Random access to a sequence of images as (B, 3, H, W) tensors.

    ``get(start, stop)`` returns a uint8 or float32 tensor (values in
    [0, 255] or [0, 1]); `to_float` turns it into float32 in [0, 1].
    """

    def __init__(self, n, getter, size=None):
        self.n = n
        self._getter = getter
        self.size = size

    def __len__(self):
        return self.n

    def get(self, start, stop):
        return self._getter(start, stop)


def to_float(batch):
    """A uint8 or float batch as float32 in [0, 1]."""
    if batch.dtype == torch.uint8:
        return batch.to(torch.float32).div_(255.0)
    return batch.to(torch.float32)


def resize(batch, size):
    """Resize a float (B, 3, H, W) batch to ``size`` x ``size`` (bilinear, antialiased)."""
    if batch.shape[-2:] == (size, size):
        return batch
    return torch.nn.functional.interpolate(batch, size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=True).clamp_(0, 1)


def image_source(images, *, input_size, background=False):
    """
    Wrap any accepted image input in an `ImageSource`.

    Parameters
    ----------
    images : see `galmorphsearch.model.Encoder.encode`
    input_size : int
        Size that files and cutouts of other sizes are resized to.
    background : bool
        Use the background patch of cutouts.
    """
    from ..preprocessing import GalaxyCutout

    if isinstance(images, GalaxyCutout):
        images = [images]
    if isinstance(images, (str, os.PathLike)):
        images = [images]
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            msg = "no images to encode: the input is empty"
            raise ValueError(msg)
        if all(isinstance(im, GalaxyCutout) for im in images):
            return _cutout_source(images, input_size, background)
        if all(isinstance(im, (str, os.PathLike)) for im in images):
            return _file_source(images, input_size)
        if all(isinstance(im, (np.ndarray, torch.Tensor)) for im in images):
            shapes = {tuple(im.shape) for im in images}
            if len(shapes) > 1:
                msg = f"the images of a list of arrays must share one shape, got {sorted(shapes)}"
                raise ValueError(msg)
            if all(isinstance(im, torch.Tensor) for im in images):
                images = torch.stack(list(images))
            else:
                images = np.stack([np.asarray(im) for im in images])
        else:
            kinds = sorted({type(im).__name__ for im in images})
            msg = f"cannot encode a list of {', '.join(kinds)}: give {_ACCEPTED}"
            raise TypeError(msg)
    if background:
        msg = "background=True needs GalaxyCutout inputs (they carry a background patch)"
        raise ValueError(msg)
    if isinstance(images, torch.Tensor):
        return _array_source(images.detach().to("cpu"), channels_first_default=True)
    if isinstance(images, np.ndarray):
        return _array_source(images, channels_first_default=False)
    msg = f"cannot encode a {type(images).__name__}: give {_ACCEPTED}"
    raise TypeError(msg)


def _array_source(arr, channels_first_default):
    is_tensor = isinstance(arr, torch.Tensor)
    kind = "tensor" if is_tensor else "array"
    ndim = arr.ndim
    if ndim == 3:
        arr = arr[None]
    elif ndim != 4:
        msg = (f"an image {kind} must have 3 (one image) or 4 (a batch) dimensions, got shape "
               f"{tuple(arr.shape)}")
        raise ValueError(msg)
    shape = tuple(arr.shape)
    first, last = shape[1] == 3, shape[-1] == 3
    if first and (channels_first_default or not last):
        channels_first = True
    elif last:
        channels_first = False
    else:
        msg = (f"an image {kind} must hold 3 colour channels, as (N, H, W, 3) or (N, 3, H, W); "
               f"got shape {tuple(arr.shape if ndim == 4 else arr.shape[1:])}")
        raise ValueError(msg)
    if shape[0] == 0:
        msg = "no images to encode: the input is empty"
        raise ValueError(msg)
    h, w = (shape[2], shape[3]) if channels_first else (shape[1], shape[2])
    if h < 8 or w < 8:
        msg = f"images of {h} x {w} pixels are too small to encode"
        raise ValueError(msg)
    dtype = arr.dtype
    if is_tensor:
        if dtype == torch.uint8:
            integer = True
        elif dtype.is_floating_point:
            integer = False
        else:
            msg = f"image tensors must be uint8 or floating point in [0, 1], not {dtype}"
            raise ValueError(msg)
    else:
        if dtype == np.uint8:
            integer = True
        elif dtype.kind == "f":
            integer = False
        else:
            msg = (f"image arrays must be uint8 (0-255) or floating point in [0, 1], "
                   f"not {dtype}")
            raise ValueError(msg)

    def getter(start, stop):
        chunk = arr[start:stop]
        if not is_tensor:
            if not integer and chunk.dtype != np.float32:
                chunk = chunk.astype(np.float32)
            native = chunk.dtype.newbyteorder("=")
            chunk = torch.from_numpy(np.ascontiguousarray(chunk, dtype=native))
        if not channels_first:
            chunk = chunk.permute(0, 3, 1, 2)
        if integer:
            return chunk.contiguous()
        chunk = chunk.to(torch.float32).contiguous()
        if not bool(torch.isfinite(chunk).all()):
            msg = f"images {start} to {stop - 1} contain non-finite values (NaN or inf)"
            raise ValueError(msg)
        lo, hi = float(chunk.min()), float(chunk.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            msg = (f"floating-point images must lie in [0, 1]; images {start} to {stop - 1} "
                   f"range from {lo:g} to {hi:g} (give uint8 arrays for 0-255 values)")
            raise ValueError(msg)
        return chunk.clamp_(0, 1)

    return ImageSource(shape[0], getter, size=(h, w))


def _cutout_source(cutouts, input_size, background):
    def getter(start, stop):
        out = []
        for cut in cutouts[start:stop]:
            img = cut.background if background else cut.image
            t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, -1, 0)))
            if t.shape[-2:] != (input_size, input_size):
                t = resize(to_float(t)[None], input_size)[0]
            out.append(t)
        if len({t.dtype for t in out}) > 1:
            out = [to_float(t) for t in out]
        return torch.stack(out)

    return ImageSource(len(cutouts), getter)


def _file_source(paths, input_size):
    from PIL import Image, UnidentifiedImageError

    def read(path):
        path = os.fspath(path)
        if not os.path.isfile(path):
            msg = f"image file {path!r} does not exist"
            raise FileNotFoundError(msg)
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
                if im.size != (input_size, input_size):
                    im = im.resize((input_size, input_size), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as exc:
            msg = f"cannot read image file {path!r}: {exc}"
            raise ValueError(msg) from None
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(arr, -1, 0)))

    def getter(start, stop):
        return torch.stack([read(p) for p in paths[start:stop]])

    return ImageSource(len(paths), getter)
