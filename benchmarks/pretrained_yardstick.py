# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Measure the shipped pretrained encoders for their model cards in the docs.

The yardstick is the SDSS spiral / non-spiral set of ``../shared/data``, cut
at 64 px and rotated (the cached cutout sets of ``eval_retrieval.py``): its
train split (1,400 galaxies) is the database and its validation split (600),
which no shipped encoder was trained on, the targets. For each shipped
encoder, for randomly initialised encoders of each architecture (``--seeds``
seeds, mean and sample standard deviation) and for PCA(50) of the raw pixels
(fitted on the train split) it measures the k-NN vote accuracy of the
validation galaxies against the train split at k = 1, 5, 10, 15, 20, and the
k-means ARI and NMI of the validation latents. For each shipped encoder it
also times ``Encoder.encode`` on the 600 validation images (batch 64, best of
``--repeat`` after a warm-up) against plain forward passes of its bare
backbone on ready-made float tensors.

It writes the results table (``--output``), the figures of the model cards
(``--figures``: loss history, retrieval gallery, k-NN accuracy against k, and
the autoencoder's reconstructions when ``--ae-checkpoint`` is given) and
reST snippets included by the model cards (``--rst``). Usage::

    python benchmarks/pretrained_yardstick.py --cache CACHE \\
        --ae-checkpoint runs/ae/last.ckpt [--encoder NAME=PATH ...] \\
        [--figures docs/_static/pretrained] [--rst docs/pretrained/generated] \\
        [--output benchmarks/results/pretrained_yardstick.ecsv] [--threads 2]

By default the shipped weight files of ``galmorphsearch/data/weights`` are
measured; ``--encoder NAME=PATH`` measures another file under a shipped name
(its loss history is read from ``PATH`` with ``.safetensors`` replaced by
``.history.ecsv``). Run the final measurement on an otherwise idle machine:
the throughput depends on it. It took 1.5 minutes on 2 idle cores.
"""

import argparse
import io
import os
import platform
import shlex
import sys
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from astropy.table import Table

HERE = Path(__file__).resolve().parent
KS = (1, 5, 10, 15, 20)
RANDOM_ARCHITECTURES = ("resnet18", "vgg-small")
MAX_PNG_BYTES = 150_000
LOSS_NAMES = {"supervised": "cross-entropy loss", "autoencoder": "reconstruction loss (MSE)"}


# ----------------------------------------------------------------------
# measurement
def measure(name, train_x, train_y, val_x, val_y):
    """k-NN vote accuracies at `KS` and k-means ARI / NMI, as a flat dict."""
    from galmorphsearch.evaluation import cluster_scores, knn_accuracy

    knn = knn_accuracy(train_x, train_y, val_x, val_y, k=KS)
    clusters = cluster_scores(val_x, val_y, seed=0)
    kmeans = clusters[clusters["method"] == "kmeans"][0]
    scores = {f"knn_{k}": float(a) for k, a in zip(knn["k"], knn["accuracy"], strict=True)}
    scores.update(ARI=float(kmeans["ARI"]), NMI=float(kmeans["NMI"]))
    text = " ".join(f"{100 * scores[f'knn_{k}']:5.1f}" for k in KS)
    print(f"  {name:40s} k-NN % {text}  ARI {scores['ARI']:6.3f}  NMI {scores['NMI']:6.3f}",
          flush=True)
    return scores


def random_runs(architecture, seeds, train, val, y_train, y_val):
    """Mean and sample std of `measure` over randomly initialised encoders."""
    import torch

    from galmorphsearch.model import Encoder

    runs = []
    for seed in seeds:
        torch.manual_seed(seed)
        encoder = Encoder(architecture, input_size=64)
        runs.append(measure(f"{architecture}, random (seed {seed})",
                            encoder.encode(train.images), y_train,
                            encoder.encode(val.images), y_val))
    out = {"latent_dim": encoder.latent_dim, "n_runs": len(runs)}
    for key in runs[0]:
        values = np.array([r[key] for r in runs])
        out[key] = float(values.mean())
        out[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
    return out


def throughput(encoder, images, batch, repeat):
    """Images per second of ``encoder.encode`` and of bare backbone forward passes."""
    import torch

    encoder.eval()
    batches = [torch.from_numpy(np.moveaxis(images[i:i + batch], -1, 1).copy()).float()
               .div(255) for i in range(0, len(images), batch)]

    def forward():
        with torch.inference_mode():
            for b in batches:
                encoder.backbone(b)

    from bench_encoding import _best as _best_time  # benchmarks/ is on sys.path

    t_encode = _best_time(lambda: encoder.encode(images, batch_size=batch), repeat)
    t_forward = _best_time(forward, repeat)
    return len(images) / t_encode, len(images) / t_forward


def balanced_pick(labels, n, seed=0):
    """``n`` indices, alternately from each class, drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    pools = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    return np.array([pools[i % len(pools)].pop() for i in range(n)])


# ----------------------------------------------------------------------
# figures
def save_png(fig, path, dpi):
    """
    Save ``fig`` as PNG, images drawn pixel by pixel.

    Over `MAX_PNG_BYTES` (galaxy images compress badly), it is quantized to
    256 colours (octree, dithered).
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    for ax in fig.axes:
        for image in ax.images:
            image.set_interpolation("nearest")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    data = buffer.getvalue()
    if len(data) > MAX_PNG_BYTES:
        image = Image.open(io.BytesIO(data)).convert("RGB").quantize(
            256, method=Image.Quantize.FASTOCTREE)
        buffer = io.BytesIO()
        image.save(buffer, format="png", optimize=True)
        data = buffer.getvalue()
    Path(path).write_bytes(data)
    note = "" if len(data) <= MAX_PNG_BYTES else " (over the size limit)"
    print(f"  wrote {path} ({len(data) / 1e3:.0f} kB){note}", flush=True)


def figure_loss(history, training, title, path):
    """Loss history, and the accuracy history beside it when there is one."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from galmorphsearch.visualization import plot_loss_history

    has_accuracy = "val_accuracy" in history.colnames or "train_accuracy" in history.colnames
    fig = plt.figure(figsize=(8.4 if has_accuracy else 4.8, 3.2), layout="constrained")
    axes = fig.subplots(1, 2 if has_accuracy else 1, squeeze=False)[0]
    plot_loss_history(history, ax=axes[0])
    axes[0].set_ylabel(LOSS_NAMES.get(training, "loss"))
    if len(history) < 2:  # MaxNLocator(integer=True) gives fractional ticks for one epoch
        for ax in axes:
            ax.set_xticks(list(history["epoch"]))
    if has_accuracy:
        ax = axes[1]
        style = {"marker": "o", "ms": 3} if len(history) <= 30 else {}
        for column, label in (("train_accuracy", "training"), ("val_accuracy", "validation")):
            if column in history.colnames:
                ax.plot(history["epoch"], 100 * np.asarray(history[column], dtype=float),
                        label=label, **style)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (per cent)")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_png(fig, path, dpi=90)


def figure_knn(name, tables, path):
    """k-NN accuracy against k: the shipped encoder, its random counterpart and PCA."""
    import matplotlib.pyplot as plt

    from galmorphsearch.visualization import plot_knn_accuracy

    fig = plt.figure(figsize=(4.8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    for label, table, spread in tables:
        plot_knn_accuracy(table["k", "accuracy"], ax=ax, label=label)
        line = ax.get_lines()[-1]
        if spread is not None and np.isfinite(spread).all():
            mean = 100 * np.asarray(table["accuracy"])
            ax.fill_between(table["k"], mean - 100 * spread, mean + 100 * spread,
                            color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xticks(KS)
    ax.set_title(f"{name}: k-NN vote accuracy, validation split", fontsize=9)
    ax.legend(fontsize=7)
    save_png(fig, path, dpi=90)


def figure_gallery(database, train, encoder, val, pick, path):
    """Six validation targets and their top-5 matches in the train-split database."""
    from galmorphsearch.search import SimilaritySearcher
    from galmorphsearch.visualization import plot_retrieval_gallery

    searcher = SimilaritySearcher(database, encoder)
    ids = np.asarray(val.table["objid"])[pick]
    results = searcher.search_latents(encoder.encode(val.images[pick]),
                                      encoder.encode(val.backgrounds[pick]), k=5,
                                      target_ids=ids)
    fig = plot_retrieval_gallery(list(val.images[pick]), results, train, k=5, target_ids=ids,
                                 true_types=list(np.asarray(val.table["morphology"], str)[pick]))
    save_png(fig, path, dpi=80)


def autoencoder_from_checkpoint(path):
    """The `Autoencoder` of a ``train_autoencoder`` Lightning checkpoint (no pickle)."""
    import torch

    from galmorphsearch.model import Autoencoder, Decoder, Encoder

    state = torch.load(path, map_location="cpu", weights_only=True)
    hp = state.get("hyper_parameters") or {}
    encoder = Encoder(hp.get("architecture", "resnet18"), input_size=hp.get("input_size", 64),
                      latent_dim=hp.get("latent_dim", 512),
                      input_mode=hp.get("input_mode", "rgb"))
    decoder = Decoder(input_size=encoder.input_size, latent_dim=encoder.latent_dim,
                      channels=hp.get("decoder_channels"), fc_channels=hp.get("fc_channels", 512),
                      out_channels=encoder.in_channels)
    model = Autoencoder(encoder, decoder)
    prefix = "autoencoder."
    weights = {k[len(prefix):]: v for k, v in state["state_dict"].items()
               if k.startswith(prefix)}
    model.load_state_dict(weights)
    return model.eval(), state.get("epoch"), state.get("global_step")


def figure_reconstructions(checkpoint, shipped, val, pick, path):
    """Inputs, reconstructions and residuals of the autoencoder in ``checkpoint``."""
    from galmorphsearch.visualization import plot_reconstructions

    model, epoch, step = autoencoder_from_checkpoint(checkpoint)
    print(f"  autoencoder checkpoint {checkpoint}: epoch {epoch}, step {step}", flush=True)
    if shipped is not None:
        # The shipped encoder should be this checkpoint's, rounded to float16.
        ours = model.encoder.encode(val.images[pick])
        theirs = shipped.encode(val.images[pick])
        diff = float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(ours)), 1e-12))
        verdict = "matches" if diff < 1e-2 else "does NOT match"
        print(f"  its encoder {verdict} the measured tsgicas-ae encoder (largest latent "
              f"difference / largest latent: {diff:.1e})", flush=True)
    save_png(plot_reconstructions(model, val.images[pick], n=len(pick)), path, dpi=90)


# ----------------------------------------------------------------------
# reST snippets
def rst_text(value):
    """Plain text with reST inline markup characters escaped."""
    text = str(value)
    for char in "\\*`_|":
        text = text.replace(char, "\\" + char)
    return text


def list_table(title, header, rows, widths=None):
    """A ``list-table`` directive (first row the header)."""
    for row in rows:
        if len(row) != len(header):
            msg = f"row {row} has {len(row)} cells, the header {len(header)}"
            raise ValueError(msg)
    lines = [f".. list-table:: {title}", "   :header-rows: 1"]
    if widths:
        lines.append(f"   :widths: {' '.join(str(w) for w in widths)}")
    lines.append("")
    for row in [header, *rows]:
        for i, cell in enumerate(row):
            cell = str(cell).strip() or "--"
            lines.append(f"   {'* -' if i == 0 else '  -'} {cell}")
    return "\n".join(lines) + "\n"


def write_rst(folder, filename, command, date, body):
    """Write a snippet that starts with a comment naming its command and date."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    head = (f".. Generated by ``{command}``\n   on {date}; do not edit, run the command "
            f"again.\n\n")
    (folder / filename).write_text(head + body)
    print(f"  wrote {folder / filename}", flush=True)


def _plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def _pm(mean, std, scale=1.0, fmt=".1f"):
    if not np.isfinite(mean):
        return "--"
    text = f"{scale * mean:{fmt}}"
    return text + (f" ± {scale * std:{fmt}}" if np.isfinite(std) else "")


def yardstick_rst(table, meta):
    """The yardstick rows as a list-table."""
    header = ["encoder", *[f"k = {k}" for k in KS], "ARI", "NMI"]
    rows = [[rst_text(r["label"]),
             *[_pm(r[f"knn_{k}"], r[f"knn_{k}_std"], 100) for k in KS],
             _pm(r["ARI"], r["ARI_std"], fmt=".3f"),
             _pm(r["NMI"], r["NMI_std"], fmt=".3f")] for r in table]
    title = (f"k-NN vote accuracy (per cent; the larger class holds "
             f"{100 * meta['majority_fraction']:.1f}) of the {meta['n_validation']:,} "
             f"validation galaxies against the {meta['n_train']:,} of the train split, and "
             f"k-means ARI / NMI of their latents (random weights: mean ± sample standard "
             f"deviation over {_plural(meta['random_seeds'], 'seed')})")
    return list_table(title, header, rows, widths=[30, *[8] * len(KS), 10, 10])


def throughput_rst(table, meta):
    """The throughput of the shipped encoders as a list-table."""
    header = ["encoder", "``Encoder.encode`` (images/s)", "backbone forward (images/s)",
              "encode / forward"]
    rows = [[rst_text(r["label"]), f"{r['encode_rate']:.0f}", f"{r['forward_rate']:.0f}",
             f"{r['encode_rate'] / r['forward_rate']:.2f}"]
            for r in table if np.isfinite(r["encode_rate"])]
    title = (f"Encoding throughput on {meta['machine']}, "
             f"{_plural(meta['torch_threads'], 'torch thread')}: {meta['n_validation']} "
             f"validation images (64 px), batch "
             f"{meta['throughput_batch']}, best of {meta['throughput_repeat']} after a warm-up")
    return list_table(title, header, rows, widths=[30, 25, 25, 20])


def _number(value, fmt):
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "not recorded"
    return f"{value:{fmt}}" if np.isfinite(value) else "not recorded"


def record_rst(name, encoder, path):
    """The training record of a shipped encoder (from its weight file) as a list-table."""
    from galmorphsearch.model.weights import read_weights_metadata

    info = encoder.info
    stored = read_weights_metadata(path)
    loss = LOSS_NAMES.get(encoder.training_method, "loss")
    wall = _number(info.get("wall_time_s"), ".0f")
    if wall != "not recorded":
        seconds = float(info["wall_time_s"])
        wall = f"{seconds / 3600:.1f} h ({seconds:.0f} s)"
    n_params = sum(p.numel() for p in encoder.parameters())
    prep = encoder.preprocessing
    cutouts = "not recorded"
    if "CUTSIZE" in prep:
        cutouts = (f"``GalaxyCutout`` at {prep['CUTSIZE']} px, rotate={prep.get('ROTATE')}, "
                   f"deblend={prep.get('DEBLEND')} (galmorphsearch "
                   f"{rst_text(prep.get('PREPVERS', 'unknown'))})")
    rows = [
        ["name", f"``{name}``"],
        ["architecture", f"``{encoder.architecture}``"],
        ["input", (f"{encoder.input_size} x {encoder.input_size} px, input mode "
                   f"``{encoder.input_mode}``")],
        ["cutouts", cutouts],
        ["latent size", str(encoder.latent_dim)],
        ["parameters", f"{n_params:,}"],
        ["training", rst_text(encoder.training_method)],
        ["training data", rst_text(info.get("training_data", "not recorded"))],
        ["epochs (of these weights)", str(info.get("epochs", "not recorded"))],
        ["optimizer steps", str(info.get("steps", "not recorded"))],
    ]
    if "selection" in info:
        rows.append(["weights selected by", rst_text(info["selection"])])
    rows += [
        [f"training {loss} (last epoch of these weights)",
         _number(info.get("train_loss"), ".4g")],
        [f"validation {loss} (same epoch)", _number(info.get("val_loss"), ".4g")],
    ]
    if encoder.training_method == "supervised" or "val_accuracy" in info:
        acc = _number(info.get("val_accuracy"), ".4f")
        if acc != "not recorded":
            acc = f"{100 * float(acc):.1f} per cent"
        rows.append(["validation accuracy (same epoch)", acc])
    rows += [
        ["hardware", rst_text(info.get("hardware", "not recorded"))],
        ["training wall time (to these weights)", wall],
        ["weights hash", f"``{encoder.weights_hash}``"],
        ["weight file", (f"``{Path(path).name}``, "
                         f"{Path(path).stat().st_size / 1e6:.1f} MB")],
        ["written by", f"galmorphsearch {rst_text(stored.get('version', 'unknown'))}"],
    ]
    return list_table(f"Training record of ``{name}``", ["field", "value"], rows,
                      widths=[30, 70])


# ----------------------------------------------------------------------
def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def shipped_paths(overrides):
    """name -> weight file: the shipped files, replaced or extended by ``NAME=PATH``."""
    from galmorphsearch.model.pretrained import PRETRAINED, pretrained_path

    paths = {}
    for item in overrides:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"--encoder takes NAME=PATH, got {item!r}")
        paths[name] = Path(path)
    for name in PRETRAINED:
        if name not in paths:
            try:
                paths[name] = pretrained_path(name)
            except FileNotFoundError as exc:
                raise SystemExit(f"{exc}; or give --encoder {name}=PATH") from None
    order = list(PRETRAINED)
    return {name: paths[name] for name in
            sorted(paths, key=lambda n: (order.index(n) if n in order else len(order), n))}


def history_of(path):
    path = Path(path)
    history = path.with_name(path.name.removesuffix(".safetensors") + ".history.ecsv")
    return history if history.exists() else None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--cache", default=Path.home() / ".cache" / "galmorphsearch-bench",
                        help="folder of the cached 64 px cutout sets (see eval_retrieval.py)")
    parser.add_argument("--encoder", action="append", default=[], metavar="NAME=PATH",
                        help="measure this weight file under this name (repeatable)")
    parser.add_argument("--ae-checkpoint",
                        help="Lightning checkpoint of the tsgicas-ae autoencoder, for the "
                             "reconstruction figure (skipped without it)")
    parser.add_argument("--classifier-checkpoint", action="append", default=[],
                        metavar="PATH",
                        help="Lightning checkpoint of the vgg-supervised classifier (head "
                             "included): its own accuracy on the validation split is printed "
                             "and recorded, for comparison with the k-NN votes (repeatable)")
    parser.add_argument("--figures", default=str(HERE.parent / "docs" / "_static" / "pretrained"))
    parser.add_argument("--rst", default=str(HERE.parent / "docs" / "pretrained" / "generated"))
    parser.add_argument("--output", default=str(HERE / "results" / "pretrained_yardstick.ecsv"))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seeds", type=int, default=3,
                        help="random initialisations per architecture (default 3)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="timed repeats of the throughput (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help="for development: 1 seed and 1 timed repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.repeat = 1, 1

    import matplotlib
    import torch

    matplotlib.use("Agg")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", module="sklearn")
    # benchmarks/ is on sys.path when this script runs
    from eval_retrieval import catalog_of, cutout_set
    from sklearn.decomposition import PCA

    from galmorphsearch import __version__
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.model import Encoder

    command = shlex.join(["python", "benchmarks/pretrained_yardstick.py",
                          *(sys.argv[1:] if argv is None else argv)])
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    paths = shipped_paths(args.encoder)
    train, val = cutout_set("train", args.cache), cutout_set("validation", args.cache)
    y_train = np.asarray(train.table["morphology"], dtype=str)
    y_val = np.asarray(val.table["morphology"], dtype=str)
    majority = max(np.mean(y_val == c) for c in set(y_val))
    machine = f"{os.cpu_count()}-core CPU ({_cpu_name()}), no GPU"
    print(f"galmorphsearch {__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {machine}")
    print(f"database: train split, {len(train)} galaxies; targets: validation split, "
          f"{len(val)} ({100 * majority:.1f} per cent in the larger class)", flush=True)

    rows = []
    shipped = {}
    databases = {}
    pick = balanced_pick(y_val, 6)
    print("shipped encoders:")
    for name, path in paths.items():
        encoder = Encoder.load(path)
        shipped[name] = encoder
        print(f"  {name}: {path} ({encoder.architecture}, {encoder.latent_dim} features, "
              f"weights hash {encoder.weights_hash})", flush=True)
        database = LatentDatabase.build(catalog_of(train), train, encoder,
                                        catalog_name="SDSS spiral / non-spiral train")
        databases[name] = database
        scores = measure(name, database.latents, y_train, encoder.encode(val.images), y_val)
        encode_rate, forward_rate = throughput(encoder, val.images, 64, args.repeat)
        print(f"  {name:40s} encode {encode_rate:.0f} images/s, backbone forward "
              f"{forward_rate:.0f} images/s (ratio {encode_rate / forward_rate:.2f})",
              flush=True)
        rows.append({"encoder": name, "label": name, "kind": "pretrained",
                     "architecture": encoder.architecture, "latent_dim": encoder.latent_dim,
                     "n_runs": 1, "weights_hash": encoder.weights_hash, **scores,
                     "encode_rate": encode_rate, "forward_rate": forward_rate})

    print(f"random weights ({_plural(args.seeds, 'seed')}):")
    architectures = list(RANDOM_ARCHITECTURES)
    architectures += sorted({e.architecture for e in shipped.values()} - set(architectures))
    for arch in architectures:
        scores = random_runs(arch, range(args.seeds), train, val, y_train, y_val)
        rows.append({"encoder": f"random-{arch}", "label": f"{arch}, random weights",
                     "kind": "random", "architecture": arch, "weights_hash": "", **scores})

    print("baseline:")
    raw_train = train.images.reshape(len(train), -1).astype(np.float32) / 255
    raw_val = val.images.reshape(len(val), -1).astype(np.float32) / 255
    pca = PCA(50, random_state=0).fit(raw_train)
    scores = measure("PCA(50) of raw pixels", pca.transform(raw_train), y_train,
                     pca.transform(raw_val), y_val)
    rows.append({"encoder": "pca50-pixels", "label": "PCA(50) of raw pixels", "kind": "pca",
                 "architecture": "pca", "latent_dim": 50, "n_runs": 1, "weights_hash": "",
                 **scores})

    classifier_accuracy = {}
    if args.classifier_checkpoint:
        print("classifiers (the supervised network with its head, for comparison):")
    for path in args.classifier_checkpoint:
        classifier_accuracy[Path(path).name] = head_accuracy(path, val.images, y_val)
        print(f"  {Path(path).name}: {100 * classifier_accuracy[Path(path).name]:.1f} per cent "
              "of the validation split", flush=True)

    table = results_table(rows)
    table.meta.update({
        "classifier_head_accuracy": classifier_accuracy,
        "date": date, "command": command, "torch_threads": torch.get_num_threads(),
        "torch_version": str(torch.__version__), "galmorphsearch_version": str(__version__),
        "machine": machine, "n_train": len(train), "n_validation": len(val),
        "majority_fraction": float(majority), "random_seeds": args.seeds,
        "throughput_batch": 64, "throughput_repeat": args.repeat,
        "encoder_files": {n: str(p) for n, p in paths.items()},
    })
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    table.write(output, overwrite=True)
    print_table(table)
    print(f"wrote {output}")

    print("figures:")
    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    for name, encoder in shipped.items():
        history = history_of(paths[name])
        if history is None:
            print(f"  no loss history beside {paths[name]}: {name}-loss.png skipped")
        else:
            figure_loss(Table.read(history, format="ascii.ecsv"), encoder.training_method,
                        f"{name}: training history", figures / f"{name}-loss.png")
        figure_gallery(databases[name], train, encoder, val, pick, figures / f"{name}-gallery.png")
        figure_knn(name, knn_curves(table, name, encoder.architecture),
                   figures / f"{name}-knn.png")
    if args.ae_checkpoint:
        figure_reconstructions(args.ae_checkpoint, shipped.get("tsgicas-ae"), val, pick,
                               figures / "tsgicas-ae-reconstructions.png")
    else:
        print("  no --ae-checkpoint: tsgicas-ae-reconstructions.png skipped")

    print("reST snippets:")
    write_rst(args.rst, "yardstick.rst", command, date, yardstick_rst(table, table.meta))
    write_rst(args.rst, "throughput.rst", command, date, throughput_rst(table, table.meta))
    for name, encoder in shipped.items():
        write_rst(args.rst, f"{name}-record.rst", command, date,
                  record_rst(name, encoder, paths[name]))


def head_accuracy(path, images, labels):
    """Accuracy of a `ClassifierModule` checkpoint's own predictions."""
    import torch

    from galmorphsearch.model import ClassifierModule

    module = ClassifierModule.load_from_checkpoint(path, map_location="cpu",
                                                   weights_only=True).eval()
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    with torch.inference_mode():
        logits = torch.cat([module(x[i:i + 100]) for i in range(0, len(x), 100)])
    predicted = np.asarray(module.classes)[logits.argmax(1).numpy()]
    return float(np.mean(predicted == labels))


def results_table(rows):
    """The rows as a Table, missing values NaN, with column descriptions."""
    columns = ["encoder", "label", "kind", "architecture", "latent_dim", "n_runs",
               "weights_hash"]
    for key in [*[f"knn_{k}" for k in KS], "ARI", "NMI"]:
        columns += [key, f"{key}_std"]
    columns += ["encode_rate", "forward_rate"]
    table = Table(rows=[[r.get(c, np.nan) for c in columns] for r in rows], names=columns)
    for k in KS:
        table[f"knn_{k}"].description = f"k-NN vote accuracy at k = {k} (fraction)"
    table["ARI"].description = "k-means adjusted Rand index of the validation latents"
    table["NMI"].description = "k-means normalised mutual information of the validation latents"
    for key in [*[f"knn_{k}" for k in KS], "ARI", "NMI"]:
        table[f"{key}_std"].description = "sample standard deviation over the random seeds"
    table["encode_rate"].unit = table["forward_rate"].unit = "1 / s"
    table["encode_rate"].description = "images per second of Encoder.encode"
    table["forward_rate"].description = "images per second of bare backbone forward passes"
    return table


def knn_curves(table, name, architecture):
    """(label, k-NN table, std or None) of a shipped encoder, its random counterpart, PCA."""
    def curve(row):
        acc = [row[f"knn_{k}"] for k in KS]
        std = np.array([row[f"knn_{k}_std"] for k in KS])
        return Table({"k": list(KS), "accuracy": acc}), std

    by_name = {r["encoder"]: r for r in table}
    shipped, _ = curve(by_name[name])
    random, spread = curve(by_name[f"random-{architecture}"])
    pca, _ = curve(by_name["pca50-pixels"])
    n = int(by_name[f"random-{architecture}"]["n_runs"])
    return [(name, shipped, None),
            (f"{architecture}, random weights ({_plural(n, 'seed')})", random, spread),
            ("PCA(50) of raw pixels", pca, None)]


def print_table(table):
    """The results as plain text."""
    print(f"\n{'encoder':34s} " + " ".join(f"{'k=' + str(k):>13s}" for k in KS)
          + f" {'ARI':>15s} {'NMI':>15s} {'encode/s':>9s} {'forward/s':>9s}")
    for r in table:
        cells = [f"{_pm(r[f'knn_{k}'], r[f'knn_{k}_std'], 100):>13s}" for k in KS]
        cells += [f"{_pm(r['ARI'], r['ARI_std'], fmt='.3f'):>15s}",
                  f"{_pm(r['NMI'], r['NMI_std'], fmt='.3f'):>15s}"]
        rates = (f"{r['encode_rate']:9.0f} {r['forward_rate']:9.0f}"
                 if np.isfinite(r["encode_rate"]) else f"{'--':>9s} {'--':>9s}")
        print(f"{r['label']:34s} {' '.join(cells)} {rates}")
    print()


if __name__ == "__main__":
    main()
