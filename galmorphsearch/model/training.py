# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Training the TSGICAS autoencoder with PyTorch Lightning.

`train_autoencoder` is the one-call entry point; `AutoencoderModule` is the
`~lightning.pytorch.LightningModule` it trains, for users who drive
`lightning.Trainer` themselves (multi-GPU strategies, mixed precision,
their own loggers and callbacks).
"""

import logging
import math
import os
import tempfile
import warnings
from pathlib import Path

import lightning
import numpy as np
import torch
from astropy.table import Table
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from torch.nn import functional as F

from ._inputs import image_source, resize, to_float
from .autoencoder import Autoencoder
from .decoder import Decoder
from .encoder import Encoder

__all__ = ["AutoencoderModule", "train_autoencoder", "class_balanced_weights",
           "split_indices", "HISTORY_FILENAME"]

#: Name of the loss-history file written beside the checkpoints.
HISTORY_FILENAME = "loss_history.ecsv"


class _MeanLossModule(lightning.LightningModule):
    """Epoch-mean losses over all devices, for the loss history (private base)."""

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
        self.save_hyperparameters(
            {"architecture": architecture, "input_size": input_size, "latent_dim": latent_dim,
             "decoder_channels": decoder_channels, "fc_channels": fc_channels, "name": name,
             "preprocessing": preprocessing, "learning_rate": learning_rate,
             "input_mode": input_mode, "init_weights": None if init_weights is None
             else os.fspath(init_weights)})
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
    if resume is not None and not os.path.isfile(resume):
        msg = f"checkpoint {os.fspath(resume)!r} to resume from does not exist"
        raise FileNotFoundError(msg)

    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as scratch:
        torch.manual_seed(seed)
        module = make_module()
        trainer = lightning.Trainer(
            accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
            max_epochs=max_epochs, max_steps=-1 if max_steps is None else max_steps,
            callbacks=all_callbacks, logger=logger,
            enable_checkpointing=checkpoint_dir is not None,
            enable_progress_bar=progress_bar, enable_model_summary=False,
            num_sanity_val_steps=0, **({} if val_loader is not None else {"limit_val_batches": 0}),
            default_root_dir=os.fspath(checkpoint_dir) if checkpoint_dir is not None
            else scratch,
        )
        sampler.trainer = trainer
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
                        ckpt_path=None if resume is None else os.fspath(resume))
            test_loss = math.nan
            if test_loader is not None:
                result = trainer.test(module, dataloaders=test_loader, verbose=False)
                test_loss = float(result[0]["test_loss"]) if result else math.nan

    return module, history.table(), test_loss, trainer


class _quiet_lightning:
    """Keep Lightning's information lines (accelerator, tips) off the console."""

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
