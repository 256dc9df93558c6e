# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Supervised CNN classifiers as feature extractors.

The baselines of the related work: a convolutional network trained to
classify galaxy morphologies, whose penultimate layer is then used as the
latent space for similarity search. `train_classifier` is the one-call entry
point and returns the trained `Encoder` (the classification head is
dropped); `ClassifierModule` is the `~lightning.pytorch.LightningModule` it
trains, for users who drive `lightning.Trainer` themselves.
"""

import math
import numbers
import os
import re

import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.nn import functional as F

from ._inputs import resize
from .encoder import Encoder
from .training import (
    _check_duration,
    _fit,
    _image_tensor,
    _ImageDataset,
    _is_number,
    _MeanLossModule,
    _plain,
    _write_history,
    class_balanced_weights,
    split_indices,
)

__all__ = ["ClassifierModule", "train_classifier"]


class ClassifierModule(_MeanLossModule):
    """
    LightningModule that trains an `Encoder` with a classification head.

    The encoder's output is the penultimate layer of the classifier, the
    latent space used for retrieval. The head is ReLU, dropout and a linear
    layer to one logit per class, so that with ``latent_dim`` set the
    encoder's linear projection is a real hidden layer (its pre-activation
    values are the latent vector). Cross-entropy loss minimised with Adam.
    The hyper-parameters, the class names included, are saved in
    checkpoints, so ``ClassifierModule.load_from_checkpoint(path)``
    rebuilds the model; the head is stored as ``fc``, which
    `Encoder.from_state_dict_file` leaves out.

    Parameters
    ----------
    classes : sequence of str
        The class names, in the order of the logits (at least two).
    architecture, input_size, latent_dim, name, preprocessing, input_mode
        Passed to `Encoder` (``'vgg-small'`` by default: the VGG-style
        baseline; ``'resnet18'`` for the ResNet one; any registered
        backbone works).
    learning_rate : float, optional
        Adam learning rate.
    dropout : float, optional
        Dropout probability before the last linear layer.
    init_weights : str or path-like, optional
        A weight file to start the encoder's backbone from
        (`Encoder.load_backbone_weights`).

    Attributes
    ----------
    encoder : `Encoder`
        The feature extractor being trained (``training_method``
        ``'supervised'``).
    fc : `torch.nn.Sequential`
        The classification head.
    classes : list of str
        The class names.
    """

    def __init__(self, classes, architecture="vgg-small", input_size=64, latent_dim=None,
                 name=None, preprocessing=None, input_mode="rgb", learning_rate=1e-3,
                 dropout=0.5, init_weights=None):
        super().__init__()
        classes = _check_classes(classes)
        # Plain Python values: checkpoints stay readable with weights_only=True.
        self.save_hyperparameters(_plain(
            {"classes": classes, "architecture": architecture, "input_size": input_size,
             "latent_dim": latent_dim, "name": name, "preprocessing": preprocessing,
             "input_mode": input_mode, "learning_rate": learning_rate, "dropout": dropout,
             "init_weights": None if init_weights is None else os.fspath(init_weights)}))
        if not (isinstance(learning_rate, numbers.Real) and not isinstance(learning_rate, bool)
                and learning_rate > 0):
            msg = f"learning_rate must be a positive number, got {learning_rate!r}"
            raise ValueError(msg)
        if not (isinstance(dropout, numbers.Real) and not isinstance(dropout, bool)
                and 0 <= dropout < 1):
            msg = f"dropout must lie in [0, 1), got {dropout!r}"
            raise ValueError(msg)
        self.encoder = Encoder(architecture=architecture, input_size=input_size,
                               latent_dim=latent_dim, name=name, preprocessing=preprocessing,
                               input_mode=input_mode)
        if init_weights is not None:
            self.encoder.load_backbone_weights(init_weights)
        self.encoder.training_method = "supervised"
        self.fc = nn.Sequential(nn.ReLU(), nn.Dropout(float(dropout)),
                                nn.Linear(self.encoder.latent_dim, len(classes)))
        self.classes = classes
        self.learning_rate = float(learning_rate)
        self._sums = {}
        self._hits = {}

    def forward(self, x):
        """Class logits (B, n_classes) of a (B, 3, H, W) batch in [0, 1]."""
        return self.fc(self.encoder(x))

    def _step(self, batch, stage):
        x, y = batch
        x = resize(x, self.encoder.input_size)
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        n = x.shape[0]
        self._record_loss(stage, loss, n)
        correct = (logits.detach().argmax(dim=1) == y).sum()
        self.log(f"{stage}_acc", correct.float() / n, on_step=False, on_epoch=True,
                 batch_size=n, sync_dist=True)
        hits, count = self._hits.get(stage, (0, 0))
        self._hits[stage] = (hits + correct, count + n)
        return loss

    def on_train_epoch_start(self):
        """Reset the running training loss and accuracy."""
        super().on_train_epoch_start()
        self._hits.pop("train", None)

    def on_validation_epoch_start(self):
        """Reset the running validation loss and accuracy."""
        super().on_validation_epoch_start()
        self._hits.pop("val", None)

    def on_test_epoch_start(self):
        """Reset the running test loss and accuracy."""
        self._sums.pop("test", None)
        self._hits.pop("test", None)

    def epoch_accuracy(self, stage):
        """Accuracy of the current epoch of ``stage`` over all devices (nan if none)."""
        return self._device_ratio(self._hits.get(stage))

    def configure_optimizers(self):
        """Adam with ``learning_rate``."""
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate)


class _AccuracyHistory(Callback):
    """Per-epoch train and validation accuracy, kept in checkpoints (like the loss history)."""

    def __init__(self):
        self.rows = {}

    def _record(self, trainer, module, with_val):
        epoch = int(trainer.current_epoch)
        if epoch in self.rows:
            return
        self.rows[epoch] = (module.epoch_accuracy("train"),
                            module.epoch_accuracy("val") if with_val else math.nan)

    def on_validation_epoch_end(self, trainer, module):
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._record(trainer, module, True)

    def on_train_epoch_end(self, trainer, module):
        self._record(trainer, module, False)

    def state_dict(self):
        return {"rows": [[epoch, *values] for epoch, values in self.rows.items()]}

    def load_state_dict(self, state_dict):
        self.rows = {int(row[0]): (float(row[1]), float(row[2]))
                     for row in state_dict.get("rows", [])}

    @staticmethod
    def check_state(state):
        """Why a checkpoint's state of this callback cannot be restored, or None."""
        rows = state.get("rows", []) if isinstance(state, dict) else None
        if not isinstance(rows, list):
            return "its accuracy history is damaged (no list of rows)"
        for i, row in enumerate(rows):
            if not (isinstance(row, (list, tuple)) and len(row) == 3
                    and all(_is_number(v) for v in row)):
                return f"its accuracy history is damaged (row {i}: {row!r:.80})"
        return None


class _LabelledDataset(_ImageDataset):
    """(image, class index) pairs, with the augmentation of `_ImageDataset`."""

    def __init__(self, images, codes, indices, augment):
        super().__init__(images, indices, augment)
        self.codes = torch.as_tensor(codes, dtype=torch.int64)

    def __getitem__(self, i):
        return super().__getitem__(i), self.codes[int(self.indices[i])]


def _check_classes(classes):
    if isinstance(classes, (str, bytes)) or not np.iterable(classes):
        msg = f"classes must be a sequence of class names, got {classes!r}"
        raise ValueError(msg)
    names = [_label_name(c, "classes") for c in classes]
    if len(names) < 2:
        msg = f"a classifier needs at least 2 classes, got {names}"
        raise ValueError(msg)
    if len(set(names)) != len(names):
        msg = f"classes must be distinct, got {names}"
        raise ValueError(msg)
    return names


def _label_name(value, what):
    """The class name of one label: a non-empty string without commas, or an integer."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        msg = (f"{what} must be strings or integers (one class name each), got "
               f"{value!r} of type {type(value).__name__}")
        raise ValueError(msg)
    name = str(value)
    if not name.strip():
        msg = f"{what} hold an empty class name"
        raise ValueError(msg)
    if "," in name:
        msg = f"class names may not contain commas, got {name!r} in {what}"
        raise ValueError(msg)
    return name


def _label_names(labels, n):
    """Class name of every image, with clear errors for missing labels."""
    if labels is None:
        msg = "labels are required: one class label per image"
        raise ValueError(msg)
    mask = np.ma.getmaskarray(labels) if np.ma.isMaskedArray(labels) else None
    values = np.asarray(labels, dtype=object)
    if values.ndim != 1 or len(values) != n:
        msg = f"labels must hold one label per image ({n}), got shape {values.shape}"
        raise ValueError(msg)
    missing = [i for i, v in enumerate(values)
               if v is None or (isinstance(v, (float, np.floating)) and not math.isfinite(v))
               or (isinstance(v, (str, np.str_)) and not v.strip())
               or (mask is not None and mask[i])]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
        msg = f"{len(missing)} images have no label (None, nan, masked or empty): {shown}"
        raise ValueError(msg)
    return [_label_name(v, "labels") for v in values]


def _default_classes(names):
    """Sorted distinct labels: numerically for integer labels, else as strings."""
    distinct = set(names)
    if all(re.fullmatch(r"-?[0-9]+", n) for n in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def train_classifier(images, labels, *, architecture="vgg-small", input_size=64,
                     input_mode="rgb", latent_dim=None, name=None, preprocessing=None,
                     classes=None, balanced=True, max_epochs=30, max_steps=None, batch_size=42,
                     learning_rate=1e-3, dropout=0.5, val_fraction=0.2, test_fraction=0.0,
                     augment=True, seed=0, checkpoint_dir=None, resume=None,
                     init_weights=None, accelerator="auto", devices="auto", strategy="auto",
                     precision="32-true", num_workers=0, progress_bar=False, callbacks=None,
                     logger=False):
    """
    Train a supervised CNN classifier of morphologies and keep its feature extractor.

    The baseline of the related work: a convolutional network (VGG-style
    by default, or a ResNet) trained to classify galaxy images, whose
    penultimate layer then serves as the latent space for similarity
    search. The network is an `Encoder` followed by a head (ReLU, dropout,
    linear layer to the class logits); cross-entropy is minimised with
    Adam (learning rate 1e-3 by default) on randomly rotated (0-360
    degrees) and flipped training images, as for `train_autoencoder`.
    With ``balanced`` the training batches are drawn with class-balanced
    weights (`class_balanced_weights`) so that rare morphologies are seen as
    often as common ones. The images are split into training, validation
    and (optionally) test sets with a seeded permutation; the validation and
    test accuracies of the final model are measured at the end.

    Only the encoder is returned: the classification head is dropped, since
    retrieval uses the latent vectors. It is kept in the checkpoints
    (`ClassifierModule.load_from_checkpoint`) for users who want the
    classifier itself.

    The same call runs on the CPU and, unchanged, on GPUs
    (``accelerator='auto'``); the global random state is left untouched.

    Parameters
    ----------
    images : list, `~numpy.ndarray` or `torch.Tensor`
        The training images: a list of
        `~galmorphsearch.preprocessing.GalaxyCutout`, arrays, a tensor or a
        list of file paths, in any form `Encoder.encode` accepts; resized
        to ``input_size``.
    labels : array-like
        One class label per image: strings (e.g. ``'Sb'``) or integers;
        none may be missing (`None`, nan, masked or empty).
    architecture : str, optional
        The backbone (`Encoder`): ``'vgg-small'`` (default, the VGG-style
        baseline, 256 features) or ``'resnet18'`` (the ResNet-style one,
        512 features); any registered backbone works.
    input_size : int, optional
        Side of the images the model works on.
    input_mode, name, preprocessing
        Passed to `Encoder`. ``preprocessing`` defaults to the header
        keywords of the first cutout when ``images`` are cutouts.
    latent_dim : int, optional
        Size of the latent vector. `None` (default): the backbone's
        pooled features feed the head directly. Otherwise a linear
        projection to ``latent_dim`` is added, a hidden layer whose output
        is the latent vector.
    classes : sequence of str, optional
        The class names in the order of the logits; they must include
        every label (extra classes are allowed). Default: the distinct
        labels, sorted (numerically for integer labels).
    balanced : bool, optional
        Draw training batches with class-balanced weights.
    max_epochs : int, optional
        Number of epochs.
    max_steps : int, optional
        Stop after this many optimizer steps, whatever ``max_epochs`` says.
    batch_size : int, optional
        Images per batch.
    learning_rate : float, optional
        Adam learning rate.
    dropout : float, optional
        Dropout probability in the head.
    val_fraction, test_fraction : float, optional
        Fractions of the images held out (`split_indices`).
    augment : bool, optional
        Random rotations and flips of the training images.
    seed : int, optional
        Seed of the split, the weight initialisation, the sampling and the
        augmentation.
    checkpoint_dir : str or path-like, optional
        Directory for the checkpoints (``last.ckpt`` and the best one by
        validation loss) and the history (``loss_history.ecsv``). Nothing
        is written when `None`.
    resume : str or path-like, optional
        Checkpoint to continue from, or ``'last'`` for
        ``checkpoint_dir/last.ckpt``. ``max_epochs`` counts the epochs
        already done.
    init_weights : str or path-like, optional
        A weight file to start the encoder's backbone from
        (`Encoder.load_backbone_weights`).
    accelerator, devices, strategy, precision
        Passed to `lightning.Trainer`.
    num_workers : int, optional
        Data-loading worker processes.
    progress_bar : bool, optional
        Show Lightning's progress bar.
    callbacks : list of `lightning.pytorch.callbacks.Callback`, optional
        Extra callbacks.
    logger : bool or Lightning logger, optional
        Passed to `lightning.Trainer` (``train_loss``, ``val_loss``,
        ``train_acc``, ``val_acc`` are logged).

    Returns
    -------
    encoder : `Encoder`
        The trained feature extractor, on the CPU, in eval mode, with
        ``training_method`` ``'supervised'``; the classification head is
        dropped.
    history : `~astropy.table.Table`
        One row per epoch: ``epoch``, ``step`` (optimizer steps so far),
        ``train_loss``, ``val_loss``, ``train_accuracy`` (on the augmented
        training batches, with dropout) and ``val_accuracy`` (nan without a
        validation set or where an epoch was cut short by ``max_steps``).
        Its ``meta`` holds ``CLASSES`` (comma-joined class names),
        ``VALACC`` and ``VALLOSS`` (the final model on the validation set),
        ``TESTACC`` and ``TESTLOSS`` (on the test set; nan without one) and
        the training settings.

    Raises
    ------
    ValueError
        For bad images, missing or malformed labels, fewer than two
        classes, ``classes`` that miss a label, or too few images.

    Notes
    -----
    Batch normalisation uses the running statistics of the training
    batches in eval mode (validation, testing, encoding). In very short
    runs (tens of steps at the default learning rate) these lag behind the
    fast-changing weights, so the eval-mode classification, and with it
    ``val_accuracy``, ``VALACC`` and ``TESTACC``, can be much worse than
    the training accuracy even where the latent vectors already separate
    the classes well. Full-length runs are not affected in practice.

    Examples
    --------
    A tiny CPU run on random images:

    >>> import numpy as np
    >>> from galmorphsearch.model import train_classifier
    >>> images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    >>> labels = ["Er", "Sb"] * 5
    >>> encoder, history = train_classifier(  # doctest: +SKIP
    ...     images, labels, input_size=32, max_steps=2, batch_size=4)
    >>> encoder.training_method, history.meta["CLASSES"]  # doctest: +SKIP
    ('supervised', 'Er,Sb')
    >>> encoder.encode(images).shape  # doctest: +SKIP
    (10, 256)
    """
    _check_duration(max_epochs, max_steps)
    data = _image_tensor(images, input_size)
    n = len(data)
    names = _label_names(labels, n)
    if classes is None:
        classes = _default_classes(names)
    else:
        classes = _check_classes(classes)
        unknown = sorted(set(names) - set(classes))
        if unknown:
            msg = f"labels {unknown} are not among classes {classes}"
            raise ValueError(msg)
    present = set(names)
    if len(present) < 2:
        msg = f"a classifier needs at least 2 classes among the labels, got {sorted(present)}"
        raise ValueError(msg)
    index = {c: i for i, c in enumerate(classes)}
    codes = np.array([index[name] for name in names], dtype=np.int64)
    if preprocessing is None:
        from ..preprocessing import GalaxyCutout

        if isinstance(images, (list, tuple)) and images and isinstance(images[0], GalaxyCutout):
            preprocessing = images[0].header_keywords()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)
    train_idx, val_idx, test_idx = split_indices(n, val_fraction, test_fraction, seed)

    def make_module():
        return ClassifierModule(classes, architecture=architecture, input_size=input_size,
                                latent_dim=latent_dim, name=name, preprocessing=preprocessing,
                                input_mode=input_mode, learning_rate=learning_rate,
                                dropout=dropout, init_weights=init_weights)

    accuracy = _AccuracyHistory()
    weights = class_balanced_weights(codes[train_idx]) if balanced else None
    module, table, test_loss, trainer = _fit(
        make_module, _LabelledDataset(data, codes, train_idx, augment),
        _LabelledDataset(data, codes, val_idx, False),
        _LabelledDataset(data, codes, test_idx, False),
        weights=weights, batch_size=batch_size, seed=seed, max_epochs=max_epochs,
        max_steps=max_steps, checkpoint_dir=checkpoint_dir, resume=resume,
        accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
        num_workers=num_workers, progress_bar=progress_bar,
        callbacks=[accuracy, *(callbacks or [])], logger=logger)
    test_acc = math.nan
    if len(test_idx) and "test_acc" in trainer.callback_metrics:
        test_acc = float(trainer.callback_metrics["test_acc"])

    rows = [accuracy.rows.get(int(epoch), (math.nan, math.nan)) for epoch in table["epoch"]]
    table["train_accuracy"] = np.array([r[0] for r in rows], dtype=np.float64)
    table["val_accuracy"] = np.array([r[1] for r in rows], dtype=np.float64)
    # The final model on the validation set (the last epoch may have been cut short),
    # where it was trained when that is a GPU; the encoder is returned on the CPU.
    device = trainer.strategy.root_device
    module.to(device if device.type == "cuda" else "cpu").eval()
    val_loss, val_acc = _evaluate(module, data, codes, val_idx, batch_size)
    encoder = module.encoder.to("cpu").eval()
    counts = np.bincount(codes[train_idx], minlength=len(classes))
    table.meta.update({
        "CLASSES": ",".join(classes), "NCLASS": len(classes),
        "VALACC": val_acc, "VALLOSS": val_loss, "TESTACC": test_acc, "TESTLOSS": test_loss,
        "INSIZE": input_size, "ENCARCH": architecture, "INMODE": input_mode,
        "LATDIM": encoder.latent_dim, "NTRAIN": len(train_idx), "NVAL": len(val_idx),
        "NTEST": len(test_idx), "TRCOUNTS": ",".join(map(str, counts.tolist())),
        "BATCH": batch_size, "LR": float(learning_rate), "DROPOUT": float(dropout),
        "OPTIM": "adam", "SEED": seed, "BALANCED": bool(balanced), "AUGMENT": bool(augment),
    })
    _write_history(table, checkpoint_dir, trainer)
    return encoder, table


def _evaluate(module, data, codes, indices, batch_size):
    """Mean cross-entropy and accuracy of ``module`` (in eval mode) on ``indices``."""
    if len(indices) == 0:
        return math.nan, math.nan
    dataset = _LabelledDataset(data, codes, indices, False)
    device = next(module.parameters()).device
    loss, hits = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            batch = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            x = torch.stack([b[0] for b in batch]).to(device)
            y = torch.stack([b[1] for b in batch]).to(device)
            logits = module(resize(x, module.encoder.input_size))
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            hits += int((logits.argmax(dim=1) == y).sum())
    return loss / len(dataset), hits / len(dataset)
