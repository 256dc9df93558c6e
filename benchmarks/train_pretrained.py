"""
Reproduce the pretrained encoders shipped in ``galmorphsearch/data/weights``.

Training data are the real SDSS colour cutouts of ``../shared/data`` (see the
model cards in ``docs/pretrained/``), cut with the package's own
``GalaxyCutout.from_image`` at 64 px, rotated to position angle 90 degrees:

* ``tsgicas-ae``: the paper's autoencoder (ResNet-18 encoder, mirrored
  decoder, MSE, Adam 1e-4, batch 42, random rotations) on every unlabelled
  galaxy, the spiral / non-spiral train split (images only) and the 12 GZ2
  class examples;
* ``vgg-supervised``: the VGG-style classifier, supervised by the spiral /
  non-spiral labels of the train split only.

The spiral / non-spiral validation split (600 galaxies) is never read here:
it is the yardstick of ``benchmarks/pretrained_yardstick.py``.

The run is resumable: run the same command again and it continues from the
newest checkpoint in ``--workdir`` until ``--max-epochs``; ``--minutes``
limits one invocation's wall time (the run stops after the batch that
crosses it and writes a checkpoint), and so does a file named ``STOP`` in
``--workdir``. The last step exports the
half-precision weight file::

    python benchmarks/train_pretrained.py vgg-supervised --data ../shared/data \\
        --cache CACHE --workdir runs/vgg --max-epochs 120
    python benchmarks/train_pretrained.py tsgicas-ae --data ../shared/data \\
        --cache CACHE --workdir runs/ae --max-epochs 10 --minutes 120
    python benchmarks/train_pretrained.py vgg-supervised ... --export \\
        galmorphsearch/data/weights/vgg-supervised-64px.safetensors
"""

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table
from lightning.pytorch.callbacks import Callback

HERE = Path(__file__).resolve().parent


def _cut(files, cache_file, table):
    """Cut JPEGs at 64 px in chunks (a GalaxyCutout keeps its planes), cached."""
    from galmorphsearch import GalaxyCutout
    from galmorphsearch.preprocessing import CutoutSet

    if cache_file.exists():
        return CutoutSet.read(cache_file)
    images, backgrounds = [], []
    first = None
    for start in range(0, len(files), 100):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quality flags stay on the cutouts
            cuts = [GalaxyCutout.from_image(f, size=64, rotate=True, seed=0)
                    for f in files[start:start + 100]]
        part = CutoutSet.from_cutouts(cuts, table[start:start + len(cuts)])
        first = first or part
        images.append(part.images)
        backgrounds.append(part.backgrounds)
    cs = CutoutSet(table, np.concatenate(images), np.concatenate(backgrounds))
    cs.table.meta.update(first.table.meta)
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cs.write(cache_file)
    return cs


def unlabelled_sets(data, cache):
    """
    The unlabelled SDSS JPEGs (not the ``_large`` views), in chunks of 500.

    7,505 of the set's 7,506 galaxies: one has only a ``_large`` view.
    """
    from galmorphsearch.preprocessing import CutoutSet

    root = Path(data) / "sdss-unlabeled-jpeg" / "data"
    files = sorted(p for p in root.rglob("*.jpg") if not p.name.endswith("_large.jpg"))
    out = Path(cache) / "unlabeled64"
    sets = []
    for i, start in enumerate(range(0, len(files), 500)):
        chunk = files[start:start + 500]
        path = out / f"chunk{i:03d}.fits"
        if path.exists():
            sets.append(CutoutSet.read(path))
            continue
        table = Table({"objid": [f.stem for f in chunk], "split": [f.parts[-3] for f in chunk]})
        sets.append(_cut(chunk, path, table))
        print(f"cut unlabelled chunk {i} ({len(chunk)} galaxies)", flush=True)
    return sets


def spiral_train_set(data, cache):
    """The spiral / non-spiral train split (1,400); the validation split is not read."""
    from eval_retrieval import cutout_set  # benchmarks/ is on sys.path

    return cutout_set("train", cache, data=Path(data) / "sdss-kaggle-spiral-2000")


def gallery_set(data, cache):
    """The 12 GZ2 class examples."""
    folder = Path(data) / "gz2-class-gallery"
    files = sorted(folder.rglob("*.jp*g"))
    table = Table({"objid": [f.stem for f in files]})
    return _cut(files, Path(cache) / "gz2_gallery_64.fits", table)


class Budget(Callback):
    """Stop after ``minutes`` of wall time; write a checkpoint every ``every`` minutes."""

    def __init__(self, minutes, every, path):
        self.deadline = time.monotonic() + 60 * minutes if minutes else None
        self.every = 60 * every
        self.path = path
        self.saved = self.last = time.monotonic()
        self.wall_s = 0.0  # training wall time over all invocations (in the checkpoints)

    def state_dict(self):
        return {"wall_s": self.wall_s}

    def load_state_dict(self, state_dict):
        self.wall_s = float(state_dict.get("wall_s", 0.0))

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == 0:  # not the time spent loading data or validating
            self.last = time.monotonic()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        now = time.monotonic()
        self.wall_s += now - self.last
        self.last = now
        if (self.deadline is not None and now > self.deadline) or (
                self.path.parent / "STOP").exists():
            trainer.should_stop = True
        if now - self.saved > self.every or trainer.should_stop:
            trainer.save_checkpoint(self.path)
            self.saved = now
            print(f"  step {trainer.global_step}: checkpoint", flush=True)

    def on_train_epoch_end(self, trainer, module):
        print(f"  epoch {trainer.current_epoch} done, step {trainer.global_step}, "
              f"{time.strftime('%H:%M:%S')}", flush=True)


def newest_checkpoint(workdir):
    found = [p for p in (workdir / "last.ckpt", workdir / "latest.ckpt") if p.exists()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


TRAINING_DATA = {
    "vgg-supervised": "SDSS spiral / non-spiral train split (1,400 galaxies; 1,260 trained "
                      "on, 140 validation), labels spirals / non_spirals",
    "tsgicas-ae": "8,917 SDSS galaxies: 7,505 unlabelled, the spiral / non-spiral train split "
                  "(images only), the 12 GZ2 class examples (95 % trained on)",
}


def history_from_checkpoint(state):
    """The loss (and accuracy) history kept in a checkpoint's callback states."""
    from galmorphsearch.model.supervised import _AccuracyHistory
    from galmorphsearch.model.training import _LossHistory

    callbacks = state.get("callbacks", {})
    loss = _LossHistory()
    loss.load_state_dict(next((v for k, v in callbacks.items() if "_LossHistory" in k), {}))
    history = loss.table()
    found = next((v for k, v in callbacks.items() if "_AccuracyHistory" in k), None)
    if found is not None:
        accuracy = _AccuracyHistory()
        accuracy.load_state_dict(found)
        rows = [accuracy.rows.get(int(e), (np.nan, np.nan)) for e in history["epoch"]]
        history["train_accuracy"] = [r[0] for r in rows]
        history["val_accuracy"] = [r[1] for r in rows]
    return history


def export(args, workdir, preprocessing):
    """Write the half-precision weight file from the chosen checkpoint."""
    import torch
    from pretrained_yardstick import _cpu_name  # benchmarks/ is on sys.path

    from galmorphsearch.model import Encoder
    from galmorphsearch.model.pretrained import export_pretrained

    newest = newest_checkpoint(workdir)
    if newest is None:
        raise SystemExit(f"no checkpoint in {workdir}")

    def load(path):
        return torch.load(path, map_location="cpu", weights_only=True)

    last = load(newest)
    # The loss history shipped beside the weights is that of the whole run.
    full = history_from_checkpoint(last)
    if args.checkpoint == "newest":
        ckpt, state, selection = newest, last, None
    elif args.checkpoint == "best":
        found = {p: load(p) for p in sorted(workdir.glob("best-*.ckpt"))}
        if not found:
            raise SystemExit(f"no best-*.ckpt in {workdir}")
        # Each invocation keeps its own best checkpoint: the one of lowest
        # validation loss over the whole run's history is taken.
        val = {int(e): float(v) for e, v in zip(full["epoch"], full["val_loss"], strict=True)}
        ckpt = min(found, key=lambda p: val.get(int(found[p]["epoch"]), np.inf))
        state = found[ckpt]
        selection = (f"lowest validation loss: the checkpoint of epoch {state['epoch']} of "
                     f"{last['epoch'] + 1} trained")
    else:
        ckpt = Path(args.checkpoint)
        state, selection = load(ckpt), f"checkpoint {ckpt.name}"
    arch, method = (("resnet18", "autoencoder") if args.name == "tsgicas-ae"
                    else ("vgg-small", "supervised"))
    encoder = Encoder.from_state_dict_file(ckpt, architecture=arch, input_size=64,
                                           preprocessing=preprocessing)
    encoder.training_method = method
    wall = next((v["wall_s"] for k, v in state.get("callbacks", {}).items()
                 if "Budget" in k), float("nan"))
    history = history_from_checkpoint(state)
    cpu = _cpu_name()
    hardware = (args.hardware or f"{os.cpu_count()}-core CPU ({cpu}), no GPU, "
                f"torch {torch.__version__}, {args.precision} precision")
    full.write(Path(args.export).with_suffix(".history.ecsv"), overwrite=True)
    digest = export_pretrained(encoder, args.name, history, args.export,
                               training_data=TRAINING_DATA[args.name], hardware=hardware,
                               wall_time=wall, selection=selection, overwrite=True)
    print(f"exported {ckpt} (epoch {state['epoch']}, step {state['global_step']}, "
          f"{wall / 60:.1f} min of training) to {args.export}: weights hash {digest}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=["tsgicas-ae", "vgg-supervised"])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--cache", required=True, help="folder for the cut images")
    parser.add_argument("--workdir", required=True, help="checkpoints and loss history")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-time limit of this invocation")
    parser.add_argument("--checkpoint-minutes", type=float, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--precision", default="bf16-mixed",
                        help="Lightning precision; bf16-mixed is 1.7-2.6x faster than 32-true "
                             "on CPUs with AVX512-BF16 and on GPUs")
    parser.add_argument("--hardware", default=None, help="recorded with --export")
    parser.add_argument("--checkpoint", default="newest",
                        help="what --export exports: 'newest' (default), 'best' (the lowest "
                             "validation loss) or a checkpoint file")
    parser.add_argument("--export", default=None,
                        help="write the half-precision weight file here, from the newest "
                             "checkpoint, and stop")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    train = spiral_train_set(args.data, args.cache)
    if args.export:
        export(args, workdir, train.header_keywords())
        return

    budget = Budget(args.minutes, args.checkpoint_minutes, workdir / "latest.ckpt")
    resume = newest_checkpoint(workdir)
    print(f"resuming from {resume}" if resume else "starting", flush=True)
    common = {"input_size": 64, "batch_size": 42, "seed": args.seed,
              "max_epochs": args.max_epochs, "checkpoint_dir": workdir, "resume": resume,
              "callbacks": [budget], "accelerator": args.accelerator,
              "precision": args.precision,
              "preprocessing": train.header_keywords()}
    t0 = time.time()
    if args.name == "vgg-supervised":
        from galmorphsearch.model import train_classifier

        encoder, history = train_classifier(
            train.images, np.asarray(train.table["morphology"], dtype=str),
            architecture="vgg-small", name="vgg-supervised-64px", val_fraction=0.1,
            test_fraction=0.0, **common)
    else:
        from galmorphsearch.model import train_autoencoder

        sets = [*unlabelled_sets(args.data, args.cache), train, gallery_set(args.data, args.cache)]
        images = np.concatenate([s.images for s in sets])
        print(f"autoencoder on {len(images)} galaxies", flush=True)
        model, history = train_autoencoder(
            images, architecture="resnet18", latent_dim=512, name="tsgicas-ae-64px",
            val_fraction=0.05, test_fraction=0.02, **common)
        encoder = model.encoder
    print(f"this invocation: {time.time() - t0:.0f} s; epochs {len(history)}", flush=True)
    encoder.save(workdir / "encoder-float32.safetensors", overwrite=True)


if __name__ == "__main__":
    main()
