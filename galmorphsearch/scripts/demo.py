# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The main job on bundled data: ``galmorphsearch demo``.

Synthetic reference galaxies of the 12 GZ2 types form the database, encoded
by the default pretrained encoder (or another shipped or saved one, or an
autoencoder trained here on them); the spirals of Hickson Compact
Group 88, cut from the real SDSS field, and held-out synthetic galaxies are
searched and classified. Everything is written to one output folder.
"""

import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["run_demo", "demo_outputs"]


def demo_outputs(output):
    """The files `run_demo` writes into ``output``."""
    out = Path(output)
    return {
        "encoder": out / "encoder.safetensors",
        "history": out / "loss_history.ecsv",
        "database": out / "database.fits",
        "results": out / "search_results.ecsv",
        "classification": out / "classification.ecsv",
        "gallery": out / "retrieval_gallery.png",
        "hcg88": out / "hcg88_cutouts.png",
        "report": out / "report.html",
    }


def _log(message, start):
    print(f"[{time.perf_counter() - start:6.1f} s] {message}", flush=True)


def run_demo(output, *, size=64, n_per_type=10, n_query=2, epochs=30, encoder=None,
             train=False, seed=0, k=5, overwrite=False, progress_bar=False):
    """
    Run the demonstration pipeline and write its products to ``output``.

    Parameters
    ----------
    output : str or path-like
        Output folder (created if needed).
    size : int, optional
        Cutout and encoder input size in pixels.
    n_per_type : int, optional
        Synthetic galaxies made per GZ2 type.
    n_query : int, optional
        Of those, how many per type are held out of the database as targets.
    epochs : int, optional
        Training epochs of the autoencoder (with ``train`` only).
    encoder : str or path-like, optional
        The name of a shipped pretrained encoder
        (`~galmorphsearch.model.Encoder.pretrained`) or a saved encoder
        file; default the default pretrained encoder.
    train : bool, optional
        Train the TSGICAS autoencoder on the database galaxies instead (and
        write it and its loss history); not with ``encoder``.
    seed : int, optional
        Seed of the synthetic sample, the masking draws and the training.
    k : int, optional
        Matches listed per target.
    overwrite : bool, optional
        Replace existing output files.
    progress_bar : bool, optional
        Show progress bars (needs tqdm).

    Returns
    -------
    classification : `~astropy.table.Table`
        One row per target with its predicted type and H-similarity.
    """
    import matplotlib

    matplotlib.use("Agg")
    from astropy.table import Table

    from galmorphsearch import GalaxyCutout
    from galmorphsearch.catalogs import GZ2_SCHEME
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.datasets import load_hcg88_members, load_sample_field, make_synthetic_sample
    from galmorphsearch.model import Encoder, train_autoencoder
    from galmorphsearch.preprocessing import CutoutFlag, TruncatedCutoutWarning, make_cutouts
    from galmorphsearch.search import SimilaritySearcher
    from galmorphsearch.utils import atomic_path, progress_iter

    if n_query < 1 or n_query >= n_per_type:
        msg = f"n_query must be between 1 and n_per_type - 1 = {n_per_type - 1}, not {n_query}"
        raise ValueError(msg)
    if train and encoder is not None:
        msg = "pass either encoder (to use one) or train=True (to train one), not both"
        raise ValueError(msg)
    outputs = demo_outputs(output)
    if not train:
        for key in ("encoder", "history"):
            outputs.pop(key)
    if not overwrite:
        existing = [str(p) for p in outputs.values() if p.exists()]
        if existing:
            msg = f"{', '.join(existing)} already exist(s); use overwrite to replace"
            raise FileExistsError(msg)
    Path(output).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    # 1. Synthetic reference galaxies of the 12 GZ2 types, preprocessed like
    #    database galaxies (rotated to position angle 90 degrees).
    truth, fields = make_synthetic_sample(n_per_type=n_per_type, seed=seed,
                                          progress_bar=progress_bar)
    with warnings.catch_warnings():
        # Large synthetic discs can overflow their 256-pixel field once the
        # 3-Kron-radius crop is rotated: such cutouts are padded with sky and
        # flagged (CROP_TRUNCATED); they are counted below, not warned about
        # one by one.
        warnings.simplefilter("ignore", TruncatedCutoutWarning)
        cutouts = [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=size, rotate=True,
                                seed=seed)
                   for f in progress_iter(fields, progress_bar, desc="preprocessing")]
    n_padded = sum(bool(c.flag & CutoutFlag.CROP_TRUNCATED) for c in cutouts)
    _log(f"made and preprocessed {len(cutouts)} synthetic galaxies of the 12 GZ2 types "
         f"({size} px; {n_padded} padded at the field edge)", start)
    rank = np.zeros(len(truth), dtype=int)
    for name in GZ2_SCHEME.types:
        members = np.flatnonzero(truth["morphology"] == name)
        rank[members] = np.arange(members.size)
    is_query = rank >= n_per_type - n_query
    db_rows = np.flatnonzero(~is_query)
    query_rows = np.flatnonzero(is_query)

    # 2. The encoder: a shipped pretrained one, a saved one, or trained here on
    #    the database galaxies.
    if train:
        from galmorphsearch.model import quiet_lightning

        with quiet_lightning():
            autoencoder, history = train_autoencoder(
                [cutouts[i] for i in db_rows], labels=list(truth["morphology"][db_rows]),
                input_size=size, max_epochs=epochs,
                batch_size=min(42, max(8, db_rows.size // 4)), seed=seed,
                progress_bar=progress_bar)
        model = autoencoder.encoder
        model.save(outputs["encoder"], overwrite=overwrite)
        with atomic_path(outputs["history"], overwrite=overwrite) as tmp:
            history.write(tmp, format="ascii.ecsv")
        last = history[-1]
        _log(f"trained the autoencoder for {epochs} epochs: loss {last['train_loss']:.4f} "
             f"(training), {last['val_loss']:.4f} (validation)", start)
    else:
        from galmorphsearch.model import PRETRAINED

        # A shipped encoder's name, unless a file of that name is there.
        if encoder is None or (encoder in PRETRAINED and not Path(encoder).exists()):
            model = Encoder.pretrained(encoder)
            source = "the shipped pretrained weights"
        else:
            model = Encoder.load(encoder)
            source = str(encoder)
        history = None
        _log(f"loaded the encoder {model.name} ({model.architecture}, {model.input_size} px, "
             f"{model.training_method}) from {source}", start)

    # 3. The latent database, written as FITS.
    catalog = truth["objid", "ra", "dec", "morphology", "type_index"][db_rows]
    database = LatentDatabase.build(catalog, [cutouts[i] for i in db_rows], model,
                                    catalog_name="synthetic GZ2", scheme="gz2",
                                    progress_bar=progress_bar)
    database.write(outputs["database"], overwrite=overwrite)
    _log(f"built the latent database: {len(database)} galaxies, "
         f"H-similarity {database.h_similarity_mean:.1f} +/- {database.h_similarity_std:.1f}",
         start)

    # 4. Targets: the HCG 88 spirals in the real SDSS field, and held-out
    #    synthetic galaxies.
    field = load_sample_field()
    members = load_hcg88_members()
    hcg_cutouts = make_cutouts(field["g"], field["r"], field["i"], members["coord"],
                               size=size, rotate=True, seed=seed)
    targets = list(hcg_cutouts) + [cutouts[i] for i in query_rows]
    target_ids = [str(n) for n in members["name"]] + [str(o) for o in truth["objid"][query_rows]]
    true_types = [""] * len(hcg_cutouts) + [str(t) for t in truth["morphology"][query_rows]]
    latents = model.encode(targets)
    backgrounds = model.encode(targets, background=True)

    searcher = SimilaritySearcher(database, model)
    results = searcher.search_latents(latents, backgrounds, k=k, target_ids=target_ids)
    classification = searcher.classify_latents(latents, backgrounds, target_ids=target_ids)
    classification["true_morphology"] = true_types
    with atomic_path(outputs["results"], overwrite=overwrite) as tmp:
        results.write(tmp, format="ascii.ecsv")
    with atomic_path(outputs["classification"], overwrite=overwrite) as tmp:
        classification.write(tmp, format="ascii.ecsv")

    synthetic = classification[len(hcg_cutouts):]
    correct = np.asarray(synthetic["predicted_morphology"]) == np.asarray(
        synthetic["true_morphology"])
    good = GZ2_SCHEME.is_good(list(synthetic["true_morphology"]),
                              list(synthetic["predicted_morphology"]))
    _log(f"classified {len(targets)} targets: held-out synthetic galaxies "
         f"{correct.mean():.0%} exact type, {np.mean(good):.0%} within two adjacent types "
         f"(chance: {1 / len(GZ2_SCHEME.types):.0%} exact)", start)

    # 5. Pictures.
    db_images = {str(truth["objid"][i]): cutouts[i].image for i in db_rows}
    _gallery(outputs["gallery"], targets, target_ids, results, db_images, k, overwrite,
             n_rows=len(hcg_cutouts) + min(6, len(query_rows)))
    _hcg_figure(outputs["hcg88"], hcg_cutouts, members, classification, overwrite)
    _report(outputs["report"], results, targets, target_ids, true_types, db_images,
            classification, database, history, k, overwrite)
    columns = ["target", "predicted_morphology", "H_similarity", "no_similar",
               "matched_objid", "true_morphology"]
    Table(classification)[columns].pprint(max_lines=-1, max_width=120)
    _log(f"wrote {', '.join(p.name for p in outputs.values())} to {output}/", start)
    return classification


def _report(path, results, targets, target_ids, true_types, db_images, classification,
            database, history, k, overwrite):
    """The browsable HTML page of targets, matches and figures."""
    import matplotlib.pyplot as plt

    from galmorphsearch.evaluation import h_similarity_statistics
    from galmorphsearch.visualization import (
        plot_h_similarity_by_type,
        plot_loss_history,
        write_report,
    )

    figures = {"H-similarity of the database galaxies, per type":
               plot_h_similarity_by_type(h_similarity_statistics(database))}
    if history is not None:
        figures["Training and validation loss of the autoencoder"] = plot_loss_history(history)
    try:
        write_report(path, results, targets, database_images=db_images,
                     classification=classification, target_ids=target_ids,
                     true_types=true_types,
                     figures=figures, k=k, overwrite=overwrite,
                     title="galmorphsearch demo: HCG 88 spirals and held-out synthetic "
                           "galaxies")
    finally:
        for fig in figures.values():
            plt.close(fig)


def _gallery(path, targets, target_ids, results, db_images, k, overwrite, n_rows):
    """Each target beside its top matches, with their type and Sp."""
    import matplotlib.pyplot as plt

    from galmorphsearch.utils import atomic_path
    from galmorphsearch.visualization import plot_retrieval_gallery

    fig = plot_retrieval_gallery(targets, results, db_images, k=k, target_ids=target_ids,
                                 max_targets=n_rows)
    try:
        fig.suptitle("galmorphsearch demo: targets and their most similar database galaxies",
                     fontsize=8)
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(fig)


def _hcg_figure(path, cutouts, members, classification, overwrite):
    import matplotlib.pyplot as plt

    from galmorphsearch.utils import atomic_path

    fig, axes = plt.subplots(1, len(cutouts), figsize=(3 * len(cutouts), 3.3), squeeze=False)
    for ax, cutout, name, row in zip(axes[0], cutouts, members["name"], classification,
                                     strict=False):
        ax.imshow(cutout.image)
        verdict = "no similar galaxy" if row["no_similar"] else row["predicted_morphology"]
        ax.set_title(f"{name}: {verdict}\nH-similarity {row['H_similarity']:.1f}", fontsize=8)
        ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
