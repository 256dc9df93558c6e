# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Compare the encoders of ``galmorphsearch.model`` on the same data and budget.

Every encoder is trained for the same wall-clock budget on this machine, then
measured with the same evaluation calls:

* real: the SDSS spiral / non-spiral set in ``../shared/data``. Training uses
  its train split (1,400 galaxies; only the supervised encoders read its
  labels). The database is the train split and the targets its validation
  split (600), which no encoder ever trains on. Measured: k-NN vote accuracy
  (k = 1, 10) of the validation galaxies, and the k-means ARI and NMI of their
  latents.
* synthetic: training on 240 synthetic galaxies of the 12 GZ2 types (seed 1),
  measurement on 480 fresh ones (seed 2): half of each type forms the
  database, the other half the targets.

Untrained (random) encoders of each architecture are measured too, so the
gain from training is visible. Usage::

    python benchmarks/compare_encoders.py --cache CACHE --output OUT \\
        [--minutes-real 6] [--minutes-synthetic 2.5] [--only NAME ...]

``CACHE`` holds the 64 px cutout sets: ``eval_retrieval.py`` writes the real
ones, and the synthetic ones are made here when missing (3 minutes). The trained encoders
and ``comparison.ecsv`` go to ``OUT``; finished encoders are reused, so an
interrupted run continues where it stopped.
"""

import argparse
import time
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
from astropy.table import Table


def _encoders():
    """name -> (kind, options); kind is autoencoder, contrastive or supervised."""
    return {
        "AE colour (ResNet-18)": ("autoencoder", {"input_mode": "rgb"}),
        "AE grey (ResNet-18)": ("autoencoder", {"input_mode": "grey"}),
        "AE colour + residual (ResNet-18)": ("autoencoder", {"input_mode": "rgb+residual"}),
        "contrastive hybrid (84 px)": ("contrastive", {"architecture": "hybrid"}),
        "contrastive ResNet only (84 px)": ("contrastive",
                                            {"architecture": "resnet18-trimmed"}),
        "contrastive ViT only (84 px)": ("contrastive", {"architecture": "vit-small"}),
        "supervised VGG-style": ("supervised", {"architecture": "vgg-small"}),
        "supervised ResNet-18": ("supervised", {"architecture": "resnet18"}),
    }


def _slug(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def _train(kind, options, images, labels, minutes, seed=0):
    from lightning.pytorch.callbacks import Timer

    from galmorphsearch.model import train_autoencoder, train_classifier, train_contrastive

    timer = [Timer(duration=timedelta(minutes=minutes), interval="step")]
    common = {"seed": seed, "callbacks": timer, "max_epochs": 10_000}
    if kind == "autoencoder":
        model, history = train_autoencoder(images, input_size=64, val_fraction=0.1,
                                           test_fraction=0.0, batch_size=42, **options,
                                           **common)
        return model.encoder, history
    if kind == "contrastive":
        return train_contrastive(images, input_size=84, val_fraction=0.1, batch_size=64,
                                 **options, **common)
    return train_classifier(images, labels, input_size=64, val_fraction=0.1, batch_size=42,
                            **options, **common)


def _random(kind, options, seed=0):
    import torch

    from galmorphsearch.model import Encoder

    torch.manual_seed(seed)
    size = 84 if kind == "contrastive" else 64
    return Encoder(options.get("architecture", "resnet18"), input_size=size,
                   input_mode=options.get("input_mode", "rgb"))


def _measure(encoder, db_images, db_labels, query_images, query_labels):
    from galmorphsearch.evaluation import cluster_scores, knn_accuracy

    t0 = time.perf_counter()
    db = encoder.encode(db_images)
    queries = encoder.encode(query_images)
    rate = (len(db) + len(queries)) / (time.perf_counter() - t0)
    knn = knn_accuracy(db, db_labels, queries, query_labels, k=(1, 10))
    clusters = cluster_scores(queries, query_labels, seed=0)
    kmeans = clusters[clusters["method"] == "kmeans"][0]
    return {"knn1": float(knn["accuracy"][0]), "knn10": float(knn["accuracy"][1]),
            "ARI": float(kmeans["ARI"]), "NMI": float(kmeans["NMI"]), "encode_rate": rate}


def _half_split(table):
    """Half of each type as database, the other half as targets."""
    morph = np.asarray(table["morphology"], dtype=str)
    first = np.zeros(len(morph), dtype=bool)
    for name in np.unique(morph):
        rows = np.flatnonzero(morph == name)
        first[rows[: rows.size // 2]] = True
    return first


def _synthetic_set(cache, seed, n_per_type):
    """Synthetic galaxies of the 12 GZ2 types cut at 64 px (cached)."""
    from astropy.table import vstack

    from galmorphsearch import GalaxyCutout
    from galmorphsearch.datasets import make_synthetic_sample
    from galmorphsearch.preprocessing import CutoutSet

    path = Path(cache) / f"synthetic_seed{seed}_64.fits"
    if path.exists():
        return CutoutSet.read(path)
    truth, fields = make_synthetic_sample(n_per_type=n_per_type, seed=seed)
    parts = []
    for start in range(0, len(fields), 60):  # in chunks: cutouts keep their planes
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the flags stay on the cutouts
            cuts = [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=64, rotate=True,
                                 seed=seed) for f in fields[start:start + 60]]
        rows = truth["objid", "morphology", "type_index"][start:start + 60]
        parts.append(CutoutSet.from_cutouts(cuts, rows))
    cs = CutoutSet(vstack([p.table for p in parts], metadata_conflicts="silent"),
                   np.concatenate([p.images for p in parts]),
                   np.concatenate([p.backgrounds for p in parts]))
    cs.write(path)
    return cs


def _print_tables(table):
    """The comparison as reStructuredText simple tables, one per data set."""
    for data in ("real", "synthetic"):
        rows = table[table["data"] == data]
        if not len(rows):
            continue
        width = max(len(str(e)) for e in rows["encoder"])
        rule = f"{'=' * width} ===== ===== ====== ====== ======= ====== ========"
        print(f"\n{data}\n")
        print(rule)
        print(f"{'encoder':{width}s} k=1   k=10  ARI    NMI    train s steps  encode/s")
        print(rule)
        for r in rows:
            train = f"{r['train_s']:.0f}" if r["steps"] else "-"
            steps = f"{r['steps']}" if r["steps"] else "-"
            print(f"{r['encoder']:{width}s} {r['knn1']:.3f} {r['knn10']:.3f} "
                  f"{r['ARI']:6.3f} {r['NMI']:6.3f} {train:7s} {steps:6s} "
                  f"{r['encode_rate']:.0f}")
        print(rule)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--minutes-real", type=float, default=6.0)
    parser.add_argument("--minutes-synthetic", type=float, default=2.5)
    parser.add_argument("--only", nargs="*", help="encoder names (substrings) to run")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--table", action="store_true",
                        help="only print the results in OUT as reStructuredText tables")
    args = parser.parse_args()
    if args.table:
        _print_tables(Table.read(Path(args.output) / "comparison.ecsv"))
        return

    from galmorphsearch.preprocessing import CutoutSet

    cache, out = Path(args.cache), Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    train = CutoutSet.read(cache / "spiral_train_64.fits")
    val = CutoutSet.read(cache / "spiral_validation_64.fits")
    y_train = np.asarray(train.table["morphology"], dtype=str)
    y_val = np.asarray(val.table["morphology"], dtype=str)
    datasets = {"real": (train.images, y_train, (train.images, y_train, val.images, y_val),
                         args.minutes_real)}
    if not args.skip_synthetic:
        s_train = _synthetic_set(cache, 1, 20)
        s_eval = _synthetic_set(cache, 2, 40)
        first = _half_split(s_eval.table)
        y_eval = np.asarray(s_eval.table["morphology"], dtype=str)
        datasets["synthetic"] = (
            s_train.images, np.asarray(s_train.table["morphology"], dtype=str),
            (s_eval.images[first], y_eval[first], s_eval.images[~first], y_eval[~first]),
            args.minutes_synthetic)

    results_path = out / "comparison.ecsv"
    rows = list(Table.read(results_path)) if results_path.exists() else []
    done = {(r["data"], r["encoder"]) for r in rows}
    for name, (kind, options) in _encoders().items():
        if args.only and not any(o.lower() in name.lower() for o in args.only):
            continue
        for data, (images, labels, evaluation, minutes) in datasets.items():
            for trained in (False, True):
                label = name if trained else f"{name}, random weights"
                if (data, label) in done:
                    continue
                if not trained and kind == "contrastive" and options["architecture"] != \
                        "hybrid":
                    continue
                if not trained and kind == "autoencoder" and options["input_mode"] != "rgb":
                    continue
                t0 = time.perf_counter()
                epochs = steps = 0
                if trained:
                    path = out / f"{data}-{_slug(name)}.safetensors"
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        encoder, history = _train(kind, options, images, labels, minutes)
                    encoder.save(path, overwrite=True)
                    history.write(path.with_suffix(".history.ecsv"), overwrite=True)
                    epochs = int(history["epoch"][-1]) + 1 if len(history) else 0
                    steps = int(history["step"][-1]) if len(history) else 0
                else:
                    encoder = _random(kind, options)
                seconds = time.perf_counter() - t0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scores = _measure(encoder, *evaluation)
                row = {"data": data, "encoder": label, "train_s": round(seconds, 1),
                       "epochs": epochs, "steps": steps, **scores}
                rows.append(row)
                print(f"{data:9s} {label:45s} k=1 {row['knn1']:.3f} k=10 {row['knn10']:.3f} "
                      f"ARI {row['ARI']:.3f} NMI {row['NMI']:.3f} train {seconds:6.0f} s "
                      f"({epochs} epochs, {steps} steps) encode {row['encode_rate']:.0f}/s",
                      flush=True)
                Table(rows=rows).write(results_path, overwrite=True)


if __name__ == "__main__":
    main()
