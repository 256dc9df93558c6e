# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Training the TSGICAS autoencoder with PyTorch Lightning.

`train_autoencoder` is the one-call entry point; `AutoencoderModule` is the
`~lightning.pytorch.LightningModule` it trains, for users who drive
`lightning.Trainer` themselves (multi-GPU strategies, mixed precision,
their own loggers and callbacks).
"""

import inspect
import io
import logging
import math
import numbers
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import lightning
import numpy as np
import torch
from astropy.table import Table
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.strategies import Strategy
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.nn import functional as F

from ..utils.exceptions import CheckpointFormatError, UnsafeCheckpointError
from ._inputs import image_source, resize, to_float
from .autoencoder import Autoencoder
from .decoder import Decoder
from .encoder import Encoder

__all__ = ["AutoencoderModule", "train_autoencoder", "class_balanced_weights",
           "split_indices", "HISTORY_FILENAME", "quiet_lightning"]

# Lightning >= 2.5 takes weights_only in load_from_checkpoint; older versions would pass
# it on to the module as a hyper-parameter.
_WEIGHTS_ONLY = ({"weights_only": True} if "weights_only" in inspect.signature(
    lightning.LightningModule.load_from_checkpoint).parameters else {})

#: Name of the loss-history file written beside the checkpoints.
HISTORY_FILENAME = "loss_history.ecsv"


class _MeanLossModule(lightning.LightningModule):
    """Epoch-mean losses over all devices, for the loss history (private base)."""

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, hparams_file=None,
                             strict=None, **kwargs):
        """
        Rebuild the module from a checkpoint, read safely (``weights_only=True``).

        Lightning's `~lightning.pytorch.LightningModule.load_from_checkpoint`,
        except that the file is read by galmorphsearch with
        ``torch.load(..., weights_only=True)`` whatever the environment says
        (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is ignored): only tensors,
        numbers, strings and plain containers are loaded, so no code from
        the file runs. Lightning is handed what was read. The
        hyper-parameters come from the checkpoint alone: a separate
        ``hparams_file`` is refused (Lightning would read that YAML file
        with ``yaml.full_load``, which builds Python objects from its tags);
        pass the values to change as keyword arguments instead.

        Parameters
        ----------
        checkpoint_path : str or path-like
            A checkpoint written by a training run (``last.ckpt``,
            ``best-*.ckpt``).
        map_location, strict, **kwargs
            As for Lightning's ``load_from_checkpoint`` (``weights_only`` is
            always True); keyword arguments replace the hyper-parameters of
            the same name stored in the checkpoint.
        hparams_file : None
            Refused when given (see above).

        Returns
        -------
        module
            The module, with the checkpoint's weights.

        Raises
        ------
        ~galmorphsearch.utils.UnsafeCheckpointError
            If the file holds other objects (refused before any of them runs).
        ~galmorphsearch.utils.CheckpointFormatError
            If the file is damaged or not a checkpoint.
        ValueError
            If ``hparams_file`` is given.
        """
        if hparams_file is not None:
            msg = (f"hparams_file={hparams_file!r:.100} is not accepted: the "
                   "hyper-parameters are read from the checkpoint itself (a YAML file would be "
                   "read with yaml.full_load, which can build Python objects); pass the values "
                   "to change as keyword arguments instead")
            raise ValueError(msg)
        kwargs.pop("weights_only", None)
        if not isinstance(checkpoint_path, (str, os.PathLike)):
            msg = f"checkpoint_path must be a file path, got {type(checkpoint_path).__name__}"
            raise TypeError(msg)
        checkpoint = dict(_read_checkpoint(checkpoint_path, training=False))
        if "hyper_parameters" in checkpoint:
            checkpoint["hyper_parameters"] = _plain(dict(checkpoint["hyper_parameters"]))
        # What Lightning reads is rewritten here from the checked content: whatever
        # unpickler reads it, nothing in it can run.
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        buffer.seek(0)
        return super().load_from_checkpoint(buffer, map_location=map_location, strict=strict,
                                            **_WEIGHTS_ONLY, **kwargs)

    def _record_loss(self, stage, loss, n):
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=n,
                 prog_bar=stage != "test", sync_dist=True)
        total, count = self._sums.get(stage, (0.0, 0))
        self._sums[stage] = (total + loss.detach() * n, count + n)

    def training_step(self, batch, batch_idx):
        """Loss of a training batch (logged as ``train_loss``)."""
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        """Loss of a validation batch (logged as ``val_loss``)."""
        return self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        """Loss of a test batch (logged as ``test_loss``)."""
        return self._step(batch, "test")

    def on_train_epoch_start(self):
        """Reset the running training loss."""
        self._sums.pop("train", None)

    def on_validation_epoch_start(self):
        """Reset the running validation loss."""
        self._sums.pop("val", None)

    def epoch_mean_loss(self, stage):
        """Mean loss of the current epoch of ``stage`` over all devices (nan if none)."""
        return self._device_ratio(self._sums.get(stage))

    def _device_ratio(self, pair):
        """``sum / count`` of a running ``(sum, count)`` pair over all devices (nan if none)."""
        if pair is None:
            return math.nan
        total, count = pair
        stats = torch.stack([torch.as_tensor(total, dtype=torch.float64, device=self.device),
                             torch.as_tensor(count, dtype=torch.float64, device=self.device)])
        if self.trainer.world_size > 1:
            stats = self.trainer.strategy.reduce(stats, reduce_op="sum")
        return float(stats[0] / stats[1]) if float(stats[1]) > 0 else math.nan


class AutoencoderModule(_MeanLossModule):
    """
    LightningModule that trains an `Autoencoder` to reconstruct its input.

    Mean squared error between the (augmented) input and its
    reconstruction, minimised with Adam, as in Seo et al. (2023). The
    hyper-parameters are saved in checkpoints, so
    ``AutoencoderModule.load_from_checkpoint(path)`` rebuilds the model.

    Parameters
    ----------
    architecture, input_size, latent_dim, name, preprocessing, input_mode
        Passed to `Encoder`. With an ``input_mode`` other than ``'rgb'``
        the autoencoder reconstructs what the encoder sees (the grey level,
        the residual channel...).
    decoder_channels, fc_channels
        ``channels`` and ``fc_channels`` of the `Decoder`.
    learning_rate : float, optional
        Adam learning rate (1e-4 in the paper).
    init_weights : str or path-like, optional
        A weight file to start the encoder's backbone from
        (`Encoder.load_backbone_weights`).

    Attributes
    ----------
    autoencoder : `Autoencoder`
        The model being trained.
    """

    def __init__(self, architecture="resnet18", input_size=256, latent_dim=512,
                 decoder_channels=None, fc_channels=512, name=None, preprocessing=None,
                 learning_rate=1e-4, input_mode="rgb", init_weights=None):
        super().__init__()
        if decoder_channels is not None:
            decoder_channels = [int(c) for c in decoder_channels]
        # Plain Python values: checkpoints stay readable with weights_only=True.
        self.save_hyperparameters(_plain(
            {"architecture": architecture, "input_size": input_size, "latent_dim": latent_dim,
             "decoder_channels": decoder_channels, "fc_channels": fc_channels, "name": name,
             "preprocessing": preprocessing, "learning_rate": learning_rate,
             "input_mode": input_mode, "init_weights": None if init_weights is None
             else os.fspath(init_weights)}))
        if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
            msg = f"learning_rate must be a positive number, got {learning_rate!r}"
            raise ValueError(msg)
        encoder = Encoder(architecture=architecture, input_size=input_size,
                          latent_dim=latent_dim, name=name, preprocessing=preprocessing,
                          input_mode=input_mode)
        if init_weights is not None:
            encoder.load_backbone_weights(init_weights)
        encoder.training_method = "autoencoder"
        decoder = Decoder(input_size=input_size, latent_dim=latent_dim,
                          channels=decoder_channels, fc_channels=fc_channels,
                          out_channels=encoder.in_channels)
        self.autoencoder = Autoencoder(encoder, decoder)
        self.learning_rate = float(learning_rate)
        self._sums = {}

    def forward(self, x):
        """Reconstruction of a (B, 3, H, W) batch in [0, 1]."""
        return self.autoencoder(x)

    def _step(self, batch, stage):
        x = resize(batch, self.autoencoder.input_size)
        loss = F.mse_loss(self.autoencoder(x), self.autoencoder.target(x))
        self._record_loss(stage, loss, x.shape[0])
        return loss

    def configure_optimizers(self):
        """Adam with ``learning_rate``."""
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


class _LossHistory(Callback):
    """Per-epoch train and validation loss, kept in checkpoints (so resuming continues it)."""

    def __init__(self):
        self.rows = []

    def _record(self, trainer, module, with_val):
        epoch = trainer.current_epoch
        if self.rows and self.rows[-1]["epoch"] == epoch:
            return
        self.rows.append({"epoch": int(epoch), "step": int(trainer.global_step),
                          "train_loss": module.epoch_mean_loss("train"),
                          "val_loss": module.epoch_mean_loss("val") if with_val else math.nan})

    def on_validation_epoch_end(self, trainer, module):
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._record(trainer, module, True)

    def on_train_epoch_end(self, trainer, module):
        self._record(trainer, module, False)

    def state_dict(self):
        return {"rows": [dict(row) for row in self.rows]}

    def load_state_dict(self, state_dict):
        self.rows = [dict(row) for row in state_dict.get("rows", [])]

    @staticmethod
    def check_state(state):
        """Why a checkpoint's state of this callback cannot be restored, or None."""
        rows = state.get("rows", []) if isinstance(state, dict) else None
        if not isinstance(rows, list):
            return "its loss history is damaged (no list of rows)"
        for i, row in enumerate(rows):
            if not (isinstance(row, dict)
                    and all(_is_number(row.get(key))
                            for key in ("epoch", "step", "train_loss", "val_loss"))):
                return f"its loss history is damaged (row {i}: {row!r:.80})"
        return None

    def table(self):
        names = ("epoch", "step", "train_loss", "val_loss")
        if not self.rows:
            return Table(names=names, dtype=(np.int64, np.int64, np.float64, np.float64))
        return Table(rows=[[row[k] for k in names] for row in self.rows], names=names,
                     dtype=(np.int64, np.int64, np.float64, np.float64))


class _EpochSampler(torch.utils.data.Sampler):
    """
    Shuffled (or class-balanced, with ``weights``) indices drawn anew each epoch.

    The draws of an epoch, and the augmentation that follows them (torch's
    global generator, reseeded here), depend only on ``seed`` and the
    trainer's current epoch, read when the epoch's iteration starts (after a
    checkpoint is restored): a resumed run continues exactly as the
    uninterrupted run would have.
    """

    def __init__(self, n, seed, weights=None):
        self.n = n
        self.seed = seed
        self.weights = None if weights is None else torch.as_tensor(weights,
                                                                    dtype=torch.float64)
        self.trainer = None

    def __len__(self):
        return self.n

    def __iter__(self):
        epoch = 0 if self.trainer is None else self.trainer.current_epoch
        epoch_seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
        generator = torch.Generator().manual_seed(epoch_seed)
        torch.manual_seed(epoch_seed)
        if self.weights is None:
            indices = torch.randperm(self.n, generator=generator)
        else:
            indices = torch.multinomial(self.weights, self.n, replacement=True,
                                        generator=generator)
        yield from indices.tolist()


def class_balanced_weights(labels):
    """
    Sampling weights that make every class equally likely.

    Each sample gets the weight 1 / (number of samples of its class), so
    that drawing with these weights (`torch.utils.data.WeightedRandomSampler`)
    picks every class with the same probability.

    Parameters
    ----------
    labels : array-like
        One label (int or str) per sample.

    Returns
    -------
    weights : `~numpy.ndarray`
        float64, one per sample, summing to the number of classes.

    Examples
    --------
    >>> from galmorphsearch.model import class_balanced_weights
    >>> class_balanced_weights(["Sb", "Sb", "Sb", "Er"])
    array([0.33333333, 0.33333333, 0.33333333, 1.        ])
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        msg = f"labels must be a non-empty 1D sequence, got shape {labels.shape}"
        raise ValueError(msg)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse.ravel()].astype(np.float64)


def split_indices(n, val_fraction=0.2, test_fraction=0.2, seed=0):
    """
    Seeded random split of ``n`` samples into training, validation and test sets.

    The defaults give the 3:1:1 split of the paper.

    Parameters
    ----------
    n : int
        Number of samples.
    val_fraction, test_fraction : float, optional
        Fractions of the samples held out for validation and for testing
        (rounded to whole samples).
    seed : int, optional
        Seed of the permutation.

    Returns
    -------
    train, val, test : `~numpy.ndarray`
        Sorted int64 indices.

    Examples
    --------
    >>> from galmorphsearch.model import split_indices
    >>> [len(part) for part in split_indices(100)]
    [60, 20, 20]
    """
    for label, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            msg = f"{label} must lie in [0, 1), got {frac!r}"
            raise ValueError(msg)
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    if n - n_val - n_test < 1:
        msg = (f"no training samples left: {n} images with val_fraction={val_fraction} and "
               f"test_fraction={test_fraction}")
        raise ValueError(msg)
    perm = np.random.default_rng(seed).permutation(n)
    val, test, train = np.split(perm, [n_val, n_val + n_test])
    return np.sort(train), np.sort(val), np.sort(test)


class _ImageDataset(torch.utils.data.Dataset):
    def __init__(self, images, indices, augment):
        from torchvision.transforms import v2

        self.images = images
        self.indices = np.asarray(indices, dtype=np.int64)
        self.transform = None
        if augment:
            self.transform = v2.Compose([
                v2.RandomRotation(degrees=(0.0, 360.0),
                                  interpolation=v2.InterpolationMode.BILINEAR),
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
            ])

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x = to_float(self.images[int(self.indices[i])])
        return x if self.transform is None else self.transform(x)


def _image_tensor(images, input_size):
    """All training images as one (N, 3, S, S) tensor (uint8 when possible)."""
    source = image_source(images, input_size=input_size)
    chunks = []
    for start in range(0, len(source), 256):
        chunk = source.get(start, min(start + 256, len(source)))
        if chunk.shape[-2:] != (input_size, input_size):
            chunk = resize(to_float(chunk), input_size)
        chunks.append(chunk)
    if len({c.dtype for c in chunks}) > 1:
        chunks = [to_float(c) for c in chunks]
    return torch.cat(chunks)


def train_autoencoder(images, labels=None, *, input_size=64, architecture="resnet18",
                      latent_dim=512, decoder_channels=None, fc_channels=512, name=None,
                      preprocessing=None, max_epochs=100, max_steps=None, batch_size=42,
                      learning_rate=1e-4, val_fraction=0.2, test_fraction=0.2, augment=True,
                      seed=0, checkpoint_dir=None, resume=None, accelerator="auto",
                      devices="auto", strategy="auto", precision="32-true", num_workers=0,
                      progress_bar=False, callbacks=None, logger=False, input_mode="rgb",
                      init_weights=None):
    """
    Train the TSGICAS convolutional autoencoder on galaxy images.

    The images are split 3:1:1 (by default) into training, validation and
    test sets with a seeded permutation. Training minimises the mean squared
    reconstruction error with Adam (learning rate 1e-4, batches of 42, as in
    Seo et al. 2023) on randomly rotated (0-360 degrees) and flipped
    training images. When ``labels`` are given, training batches are drawn
    with class-balanced weights (`class_balanced_weights`) so that rare
    morphologies are seen as often as common ones. The test loss is
    measured once at the end.

    The same call runs on the CPU and, unchanged, on GPUs
    (``accelerator='auto'``); ``devices``, ``strategy`` (e.g. ``'ddp'``) and
    ``precision`` (e.g. ``'bf16-mixed'``) are passed to `lightning.Trainer`.
    The global random state is left untouched: the run is seeded by
    ``seed`` alone.

    Parameters
    ----------
    images : list, `~numpy.ndarray` or `torch.Tensor`
        The training images: a list of
        `~galmorphsearch.preprocessing.GalaxyCutout`, arrays, a tensor or a
        list of file paths, in any form `Encoder.encode` accepts; resized
        to ``input_size``.
    labels : array-like, optional
        One morphology label per image, for class-balanced sampling.
    input_size : int, optional
        Side of the images the model works on (256 in the paper; the small
        default keeps CPU runs short).
    architecture, latent_dim, name, preprocessing, input_mode
        Passed to `Encoder`. ``preprocessing`` defaults to the header
        keywords of the first cutout when ``images`` are cutouts. With
        ``input_mode='grey'`` this is the colour-free autoencoder of the
        paper's colour-bias experiment; with a ``+residual`` mode the
        encoder also sees, and the decoder reconstructs, the residual from
        a smooth light-profile model.
    decoder_channels, fc_channels
        Passed to `Decoder` (``channels``, ``fc_channels``).
    max_epochs : int, optional
        Number of epochs.
    max_steps : int, optional
        Stop after this many optimizer steps, whatever ``max_epochs`` says.
    batch_size : int, optional
        Images per batch.
    learning_rate : float, optional
        Adam learning rate.
    val_fraction, test_fraction : float, optional
        Fractions of the images held out (`split_indices`).
    augment : bool, optional
        Random rotations and flips of the training images.
    seed : int, optional
        Seed of the split, the weight initialisation, the sampling and the
        augmentation.
    checkpoint_dir : str or path-like, optional
        Directory for the checkpoints (``last.ckpt`` and the best one by
        validation loss) and the loss history (``loss_history.ecsv``).
        Nothing is written when `None`.
    resume : str or path-like, optional
        Checkpoint to continue from, or ``'last'`` for
        ``checkpoint_dir/last.ckpt``. ``max_epochs`` counts the epochs
        already done.
    accelerator, devices, strategy, precision
        Passed to `lightning.Trainer`.
    num_workers : int, optional
        Data-loading worker processes.
    progress_bar : bool, optional
        Show Lightning's progress bar.
    callbacks : list of `lightning.pytorch.callbacks.Callback`, optional
        Extra callbacks.
    logger : bool or Lightning logger, optional
        Passed to `lightning.Trainer` (no logging by default; the loss
        history is returned and written regardless).
    init_weights : str or path-like, optional
        A weight file to start the encoder's backbone from (for example
        ImageNet weights you downloaded; `Encoder.load_backbone_weights`).

    Returns
    -------
    autoencoder : `Autoencoder`
        The trained model, on the CPU, in eval mode; ``autoencoder.encoder``
        is the `Encoder` to build latent databases with.
    history : `~astropy.table.Table`
        One row per epoch: ``epoch``, ``step`` (optimizer steps so far),
        ``train_loss``, ``val_loss`` (nan without a validation set); its
        ``meta`` holds ``TESTLOSS`` and the training settings.

    Raises
    ------
    ValueError
        For bad images, labels of the wrong length, or too few images.

    Examples
    --------
    A tiny CPU run on random images:

    >>> import numpy as np
    >>> from galmorphsearch.model import train_autoencoder
    >>> images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    >>> model, history = train_autoencoder(  # doctest: +SKIP
    ...     images, input_size=32, decoder_channels=(16,), fc_channels=32, max_steps=2,
    ...     batch_size=4)
    >>> history.colnames  # doctest: +SKIP
    ['epoch', 'step', 'train_loss', 'val_loss']
    """
    _check_duration(max_epochs, max_steps)
    data = _image_tensor(images, input_size)
    n = len(data)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != n:
            msg = f"labels must hold one label per image ({n}), got shape {labels.shape}"
            raise ValueError(msg)
    if preprocessing is None:
        from ..preprocessing import GalaxyCutout

        if isinstance(images, (list, tuple)) and images and isinstance(images[0], GalaxyCutout):
            preprocessing = images[0].header_keywords()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)
    train_idx, val_idx, test_idx = split_indices(n, val_fraction, test_fraction, seed)

    def make_module():
        return AutoencoderModule(architecture=architecture, input_size=input_size,
                                 latent_dim=latent_dim, decoder_channels=decoder_channels,
                                 fc_channels=fc_channels, name=name,
                                 preprocessing=preprocessing, learning_rate=learning_rate,
                                 input_mode=input_mode, init_weights=init_weights)

    weights = None if labels is None else class_balanced_weights(labels[train_idx])
    module, table, test_loss, trainer = _fit(
        make_module, _ImageDataset(data, train_idx, augment),
        _ImageDataset(data, val_idx, False), _ImageDataset(data, test_idx, False),
        weights=weights, batch_size=batch_size, seed=seed, max_epochs=max_epochs,
        max_steps=max_steps, checkpoint_dir=checkpoint_dir, resume=resume,
        accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
        num_workers=num_workers, progress_bar=progress_bar, callbacks=callbacks, logger=logger)

    table.meta.update({
        "TESTLOSS": test_loss, "INSIZE": input_size, "ENCARCH": architecture,
        "INMODE": input_mode,
        "LATDIM": latent_dim, "NTRAIN": len(train_idx), "NVAL": len(val_idx),
        "NTEST": len(test_idx), "BATCH": batch_size, "LR": float(learning_rate),
        "SEED": seed, "BALANCED": labels is not None, "AUGMENT": bool(augment),
    })
    _write_history(table, checkpoint_dir, trainer)
    autoencoder = module.autoencoder.to("cpu").eval()
    return autoencoder, table


def _write_history(table, checkpoint_dir, trainer):
    if checkpoint_dir is not None and trainer.is_global_zero:
        table.write(Path(checkpoint_dir) / HISTORY_FILENAME, format="ascii.ecsv",
                    overwrite=True)


# ----------------------------------------------------------------------
# Checkpoints: read by galmorphsearch itself, never unpickled with code.
#
# Lightning would read a checkpoint with ``torch.load(weights_only=None)``,
# which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 in the environment turns into a
# full unpickling (code from the file runs). Every checkpoint a training
# function resumes from is instead read here, with an explicit
# ``weights_only=True`` (which that variable does not override), checked,
# and handed to Lightning already loaded (`_SafeCheckpointIO`).

#: Keys a Lightning training checkpoint must have, with their types.
_CHECKPOINT_KEYS = {"state_dict": Mapping, "optimizer_states": list, "epoch": int,
                    "global_step": int}
#: Keys it may have, with their types.
_OPTIONAL_CHECKPOINT_KEYS = {"lr_schedulers": list, "loops": Mapping, "callbacks": Mapping,
                             "hyper_parameters": Mapping, "pytorch-lightning_version": str}


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _plain(value):
    """
    ``value`` with numpy numbers and strings as Python ones, paths as strings.

    Hyper-parameters are stored in checkpoints; plain values keep those
    readable by ``torch.load(weights_only=True)``.
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _numpy_safe_globals():
    """
    The numpy objects a checkpoint may refer to: scalars of plain dtypes.

    Checkpoints written by earlier versions of galmorphsearch could hold
    numpy numbers among their hyper-parameters. A numpy scalar is rebuilt
    from its dtype and raw bytes, running no code of the file; no other
    numpy object (arrays of objects, functions) is allowed.
    """
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = [type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64,
                                           np.uint8, np.uint16, np.uint32, np.uint64,
                                           np.float16, np.float32, np.float64, np.str_)]
    allowed = [(scalar, "numpy._core.multiarray.scalar"),
               (scalar, "numpy.core.multiarray.scalar"), np.dtype]
    return allowed + [t for t in dict.fromkeys(dtypes) if t is not np.dtype]


def _unpickler_reason(exc):
    """The useful part of a torch.load error, on one line."""
    text = " ".join(str(exc).split())
    match = re.search(r"WeightsUnpickler error: (.*?)(?: Please use| Check the documentation|$)",
                      text)
    if match:
        text = match.group(1)
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip().rstrip(".")
    if len(text) > 200:
        text = text[:200] + "..."
    return text or type(exc).__name__


def _check_zip(path):
    """Refuse a damaged zip checkpoint (torch does not check the CRCs)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            compressed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
            if compressed:
                msg = (f"checkpoint {path!r} cannot be read: it holds compressed members "
                       f"({compressed[0]}), which torch.save never writes")
                raise CheckpointFormatError(msg)
            bad = archive.testzip()
    except CheckpointFormatError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        msg = f"checkpoint {path!r} cannot be read: a damaged zip file ({_unpickler_reason(exc)})"
        raise CheckpointFormatError(msg) from None
    if bad is not None:
        msg = (f"checkpoint {path!r} is damaged: the data of {bad} fail their CRC check "
               "(the file was changed or corrupted after it was written)")
        raise CheckpointFormatError(msg)


def _read_checkpoint(path, training=True):
    """
    Read a training checkpoint with ``torch.load(weights_only=True)``, never running code.

    Whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says (an explicit
    ``weights_only=True`` is not overridden by it), only tensors, numbers,
    strings, plain containers and numpy scalars of plain dtypes are
    loaded. A zip checkpoint's CRCs are checked first.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file.
    training : bool, optional
        Check that it holds all a training run needs to resume
        (`_check_checkpoint_layout`); otherwise only that it holds a state
        dict of tensors.

    Returns
    -------
    checkpoint : dict
        The checkpoint, tensors on the CPU.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ~galmorphsearch.utils.UnsafeCheckpointError
        If the file refers to anything else (a class, a function): refused
        before any of it runs.
    ~galmorphsearch.utils.CheckpointFormatError
        If the file is empty, damaged or not a training checkpoint.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        msg = f"checkpoint {path!r} does not exist (or is not a file)"
        raise FileNotFoundError(msg)
    if os.path.getsize(path) == 0:
        msg = f"checkpoint {path!r} cannot be read: the file is empty"
        raise CheckpointFormatError(msg)
    if zipfile.is_zipfile(path):
        _check_zip(path)
    else:
        with open(path, "rb") as f:
            start = f.read(1)
        if start != b"\x80":  # torch's older format, like any pickle of protocol >= 2
            msg = (f"checkpoint {path!r} cannot be read: it is neither a zip archive nor a "
                   "pickle, so not a PyTorch checkpoint")
            raise CheckpointFormatError(msg)
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        if safe_globals is None:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        else:
            with safe_globals(_numpy_safe_globals()):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure: not a checkpoint that can be read safely
        reason = _unpickler_reason(exc)
        if re.search(r"GLOBAL|unrecognized function|Unsupported class|not an allowed", reason):
            msg = (f"checkpoint {path!r} contains objects that are not allowed in a checkpoint "
                   f"and was refused without running any of it ({reason}); only tensors, "
                   "numbers, strings and plain containers are loaded (weights_only=True)")
            raise UnsafeCheckpointError(msg) from None
        msg = (f"checkpoint {path!r} cannot be read as a PyTorch checkpoint with "
               f"weights_only=True: it is damaged or not a checkpoint ({reason})")
        raise CheckpointFormatError(msg) from None
    _check_checkpoint_layout(checkpoint, path, training)
    return checkpoint


def _check_checkpoint_layout(checkpoint, path, training=True):
    """Refuse what is not a Lightning training checkpoint (before Lightning trips on it)."""
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"),
                                                             Mapping):
        what = (f"a {type(checkpoint).__name__}" if not isinstance(checkpoint, Mapping)
                else "no 'state_dict'")
        msg = (f"checkpoint {path!r} is not a training checkpoint ({what}): use a "
               "last.ckpt or best-*.ckpt written by a training run; a plain weight file can "
               "start a new run (init_weights)")
        raise CheckpointFormatError(msg)
    keys = ({**_CHECKPOINT_KEYS, **_OPTIONAL_CHECKPOINT_KEYS} if training
            else {"state_dict": Mapping, "hyper_parameters": Mapping})
    for key, kind in keys.items():
        if key not in checkpoint:
            if training and key in _CHECKPOINT_KEYS:
                msg = (f"checkpoint {path!r} has no {key}, which resuming needs (a weights-only "
                       "checkpoint?); a new run can start from its weights (init_weights)")
                raise CheckpointFormatError(msg)
            continue
        value = checkpoint[key]
        if not isinstance(value, kind) or (kind is int and (isinstance(value, bool)
                                                            or value < 0)):
            msg = (f"checkpoint {path!r} is damaged: {key} is {value!r:.60}, not "
                   f"{'a non-negative integer' if kind is int else 'a ' + kind.__name__}")
            raise CheckpointFormatError(msg)
    for name, value in checkpoint["state_dict"].items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            msg = (f"checkpoint {path!r} is damaged: its state_dict maps {name!r:.60} to a "
                   f"{type(value).__name__}, not a tensor")
            raise CheckpointFormatError(msg)
    for i, state in enumerate(checkpoint.get("optimizer_states", [])):
        if not (isinstance(state, Mapping) and isinstance(state.get("state"), Mapping)
                and isinstance(state.get("param_groups"), list)
                and all(isinstance(g, Mapping) and isinstance(g.get("params"), list)
                        for g in state["param_groups"])):
            msg = f"checkpoint {path!r} is damaged: optimizer state {i} is not an optimizer's"
            raise CheckpointFormatError(msg)


def _check_checkpoint_fits(checkpoint, path, module, callbacks):
    """Refuse a checkpoint of another model (its tensors) or with damaged callback states."""
    have = checkpoint["state_dict"]
    want = module.state_dict()
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    reshaped = [k for k in want if k in have and tuple(have[k].shape) != tuple(want[k].shape)]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            problems.append(f"{len(keys)} {label} tensor(s) ({', '.join(keys[:3])}"
                            f"{', ...' if len(keys) > 3 else ''})")
    if reshaped:
        key = reshaped[0]
        problems.append(f"{len(reshaped)} tensor(s) of another shape ({key}: "
                        f"{tuple(have[key].shape)} in the checkpoint, "
                        f"{tuple(want[key].shape)} in the model)")
    if problems:
        msg = (f"checkpoint {path!r} does not fit the model being trained (another method, "
               f"architecture or size?): {'; '.join(problems)}")
        raise CheckpointFormatError(msg)
    states = checkpoint.get("callbacks") or {}
    for callback in callbacks:
        check = getattr(callback, "check_state", None)
        key = getattr(callback, "state_key", None)
        if check is not None and key in states:
            problem = check(states[key])
            if problem:
                msg = f"checkpoint {path!r} is damaged: {problem}"
                raise CheckpointFormatError(msg)


class _SafeCheckpointIO(TorchCheckpointIO):
    """
    Lightning checkpoint IO that reads checkpoints with `_read_checkpoint`.

    Writing is Lightning's own. A checkpoint already read (the one to resume
    from) is handed over as it is; any other file Lightning asks for is read
    safely too.
    """

    def __init__(self, path=None, checkpoint=None):
        super().__init__()
        self._preloaded = (None if path is None else os.path.realpath(path), checkpoint)

    def load_checkpoint(self, path, map_location=None, weights_only=None, **kwargs):
        """The checkpoint at ``path``, read with ``weights_only=True`` whatever is asked."""
        preloaded_path, checkpoint = self._preloaded
        if preloaded_path is not None and os.path.realpath(os.fspath(path)) == preloaded_path:
            self._preloaded = (None, None)  # handed over once; Lightning may change it
            return checkpoint
        return _read_checkpoint(path)


def _loads_through_checkpoint_io(strategy):
    """Whether ``strategy`` reads checkpoint files with its checkpoint IO (most do)."""
    return type(strategy).load_checkpoint is Strategy.load_checkpoint


def _check_duration(max_epochs, max_steps):
    """Refuse a training run that would train nothing (checked before any data work)."""
    for label, value, allow_none in (("max_epochs", max_epochs, False),
                                     ("max_steps", max_steps, True)):
        if value is None and allow_none:
            continue
        if (isinstance(value, bool) or not isinstance(value, int | np.integer)
                or value < 1):
            # Zero epochs or steps would train nothing and write an untrained
            # encoder as if it had been trained.
            msg = f"{label} must be a positive integer, got {value!r}"
            raise ValueError(msg)


def _fit(make_module, train_set, val_set, test_set, *, weights, batch_size, seed, max_epochs,
         max_steps, checkpoint_dir, resume, accelerator, devices, strategy, precision,
         num_workers, progress_bar, callbacks, logger, collate_fn=None):
    """
    Train a `_MeanLossModule` with Lightning: loaders, checkpoints, resuming.

    Shared by every training function. ``make_module`` is called once,
    under ``seed`` with torch's global random state forked, so the caller's
    state is untouched. Returns ``(module, history_table, test_loss,
    trainer)``.
    """
    _check_duration(max_epochs, max_steps)
    generator = torch.Generator().manual_seed(seed)
    n_train = len(train_set)
    sampler = _EpochSampler(n_train, seed, weights)
    # A last batch of a single image would break batch normalisation.
    drop_last = n_train > batch_size and n_train % batch_size == 1
    loader_kw = {"batch_size": batch_size, "num_workers": num_workers,
                 "persistent_workers": num_workers > 0, "collate_fn": collate_fn}
    train_loader = torch.utils.data.DataLoader(train_set, sampler=sampler,
                                               generator=generator, drop_last=drop_last,
                                               **loader_kw)
    val_loader = (torch.utils.data.DataLoader(val_set, **loader_kw)
                  if val_set is not None and len(val_set) else None)
    test_loader = (torch.utils.data.DataLoader(test_set, **loader_kw)
                   if test_set is not None and len(test_set) else None)

    history = _LossHistory()
    all_callbacks = [history, *(callbacks or [])]
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        # last.ckpt after every epoch (for resuming), and the best epoch by validation loss.
        all_callbacks.append(ModelCheckpoint(dirpath=checkpoint_dir, filename="last",
                                             monitor=None, save_top_k=1,
                                             enable_version_counter=False))
        if val_loader is not None:
            all_callbacks.append(ModelCheckpoint(
                dirpath=checkpoint_dir, filename="best-{epoch:03d}-{step:06d}",
                monitor="val_loss", mode="min", save_top_k=1))
    if resume == "last":
        if checkpoint_dir is None:
            msg = "resume='last' needs checkpoint_dir"
            raise ValueError(msg)
        resume = checkpoint_dir / "last.ckpt"
    checkpoint = None
    if resume is not None:
        resume = os.fspath(resume)
        if not os.path.isfile(resume):
            msg = f"checkpoint {resume!r} to resume from does not exist (or is not a file)"
            raise FileNotFoundError(msg)
        # Read and checked here, with weights_only=True, before anything is built;
        # Lightning is handed the dictionary (_SafeCheckpointIO), never the file.
        checkpoint = _read_checkpoint(resume)

    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(seed)
        module = make_module()
        if checkpoint is not None:
            _check_checkpoint_fits(checkpoint, resume, module, all_callbacks)
        trainer = lightning.Trainer(
            accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
            max_epochs=max_epochs, max_steps=-1 if max_steps is None else max_steps,
            callbacks=all_callbacks, logger=logger,
            enable_checkpointing=checkpoint_dir is not None,
            enable_progress_bar=progress_bar, enable_model_summary=False,
            num_sanity_val_steps=0, **({} if val_loader is not None else {"limit_val_batches": 0}),
            default_root_dir=os.fspath(checkpoint_dir) if checkpoint_dir is not None
            else scratch,
            plugins=[_SafeCheckpointIO(resume, checkpoint)],
        )
        sampler.trainer = trainer
        ckpt_path = resume
        if checkpoint is not None and not _loads_through_checkpoint_io(trainer.strategy):
            # A strategy that reads checkpoint files its own way (FSDP, DeepSpeed...) gets
            # a private copy written from the checked dictionary: nothing in it can run.
            ckpt_path = os.path.join(scratch, "resume.ckpt")
            torch.save(checkpoint, ckpt_path)
            checkpoint = None
        with warnings.catch_warnings():
            # Lightning suggests more data-loading workers whenever num_workers is small.
            # That is a deliberate default here (in-memory tensors, portable, no fork
            # surprises); users who want workers pass num_workers. Only this warning is
            # ignored, and only during this call.
            warnings.filterwarnings("ignore", message=r".*does not have many workers",
                                    category=PossibleUserWarning)
            # Lightning 2.6 calls torch's deprecated pytree LeafSpec internally (fixed
            # upstream, not ours to change); ignored here only.
            warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated",
                                    category=FutureWarning)
            if val_loader is None:
                # Without a validation set the validation loop is skipped, as intended.
                warnings.filterwarnings("ignore", message=r"You defined a `validation_step` "
                                        "but have no `val_dataloader`",
                                        category=PossibleUserWarning)
            if resume is not None:
                # Resuming writes new checkpoints beside the old ones, on purpose.
                warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists "
                                        "and is not empty")
            trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader,
                        ckpt_path=ckpt_path)
            test_loss = math.nan
            if test_loader is not None:
                result = trainer.test(module, dataloaders=test_loader, verbose=False)
                test_loss = float(result[0]["test_loss"]) if result else math.nan

    return module, history.table(), test_loss, trainer


class quiet_lightning:
    """
    A context manager that keeps Lightning's information lines off the console.

    Lightning logs which accelerator it uses and tips at the INFO level on
    every ``Trainer``; inside this context its loggers are raised to WARNING
    (and put back afterwards), so warnings and errors still show.

    Examples
    --------
    >>> from galmorphsearch.model import quiet_lightning
    >>> with quiet_lightning():
    ...     pass  # train here
    """

    _names = ("lightning", "lightning.pytorch", "lightning.fabric")

    def __enter__(self):
        self._levels = [logging.getLogger(n).level for n in self._names]
        for name in self._names:
            logging.getLogger(name).setLevel(logging.WARNING)
        return self

    def __exit__(self, *exc):
        for name, level in zip(self._names, self._levels, strict=True):
            logging.getLogger(name).setLevel(level)
        return False
