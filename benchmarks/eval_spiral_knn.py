# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
k-NN retrieval accuracy on the real SDSS spiral / non-spiral set.

The database is the set's train split (1,400 galaxies), the queries its
validation split (600); both are cut with ``GalaxyCutout.from_image`` at
64 px, rotated. Prints k-NN vote accuracy (k = 1 and 10) and k-means ARI/NMI
for principal components of the raw pixels, a randomly initialised ResNet-18
encoder and, if given, a saved encoder::

    python benchmarks/eval_spiral_knn.py [ENCODER.safetensors]

The data live in ``../shared/data/sdss-kaggle-spiral-2000`` beside the
repository; preprocessing the 2,000 JPEGs takes about 10 minutes on 2 cores.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Table
from sklearn.decomposition import PCA

from galmorphsearch import GalaxyCutout
from galmorphsearch.evaluation import cluster_scores, knn_accuracy
from galmorphsearch.model import Encoder
from galmorphsearch.preprocessing import CutoutSet

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sdss-kaggle-spiral-2000"


def cutouts(split):
    labels = Table.read(DATA / "labels.csv")
    rows = labels[labels["split"] == split]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flags are kept on the cutouts
        cuts = [GalaxyCutout.from_image(DATA / r["file"], size=64, rotate=True, seed=0)
                for r in rows]
    return CutoutSet.from_cutouts(cuts, Table({"objid": rows["GalaxyID"],
                                               "morphology": rows["label"]}))


def report(name, train_features, train_labels, val_features, val_labels):
    knn = knn_accuracy(train_features, train_labels, val_features, val_labels, k=(1, 10))
    clusters = cluster_scores(val_features, val_labels, seed=0)
    print(f"{name:40s} k-NN accuracy k=1 {knn['accuracy'][0]:.3f}, "
          f"k=10 {knn['accuracy'][1]:.3f}; k-means ARI {clusters['ARI'][0]:.3f}, "
          f"NMI {clusters['NMI'][0]:.3f}")


def main(encoder_path=None):
    train, val = cutouts("train"), cutouts("validation")
    y_train = np.asarray(train.table["morphology"], dtype=str)
    y_val = np.asarray(val.table["morphology"], dtype=str)
    raw_train = train.images.reshape(len(train), -1).astype(np.float32) / 255
    raw_val = val.images.reshape(len(val), -1).astype(np.float32) / 255
    pca = PCA(50, random_state=0).fit(raw_train)
    report("PCA(50) of raw 64 px pixels", pca.transform(raw_train), y_train,
           pca.transform(raw_val), y_val)
    encoders = [("ResNet-18 encoder, random weights", Encoder(input_size=64))]
    if encoder_path:
        encoders.append((f"encoder {Path(encoder_path).name}", Encoder.load(encoder_path)))
    for name, encoder in encoders:
        report(name, encoder.encode(train.images), y_train, encoder.encode(val.images), y_val)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
