# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Contrastive training of an encoder without labels (Wei et al. 2022, SimCLR).

Two random views of every galaxy image (rotated, cropped, flipped,
colour-jittered) go through the encoder and a small projection head; the
InfoNCE (NT-Xent) loss pulls the two views of the same galaxy together and
pushes the views of the other galaxies of the batch away. Wei et al. (2022,
PASP 134, 114508) learn galaxy morphology this way with a trimmed ResNet-18
and a small vision transformer side by side (``architecture='hybrid'``).

`train_contrastive` is the one-call entry point; `ContrastiveModule` is the
`~lightning.pytorch.LightningModule` it trains, `TwoViewDataset` the
dataset of view pairs and `info_nce_loss` the loss.
"""

import math
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._inputs import to_float
from .backbones import BACKBONES
from .encoder import Encoder
from .training import (
    _check_duration,
    _fit,
    _image_tensor,
    _MeanLossModule,
    _plain,
    _write_history,
    split_indices,
)

__all__ = ["ContrastiveModule", "TwoViewDataset", "info_nce_loss", "train_contrastive"]


def _check_temperature(temperature):
    if (isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating))
            or not math.isfinite(temperature) or temperature <= 0):
        msg = f"temperature must be a positive finite number, got {temperature!r}"
        raise ValueError(msg)
    return float(temperature)


def info_nce_loss(z1, z2, temperature=0.1):
    """
    InfoNCE (NT-Xent) loss of two batches of embeddings of the same images.

    The 2B embeddings are compared by cosine similarity divided by
    ``temperature``. For each of them the positive is the other view of the
    same image and the 2B - 2 views of the other images are the negatives
    (its similarity to itself is left out); the loss is the cross-entropy
    of picking the positive, averaged over the 2B embeddings (Chen et al.
    2020, SimCLR). It is log(2B - 1) when the embeddings tell nothing
    apart, and tends to 0 as the two views of every image agree and differ
    from the others. It is computed in float32, also under mixed precision.

    Parameters
    ----------
    z1, z2 : `torch.Tensor`
        (B, D) embeddings of the first and the second view of B images,
        B >= 1 (with B = 1 there are no negatives and the loss is 0).
    temperature : float, optional
        Softmax temperature (0.1 in Wei et al. 2022).

    Returns
    -------
    loss : `torch.Tensor`
        Scalar.

    Raises
    ------
    ValueError
        For batches of different or wrong shapes, or a temperature that is
        not a positive number.

    Examples
    --------
    Four well-separated images whose two views agree: each view finds its
    partner among the six negatives, the loss is log(1 + 6 exp(-1 / 0.1)):

    >>> import math
    >>> import torch
    >>> from galmorphsearch.model import info_nce_loss
    >>> z = torch.eye(4)
    >>> round(float(info_nce_loss(z, z, temperature=0.1)), 5)
    0.00027
    >>> round(math.log(1 + 6 * math.exp(-10)), 5)
    0.00027

    Embeddings that are all alike give log(2B - 1):

    >>> same = torch.ones(4, 8)
    >>> math.isclose(float(info_nce_loss(same, same)), math.log(7), rel_tol=1e-6)
    True
    """
    temperature = _check_temperature(temperature)
    if not (isinstance(z1, torch.Tensor) and isinstance(z2, torch.Tensor)
            and z1.ndim == 2 and z1.shape == z2.shape and z1.shape[0] >= 1):
        shapes = [tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
                  for z in (z1, z2)]
        msg = f"z1 and z2 must be (B, D) tensors of the same shape, got {shapes[0]} and {shapes[1]}"
        raise ValueError(msg)
    n = z1.shape[0]
    with torch.autocast(device_type=z1.device.type, enabled=False):
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
        logits = z @ z.T / temperature
        self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
        return F.cross_entropy(logits, targets)


def _random_view(x, size, generator=None):
    """
    One random view of a (3, H, W) float image in [0, 1], (3, size, size).

    Rotation by 0-360 degrees, a random resized crop of 80-100 per cent of
    the area (aspect ratio 3/4-4/3), horizontal and vertical flips with
    probability 1/2, then colour jitter (brightness 0.2, contrast 0.5,
    saturation 0.5, hue 0.4, in random order), as torchvision's
    ``RandomRotation``, ``RandomResizedCrop``, ``RandomHorizontalFlip``,
    ``RandomVerticalFlip`` and ``ColorJitter`` do, with every random number
    drawn from ``generator`` (torch's global generator when `None`).
    """
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    def uniform(low, high):
        return float(torch.empty(()).uniform_(low, high, generator=generator))

    x = TF.rotate(x, uniform(0.0, 360.0), interpolation=InterpolationMode.BILINEAR, fill=0.0)
    height, width = x.shape[-2:]
    top, left, h, w = 0, 0, height, width
    for _ in range(10):
        area = height * width * uniform(0.8, 1.0)
        ratio = math.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= width and 0 < ch <= height:
            top = int(torch.randint(0, height - ch + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - cw + 1, (1,), generator=generator))
            h, w = ch, cw
            break
    x = TF.resized_crop(x, top, left, h, w, [size, size],
                        interpolation=InterpolationMode.BILINEAR, antialias=True)
    if uniform(0.0, 1.0) < 0.5:
        x = TF.horizontal_flip(x)
    if uniform(0.0, 1.0) < 0.5:
        x = TF.vertical_flip(x)
    factors = (uniform(0.8, 1.2), uniform(0.5, 1.5), uniform(0.5, 1.5), uniform(-0.4, 0.4))
    jitters = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    for i in torch.randperm(4, generator=generator).tolist():
        x = jitters[i](x, factors[i])
    return x.clamp_(0.0, 1.0)


class TwoViewDataset(torch.utils.data.Dataset):
    """
    Pairs of random views of galaxy images, for contrastive learning.

    Item ``i`` is ``(view1, view2)``: two independent random views of the
    image, each a (3, input_size, input_size) float32 tensor in [0, 1].
    A view is the image rotated by 0-360 degrees, randomly cropped to 80-100
    per cent of its area and resized to ``input_size``
    (``RandomResizedCrop``), flipped horizontally and vertically with
    probability 1/2 each, and colour-jittered (brightness 0.2, contrast 0.5,
    saturation 0.5, hue 0.4), the augmentations of Wei et al. (2022), with
    torchvision's `~torchvision.transforms.v2` operations.

    Parameters
    ----------
    images : `torch.Tensor` or any form `Encoder.encode` accepts
        The images: a (N, 3, H, W) tensor, uint8 or float in [0, 1], is
        used as it is; anything else (cutouts, arrays, file paths) is read
        and resized to ``input_size`` first.
    indices : array-like of int, optional
        The images of the dataset (default: all).
    input_size : int, optional
        Side of the views in pixels.
    seed : int, optional
        With `None` (for training) the views are drawn from torch's global
        random generator, new ones at each call. With a seed (for
        validation) the views of an image are always the same: they are
        drawn from a generator seeded by ``seed`` and the image's index.

    Examples
    --------
    >>> import torch
    >>> from galmorphsearch.model import TwoViewDataset
    >>> images = torch.rand(4, 3, 48, 48)
    >>> views = TwoViewDataset(images, input_size=32, seed=0)
    >>> v1, v2 = views[1]
    >>> v1.shape, bool(torch.equal(v1, views[1][0])), bool(torch.equal(v1, v2))
    (torch.Size([3, 32, 32]), True, False)
    """

    def __init__(self, images, indices=None, *, input_size=84, seed=None):
        if isinstance(input_size, bool) or not isinstance(input_size, (int, np.integer)) \
                or input_size < 1:
            msg = f"input_size must be a positive integer, got {input_size!r}"
            raise ValueError(msg)
        self.input_size = int(input_size)
        if not (isinstance(images, torch.Tensor) and images.ndim == 4 and images.shape[1] == 3):
            images = _image_tensor(images, self.input_size)
        self.images = images
        self.indices = (np.arange(len(images)) if indices is None
                        else np.asarray(indices, dtype=np.int64))
        self.seed = None if seed is None else int(seed)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = int(self.indices[i])
        x = to_float(self.images[index])
        generator = None
        if self.seed is not None:
            item_seed = int(np.random.SeedSequence([self.seed, index]).generate_state(1)[0])
            generator = torch.Generator().manual_seed(item_seed)
        return (_random_view(x, self.input_size, generator),
                _random_view(x, self.input_size, generator))


class ContrastiveModule(_MeanLossModule):
    """
    LightningModule that trains an `Encoder` by contrastive learning (SimCLR).

    The two views of each image of a batch go through the encoder and a
    projection head, a two-layer perceptron (Linear(F, F), ReLU,
    Linear(F, ``projection_dim``), with F the encoder's ``latent_dim``);
    `info_nce_loss` over the 2B projections is minimised by SGD with
    momentum and weight decay, under a cosine learning-rate schedule over
    the planned optimizer steps (``trainer.estimated_stepping_batches``),
    as in Wei et al. (2022). The negatives of an image are the other images
    of its batch on the same device. Batches of a single image (no
    negatives) are skipped.

    The projection head serves the training only: similarity search uses
    the encoder's output, ``module.encoder``. The hyper-parameters are saved
    in checkpoints, so ``ContrastiveModule.load_from_checkpoint(path)``
    rebuilds the model. When training resumes from a checkpoint with more
    (or fewer) planned steps, the rest of the cosine schedule is stretched
    over the new plan.

    Parameters
    ----------
    architecture, input_size, latent_dim, name, preprocessing, input_mode
        Passed to `Encoder`. ``architecture='hybrid'`` (default) is the
        fused encoder of Wei et al. (2022); ``'resnet18-trimmed'`` and
        ``'vit-small'`` are its convolutional-only and transformer-only
        ablations. ``latent_dim=None`` keeps the backbone's features.
    temperature : float, optional
        Temperature of `info_nce_loss`.
    projection_dim : int, optional
        Output size of the projection head.
    learning_rate, momentum, weight_decay : float, optional
        SGD settings; ``learning_rate`` is the rate at the start of the
        cosine schedule (default 0.075 = 0.3 x 64 / 256, SimCLR's linear
        scaling rule for batches of 64; `train_contrastive` scales it with
        its ``batch_size``).
    init_weights : str or path-like, optional
        A weight file to start the encoder's backbone from
        (`Encoder.load_backbone_weights`).

    Attributes
    ----------
    encoder : `Encoder`
        The model being trained (``training_method`` is
        ``'contrastive'``).
    head : `torch.nn.Sequential`
        The projection head.
    """

    def __init__(self, architecture="hybrid", input_size=84, latent_dim=None, name=None,
                 preprocessing=None, input_mode="rgb", temperature=0.1, projection_dim=128,
                 learning_rate=0.075, momentum=0.9, weight_decay=1e-4, init_weights=None):
        super().__init__()
        # Plain Python values: checkpoints stay readable with weights_only=True.
        self.save_hyperparameters(_plain(
            {"architecture": architecture, "input_size": input_size, "latent_dim": latent_dim,
             "name": name, "preprocessing": preprocessing, "input_mode": input_mode,
             "temperature": temperature, "projection_dim": projection_dim,
             "learning_rate": learning_rate, "momentum": momentum,
             "weight_decay": weight_decay,
             "init_weights": None if init_weights is None else os.fspath(init_weights)}))
        self.temperature = _check_temperature(temperature)
        if (isinstance(projection_dim, bool) or not isinstance(projection_dim, (int, np.integer))
                or projection_dim < 1):
            msg = f"projection_dim must be a positive integer, got {projection_dim!r}"
            raise ValueError(msg)
        for label, value, ok, what in (
                ("learning_rate", learning_rate, lambda v: v > 0, "a positive number"),
                ("momentum", momentum, lambda v: 0 <= v < 1, "a number in [0, 1)"),
                ("weight_decay", weight_decay, lambda v: v >= 0, "a non-negative number")):
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.floating))
                    or not math.isfinite(value) or not ok(value)):
                msg = f"{label} must be {what}, got {value!r}"
                raise ValueError(msg)
        encoder = Encoder(architecture=architecture, input_size=input_size,
                          latent_dim=latent_dim, name=name, preprocessing=preprocessing,
                          input_mode=input_mode)
        if init_weights is not None:
            encoder.load_backbone_weights(init_weights)
        encoder.training_method = "contrastive"
        self.encoder = encoder
        features = encoder.latent_dim
        self.head = nn.Sequential(nn.Linear(features, features), nn.ReLU(inplace=True),
                                  nn.Linear(features, int(projection_dim)))
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self._sums = {}

    def forward(self, x):
        """Projections (B, projection_dim) of a (B, 3, H, W) batch in [0, 1]."""
        return self.head(self.encoder(x))

    def _step(self, batch, stage):
        view1, view2 = batch
        n = view1.shape[0]
        if n < 2:  # no negatives: nothing to learn, and a loss of 0 would bias the mean
            return None
        z1, z2 = self(torch.cat([view1, view2])).chunk(2)
        loss = info_nce_loss(z1, z2, self.temperature)
        self._record_loss(stage, loss, n)
        return loss

    def configure_optimizers(self):
        """SGD with momentum and weight decay, cosine schedule over the planned steps."""
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            msg = "the cosine learning-rate schedule needs a finite max_epochs or max_steps"
            raise ValueError(msg)
        optimizer = torch.optim.SGD(self.parameters(), lr=self.learning_rate,
                                    momentum=self.momentum, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer,
                                                               T_max=max(1, int(total)))
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_train_start(self):
        """Stretch the rest of a restored cosine schedule over the planned steps."""
        total = max(1, int(self.trainer.estimated_stepping_batches))
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if (not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
                    or scheduler.T_max == total):
                continue
            scheduler.T_max = total
            done = min(scheduler.last_epoch, total)
            lrs = [scheduler.eta_min + (base - scheduler.eta_min)
                   * (1 + math.cos(math.pi * done / total)) / 2 for base in scheduler.base_lrs]
            for group, lr in zip(scheduler.optimizer.param_groups, lrs, strict=True):
                group["lr"] = lr
            scheduler._last_lr = lrs


def train_contrastive(images, *, architecture="hybrid", input_size=84, input_mode="rgb",
                      latent_dim=None, name=None, preprocessing=None, temperature=0.1,
                      projection_dim=128, max_epochs=100, max_steps=None, batch_size=64,
                      learning_rate=None, momentum=0.9, weight_decay=1e-4, val_fraction=0.1,
                      test_fraction=0.0, seed=0, checkpoint_dir=None, resume=None,
                      init_weights=None, accelerator="auto", devices="auto", strategy="auto",
                      precision="32-true", num_workers=0, progress_bar=False, callbacks=None,
                      logger=False):
    """
    Train an encoder on unlabelled galaxy images by contrastive learning.

    The method of Wei et al. (2022, PASP 134, 114508), in the SimCLR
    framework: every training image gives two random views
    (`TwoViewDataset`: rotation by 0-360 degrees, a random resized crop of
    80-100 per cent of the area, horizontal and vertical flips, colour
    jitter); the encoder and a projection head (a two-layer perceptron to
    ``projection_dim``) map the 2B views of a batch to embeddings, and the
    InfoNCE loss (`info_nce_loss`, cosine similarity, ``temperature``)
    makes the two views of each image more alike than the views of the
    other images. The optimizer is SGD with momentum and weight decay,
    under a cosine learning-rate schedule over the planned steps. No labels
    are used.

    The images are split into training, validation and (optionally) test
    sets with a seeded permutation (`split_indices`). The validation and
    test views are random too, but the same at every epoch (seeded by
    ``seed`` and the image), so the validation loss can be compared from
    one epoch to the next. The loss depends on the batch size (it is
    log(2B - 1) for an encoder that tells nothing apart), so compare losses
    at equal batch sizes.

    Similarity search uses the features of the returned `Encoder`, not the
    projection head, which serves the training only (as in SimCLR and Wei
    et al.). ``architecture='hybrid'`` is their fused encoder, a trimmed
    ResNet-18 and a small vision transformer side by side (512 features);
    their convolutional-only and transformer-only ablations are
    ``architecture='resnet18-trimmed'`` and ``architecture='vit-small'``
    (256 features each).

    The same call runs on the CPU and, unchanged, on GPUs
    (``accelerator='auto'``); ``devices``, ``strategy`` (e.g. ``'ddp'``) and
    ``precision`` (e.g. ``'bf16-mixed'``) are passed to `lightning.Trainer`.
    With several devices each one draws its negatives from its own batch.
    The global random state is left untouched: the run is seeded by
    ``seed`` alone.

    Parameters
    ----------
    images : list, `~numpy.ndarray` or `torch.Tensor`
        The training images: a list of
        `~galmorphsearch.preprocessing.GalaxyCutout`, arrays, a tensor or a
        list of file paths, in any form `Encoder.encode` accepts; resized
        to ``input_size``.
    architecture, input_size, input_mode, latent_dim, name, preprocessing
        Passed to `Encoder` (84-pixel inputs as in Wei et al. 2022;
        ``latent_dim=None`` keeps the backbone's features).
        ``preprocessing`` defaults to the header keywords of the first
        cutout when ``images`` are cutouts.
    temperature : float, optional
        Temperature of the InfoNCE loss (0.1 in Wei et al. 2022).
    projection_dim : int, optional
        Output size of the projection head (128 in Wei et al. 2022).
    max_epochs : int, optional
        Number of epochs.
    max_steps : int, optional
        Stop after this many optimizer steps, whatever ``max_epochs`` says
        (the cosine schedule then spans ``max_steps``).
    batch_size : int, optional
        Images per batch, at least 2 (each gives two views; the other
        images of the batch are the negatives, so larger batches help).
    learning_rate : float, optional
        Initial SGD learning rate; default 0.3 x ``batch_size`` / 256
        (0.075 for batches of 64), the linear scaling rule of SimCLR. The
        released code of Wei et al. uses 0.01 with batches of 256.
    momentum, weight_decay : float, optional
        SGD momentum and weight decay.
    val_fraction, test_fraction : float, optional
        Fractions of the images held out (`split_indices`); each held-out
        set is empty or has at least two images.
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
        already done. An interrupted run resumed with the same settings
        ends as the uninterrupted run would have.
    init_weights : str or path-like, optional
        A weight file to start the encoder's backbone from
        (`Encoder.load_backbone_weights`).
    accelerator, devices, strategy, precision
        Passed to `lightning.Trainer`.
    num_workers : int, optional
        Data-loading worker processes (the augmentation runs in them).
    progress_bar : bool, optional
        Show Lightning's progress bar.
    callbacks : list of `lightning.pytorch.callbacks.Callback`, optional
        Extra callbacks.
    logger : bool or Lightning logger, optional
        Passed to `lightning.Trainer`.

    Returns
    -------
    encoder : `Encoder`
        The trained encoder, on the CPU, in eval mode, with
        ``training_method`` ``'contrastive'`` (recorded in its weight files
        and in the latent databases built with it).
    history : `~astropy.table.Table`
        One row per epoch: ``epoch``, ``step`` (optimizer steps so far),
        ``train_loss``, ``val_loss`` (nan without a validation set); its
        ``meta`` holds ``TESTLOSS`` and the training settings (``METHOD``,
        ``TEMP``, ``PROJDIM``, ``INSIZE``, ``ENCARCH``, ``INMODE``,
        ``LATDIM``, ``BATCH``, ``LR``, ``MOMENTUM``, ``WDECAY``, ``SEED``,
        ``NTRAIN``, ``NVAL``, ``NTEST``).

    Raises
    ------
    ValueError
        For bad images, a batch size below 2, a temperature that is not a
        positive number, an unknown architecture, fewer than two training
        images or a held-out set of a single image.

    Examples
    --------
    A tiny CPU run on random images (each epoch sees 18 pairs of views):

    >>> import numpy as np
    >>> from galmorphsearch.model import train_contrastive
    >>> images = np.random.default_rng(0).integers(0, 256, (20, 48, 48, 3), dtype=np.uint8)
    >>> encoder, history = train_contrastive(  # doctest: +SKIP
    ...     images, architecture="resnet18-trimmed", input_size=32, batch_size=8, max_steps=3)
    >>> encoder.training_method, encoder.latent_dim  # doctest: +SKIP
    ('contrastive', 256)
    >>> history.colnames  # doctest: +SKIP
    ['epoch', 'step', 'train_loss', 'val_loss']
    """
    _check_duration(max_epochs, max_steps)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 2:
        msg = (f"batch_size must be an integer >= 2 (the other images of a batch are the "
               f"negatives), got {batch_size!r}")
        raise ValueError(msg)
    batch_size = int(batch_size)
    temperature = _check_temperature(temperature)
    if architecture not in BACKBONES:
        msg = (f"unknown architecture {architecture!r}: choose among "
               f"{', '.join(sorted(BACKBONES))}")
        raise ValueError(msg)
    if learning_rate is None:
        learning_rate = 0.3 * batch_size / 256
    data = _image_tensor(images, input_size)
    n = len(data)
    if preprocessing is None:
        from ..preprocessing import GalaxyCutout

        if isinstance(images, (list, tuple)) and images and isinstance(images[0], GalaxyCutout):
            preprocessing = images[0].header_keywords()
    train_idx, val_idx, test_idx = split_indices(n, val_fraction, test_fraction, seed)
    if len(train_idx) < 2:
        msg = f"contrastive learning needs at least 2 training images, got {len(train_idx)}"
        raise ValueError(msg)
    for label, part in (("validation", val_idx), ("test", test_idx)):
        if len(part) == 1:
            msg = (f"the {label} set holds a single image, which has no negatives: change "
                   f"val_fraction/test_fraction to hold out none or at least 2 of the {n}")
            raise ValueError(msg)

    def make_module():
        return ContrastiveModule(architecture=architecture, input_size=input_size,
                                 latent_dim=latent_dim, name=name, preprocessing=preprocessing,
                                 input_mode=input_mode, temperature=temperature,
                                 projection_dim=projection_dim, learning_rate=learning_rate,
                                 momentum=momentum, weight_decay=weight_decay,
                                 init_weights=init_weights)

    def views(indices, view_seed):
        return TwoViewDataset(data, indices, input_size=input_size, seed=view_seed)

    module, table, test_loss, trainer = _fit(
        make_module, views(train_idx, None), views(val_idx, seed), views(test_idx, seed),
        weights=None, batch_size=batch_size, seed=seed, max_epochs=max_epochs,
        max_steps=max_steps, checkpoint_dir=checkpoint_dir, resume=resume,
        accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
        num_workers=num_workers, progress_bar=progress_bar, callbacks=callbacks, logger=logger)

    encoder = module.encoder
    table.meta.update({
        "METHOD": "contrastive", "TESTLOSS": test_loss, "TEMP": temperature,
        "PROJDIM": int(projection_dim), "INSIZE": input_size, "ENCARCH": architecture,
        "INMODE": input_mode, "LATDIM": encoder.latent_dim, "BATCH": batch_size,
        "LR": float(learning_rate), "MOMENTUM": float(momentum),
        "WDECAY": float(weight_decay), "SEED": seed, "NTRAIN": len(train_idx),
        "NVAL": len(val_idx), "NTEST": len(test_idx),
    })
    _write_history(table, checkpoint_dir, trainer)
    return encoder.to("cpu").eval(), table
