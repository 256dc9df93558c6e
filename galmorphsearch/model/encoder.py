# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Encoders: a network that maps a galaxy image to a latent vector.

The TSGICAS encoder is a ResNet-18; other backbones (`BACKBONES`) and input
modes (`INPUT_MODES`) share the same interface, weight files and database
provenance.
"""

import os
import re

import numpy as np
import torch
from torch import nn

from ..utils.exceptions import WeightFileFormatError
from ._inputs import image_source, resize, to_float
from .backbones import BACKBONES, INPUT_MODES, build_backbone, prepare_input
from .weights import _load_state_dict_file, _one_line, load_weights, save_weights, state_dict_hash

__all__ = ["Encoder", "ARCHITECTURES", "TRAINING_METHODS"]

#: Names of the registered backbones (see `BACKBONES`).
ARCHITECTURES = BACKBONES

#: How an encoder's weights were obtained, as recorded in its metadata.
TRAINING_METHODS = ("untrained", "autoencoder", "contrastive", "supervised", "external",
                    "unknown")

_BASE_KEYS = ("name", "architecture", "input_size", "latent_dim", "weights_hash", "version",
              "input_mode", "training")


# What a weight file may describe: sizes beyond these are not galaxy encoders, and
# building them would exhaust the memory (a latent_dim of 10**13 asks for petabytes).
_MAX_INPUT_SIZE = 4096
_MAX_LATENT_DIM = 65536
_MAX_NAME = 256


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        msg = f"{name} must be an integer >= {low}, got {value!r:.60}"
        raise ValueError(msg)
    return int(value)


def _check_choice(label, value, choices):
    """``value`` if it is one of ``choices`` (strings), else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        msg = f"unknown {label} {value!r:.60}: choose among {', '.join(choices)}"
        raise ValueError(msg)
    return value


def _name_problem(name):
    """Why ``name`` cannot name an encoder, or None."""
    if not isinstance(name, str) or not name:
        return "a non-empty string"
    if len(name) > _MAX_NAME:
        return f"a string of at most {_MAX_NAME} characters"
    if not name.isprintable():
        return "a string without control characters"
    return None


class Encoder(nn.Module):
    """
    Encoder of galaxy images: image in, latent vector out.

    By default the TSGICAS encoder (Seo et al. 2023, section 3.1): a
    torchvision ResNet-18 with its classification layer removed, so that
    the adaptive average pool of the last stage gives the 512-d latent
    vector. Other backbones are chosen by ``architecture`` (see
    `~galmorphsearch.model.backbones.BACKBONES`): deeper ResNets, the
    trimmed ResNet-18, small vision transformer and their fusion of the
    contrastive encoder of Wei et al. (2022), and a VGG-style network. A
    linear projection follows when ``latent_dim`` differs from the
    backbone's feature count. Every backbone is built with random weights:
    nothing is ever downloaded (see `load_backbone_weights` to start from a
    weight file of your own).

    Every encoder takes colour images; ``input_mode`` decides what the
    backbone sees (`~galmorphsearch.model.backbones.prepare_input`): the
    colour image, its grey level, or either with a residual channel (the
    image minus a smooth elliptical light-profile model).

    Parameters
    ----------
    architecture : str, optional
        A registered backbone: ``'resnet18'`` (default), ``'resnet34'``,
        ``'resnet50'``, ``'resnet18-trimmed'``, ``'vit-small'``,
        ``'hybrid'``, ``'vgg-small'``.
    input_size : int, optional
        Side in pixels of the square images the encoder is trained on (256
        in the paper; 64 and 128 for quick experiments). Inputs of other
        sizes are resized to it.
    latent_dim : int, optional
        Size of the latent vector; default the backbone's number of
        features (512 for ResNet-18 and the hybrid, 256 for the trimmed
        ResNet-18, the small ViT and the VGG-style network).
    name : str, optional
        Name recorded in weight files and latent databases; defaults to
        ``f"{architecture}-{input_size}px"``.
    preprocessing : dict, optional
        The preprocessing parameters of the cutouts the encoder works on,
        as flat FITS keywords (`GalaxyCutout.header_keywords
        <galmorphsearch.preprocessing.GalaxyCutout.header_keywords>`);
        recorded in `metadata`.
    input_mode : {'rgb', 'grey', 'rgb+residual', 'grey+residual'}, optional
        What the backbone sees (see above).
    training : str, optional
        How the weights were obtained, one of `TRAINING_METHODS`
        (``'untrained'`` for a new encoder; the training functions set it).

    Examples
    --------
    >>> import numpy as np
    >>> from galmorphsearch.model import Encoder
    >>> encoder = Encoder(input_size=64)
    >>> encoder.name, encoder.latent_dim
    ('resnet18-64px', 512)
    >>> images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    >>> encoder.encode(images).shape
    (2, 512)
    """

    def __init__(self, architecture="resnet18", input_size=256, latent_dim=None, name=None,
                 preprocessing=None, input_mode="rgb", training="untrained"):
        super().__init__()
        _check_choice("architecture", architecture, sorted(BACKBONES))
        _check_choice("input_mode", input_mode, list(INPUT_MODES))
        _check_choice("training method", training, TRAINING_METHODS)
        self.architecture = architecture
        self.input_mode = input_mode
        self.training_method = training
        self.input_size = _check_int("input_size", input_size, 32)
        if name is None:
            mode = "" if input_mode == "rgb" else f"-{input_mode.replace('+', '-')}"
            name = f"{architecture}{mode}-{self.input_size}px"
        problem = _name_problem(name)
        if problem:
            msg = f"name must be {problem}, got {name!r:.80}"
            raise ValueError(msg)
        self.name = name
        self.preprocessing = self._check_preprocessing(preprocessing)
        #: Further provenance read from or written to weight files (see `save`).
        self.info = {}
        self.backbone, features = build_backbone(architecture, self.in_channels,
                                                 self.input_size)
        self.n_features = features
        self.latent_dim = (features if latent_dim is None
                           else _check_int("latent_dim", latent_dim, 1))
        self.projection = (nn.Identity() if self.latent_dim == features
                           else nn.Linear(features, self.latent_dim))

    @staticmethod
    def _check_preprocessing(preprocessing):
        if preprocessing is None:
            return {}
        if not isinstance(preprocessing, dict):
            msg = f"preprocessing must be a dict of FITS keywords, not {type(preprocessing)}"
            raise TypeError(msg)
        out = {}
        for key, value in preprocessing.items():
            if isinstance(value, tuple) and len(value) == 2:  # (value, comment) cards
                value = value[0]
            if isinstance(value, np.generic):
                value = value.item()
            if not isinstance(key, str) or key.lower() in _BASE_KEYS:
                msg = f"preprocessing keyword {key!r} is not a string or clashes with metadata"
                raise ValueError(msg)
            if value is not None and not isinstance(value, (str, int, float, bool)):
                msg = (f"preprocessing keyword {key!r} must hold a str, int, float, bool or "
                       f"None, not {type(value).__name__}")
                raise ValueError(msg)
            out[key] = value
        return out

    def __repr__(self):
        mode = "" if self.input_mode == "rgb" else f" input_mode={self.input_mode!r}"
        return (f"<{type(self).__name__} name={self.name!r} architecture={self.architecture!r} "
                f"input_size={self.input_size} latent_dim={self.latent_dim}{mode} "
                f"training={self.training_method!r} weights_hash={self.weights_hash!r}>")

    @property
    def in_channels(self):
        """Number of channels the backbone sees (3 for ``input_mode='rgb'``)."""
        return INPUT_MODES[self.input_mode]

    def prepare(self, x):
        """
        What the backbone sees: ``x`` resized and turned into ``input_mode``.

        Parameters
        ----------
        x : `torch.Tensor`
            (B, 3, H, W) float images in [0, 1].

        Returns
        -------
        prepared : `torch.Tensor`
            (B, `in_channels`, input_size, input_size) in [0, 1]; an
            autoencoder reconstructs this.
        """
        return prepare_input(resize(x, self.input_size), self.input_mode)

    @property
    def weights_hash(self):
        """
        SHA-256 of the weights (first 16 hex characters); see `state_dict_hash`.

        Any change of the weights, training included, changes it.
        """
        return state_dict_hash(self.state_dict())

    @property
    def metadata(self):
        """
        Flat provenance of the encoder: what it is, its weights, the preprocessing.

        Keys ``name``, ``architecture``, ``input_size``, ``latent_dim``,
        ``weights_hash``, ``version`` (of galmorphsearch), ``input_mode``,
        ``training`` (how the weights were obtained), then the
        preprocessing keywords.
        """
        from .. import __version__

        meta = {"name": self.name, "architecture": self.architecture,
                "input_size": self.input_size, "latent_dim": self.latent_dim,
                "weights_hash": self.weights_hash, "version": __version__,
                "input_mode": self.input_mode, "training": self.training_method}
        meta.update(self.preprocessing)
        return meta

    def forward(self, x):
        """
        Latent vectors of a batch of images.

        Parameters
        ----------
        x : `torch.Tensor`
            (B, 3, H, W) float images in [0, 1]; resized to ``input_size``
            if H or W differs.

        Returns
        -------
        latent : `torch.Tensor`
            (B, latent_dim).
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            msg = f"the encoder takes (B, 3, H, W) float tensors, got {shape}"
            raise ValueError(msg)
        if not x.is_floating_point():
            msg = f"the encoder takes float tensors in [0, 1], got {x.dtype}"
            raise ValueError(msg)
        return self.projection(self.backbone(self.prepare(x)))

    def encode(self, images, *, batch_size=64, background=False, progress_bar=False,
               device=None):
        """
        Latent vectors of many images, in batches, without gradients.

        The encoder runs in eval mode under `torch.inference_mode`, on
        channels-last batches where that is faster (GPUs; CPUs from 128 px);
        its training mode and device are restored afterwards.

        Parameters
        ----------
        images : `~galmorphsearch.preprocessing.GalaxyCutout`, list, array or tensor
            A cutout or a list of cutouts; a (N, H, W, 3) or (H, W, 3) uint8
            array (display order, as `GalaxyCutout.image`); a (N, 3, H, W)
            tensor or float array in [0, 1]; or a list of image file paths
            (JPEG, PNG...; read as RGB and resized to ``input_size``).
        batch_size : int, optional
            Images per forward pass.
        background : bool, optional
            Encode the background patches of the cutouts instead of the
            cutouts (for the Sp similarity).
        progress_bar : bool, optional
            Show a progress bar (needs tqdm).
        device : str or `torch.device`, optional
            Where to run; by default where the encoder's weights are.

        Returns
        -------
        latents : `~numpy.ndarray`
            (N, latent_dim) float32, C-contiguous, native byte order.

        Raises
        ------
        ValueError
            For an empty input, a wrong shape (e.g. four channels), a dtype
            other than uint8 or float, float values outside [0, 1] or
            non-finite, or ``background=True`` without cutouts.
        TypeError
            For inputs of an unsupported type.
        """
        from ..utils.progress import progress_iter

        batch_size = _check_int("batch_size", batch_size, 1)
        source = image_source(images, input_size=self.input_size, background=background)
        n = len(source)
        out = np.empty((n, self.latent_dim), dtype=np.float32)
        first = next(self.parameters())
        home = first.device
        device = home if device is None else torch.device(device)
        was_training = self.training
        starts = range(0, n, batch_size)
        # Channels-last convolutions are faster on GPUs, and on CPUs from 128 px up
        # (benchmarks/bench_encoding.py: about 20-25 % at 128-256 px, slower at 64 px).
        channels_last = device.type == "cuda" or (device.type == "cpu" and self.input_size >= 128)
        try:
            self.to(device)
            self.eval()
            with torch.inference_mode():
                for start in progress_iter(starts, progress_bar, desc="encoding",
                                           total=len(starts)):
                    stop = min(start + batch_size, n)
                    batch = to_float(source.get(start, stop)).to(device, non_blocking=True)
                    batch = resize(batch, self.input_size)
                    if channels_last:
                        batch = batch.contiguous(memory_format=torch.channels_last)
                    out[start:stop] = self(batch).float().cpu().numpy()
        finally:
            self.to(home)
            self.train(was_training)
        return out

    def save(self, path, overwrite=False, *, dtype=None, info=None):
        """
        Write the weights and `metadata` to a safetensors file (atomically).

        Parameters
        ----------
        path : str or path-like
            Output file, conventionally ``*.safetensors``.
        overwrite : bool, optional
            Replace an existing file.
        dtype : {None, 'float16', 'bfloat16', 'float32'}, optional
            Store the floating-point tensors in this precision (default: as
            they are). The file's ``weights_hash`` is that of the stored
            tensors, which is also the `weights_hash` of the encoder read
            back by `load`; half precision halves the file.
        info : dict, optional
            Further flat provenance (str, int, float, bool or None values)
            to record, for example how the weights were trained; read back
            into `info` by `load`. Keys may not clash with `metadata`.

        Returns
        -------
        weights_hash : str
            The hash recorded in the file.

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``overwrite`` is `False`.
        ValueError
            For an unknown ``dtype`` or ``info`` keys that clash.
        """
        dtypes = {None: None, "float32": torch.float32, "float16": torch.float16,
                  "bfloat16": torch.bfloat16}
        if dtype not in dtypes:
            msg = f"dtype must be one of {list(dtypes)}, got {dtype!r}"
            raise ValueError(msg)
        meta = self.metadata
        meta.pop("weights_hash")
        meta["kind"] = "encoder"
        meta["preprocessing_keys"] = ",".join(self.preprocessing)
        extra = dict(self.info if info is None else info)
        clash = sorted(set(extra) & {*meta, "format", "format_version", "weights_hash",
                                     "info_keys"})
        if clash:
            msg = f"info keys {clash} clash with the encoder's metadata"
            raise ValueError(msg)
        meta.update(extra)
        meta["info_keys"] = ",".join(extra)
        state = self.state_dict()
        if dtypes[dtype] is not None:
            state = {k: v.to(dtypes[dtype]) if v.is_floating_point() else v
                     for k, v in state.items()}
        return save_weights(state, path, metadata=meta, overwrite=overwrite)

    @classmethod
    def load(cls, path, device=None):
        """
        Read an encoder written by `save`; never executes code.

        The architecture, sizes, name and preprocessing are taken from the
        file's metadata and the stored weights hash is verified.

        Parameters
        ----------
        path : str or path-like
            A safetensors weight file.
        device : str or `torch.device`, optional
            Where to put the weights (CPU by default).

        Returns
        -------
        encoder : `Encoder`
            In eval mode.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ~galmorphsearch.utils.WeightFileFormatError
            If it is not a galmorphsearch encoder weight file, its weights
            do not match the stored hash (corrupted or modified), or its
            metadata have the wrong types or values out of range (the
            message names the entry). A `ValueError`.
        """
        tensors, meta = load_weights(path)
        path = os.fspath(path)
        arguments, info = _arguments_from_metadata(meta, tensors, path)
        try:
            encoder = cls(**arguments)
        except (ValueError, TypeError, OverflowError, RuntimeError, MemoryError) as exc:
            msg = f"cannot build the encoder that weight file {path!r} describes: {_one_line(exc)}"
            raise WeightFileFormatError(msg) from None
        if encoder.latent_dim != meta["latent_dim"]:  # no projection layer in the file
            msg = (f"weight file {path!r} has unusable metadata: latent_dim={meta['latent_dim']} "
                   f"but it holds no projection layer, and the {encoder.architecture} backbone "
                   f"gives {encoder.latent_dim} features")
            raise WeightFileFormatError(msg)
        encoder._load_checked(tensors, path)
        encoder.info = info
        encoder.eval()
        if device is not None:
            encoder.to(device)
        return encoder

    @classmethod
    def pretrained(cls, name=None, device=None):
        """
        One of the encoders shipped with galmorphsearch, trained on real SDSS galaxies.

        Nothing is downloaded: the half-precision weights are part of the
        package (`~galmorphsearch.model.pretrained.PRETRAINED`), read safely
        and checked against their hash. The default,
        ``'vgg-supervised'``, did best on the spiral / non-spiral yardstick
        of the documentation's model cards; ``'tsgicas-ae'`` is the encoder
        of the paper's autoencoder. Both take 64 px colour cutouts made by
        `~galmorphsearch.preprocessing.GalaxyCutout` (larger cutouts are
        resized).

        Parameters
        ----------
        name : str, optional
            ``'vgg-supervised'`` (default) or ``'tsgicas-ae'``.
        device : str or `torch.device`, optional
            Where to put the weights (CPU by default).

        Returns
        -------
        encoder : `Encoder`
            In eval mode; its `info` holds the training record.

        Raises
        ------
        ValueError
            For an unknown name.

        Examples
        --------
        >>> from galmorphsearch.model import Encoder
        >>> encoder = Encoder.pretrained()
        >>> encoder.name, encoder.input_size, encoder.latent_dim
        ('vgg-supervised', 64, 256)
        """
        from .pretrained import load_pretrained

        return load_pretrained(name, device=device)

    def _load_checked(self, state_dict, path):
        prefix = f"the weights in {os.fspath(path)!r} do not fit a {self.name!r:.80} encoder"
        try:
            result = self.load_state_dict(state_dict, strict=False)
        except RuntimeError as exc:  # shape mismatches
            msg = f"{prefix}: {_one_line(exc, limit=600)}"
            raise WeightFileFormatError(msg) from None
        problems = []
        for what, keys in (("missing", result.missing_keys),
                           ("unexpected", result.unexpected_keys)):
            if keys:
                shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
                problems.append(f"{len(keys)} {what} tensors ({shown})")
        if problems:
            msg = f"{prefix}: {'; '.join(problems)}"
            raise WeightFileFormatError(msg)

    @classmethod
    def from_state_dict_file(cls, path, *, architecture="resnet18", input_size=256,
                             latent_dim=None, name=None, preprocessing=None, input_mode="rgb"):
        """
        Build an encoder from a PyTorch state-dict file, loaded with ``weights_only=True``.

        Accepts a torchvision ResNet state dict (its ``fc`` layer is dropped),
        an `Encoder` state dict, or a checkpoint written by `train_autoencoder`,
        `train_contrastive` or `train_classifier` (the encoder part of its
        ``state_dict`` is used; decoders and heads are left out). ``torch.load`` with
        ``weights_only=True`` refuses anything but tensors and plain
        containers, so no code is executed.

        Parameters
        ----------
        path : str or path-like
            A ``.pt``/``.pth``/``.ckpt`` file.
        architecture, input_size, latent_dim, name, preprocessing, input_mode
            As for `Encoder`; these must be those of the encoder that was
            trained (an encoder trained on grey input needs
            ``input_mode='grey'``). Without ``latent_dim``, the size of a
            stored projection layer is used, or else the backbone's.

        Returns
        -------
        encoder : `Encoder`
            In eval mode, on the CPU.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ~galmorphsearch.utils.UnsafeCheckpointError
            If the file refers to anything but tensors, numbers, strings and
            plain containers (refused before any of it runs).
        ~galmorphsearch.utils.WeightFileFormatError
            If the file cannot be read, does not hold a state dict, or its
            tensors do not fit. Both are `ValueError`.
        """
        path = os.fspath(path)
        obj = _read_state_dict(path, safetensors=False)
        state = {}
        # A training checkpoint (autoencoder, contrastive, classifier) keeps the
        # encoder under an ``encoder.`` prefix: only those tensors are read, and
        # decoders and projection or classification heads are left out.
        wrapped = any(re.match(r"(?:.*\.)?encoder\.", key) for key in obj)
        for key, value in obj.items():
            match = re.match(r"(?:.*\.)?(encoder|decoder)\.(.*)", key)
            if match:  # an Autoencoder or training-checkpoint state dict
                if match.group(1) == "decoder":
                    continue
                key = match.group(2)
            elif wrapped:
                continue
            if key.startswith("fc."):
                continue
            if not key.startswith(("backbone.", "projection.")):
                key = "backbone." + key
            state[key] = value
        if latent_dim is None and "projection.weight" in state:
            latent_dim = _projection_size(state["projection.weight"], path)
        encoder = cls(architecture=architecture, input_size=input_size, latent_dim=latent_dim,
                      name=name, preprocessing=preprocessing, training="external",
                      input_mode=input_mode)
        encoder._load_checked(state, path)
        return encoder.eval()

    def load_backbone_weights(self, path):
        """
        Start the backbone from a weight file of your own (for example ImageNet).

        The file is a PyTorch state dict (``.pt``, ``.pth``, ``.ckpt``: read
        with ``torch.load(..., weights_only=True)``, so no code runs) or a
        ``.safetensors`` file. Its tensors are matched to the backbone's by
        name, after removing the prefixes that training wrappers add
        (``module.``, ``model.``, ``encoder.``, ``autoencoder.encoder.``,
        ``backbone.``); classification heads and decoders are left out. A
        first convolution made for three colour channels is adapted to the
        encoder's input mode: the grey channel gets the sum of the colour
        kernels (so that a grey image gives the response the colour weights
        gave it), colour channels keep theirs, and the residual channel starts
        at zero. Tensors
        the backbone does not have (such as the fourth stage of a ResNet for
        the trimmed one) are reported as unused. Nothing is downloaded.

        Parameters
        ----------
        path : str or path-like
            The weight file.

        Returns
        -------
        report : dict
            ``loaded``, ``adapted``, ``missing`` (backbone tensors left at
            their random start) and ``unused`` (tensors of the file not
            used): lists of tensor names.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ~galmorphsearch.utils.UnsafeCheckpointError
            If the file refers to anything but tensors, numbers, strings and
            plain containers (refused before any of it runs).
        ~galmorphsearch.utils.WeightFileFormatError
            If it cannot be read or no tensor fits the backbone. Both are
            `ValueError`.
        """
        tensors = _read_state_dict(path)
        own = self.backbone.state_dict()
        prefixes = ("module.", "model.", "autoencoder.", "encoder.", "backbone.", "net.")
        renamed = {}
        for key, value in tensors.items():
            name = key
            changed = True
            while changed:
                changed = False
                for prefix in prefixes:
                    if name.startswith(prefix):
                        name = name[len(prefix):]
                        changed = True
            renamed[name] = (key, value)
        report = {"loaded": [], "adapted": [], "missing": [], "unused": []}
        new_state = {}
        used = set()
        for name, target in own.items():
            if name not in renamed:
                report["missing"].append(name)
                continue
            key, value = renamed[name]
            if value.shape == target.shape:
                new_state[name] = value.to(target.dtype)
                report["loaded"].append(name)
            elif (value.ndim == 4 and target.ndim == 4 and value.shape[1] == 3
                  and value.shape[0] == target.shape[0] and value.shape[2:] == target.shape[2:]):
                new_state[name] = _adapt_first_conv(value, target.shape[1]).to(target.dtype)
                report["adapted"].append(name)
            else:
                report["missing"].append(name)
                continue
            used.add(key)
        report["unused"] = [k for k in tensors if k not in used]
        if not new_state:
            first = _one_line(", ".join(list(tensors)[:3]), limit=120)
            msg = (f"no tensor of {os.fspath(path)!r} fits the {self.architecture} backbone "
                   f"(first names in the file: {first})")
            raise WeightFileFormatError(msg)
        self.backbone.load_state_dict(new_state, strict=False)
        self.training_method = "external"
        return report


def _adapt_first_conv(weight, channels):
    """A (O, 3, k, k) colour kernel for ``channels`` input channels (see INPUT_MODES)."""
    grey = weight.sum(dim=1, keepdim=True)
    zeros = torch.zeros_like(grey)
    if channels == 1:  # grey
        return grey
    if channels == 2:  # grey + residual
        return torch.cat([grey, zeros], dim=1)
    if channels == 4:  # colour + residual
        return torch.cat([weight, zeros], dim=1)
    # Any other count (a custom mode): share the grey response between the channels.
    return (grey / channels).repeat(1, channels, 1, 1)


def _read_state_dict(path, safetensors=True):
    """
    A flat name -> tensor mapping from a weight file, never executing code.

    A ``.safetensors`` file (when ``safetensors``) is read as such; any other
    with ``torch.load(..., weights_only=True)`` (`_load_state_dict_file`). A
    training checkpoint's ``state_dict`` is taken. Names must be strings and
    values tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        msg = f"weight file {path!r} does not exist"
        raise FileNotFoundError(msg)
    if safetensors and path.endswith(".safetensors"):
        from safetensors.torch import load_file

        try:
            obj = load_file(path)
        except Exception as exc:  # any failure means: not a readable safetensors file
            msg = f"cannot read {path!r} as a safetensors weight file: {_one_line(exc)}"
            raise WeightFileFormatError(msg) from None
    else:
        obj = _load_state_dict_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        msg = f"{path!r} does not hold a state dict (a mapping of names to tensors)"
        raise WeightFileFormatError(msg)
    for key in obj:
        if not isinstance(key, str):
            msg = (f"{path!r} does not hold a state dict: the tensor name {key!r:.60} is not a "
                   "string")
            raise WeightFileFormatError(msg)
    return obj


def _projection_size(weight, path):
    """The latent size a stored ``projection.weight`` gives, checked (a sane 2-D matrix)."""
    if weight.ndim != 2 or not 1 <= weight.shape[0] <= _MAX_LATENT_DIM or weight.shape[1] < 1:
        msg = (f"{path!r} holds a projection.weight of shape {tuple(weight.shape)}, not a "
               f"(latent_dim, features) matrix with 1 <= latent_dim <= {_MAX_LATENT_DIM}")
        raise WeightFileFormatError(msg)
    return int(weight.shape[0])


def _is_scalar(value):
    return value is None or isinstance(value, (str, int, float, bool))


def _arguments_from_metadata(meta, tensors, path):
    """
    The `Encoder` arguments and ``info`` a weight file's metadata describe, checked.

    Every entry must have the type `Encoder.save` writes and a value in the
    range an encoder can have, before anything is built: a hostile file
    gives a `WeightFileFormatError` naming the file and the entry, never a
    TypeError from deep inside, nor a request for petabytes of memory.
    """
    def bad(key, expected):
        msg = (f"weight file {path!r} has unusable metadata: {key}={meta[key]!r:.60} is not "
               f"{expected}")
        raise WeightFileFormatError(msg)

    if meta.get("kind") != "encoder":
        msg = (f"{path!r} holds {meta.get('kind')!r:.60} weights (its metadata entry kind), "
               "not an encoder's")
        raise WeightFileFormatError(msg)
    for key in ("architecture", "input_size", "latent_dim", "name"):
        if key not in meta:
            msg = f"weight file {path!r} lacks the metadata entry {key!r}"
            raise WeightFileFormatError(msg)
    if not isinstance(meta["architecture"], str) or meta["architecture"] not in BACKBONES:
        bad("architecture", f"a registered backbone ({', '.join(sorted(BACKBONES))})")
    for key, high in (("input_size", _MAX_INPUT_SIZE), ("latent_dim", _MAX_LATENT_DIM)):
        low = 32 if key == "input_size" else 1
        value = meta[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            bad(key, f"an integer from {low} to {high}")
    problem = _name_problem(meta["name"])
    if problem:
        bad("name", problem)
    meta = {"input_mode": "rgb", "training": "unknown", "preprocessing_keys": "",
            "info_keys": "", **meta}
    for key, choices in (("input_mode", list(INPUT_MODES)), ("training", TRAINING_METHODS)):
        if not isinstance(meta[key], str) or meta[key] not in choices:
            bad(key, f"one of {', '.join(choices)}")
    names = {}
    for key in ("preprocessing_keys", "info_keys"):
        if not isinstance(meta[key], str):
            bad(key, "a comma-separated list of entry names")
        names[key] = [k for k in meta[key].split(",") if k]
    preprocessing = {}
    for key in names["preprocessing_keys"]:
        if key not in meta:
            msg = (f"weight file {path!r} lacks the metadata entry {key!r:.60} that its "
                   "preprocessing_keys name")
            raise WeightFileFormatError(msg)
        if key.lower() in _BASE_KEYS or not _is_scalar(meta[key]):
            bad(key, "a preprocessing keyword with a str, int, float, bool or null value")
        preprocessing[key] = meta[key]
    info = {}
    for key in names["info_keys"]:
        if key in meta:
            if not _is_scalar(meta[key]):
                bad(key, "a str, int, float, bool or null (an info entry)")
            info[key] = meta[key]
    latent_dim = meta["latent_dim"]
    if "projection.weight" in tensors:
        if _projection_size(tensors["projection.weight"], path) != latent_dim:
            msg = (f"weight file {path!r} has unusable metadata: latent_dim={latent_dim} but "
                   f"its projection.weight has shape {tuple(tensors['projection.weight'].shape)}")
            raise WeightFileFormatError(msg)
    else:  # no projection: the latent size is the backbone's, compared once it is built
        latent_dim = None
    arguments = {"architecture": meta["architecture"], "input_size": meta["input_size"],
                 "latent_dim": latent_dim, "name": meta["name"], "preprocessing": preprocessing,
                 "input_mode": meta["input_mode"], "training": meta["training"]}
    return arguments, info
