# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Every evaluation of ``galmorphsearch.evaluation``, measured on real and on
synthetic galaxies, with the figures of the evaluation pages of the docs.

Real: the SDSS spiral / non-spiral set in ``../shared/data`` beside the
repository. The latent database is built from its train split (1,400
galaxies) and the targets are its validation split (600), both cut with
``GalaxyCutout.from_image`` at 64 px and rotated to position angle 90 deg.
For each encoder, it measures classification by H-similarity (the paper's
rule), k-NN vote accuracy, k-means and agglomerative clustering (ARI, NMI),
the paper's MC/MD test inside the train database, and H-similarity
statistics. The baseline is principal components of the raw pixels (k-NN
and clustering only: it has no background latents).

Synthetic: fresh synthetic galaxies of the 12 GZ2 types (seed 2, not seen in
training; 40 per type) encoded into a latent database by an encoder (for
example the one ``galmorphsearch demo`` trains), or a given database file,
with the MC/MD test, the 400-iteration balanced vote with 5 galaxies per
type, and k-NN (leave one out).

Usage::

    python benchmarks/eval_retrieval.py --encoder ENCODER.safetensors \\
        --synthetic-encoder ENCODER.safetensors [--figures docs/_static/evaluation]

Preprocessing the 2,000 JPEGs takes about 10 minutes on 2 cores; the cutout
sets are cached in ``--cache`` (default ``~/.cache/galmorphsearch-bench``).
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table, vstack

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-kaggle-spiral-2000"
SPIRAL_TYPES = ("non_spirals", "spirals")


def cutout_set(split, cache, data=DATA):
    from galmorphsearch import GalaxyCutout
    from galmorphsearch.preprocessing import CutoutSet

    path = Path(cache) / f"spiral_{split}_64.fits"
    if path.exists():
        return CutoutSet.read(path)
    labels = Table.read(Path(data) / "labels.csv")
    rows = labels[labels["split"] == split]
    # In chunks: a GalaxyCutout keeps its intermediate planes, so only the
    # images, backgrounds and table rows of finished chunks are kept.
    parts = []
    for start in range(0, len(rows), 100):
        chunk = rows[start:start + 100]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the flags stay on the cutouts
            cuts = [GalaxyCutout.from_image(Path(data) / r["file"], size=64, rotate=True,
                                            seed=0)
                    for r in chunk]
        parts.append(CutoutSet.from_cutouts(cuts, Table({"objid": chunk["GalaxyID"],
                                                         "morphology": chunk["label"]})))
    cs = CutoutSet(vstack([p.table for p in parts], metadata_conflicts="silent"),
                   np.concatenate([p.images for p in parts]),
                   np.concatenate([p.backgrounds for p in parts]))
    path.parent.mkdir(parents=True, exist_ok=True)
    cs.write(path)
    return cs


def catalog_of(cs):
    morph = np.asarray(cs.table["morphology"], dtype=str)
    catalog = Table({"objid": np.asarray(cs.table["objid"]),
                     "ra": np.full(len(cs), np.nan), "dec": np.full(len(cs), np.nan),
                     "morphology": morph,
                     "type_index": np.array([SPIRAL_TYPES.index(m) for m in morph])})
    catalog.meta["SCHEME"] = "spiral"
    return catalog


def line(name, **values):
    text = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in values.items())
    print(f"  {name:34s} {text}", flush=True)


def knn_and_clusters(name, train_x, train_y, val_x, val_y):
    from galmorphsearch.evaluation import cluster_scores, knn_accuracy

    knn = knn_accuracy(train_x, train_y, val_x, val_y, k=(1, 5, 10, 15, 20))
    clusters = cluster_scores(val_x, val_y, seed=0)
    acc = {f"k={k}": float(a) for k, a in zip(knn["k"], knn["accuracy"], strict=True)}
    line(name + ": k-NN accuracy", **acc)
    for row in clusters:
        line(f"{name}: {row['method']}", ARI=float(row["ARI"]), NMI=float(row["NMI"]))
    return knn, clusters


def _random_encoder():
    import torch

    from galmorphsearch.model import Encoder

    torch.manual_seed(0)
    return Encoder(input_size=64, name="random-resnet18")


def real(args):
    from sklearn.decomposition import PCA

    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.evaluation import (
        confusion_matrix,
        evaluate_retrieval,
        h_similarity_statistics,
        label_outliers,
        latent_map,
    )
    from galmorphsearch.model import Encoder
    from galmorphsearch.search import SimilaritySearcher

    t0 = time.perf_counter()
    train, val = cutout_set("train", args.cache), cutout_set("validation", args.cache)
    print(f"real spiral / non-spiral set: {len(train)} train (database), {len(val)} "
          f"validation (targets), 64 px; cut in {time.perf_counter() - t0:.0f} s", flush=True)
    y_train = np.asarray(train.table["morphology"], dtype=str)
    y_val = np.asarray(val.table["morphology"], dtype=str)

    raw_train = train.images.reshape(len(train), -1).astype(np.float32) / 255
    raw_val = val.images.reshape(len(val), -1).astype(np.float32) / 255
    pca = PCA(50, random_state=0).fit(raw_train)
    knn_and_clusters("PCA(50) of raw pixels", pca.transform(raw_train), y_train,
                     pca.transform(raw_val), y_val)

    encoders = [("random ResNet-18", _random_encoder())]
    encoders += [(f"encoder {Path(p).name}", Encoder.load(p)) for p in args.encoder]
    for name, encoder in encoders:
        t1 = time.perf_counter()
        database = LatentDatabase.build(catalog_of(train), train, encoder,
                                        catalog_name="SDSS spiral / non-spiral train")
        lat_val = encoder.encode(val.images)
        back_val = encoder.encode(val.backgrounds)
        searcher = SimilaritySearcher(database, encoder)
        found = searcher.classify_latents(lat_val, back_val,
                                          target_ids=np.asarray(val.table["objid"]))
        pred = np.asarray(found["predicted_morphology"], dtype=str)
        confusion = confusion_matrix(y_val, pred, SPIRAL_TYPES)
        line(f"{name}: H-similarity class.", accuracy=float(np.mean(pred == y_val)),
             no_similar=float(np.mean(found["no_similar"])),
             seconds=time.perf_counter() - t1)
        knn_and_clusters(name, database.latents, y_train, lat_val, y_val)
        result, summary = evaluate_retrieval(database, seed=0)
        line(f"{name}: MC/MD in train", n=summary["n"], best=summary["best_rate"],
             r=summary["correlation"])
        stats = h_similarity_statistics(database)
        line(f"{name}: H-similarity", **{f"{t}": f"{m:.1f}+/-{s:.1f}" for t, m, s in
                                         zip(stats["type"], stats["mean"], stats["std"],
                                             strict=True)})
        outliers = label_outliers(lat_val, y_val, k=10)
        line(f"{name}: label outliers", over_0_8=int(np.sum(outliers["disagreement"] > 0.8)))
        if args.figures and name == encoders[-1][0]:
            figures_real(args.figures, database, train, val, found, confusion, lat_val,
                         y_val, searcher, back_val, latent_map, outliers)


def figures_real(folder, database, train, val, found, confusion, lat_val, y_val, searcher,
                 back_val, latent_map, outliers):
    from galmorphsearch.visualization import (
        plot_confusion_matrix,
        plot_h_similarity_histogram,
        plot_latent_map,
        plot_retrieval_gallery,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig = plot_confusion_matrix(confusion, SPIRAL_TYPES,
                                title="SDSS validation split, H-similarity")
    fig.savefig(folder / "real_confusion.png", dpi=90)
    fig = plot_h_similarity_histogram(database)
    fig.savefig(folder / "real_h_similarity.png", dpi=90)
    xy = latent_map(lat_val, "tsne", seed=0)
    worst = np.asarray(outliers["id"])[np.asarray(outliers["disagreement"]) > 0.8]
    fig = plot_latent_map(xy, y_val, outliers=worst, types=SPIRAL_TYPES,
                          title="t-SNE of validation latents (circled: label outliers)")
    fig.savefig(folder / "real_latent_map.png", dpi=90)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(val), 6, replace=False)
    ids = np.asarray(val.table["objid"])[pick]
    results = searcher.search_latents(lat_val[pick], back_val[pick], k=5, target_ids=ids)
    fig = plot_retrieval_gallery([val.images[i] for i in pick], results, train, k=5,
                                 target_ids=ids, true_types=list(y_val[pick]))
    fig.savefig(folder / "real_gallery.png", dpi=80)


def synthetic_database(args):
    """Fresh synthetic galaxies (seed 2, unseen in training) encoded by an encoder."""
    from galmorphsearch import GalaxyCutout
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.datasets import make_synthetic_sample
    from galmorphsearch.model import Encoder

    encoder = Encoder.load(args.synthetic_encoder)
    truth, fields = make_synthetic_sample(n_per_type=args.synthetic_n_per_type, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flags stay on the cutouts
        cutouts = [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=encoder.input_size,
                                rotate=True, seed=2) for f in fields]
    return LatentDatabase.build(truth["objid", "ra", "dec", "morphology", "type_index"],
                                cutouts, encoder, catalog_name="synthetic GZ2", scheme="gz2")


def synthetic(args):
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.evaluation import (
        balanced_vote,
        evaluate_retrieval,
        h_similarity_statistics,
        knn_accuracy,
        mc_md_split,
    )

    if args.synthetic_database:
        database = LatentDatabase.read(args.synthetic_database)
    else:
        database = synthetic_database(args)
    print(f"synthetic database: {len(database)} galaxies, "
          f"encoder {database.meta['ENCODER']}", flush=True)
    y = np.asarray(database.table["morphology"], dtype=str)
    result, summary = evaluate_retrieval(database, fraction=args.fraction, seed=0)
    line("MC/MD (paper's test)", n=summary["n"], best=summary["best_rate"],
         good=summary["good_rate"], miss=summary["miss_rate"], r=summary["correlation"])
    mc, md = mc_md_split(database, fraction=args.fraction, seed=0)
    t1 = time.perf_counter()
    _, vote = balanced_vote(database, mc, md, n_per_type=args.vote_per_type,
                            n_iterations=400, seed=0)
    line("balanced vote, 400 iterations", n_per_type=vote["n_per_type"],
         best=vote["best_rate"], good=vote["good_rate"], r=vote["correlation"],
         seconds=time.perf_counter() - t1)
    knn = knn_accuracy(database.latents, y, k=(1, 5, 10))
    line("k-NN, leave one out", **{f"k={k}": float(a) for k, a in
                                   zip(knn["k"], knn["accuracy"], strict=True)})
    stats = h_similarity_statistics(database)
    line("H-similarity (all)", mean=float(stats["mean"][-1]), std=float(stats["std"][-1]))
    if args.figures:
        from galmorphsearch.visualization import (
            plot_confusion_matrix,
            plot_h_similarity_by_type,
        )

        folder = Path(args.figures)
        folder.mkdir(parents=True, exist_ok=True)
        plot_confusion_matrix(summary).savefig(folder / "synthetic_confusion.png", dpi=90)
        plot_h_similarity_by_type(stats).savefig(folder / "synthetic_h_similarity.png",
                                                 dpi=90)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", action="append", default=[],
                        help="a saved encoder to measure on the real set (repeatable)")
    parser.add_argument("--synthetic-database", help="latent database of synthetic galaxies")
    parser.add_argument("--synthetic-encoder",
                        help="or: encode fresh synthetic galaxies with this encoder")
    parser.add_argument("--synthetic-n-per-type", type=int, default=40,
                        help="synthetic galaxies per GZ2 type (default 40)")
    parser.add_argument("--vote-per-type", type=int, default=5,
                        help="galaxies per type in each balanced draw (default 5)")
    parser.add_argument("--fraction", type=float, default=0.2,
                        help="MC share per type in the synthetic test (default 0.2)")
    parser.add_argument("--figures", help="write the figures into this folder")
    parser.add_argument("--cache", default=Path.home() / ".cache" / "galmorphsearch-bench")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    if not args.skip_real:
        real(args)
    if args.synthetic_database or args.synthetic_encoder:
        synthetic(args)


if __name__ == "__main__":
    main()
