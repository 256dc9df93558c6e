# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Pretrained encoders shipped inside the package.

Two encoders trained on real SDSS colour cutouts come with galmorphsearch,
in ``galmorphsearch/data/weights`` as half-precision safetensors files (they
never execute code when read, and carry the weights hash that latent
databases record):

* ``'vgg-supervised'`` (the default): the VGG-style CNN of the related work,
  supervised by the spiral / non-spiral labels of the SDSS train split; its
  256 penultimate features are the latent vector;
* ``'tsgicas-ae'``: the encoder of the paper's convolutional autoencoder
  (Seo et al. 2023), a ResNet-18 with 512 latent features, trained without
  labels on 8,900 SDSS galaxies.

Their model cards in the documentation give the data, the training, the
measured retrieval quality and the command that reproduces them. Nothing is
ever downloaded.
"""

import math
import os
from importlib import resources
from pathlib import Path

from .weights import read_weights_metadata

__all__ = ["PRETRAINED", "DEFAULT_PRETRAINED", "available_pretrained", "pretrained_path",
           "load_pretrained", "identify_pretrained", "export_pretrained"]

#: The shipped encoders: name to weight file and a one-line summary.
PRETRAINED = {
    "vgg-supervised": {
        "file": "vgg-supervised-64px.safetensors",
        "summary": "VGG-style CNN supervised by SDSS spiral / non-spiral labels "
                   "(256 features, 64 px)",
    },
    "tsgicas-ae": {
        "file": "tsgicas-ae-64px.safetensors",
        "summary": "ResNet-18 encoder of the TSGICAS autoencoder, unsupervised on "
                   "8,917 SDSS galaxies (512 features, 64 px)",
    },
}

#: Name of the encoder `Encoder.pretrained` returns when no name is given.
DEFAULT_PRETRAINED = "vgg-supervised"


def _weights_dir():
    return Path(os.fspath(resources.files("galmorphsearch") / "data" / "weights"))


def _check_name(name):
    if name is None:
        return DEFAULT_PRETRAINED
    if not isinstance(name, str) or name not in PRETRAINED:
        msg = (f"no pretrained encoder named {name!r}: choose among "
               f"{', '.join(sorted(PRETRAINED))} (default {DEFAULT_PRETRAINED!r})")
        raise ValueError(msg)
    return name


def pretrained_path(name=None):
    """
    Path of a shipped weight file.

    Parameters
    ----------
    name : str, optional
        A key of `PRETRAINED`; default `DEFAULT_PRETRAINED`.

    Returns
    -------
    path : `~pathlib.Path`

    Raises
    ------
    ValueError
        For an unknown name.
    FileNotFoundError
        If the file is missing from the installation.
    """
    name = _check_name(name)
    path = _weights_dir() / PRETRAINED[name]["file"]
    if not path.is_file():
        msg = (f"the weight file of the pretrained encoder {name!r} is missing from this "
               f"installation ({path}); reinstall galmorphsearch")
        raise FileNotFoundError(msg)
    return path


def load_pretrained(name=None, device=None):
    """
    Load a shipped encoder (see `Encoder.pretrained <galmorphsearch.model.Encoder.pretrained>`).

    Parameters
    ----------
    name : str, optional
        A key of `PRETRAINED`; default `DEFAULT_PRETRAINED`.
    device : str or `torch.device`, optional
        Where to put the weights (CPU by default).

    Returns
    -------
    encoder : `~galmorphsearch.model.Encoder`
        In eval mode, its weights hash verified.
    """
    from .encoder import Encoder

    return Encoder.load(pretrained_path(name), device=device)


def available_pretrained():
    """
    The shipped encoders, one row each, read from their weight files' headers.

    Returns
    -------
    table : `~astropy.table.Table`
        Columns ``name``, ``default``, ``architecture``, ``input_size``,
        ``latent_dim``, ``training``, ``weights_hash``, ``epochs``,
        ``file_size`` (MB) and ``summary``.

    Examples
    --------
    >>> from galmorphsearch.model import available_pretrained
    >>> table = available_pretrained()
    >>> sorted(table["name"].tolist())
    ['tsgicas-ae', 'vgg-supervised']
    """
    import astropy.units as u
    from astropy.table import Table

    from .weights import _decode_value

    rows = []
    for name, entry in PRETRAINED.items():
        path = pretrained_path(name)
        meta = {k: _decode_value(v) if k != "weights_hash" else v
                for k, v in read_weights_metadata(path).items()}
        epochs = meta.get("epochs")
        rows.append((name, name == DEFAULT_PRETRAINED, str(meta.get("architecture")),
                     int(meta.get("input_size", 0)), int(meta.get("latent_dim", 0)),
                     str(meta.get("training", "unknown")), str(meta.get("weights_hash")),
                     int(epochs) if epochs is not None else -1,
                     path.stat().st_size / 1e6, entry["summary"]))
    table = Table(rows=rows, names=("name", "default", "architecture", "input_size",
                                    "latent_dim", "training", "weights_hash", "epochs",
                                    "file_size", "summary"))
    table["input_size"].unit = u.pix
    table["file_size"].unit = u.MB
    table["file_size"].format = ".1f"
    return table


def identify_pretrained(weights_hash):
    """
    Name of the shipped encoder with these weights, or `None`.

    Parameters
    ----------
    weights_hash : str
        As recorded by a latent database (``ENCHASH``) or an encoder's
        `weights_hash <galmorphsearch.model.Encoder.weights_hash>`.

    Returns
    -------
    name : str or None
    """
    for name in PRETRAINED:
        try:
            stored = read_weights_metadata(pretrained_path(name)).get("weights_hash")
        except FileNotFoundError:
            continue
        if stored == weights_hash:
            return name
    return None


def export_pretrained(encoder, name, history, path, *, training_data, hardware, wall_time,
                      selection=None, overwrite=False):
    """
    Write an encoder as a shipped (half-precision) weight file with its training record.

    Used by ``benchmarks/train_pretrained.py``. The encoder is renamed
    ``name``; the number of epochs and optimizer steps, the last training and
    validation losses, the training data, the hardware and the wall time
    are recorded in its `info <galmorphsearch.model.Encoder.info>`.

    Parameters
    ----------
    encoder : `~galmorphsearch.model.Encoder`
        The trained encoder (it is not modified).
    name : str
        The name it ships under.
    history : `~astropy.table.Table`
        Its loss history (``epoch``, ``step``, ``train_loss``, ``val_loss``).
    path : str or path-like
        Output ``.safetensors`` file.
    training_data : str
        One line on what it was trained on.
    hardware : str
        One line on where it was trained.
    wall_time : float
        Training wall time in seconds.
    selection : str, optional
        How these weights were chosen among those of the run (for example
        the epoch of lowest validation loss); recorded when given.
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    weights_hash : str
        The hash of the stored (half-precision) weights.
    """
    import copy

    encoder = copy.deepcopy(encoder).cpu().eval()
    encoder.name = name

    def last(column):
        values = [float(v) for v in history[column] if math.isfinite(float(v))] \
            if column in history.colnames else []
        return values[-1] if values else None

    info = {"pretrained": name, "epochs": len(history),
            "steps": int(history["step"][-1]) if len(history) else 0,
            "train_loss": last("train_loss"), "val_loss": last("val_loss"),
            "training_data": training_data, "hardware": hardware,
            "wall_time_s": round(float(wall_time), 1)}
    if "val_accuracy" in history.colnames:
        info["val_accuracy"] = last("val_accuracy")
    if selection is not None:
        info["selection"] = str(selection)
    return encoder.save(path, overwrite=overwrite, dtype="float16", info=info)
