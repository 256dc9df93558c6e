# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The ``galmorphsearch`` command line: a thin layer over the public API.

Verbs
-----
``demo``
    The main job on bundled data: synthetic reference galaxies of the 12 GZ2
    types, an autoencoder trained on them, a FITS latent database, and the
    HCG 88 spirals of the real SDSS field searched and classified.
``preprocess``
    Cut many galaxies (from gri FITS and positions, or colour images) into a
    cutout set (FITS).
``train``
    Train the autoencoder on a cutout set and save its encoder.
``build-db``
    Encode a cutout set of galaxies of known type into a latent database.
``search``, ``classify``
    Find the most similar database galaxies of the galaxies of a cutout set,
    and adopt their types.
``evaluate``
    The paper's evaluation of a latent database (MC/MD split, rates,
    correlation, confusion matrix, balanced-database vote).
``report``
    Search and classify the galaxies of a cutout set and write a
    self-contained HTML report: thumbnails of each target and its matches,
    predicted types, H-similarities, and evaluation figures.
``info``
    Say what a latent database file holds.
``cutout``
    Preprocess one galaxy from g, r, i FITS files (or a colour image).
``catalog``
    Read a GZ2, EFIGI or NA10 catalog file into the standard Table.
"""

import argparse
import os
import re
import sys
import warnings
from pathlib import Path

import numpy as np

__all__ = ["main"]

# Exceptions that are the user's to fix (a wrong option, a missing or damaged
# file, a missing optional package): printed as one line, exit status 1.
# Anything else is a bug of ours and says so, also in one line; --debug (or
# GALMORPHSEARCH_DEBUG=1) shows the traceback of either.
_DEBUG_ENV = "GALMORPHSEARCH_DEBUG"


def _number_type(convert, kind, accept, expected):
    """
    An argparse type: ``convert(text)`` (a ``kind``) for which ``accept`` holds.

    ``expected`` completes "must be ..." in the message of a refused value.
    """
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            msg = f"{text!r} is not {kind}"
            raise argparse.ArgumentTypeError(msg) from None
        if not accept(value):
            msg = f"must be {expected}, not {text}"
            raise argparse.ArgumentTypeError(msg)
        return value
    parse.__name__ = kind
    return parse


_positive_int = _number_type(int, "an integer", lambda v: v >= 1, "at least 1")
_seed = _number_type(int, "an integer", lambda v: v >= 0, "at least 0")
_finite_float = _number_type(float, "a number", np.isfinite, "a finite number")
_positive_float = _number_type(float, "a number", lambda v: np.isfinite(v) and v > 0,
                               "a finite number above 0")
_open_fraction = _number_type(float, "a number", lambda v: 0.0 < v < 1.0,
                              "between 0 and 1 (exclusive)")
_fraction_or_zero = _number_type(float, "a number", lambda v: 0.0 <= v < 1.0,
                                 "at least 0 and below 1")


def _scheme_names():
    from galmorphsearch.catalogs import EFIGI_SCHEME, GZ2_SCHEME, NA10_SCHEME

    return sorted(scheme.name for scheme in (GZ2_SCHEME, EFIGI_SCHEME, NA10_SCHEME))


def _add_debug(parser, default):
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show the full traceback of an error (also "
                             f"{_DEBUG_ENV}=1)")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (status 2), like the verbs' errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser():
    from galmorphsearch import __version__

    parser = _Parser(
        prog="galmorphsearch",
        description="Find galaxies that look alike and classify galaxy morphology by retrieval.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_debug(parser, False)
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    demo = sub.add_parser(
        "demo", help="the main job on bundled data (a few minutes on a laptop CPU)",
        description="Make synthetic reference galaxies of the 12 GZ2 types, encode them with "
        "the default pretrained encoder (or --encoder, or an autoencoder trained on them "
        "with --train), build a FITS latent database, then search "
        "and classify the Hickson 88 spirals of the bundled real SDSS field and held-out "
        "synthetic galaxies. Writes the database, results, a retrieval gallery and an HTML "
        "report (and the encoder with --train).")
    demo.add_argument("--output", "-o", default="galmorphsearch-demo",
                      help="output directory (default: %(default)s)")
    demo.add_argument("--size", type=_positive_int, default=64,
                      help="cutout and encoder input size")
    demo.add_argument("--n-per-type", type=_positive_int, default=10,
                      help="synthetic galaxies per GZ2 type (default: %(default)s)")
    demo.add_argument("--n-query", type=_positive_int, default=2,
                      help="of those, held out of the database as targets (default: %(default)s)")
    demo.add_argument("--encoder", help="a shipped encoder's name or a saved encoder file "
                      "(default: the default pretrained encoder)")
    demo.add_argument("--train", action="store_true",
                      help="train the TSGICAS autoencoder on the synthetic galaxies instead")
    demo.add_argument("--epochs", type=_positive_int, default=30,
                      help="training epochs (with --train)")
    demo.add_argument("-k", type=_positive_int, default=5,
                      help="matches per target in the results")
    demo.add_argument("--seed", type=_seed, default=0, help="seed of everything random")
    _common(demo)
    demo.set_defaults(func=_run_demo)

    pre = sub.add_parser(
        "preprocess", help="cut many galaxies into a cutout set (FITS)",
        description="Preprocess galaxies the TSGICAS way into a cutout set: from three FITS "
        "files (g r i) and positions, from colour images (one galaxy each), or from the "
        "bundled HCG 88 field (--sample).")
    pre.add_argument("images", nargs="*", metavar="IMAGE",
                     help="three FITS files g r i, or colour images (JPEG/PNG)")
    pre.add_argument("--radec", nargs=2, type=_finite_float, action="append", metavar=("RA", "DEC"),
                     help="a target position in degrees (repeat for more)")
    pre.add_argument("--positions", metavar="TABLE",
                     help="a table with ra and dec columns (deg); its columns are carried")
    pre.add_argument("--sample", action="store_true",
                     help="the HCG 88 spirals of the bundled SDSS field")
    pre.add_argument("--size", type=_positive_int, default=256, help="cutout side in pixels")
    pre.add_argument("--rotate", action="store_true",
                     help="rotate to position angle 90 deg (as for database galaxies)")
    pre.add_argument("--seed", type=_seed, default=0, help="seed of the masking draws")
    pre.add_argument("--png-dir", help="also write one PNG per cutout here")
    pre.add_argument("--output", "-o", required=True, help="output cutout set (.fits)")
    _common(pre)
    pre.set_defaults(func=_run_preprocess)

    train = sub.add_parser(
        "train", help="train an encoder on a cutout set",
        description="Train an encoder on the images of a cutout set and save it "
        "(safetensors, with its metadata and weights hash): the TSGICAS convolutional "
        "autoencoder (default; ResNet-18 encoder, mirrored decoder, MSE, Adam), a "
        "contrastive SimCLR encoder (Wei et al. 2022) or a supervised classifier whose "
        "penultimate layer is the latent space (needs --labels).")
    train.add_argument("cutouts", help="cutout set (.fits) from `galmorphsearch preprocess`")
    train.add_argument("--output", "-o", required=True, help="encoder file (.safetensors)")
    train.add_argument("--method", choices=["autoencoder", "contrastive", "supervised"],
                       default="autoencoder", help="how to train (default: %(default)s)")
    train.add_argument("--architecture",
                       help="backbone (default: resnet18, hybrid for contrastive, vgg-small "
                       "for supervised)")
    train.add_argument("--input-mode", default="rgb",
                       choices=["rgb", "grey", "rgb+residual", "grey+residual"],
                       help="what the encoder sees (default: %(default)s)")
    train.add_argument("--init-weights", metavar="FILE",
                       help="start the backbone from this weight file (.pt/.pth/.safetensors)")
    train.add_argument("--labels", help="table column: class-balanced sampling, and the "
                       "classes of --method supervised")
    train.add_argument("--input-size", type=_positive_int,
                       help="encoder input size (default: 64, 84 for contrastive)")
    train.add_argument("--val-fraction", type=_fraction_or_zero,
                       help="share of the images held out for validation (default: 0.2, "
                       "0.1 for contrastive)")
    train.add_argument("--epochs", type=_positive_int, default=100, help="training epochs")
    train.add_argument("--max-steps", type=_positive_int, help="stop after this many steps")
    train.add_argument("--batch-size", type=_positive_int, help="images per batch (default: 42, 64 "
                       "for contrastive)")
    train.add_argument("--learning-rate", type=_positive_float,
                       help="learning rate (default: 1e-4 autoencoder, 1e-3 supervised, "
                       "0.3 x batch / 256 contrastive)")
    train.add_argument("--checkpoint-dir", help="write checkpoints and the loss history here")
    train.add_argument("--resume", help="'last' or a checkpoint file to resume from")
    train.add_argument("--seed", type=_seed, default=0, help="seed of the split and training")
    _common(train)
    train.set_defaults(func=_run_train)

    build = sub.add_parser(
        "build-db", help="encode a cutout set of known types into a latent database",
        description="Encode the galaxies of a cutout set (whose table has objid, ra, dec, "
        "morphology and type_index) into a FITS latent database.")
    build.add_argument("cutouts", help="cutout set (.fits)")
    build.add_argument("--encoder", help="encoder file (.safetensors) or the name of a "
                       "shipped pretrained encoder (default: the default pretrained encoder, "
                       "'vgg-supervised')")
    build.add_argument("--output", "-o", required=True,
                       help="database file (.fits, or .h5/.hdf5 for HDF5)")
    build.add_argument("--scheme", type=str.lower, choices=_scheme_names(),
                       help="morphology scheme (default: the cutout set's SCHEME keyword)")
    build.add_argument("--catalog-name", help="name of the source catalog")
    build.add_argument("--carry", nargs="*", default=(), help="more columns to keep")
    build.add_argument("--dtype", choices=["float32", "float16"],
                       help="stored precision of the latents (default float32)")
    build.add_argument("--format", choices=["fits", "hdf5"],
                       help="file format (default: from the output's extension, else FITS)")
    dask = build.add_mutually_exclusive_group()
    dask.add_argument("--scheduler", metavar="ADDRESS",
                      help="run the encoding as tasks on this Dask scheduler "
                           "(e.g. tcp://host:8786); needs the 'scale' extra")
    dask.add_argument("--workers", type=_positive_int, metavar="N",
                      help="run the encoding as tasks on a local Dask cluster of N "
                           "one-thread worker processes; needs the 'scale' extra")
    build.add_argument("--partition-size", type=_positive_int, default=256,
                       help="galaxies per Dask task (with --scheduler or --workers)")
    _common(build)
    build.set_defaults(func=_run_build_db)

    for verb, helptext in (("search", "find the most similar database galaxies"),
                           ("classify", "predict types by the most similar galaxy")):
        parser_v = sub.add_parser(verb, help=helptext, description=helptext.capitalize()
                                  + " of the galaxies of a cutout set.")
        parser_v.add_argument("cutouts", help="cutout set (.fits) of the targets")
        parser_v.add_argument("--database", required=True, help="latent database (.fits)")
        parser_v.add_argument("--encoder", help=_ENCODER_HELP)
        parser_v.add_argument("--output", "-o", help="write the results table here")
        _search_options(parser_v)
        if verb == "search":
            parser_v.add_argument("-k", type=_positive_int, default=10, help="matches per target")
        else:
            parser_v.add_argument("--vote", type=_positive_int, metavar="K",
                                  help="also a vote of the K most similar galaxies")
        _common(parser_v)
        parser_v.set_defaults(func=_run_search if verb == "search" else _run_classify)

    ev = sub.add_parser(
        "evaluate", help="the paper's evaluation of a latent database",
        description="Split a latent database per type into 10 %% morphology-check targets "
        "and 90 %% database (Seo et al. 2023), classify the targets by H-similarity, and "
        "print the best / good / miss rates, the type correlation, the confusion matrix and "
        "the H-similarity statistics; optionally the balanced-database vote.")
    ev.add_argument("database", help="latent database (.fits)")
    ev.add_argument("--fraction", type=_open_fraction, default=0.1,
                    help="share of targets per type")
    ev.add_argument("--seed", type=_seed, default=0, help="seed of the split and the draws")
    ev.add_argument("--balanced", type=_positive_int, metavar="N",
                    help="also the balanced-database vote over N iterations (paper: 400)")
    ev.add_argument("--n-per-type", type=_positive_int,
                    help="galaxies per type in each balanced draw")
    ev.add_argument("--output", "-o", help="write the per-galaxy predictions here")
    _common(ev)
    ev.set_defaults(func=_run_evaluate)

    rep = sub.add_parser(
        "report", help="write a self-contained HTML report of a search",
        description="Search and classify the galaxies of a cutout set, as `search` and "
        "`classify` do, and write one static HTML file (images embedded, no external "
        "resources) with each target beside its most similar database galaxies, the "
        "predicted types and H-similarities, and figures: the H-similarity distribution of "
        "the database, overall and per type, a PCA map of its latents and, on request, the "
        "paper's MC/MD evaluation (confusion matrix) and the training loss curve.")
    rep.add_argument("cutouts", help="cutout set (.fits) of the targets")
    rep.add_argument("--database", required=True, help="latent database (.fits)")
    rep.add_argument("--encoder", help=_ENCODER_HELP)
    rep.add_argument("--database-cutouts", metavar="CUTOUTS",
                     help="cutout set (.fits) of the database galaxies, for the thumbnails "
                     "of the matches (matched by objid)")
    rep.add_argument("-k", type=_positive_int, default=5, help="matches shown per target")
    rep.add_argument("--evaluate", action="store_true",
                     help="also run the paper's MC/MD evaluation of the database (rates and "
                     "confusion matrix)")
    rep.add_argument("--fraction", type=_open_fraction, default=0.1,
                     help="share of MC targets per type for --evaluate")
    rep.add_argument("--seed", type=_seed, default=0, help="seed of the split and the map")
    rep.add_argument("--history", metavar="TABLE",
                     help="loss history (.ecsv) from `train` or `demo`, for the loss curve")
    rep.add_argument("--title", default="galmorphsearch report", help="title of the page")
    _search_options(rep)
    rep.add_argument("--output", "-o", required=True, help="report file (.html)")
    _common(rep)
    rep.set_defaults(func=_run_report)

    info = sub.add_parser("info", help="say what a latent database file holds",
                          description="Print the provenance and content of a latent database.")
    info.add_argument("database", help="latent database (.fits)")
    info.set_defaults(func=_run_info)

    cut = sub.add_parser(
        "cutout", help="preprocess one galaxy from g, r, i FITS files or a colour image",
        description="Preprocess one galaxy the TSGICAS way and write its colour cutout "
        "(PNG) and, optionally, a figure of the steps.")
    cut.add_argument("images", nargs="+", metavar="IMAGE",
                     help="three FITS files in the order g r i, or one colour image (JPEG/PNG)")
    where = cut.add_mutually_exclusive_group()
    where.add_argument("--radec", nargs=2, type=_finite_float, metavar=("RA", "DEC"),
                       help="target position in degrees (needs a WCS in the FITS files)")
    where.add_argument("--xy", nargs=2, type=_finite_float, metavar=("X", "Y"),
                       help="target pixel position (zero-based)")
    cut.add_argument("--size", type=_positive_int, default=256, help="cutout side in pixels")
    cut.add_argument("--rotate", action="store_true",
                     help="rotate the galaxy to position angle 90 deg")
    cut.add_argument("--seed", type=_seed, default=0, help="seed of the masking draws")
    cut.add_argument("--output", "-o", required=True, help="output PNG file")
    cut.add_argument("--plot", metavar="FILE", help="also save a figure of the steps")
    cut.add_argument("--overwrite", action="store_true", help="replace existing files")
    cut.set_defaults(func=_run_cutout)

    cat = sub.add_parser(
        "catalog", help="read a GZ2 / EFIGI / NA10 catalog into the standard table",
        description="Read a morphology catalog with galmorphsearch's readers and write the "
        "table with the standard objid, ra, dec, morphology and type_index columns.")
    cat.add_argument("kind", choices=["gz2", "efigi", "na10"], help="which catalog")
    cat.add_argument("input", help="catalog file")
    cat.add_argument("--output", "-o", required=True,
                     help="output file (format from the extension, FITS by default)")
    cat.add_argument("--overwrite", action="store_true", help="replace an existing file")
    cat.set_defaults(func=_run_catalog)
    for verb_parser in sub.choices.values():
        # Given before or after the verb; SUPPRESS keeps the top-level value.
        _add_debug(verb_parser, argparse.SUPPRESS)
    return parser


def _common(parser):
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")
    parser.add_argument("--progress", action="store_true", help="show progress bars")


def _search_options(parser):
    """How the database is read and searched (search, classify, report)."""
    from galmorphsearch.search import available_backends

    parser.add_argument("--backend", default="exact", choices=available_backends(),
                        help="search backend (default exact; the faiss ones need the "
                             "'scale' extra and keep an index file beside the database)")
    parser.add_argument("--memmap", action="store_true",
                        help="leave the latents in the database file and search them chunk "
                             "by chunk (databases larger than memory)")
    parser.add_argument("--threads", type=_positive_int,
                        help="threads of the search (default: all)")
    parser.add_argument("--stale-index", choices=["rebuild", "raise"], default="rebuild",
                        help="an index file that no longer matches the database is rebuilt "
                             "(default) or refused (raise)")


# Output file extension -> astropy table format.
_TABLE_FORMATS = {
    ".fits": "fits", ".fit": "fits", ".fits.gz": "fits",
    ".csv": "ascii.csv", ".ecsv": "ascii.ecsv",
    ".vot": "votable", ".xml": "votable",
    ".hdf5": "hdf5", ".h5": "hdf5",
}
_IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP")


def _table_format(path):
    """The astropy format to write ``path`` in, from its extension."""
    name = Path(path).name.lower()
    for ext in sorted(_TABLE_FORMATS, key=len, reverse=True):
        if name.endswith(ext):
            return _TABLE_FORMATS[ext]
    msg = (f"cannot tell which table format to write {path} in: use one of the "
           f"extensions {', '.join(_TABLE_FORMATS)}")
    raise ValueError(msg)


def _image_format(path):
    """The Pillow format to write ``path`` in, from its extension."""
    from PIL import Image

    fmt = Image.registered_extensions().get(Path(path).suffix.lower())
    if fmt not in _IMAGE_FORMATS:
        msg = (f"cannot tell which image format to write {path} in: use a .png, .jpg, "
               ".tif, .webp or .bmp extension")
        raise ValueError(msg)
    return fmt


def _figure_format(path):
    """The matplotlib format to save a figure at ``path`` in, from its extension."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ext = Path(path).suffix.lower().lstrip(".")
    supported = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if ext not in supported:
        msg = (f"cannot tell which figure format to save {path} in: use one of the "
               f"extensions {', '.join('.' + e for e in sorted(supported))}")
        raise ValueError(msg)
    return ext


def _save_image(array, path, overwrite):
    from PIL import Image

    from galmorphsearch.utils import atomic_path

    fmt = _image_format(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        Image.fromarray(array).save(tmp, format=fmt)


def _save_figure(fig, path, overwrite):
    import matplotlib.pyplot as plt

    from galmorphsearch.utils import atomic_path

    fmt = _figure_format(path)
    try:
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format=fmt, dpi=100)
    finally:
        plt.close(fig)


def _write_table(table, path, overwrite):
    from galmorphsearch.utils import atomic_path

    fmt = _table_format(path)
    kwargs = {"path": "table", "serialize_meta": True} if fmt == "hdf5" else {}
    with atomic_path(path, overwrite=overwrite) as tmp:
        table.write(tmp, format=fmt, **kwargs)


def _check_outputs(paths, overwrite):
    """
    Refuse to start when an output exists, before any work is done.

    Two outputs of one run that are the same file, or one inside the other
    (a file given as another's folder), are refused even with ``--overwrite``:
    one would silently replace the other.
    """
    seen = {}
    for path in paths:
        where = Path(os.path.realpath(path))
        if where in seen:
            msg = (f"the outputs {seen[where]} and {path} of this run are the same file: "
                   "give them different names")
            raise ValueError(msg)
        seen[where] = path
    for where, path in seen.items():
        for folder in where.parents:
            if folder in seen:
                msg = (f"the output {seen[folder]} of this run is also the folder of its "
                       f"output {path}: give them different places")
                raise ValueError(msg)
    if overwrite:
        return
    existing = [str(path) for path in paths if Path(path).exists()]
    if existing:
        msg = f"{', '.join(existing)} already exist(s); use --overwrite to replace"
        raise FileExistsError(msg)


_ENCODER_HELP = ("the encoder that built the database: a weight file (.safetensors) or a "
                 "shipped encoder's name (default: the shipped encoder whose weights hash the "
                 "database records)")


def _run_demo(args):
    from galmorphsearch.scripts.demo import run_demo

    run_demo(args.output, size=args.size, n_per_type=args.n_per_type, n_query=args.n_query,
             epochs=args.epochs, encoder=args.encoder, train=args.train, seed=args.seed,
             k=args.k,
             overwrite=args.overwrite, progress_bar=args.progress)
    return 0


def _run_preprocess(args):
    import matplotlib

    matplotlib.use("Agg")
    from astropy.coordinates import SkyCoord
    from astropy.table import Table

    from galmorphsearch import GalaxyCutout
    from galmorphsearch.preprocessing import CutoutSet, make_cutouts
    from galmorphsearch.utils import progress_iter

    _check_outputs([args.output], args.overwrite)
    common = {"size": args.size, "rotate": args.rotate, "seed": args.seed}
    # Each way in gives the table of targets first and the cutting second, so
    # that every output name is known and checked before any work is done.
    if args.sample:
        from galmorphsearch.datasets import load_hcg88_members, load_sample_field

        if args.images or args.radec or args.positions:
            msg = "--sample uses the bundled field: give no images or positions with it"
            raise ValueError(msg)
        members = load_hcg88_members()
        table = Table({"objid": members["name"], "ra": members["ra"], "dec": members["dec"]})

        def cut():
            field = load_sample_field()
            return make_cutouts(field["g"], field["r"], field["i"], members["coord"],
                                progress_bar=args.progress, **common)
    elif args.radec or args.positions:
        if len(args.images) != 3:
            msg = f"positions need three FITS files (g r i); got {len(args.images)} file(s)"
            raise ValueError(msg)
        if args.positions and args.radec:
            msg = "give the targets with --positions or with --radec, not both"
            raise ValueError(msg)
        if args.positions:
            table = _read_positions(args.positions)
            for name in ("ra", "dec"):
                if name not in table.colnames:
                    msg = f"{args.positions} has no {name!r} column"
                    raise ValueError(msg)
            if "objid" not in table.colnames:
                table.add_column(np.arange(1, len(table) + 1), name="objid", index=0)
        else:
            ra, dec = zip(*args.radec, strict=True)
            table = Table({"objid": list(range(1, len(ra) + 1)), "ra": ra, "dec": dec})
        try:
            coords = SkyCoord(table["ra"], table["dec"],
                              unit=None if getattr(table["ra"], "unit", None) else "deg")
        except (ValueError, TypeError) as exc:
            where = args.positions or "--radec"
            msg = f"the positions of {where} are not valid sky coordinates: {_one_line(exc)}"
            raise ValueError(msg) from exc

        def cut():
            return make_cutouts(*args.images, coords, progress_bar=args.progress, **common)
    elif args.images:
        table = Table({"objid": [Path(p).stem for p in args.images],
                       "file": [str(p) for p in args.images]})
        _refuse_duplicates(list(table["objid"]), "the images' file names (their objids)")

        def cut():
            return [GalaxyCutout.from_image(p, **common)
                    for p in progress_iter(args.images, args.progress, desc="preprocessing")]
    else:
        msg = "give FITS files with --radec/--positions, colour images, or --sample"
        raise ValueError(msg)
    _check_ascii(table, args.positions or "the targets")
    png_outputs = []
    if args.png_dir:
        png_dir = Path(args.png_dir)
        if png_dir.exists() and not png_dir.is_dir():
            msg = f"--png-dir {png_dir} exists and is not a folder"
            raise NotADirectoryError(msg)
        png_outputs = [png_dir / name for name in _png_names(table["objid"])]
        _check_outputs([args.output, *png_outputs], args.overwrite)
    cutout_set = CutoutSet.from_cutouts(cut(), table)
    if png_outputs:
        png_outputs[0].parent.mkdir(parents=True, exist_ok=True)
        for path, image in zip(png_outputs, cutout_set.images, strict=True):
            _save_image(image, path, args.overwrite)
    cutout_set.write(args.output, overwrite=args.overwrite)
    flagged = int(np.count_nonzero(cutout_set.table["flag"]))
    print(f"wrote {len(cutout_set)} cutouts of {cutout_set.size} px to {args.output}"
          + (f" ({flagged} with quality flags set)" if flagged else ""))
    return 0


def _read_positions(path):
    """The --positions table, with errors that name the file."""
    from astropy.table import Table

    if not Path(path).is_file():
        msg = f"--positions {path} does not exist"
        raise FileNotFoundError(msg)
    try:
        with warnings.catch_warnings():
            # A FITS image or a text file read as a table may warn before failing.
            warnings.simplefilter("ignore")
            table = Table.read(path)
    except Exception as exc:
        msg = (f"--positions {path} could not be read as a table of positions (a FITS, "
               f"ECSV, CSV or VOTable file with ra and dec columns): {_one_line(exc)}")
        raise ValueError(msg) from exc
    if len(table) == 0:
        msg = f"--positions {path} has no rows"
        raise ValueError(msg)
    if "objid" in table.colnames:
        _refuse_duplicates([str(v) for v in table["objid"]], f"--positions {path}")
    return table


def _refuse_duplicates(objids, where):
    """Refuse repeated objids (before anything is computed or written)."""
    seen = {}
    repeated = {}
    for row, objid in enumerate(map(str, objids)):
        if objid in seen:
            repeated.setdefault(objid, [seen[objid]]).append(row)
        else:
            seen[objid] = row
    if repeated:
        shown = "; ".join(f"{objid!r} in rows {', '.join(map(str, rows))}"
                          for objid, rows in list(repeated.items())[:5])
        more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
        msg = (f"{where} repeats objids, which must be unique (rows counted from 0): "
               f"{shown}{more}")
        raise ValueError(msg)


def _check_ascii(table, where):
    """Refuse text a FITS cutout set cannot hold (non-ASCII), before any work."""
    for name in table.colnames:
        column = table[name]
        if column.dtype.kind not in "UO":
            continue
        rows = [row for row, value in enumerate(column)
                if isinstance(value, str) and not value.isascii()]
        if rows:
            shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            msg = (f"{where}: column {name!r} holds text that is not ASCII (rows {shown}, "
                   f"counted from 0, e.g. {str(column[rows[0]])!r}), which a FITS cutout "
                   "set cannot store: transliterate it or leave the column out")
            raise ValueError(msg)


# Characters kept in file names made from objids; anything else becomes '_'.
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")


def _png_names(objids):
    """
    One safe, distinct PNG file name per objid, inside the output folder.

    Path separators, '..', leading dots, control and other unusual characters
    cannot reach the file system: each objid is reduced to letters, digits
    and ``._+-``; where two objids reduce to the same name, or a name is
    empty or reserved, the row number keeps them apart. The objids
    themselves must be unique (checked before).
    """
    names = []
    used = set()
    for row, objid in enumerate(objids):
        stem = _UNSAFE_NAME.sub("_", str(objid)).strip("._ ")[:100]
        if not stem or stem.upper().split(".")[0] in _RESERVED_NAMES:
            stem = f"row{row}" + (f"_{stem}" if stem else "")
        name = f"{stem}.png"
        extra = 1
        while name.lower() in used:
            # Compared without case, for case-insensitive file systems.
            name = f"{stem}_row{row}.png" if extra == 1 else f"{stem}_row{row}_{extra}.png"
            extra += 1
        used.add(name.lower())
        names.append(name)
    return names


# Names Windows reserves for devices, whatever the extension.
_RESERVED_NAMES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                   *(f"LPT{i}" for i in range(1, 10))}


def _history_path(encoder_path):
    """Where ``train`` writes the loss history when there is no checkpoint folder."""
    return Path(encoder_path).with_suffix(".loss.ecsv")


def _check_fresh_checkpoint_dir(folder):
    """Refuse to start a new run over the checkpoints of an earlier one."""
    from galmorphsearch.model import HISTORY_FILENAME

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        msg = f"--checkpoint-dir {folder} exists and is not a folder"
        raise NotADirectoryError(msg)
    if not folder.is_dir():
        return
    earlier = sorted(p.name for p in folder.iterdir()
                     if p.suffix == ".ckpt" or p.name == HISTORY_FILENAME)
    if earlier:
        msg = (f"--checkpoint-dir {folder} already holds a training run ({', '.join(earlier[:3])}"
               f"{', ...' if len(earlier) > 3 else ''}): continue it with --resume last, "
               "replace it with --overwrite, or give another folder")
        raise FileExistsError(msg)


def _run_train(args):
    from galmorphsearch.model import (
        quiet_lightning,
        train_autoencoder,
        train_classifier,
        train_contrastive,
    )
    from galmorphsearch.preprocessing import CutoutSet
    from galmorphsearch.utils import atomic_path

    outputs = [args.output]
    if not args.checkpoint_dir:
        outputs.append(_history_path(args.output))
    _check_outputs(outputs, args.overwrite)
    if args.checkpoint_dir and not args.resume and not args.overwrite:
        _check_fresh_checkpoint_dir(args.checkpoint_dir)
    if args.method == "supervised" and not args.labels:
        msg = "--method supervised needs --labels (the table column of the classes)"
        raise ValueError(msg)
    if args.method == "contrastive" and args.labels:
        msg = "--method contrastive does not use labels; leave out --labels"
        raise ValueError(msg)
    if args.init_weights and not Path(args.init_weights).is_file():
        msg = f"--init-weights {args.init_weights} does not exist"
        raise FileNotFoundError(msg)
    cutout_set = CutoutSet.read(args.cutouts)
    labels = None
    if args.labels:
        if args.labels not in cutout_set.table.colnames:
            msg = f"{args.cutouts} has no column {args.labels!r} for --labels"
            raise ValueError(msg)
        labels = [str(v) for v in cutout_set.table[args.labels]]
    common = {"max_epochs": args.epochs, "max_steps": args.max_steps, "seed": args.seed,
              "checkpoint_dir": args.checkpoint_dir, "resume": args.resume,
              "preprocessing": cutout_set.header_keywords(), "progress_bar": args.progress,
              "input_mode": args.input_mode, "init_weights": args.init_weights}
    common.update({key: option for option, key in (
        (args.architecture, "architecture"), (args.input_size, "input_size"),
        (args.batch_size, "batch_size"), (args.learning_rate, "learning_rate"),
        (args.val_fraction, "val_fraction")) if option is not None})
    with quiet_lightning():
        if args.method == "contrastive":
            encoder, history = train_contrastive(cutout_set.images, **common)
        elif args.method == "supervised":
            encoder, history = train_classifier(cutout_set.images, labels, **common)
        else:
            common.setdefault("input_size", 64)
            autoencoder, history = train_autoencoder(cutout_set.images, labels, **common)
            encoder = autoencoder.encoder
    encoder.save(args.output, overwrite=args.overwrite)
    if not args.checkpoint_dir:
        history_path = _history_path(args.output)
        with atomic_path(history_path, overwrite=True) as tmp:
            history.write(tmp, format="ascii.ecsv")
    last = history[-1]
    print(f"trained {len(history)} epoch(s): loss {last['train_loss']:.5f} (training), "
          f"{last['val_loss']:.5f} (validation); {args.method} encoder {encoder.name} "
          f"written to {args.output} (weights hash {encoder.weights_hash})")
    return 0


def _load_encoder(spec, database=None):
    """
    The encoder named on the command line: a weight file or a shipped encoder's name.

    Without one, the shipped encoder that built ``database`` (found by its
    weights hash), or the default pretrained encoder when there is no
    database yet.
    """
    from galmorphsearch.model import DEFAULT_PRETRAINED, PRETRAINED, Encoder, identify_pretrained

    if spec is None and database is None:
        encoder = Encoder.pretrained()
        print(f"using the pretrained encoder {DEFAULT_PRETRAINED!r} "
              f"(weights hash {encoder.weights_hash})")
        return encoder
    if spec is None:
        meta = database.meta
        name = identify_pretrained(str(meta.get("ENCHASH")))
        if name is None:
            msg = (f"the database was built by the encoder {meta.get('ENCODER')!r} (weights "
                   f"hash {meta.get('ENCHASH')}), which is not one of the shipped pretrained "
                   "encoders: pass its weight file with --encoder")
            raise ValueError(msg)
        print(f"using the pretrained encoder {name!r} that built the database")
        return Encoder.pretrained(name)
    if spec in PRETRAINED and not Path(spec).exists():
        # A shipped encoder's name, unless a file of that name is there.
        return Encoder.pretrained(spec)
    return Encoder.load(spec)


def _run_build_db(args):
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.preprocessing import CutoutSet

    _check_outputs([args.output], args.overwrite)
    cutout_set = CutoutSet.read(args.cutouts)
    encoder = _load_encoder(args.encoder)
    catalog = cutout_set.table
    if args.scheduler or args.workers:
        database = _build_on_dask(args, catalog, cutout_set, encoder)
    else:
        database = LatentDatabase.build(catalog, cutout_set, encoder, carry=args.carry,
                                        catalog_name=args.catalog_name, scheme=args.scheme,
                                        progress_bar=args.progress)
        database.write(args.output, overwrite=args.overwrite, format=args.format,
                       dtype=args.dtype)
    print(f"wrote a latent database of {len(database)} galaxies to {args.output}; "
          f"H-similarity {database.h_similarity_mean:.1f} +/- {database.h_similarity_std:.1f}")
    return 0


def _build_on_dask(args, catalog, cutout_set, encoder):
    """build-db with --scheduler or --workers: the encoding runs as Dask tasks."""
    from galmorphsearch.pipeline import build_database, local_cluster

    try:
        from distributed import Client
    except ImportError:
        msg = ("--scheduler and --workers need dask.distributed: "
               'pip install "galmorphsearch[scale]"')
        raise ImportError(msg) from None
    kwargs = {"partition_size": args.partition_size, "carry": args.carry,
              "catalog_name": args.catalog_name, "scheme": args.scheme, "dtype": args.dtype,
              "format": args.format, "overwrite": args.overwrite,
              "progress_bar": args.progress}
    if args.scheduler:
        with Client(args.scheduler) as client:
            print(f"building on the Dask scheduler {args.scheduler} "
                  f"({len(client.scheduler_info()['workers'])} workers)")
            database, _ = build_database(catalog, cutout_set, encoder, args.output,
                                         client=client, **kwargs)
        return database
    with local_cluster(args.workers) as cluster, Client(cluster) as client:
        print(f"building on a local Dask cluster of {args.workers} worker processes")
        database, _ = build_database(catalog, cutout_set, encoder, args.output,
                                     client=client, **kwargs)
    return database


def _targets(args):
    if args.output:
        _check_outputs([args.output], args.overwrite)
        _table_format(args.output)
    searcher, _, latents, backgrounds, ids = _encode_targets(args)
    return searcher, latents, backgrounds, ids


def _open_searcher(args):
    """The searcher of ``--database`` and the target cutout set."""
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.preprocessing import CutoutSet
    from galmorphsearch.search import SimilaritySearcher

    cutout_set = CutoutSet.read(args.cutouts)
    database = LatentDatabase.read(args.database, memmap=args.memmap)
    encoder = _load_encoder(args.encoder, database)
    searcher = SimilaritySearcher(database, encoder, backend=args.backend,
                                  threads=args.threads, on_stale=args.stale_index)
    if searcher.index_path is not None:
        print(f"search backend {args.backend!r} with the index file {searcher.index_path}")
    _check_preprocessing(cutout_set, database, args.cutouts)
    return searcher, cutout_set


def _encode_targets(args):
    """The searcher, the target cutout set, their latents, background latents and ids."""
    searcher, cutout_set = _open_searcher(args)
    encoder = searcher.encoder
    latents = encoder.encode(cutout_set.images, progress_bar=args.progress)
    backgrounds = encoder.encode(cutout_set.backgrounds, progress_bar=args.progress)
    table = cutout_set.table
    ids = ([str(v) for v in table["objid"]] if "objid" in table.colnames
           else [str(i) for i in range(len(table))])
    return searcher, cutout_set, latents, backgrounds, ids


def _check_preprocessing(cutout_set, database, path):
    """Warn when targets were not preprocessed like the database galaxies."""
    from galmorphsearch.preprocessing import warn_recipe_differences

    warn_recipe_differences(
        cutout_set, database.meta, size=cutout_set.size,
        message=f"The targets in {path} were not preprocessed like the database galaxies, "
                "so their similarities are not comparable", stacklevel=2)


def _finish(table, args):
    table.pprint(max_lines=60, max_width=140)
    if args.output:
        _write_table(table, args.output, args.overwrite)
        print(f"wrote {len(table)} rows to {args.output}")
    return 0


def _run_search(args):
    searcher, latents, backgrounds, ids = _targets(args)
    results = searcher.search_latents(latents, backgrounds, k=args.k, target_ids=ids)
    return _finish(results, args)


def _run_classify(args):
    searcher, latents, backgrounds, ids = _targets(args)
    kwargs = {"k": args.vote, "vote": True} if args.vote else {}
    results = searcher.classify_latents(latents, backgrounds, target_ids=ids, **kwargs)
    return _finish(results, args)


def _print_summary(title, summary):
    from astropy.table import Table

    r = summary["correlation"]
    if np.isfinite(r):
        correlation = f"type correlation r = {r:.3f}"
    else:
        # Pearson's r is undefined when either side is one type only.
        correlation = ("type correlation r undefined (all targets are of one type, or all "
                       "were given one type)")
    print(f"{title}: {summary['n']} targets; best {summary['best_rate']:.1%}, "
          f"good {summary['good_rate']:.1%}, miss {summary['miss_rate']:.1%}; {correlation}")
    types = list(summary["types"])
    matrix = Table(np.round(summary["confusion"], 1), names=types)
    matrix.add_column(types, name="predicted", index=0)
    print("confusion matrix (% of each true type; rows predicted, columns true):")
    matrix.pprint(max_lines=-1, max_width=200)


def _run_evaluate(args):
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.evaluation import (
        balanced_vote,
        evaluate_retrieval,
        h_similarity_statistics,
        mc_md_split,
    )

    if args.output:
        _check_outputs([args.output], args.overwrite)
        _table_format(args.output)
    database = LatentDatabase.read(args.database)
    table, summary = evaluate_retrieval(database, fraction=args.fraction, seed=args.seed)
    _print_summary("classification by H-similarity", summary)
    if summary.get("no_similar_rate") is not None:
        print(f"flagged as having no similar galaxy: {summary['no_similar_rate']:.1%}")
    if args.balanced:
        mc, md = mc_md_split(database, fraction=args.fraction, seed=args.seed)
        _, balanced = balanced_vote(database, mc, md, n_per_type=args.n_per_type,
                                    n_iterations=args.balanced, seed=args.seed)
        _print_summary(f"balanced-database vote ({args.balanced} iterations, "
                       f"{balanced['n_per_type']} per type)", balanced)
    print("H-similarity of the database galaxies per type:")
    h_similarity_statistics(database).pprint(max_lines=-1, max_width=120)
    if args.output:
        _write_table(table, args.output, args.overwrite)
        print(f"wrote {len(table)} rows to {args.output}")
    return 0


def _html_path(path):
    if Path(path).suffix.lower() not in (".html", ".htm"):
        msg = f"the report {path} must have a .html or .htm extension"
        raise ValueError(msg)


def _run_report(args):
    import matplotlib

    matplotlib.use("Agg")

    from galmorphsearch.visualization import make_report

    _check_outputs([args.output], args.overwrite)
    _html_path(args.output)
    if args.history and not Path(args.history).is_file():
        msg = f"the loss history {args.history} does not exist"
        raise FileNotFoundError(msg)
    searcher, cutout_set = _open_searcher(args)
    report = make_report(searcher, cutout_set, args.output, k=args.k,
                         database_images=args.database_cutouts, evaluate=args.evaluate,
                         fraction=args.fraction, seed=args.seed, history=args.history,
                         title=args.title, overwrite=args.overwrite,
                         progress_bar=args.progress)
    n_flagged = report["n_no_similar"]
    flagged = f", {n_flagged} with no similar galaxy" if n_flagged else ""
    print(f"wrote a report of {report['n_targets']} target(s){flagged} and "
          f"{report['n_figures']} figure(s) to {args.output}")
    return 0


def _run_info(args):
    from galmorphsearch.database import LatentDatabase

    database = LatentDatabase.read(args.database, memmap=True)
    print(database.summary(name=args.database))
    return 0


def _run_cutout(args):
    import matplotlib

    matplotlib.use("Agg")
    from astropy.coordinates import SkyCoord

    from galmorphsearch import GalaxyCutout

    _check_outputs([args.output] + ([args.plot] if args.plot else []), args.overwrite)
    _image_format(args.output)
    if args.plot:
        _figure_format(args.plot)
    common = {"size": args.size, "rotate": args.rotate, "seed": args.seed}
    if len(args.images) == 1:
        position = tuple(args.xy) if args.xy else None
        if args.radec:
            msg = "--radec needs g, r, i FITS files with a WCS; use --xy for a colour image"
            raise ValueError(msg)
        cutout = GalaxyCutout.from_image(args.images[0], position, **common)
    elif len(args.images) == 3:
        if args.radec:
            position = SkyCoord(*args.radec, unit="deg")
        elif args.xy:
            position = tuple(args.xy)
        else:
            msg = "give the target position with --radec RA DEC or --xy X Y"
            raise ValueError(msg)
        cutout = GalaxyCutout(*args.images, position, **common)
    else:
        msg = f"expected three FITS files (g r i) or one colour image, got {len(args.images)}"
        raise ValueError(msg)
    _save_image(cutout.image, args.output, args.overwrite)
    if args.plot:
        _save_figure(cutout.plot()[0], args.plot, args.overwrite)
    print(repr(cutout))
    return 0


def _run_catalog(args):
    import numpy as np

    from galmorphsearch import catalogs

    _check_outputs([args.output], args.overwrite)
    _table_format(args.output)
    reader = {"gz2": catalogs.read_gz2, "efigi": catalogs.read_efigi,
              "na10": catalogs.read_na10}[args.kind]
    table = reader(args.input)
    _write_table(table, args.output, args.overwrite)
    morphology = table["morphology"]
    known = np.asarray(morphology[~np.ma.getmaskarray(morphology)], dtype=str)
    types, counts = np.unique(known, return_counts=True)
    order = np.argsort([_type_position(args.kind, t) for t in types], kind="stable")
    summary = ", ".join(f"{types[k]}={counts[k]}" for k in order)
    n_none = len(table) - known.size
    print(f"{len(table)} rows; types: {summary}"
          + (f"; no type: {n_none}" if n_none else ""))
    return 0


def _type_position(kind, name):
    from galmorphsearch.catalogs import get_scheme

    scheme = get_scheme(kind)
    return scheme.index(name) if name in scheme else len(scheme)


def main(args=None):
    """
    Run the ``galmorphsearch`` command line.

    Parameters
    ----------
    args : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        The exit status: 0 on success; 1 on an error, which is printed as one
        line on standard error rather than a traceback (``--debug``, or the
        environment variable ``GALMORPHSEARCH_DEBUG=1``, raises it instead);
        2 for a command line that argparse refuses; 130 when interrupted.
    """
    parser = _build_parser()
    args = parser.parse_args(args)
    debug = args.debug or os.environ.get(_DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")
    prefix = f"galmorphsearch {args.verb}: error:"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"galmorphsearch {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"{prefix} {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc):
    """The message of an exception as one line, with its type when it is not the user's."""
    from galmorphsearch.utils import RemoteServiceError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    if isinstance(exc, ValueError | OSError | ImportError | RemoteServiceError | MemoryError):
        return text
    # Not an error the user can fix by changing the input: most likely a bug.
    return (f"unexpected {type(exc).__name__}: {text} (please report this, with the "
            "output of the same command run with --debug)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
