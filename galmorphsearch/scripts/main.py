# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The ``galmorphsearch`` command line: a thin layer over the public API.

Verbs
-----
``demo``
    Preprocess the spirals of Hickson Compact Group 88 in the bundled real
    SDSS field and write the cutouts, a figure of the steps and a FITS table.
``cutout``
    Preprocess one galaxy from g, r, i FITS files (or a colour image).
``catalog``
    Read a GZ2, EFIGI or NA10 catalog file into the standard Table and write
    it as FITS (or any format astropy can write).
"""

import argparse
import sys
import warnings
from pathlib import Path

__all__ = ["main"]


def _build_parser():
    from galmorphsearch import __version__

    parser = argparse.ArgumentParser(
        prog="galmorphsearch",
        description="Find galaxies that look alike and classify galaxy morphology by retrieval.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True

    demo = sub.add_parser(
        "demo", help="preprocess the HCG 88 spirals in the bundled SDSS field",
        description="Preprocess the three spirals of Hickson Compact Group 88 in the bundled "
        "real SDSS gri field: writes one PNG per galaxy, a figure of the preprocessing steps "
        "and a FITS table of the measurements.")
    demo.add_argument("--output", "-o", default="galmorphsearch-demo",
                      help="output directory (default: %(default)s)")
    demo.add_argument("--size", type=int, default=256, help="cutout side in pixels")
    demo.add_argument("--no-rotate", action="store_true",
                      help="do not rotate the galaxies to position angle 90 deg")
    demo.add_argument("--seed", type=int, default=0, help="seed of the masking draws")
    demo.add_argument("--overwrite", action="store_true", help="replace existing files")

    cut = sub.add_parser(
        "cutout", help="preprocess one galaxy from g, r, i FITS files or a colour image",
        description="Preprocess one galaxy the TSGICAS way and write its colour cutout "
        "(PNG) and, optionally, a figure of the steps.")
    cut.add_argument("images", nargs="+", metavar="IMAGE",
                     help="three FITS files in the order g r i, or one colour image (JPEG/PNG)")
    where = cut.add_mutually_exclusive_group()
    where.add_argument("--radec", nargs=2, type=float, metavar=("RA", "DEC"),
                       help="target position in degrees (needs a WCS in the FITS files)")
    where.add_argument("--xy", nargs=2, type=float, metavar=("X", "Y"),
                       help="target pixel position (zero-based)")
    cut.add_argument("--size", type=int, default=256, help="cutout side in pixels")
    cut.add_argument("--rotate", action="store_true",
                     help="rotate the galaxy to position angle 90 deg")
    cut.add_argument("--seed", type=int, default=0, help="seed of the masking draws")
    cut.add_argument("--output", "-o", required=True, help="output PNG file")
    cut.add_argument("--plot", metavar="FILE", help="also save a figure of the steps")
    cut.add_argument("--overwrite", action="store_true", help="replace existing files")

    cat = sub.add_parser(
        "catalog", help="read a GZ2 / EFIGI / NA10 catalog into the standard table",
        description="Read a morphology catalog with galmorphsearch's readers and write the "
        "table with the standard objid, ra, dec, morphology and type_index columns.")
    cat.add_argument("kind", choices=["gz2", "efigi", "na10"], help="which catalog")
    cat.add_argument("input", help="catalog file")
    cat.add_argument("--output", "-o", required=True,
                     help="output file (format from the extension, FITS by default)")
    cat.add_argument("--overwrite", action="store_true", help="replace an existing file")
    return parser


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
    """Refuse to start when an output exists, before any work is done."""
    if overwrite:
        return
    existing = [str(path) for path in paths if Path(path).exists()]
    if existing:
        msg = f"{', '.join(existing)} already exist(s); use --overwrite to replace"
        raise FileExistsError(msg)


def _gallery_figure(members, cutouts):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cutouts), figsize=(3 * len(cutouts), 3.3))
    for ax, name, hcg, cutout in zip(axes, members["name"], members["hcg"], cutouts,
                                     strict=True):
        ax.imshow(cutout.image)
        ax.set_title(f"{name} ({hcg})\nflag={int(cutout.flag)}", fontsize=9)
        ax.set_axis_off()
    fig.suptitle("HCG 88: TSGICAS cutouts (3 x Kron radius, neighbours masked, rotated)",
                 fontsize=9)
    return fig


def _add_provenance(table, cutouts):
    """
    Record how the cutouts were made: parameters shared by all cutouts go to
    the header, values that differ from cutout to cutout become columns.
    """
    import datetime

    from galmorphsearch import __version__

    keywords = [cutout.header_keywords() for cutout in cutouts]
    for key in keywords[0]:
        values = [kw.get(key) for kw in keywords]
        if all(value == values[0] for value in values):
            table.meta[key] = values[0]
        else:
            table[key.lower()] = values
    table.meta["CREATOR"] = f"galmorphsearch {__version__}"
    table.meta["DATE"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _cutout_row(name, cutout):
    return {
        "name": name,
        "x": cutout.centroid[0],
        "y": cutout.centroid[1],
        "kron_radius": cutout.kron_radius,
        "orientation": cutout.orientation.to_value("deg"),
        "flag": int(cutout.flag),
    }


def _run_demo(args):
    import matplotlib

    matplotlib.use("Agg")
    from astropy.table import Table

    from galmorphsearch.datasets import load_hcg88_members, load_sample_field
    from galmorphsearch.preprocessing import make_cutouts

    out = Path(args.output)
    members = load_hcg88_members()
    stems = [name.replace(" ", "").lower() for name in members["name"]]
    outputs = [out / "hcg88_cutouts.fits", out / "hcg88_gallery.png"]
    outputs += [out / f"{stem}{suffix}.png" for stem in stems for suffix in ("", "_steps")]
    _check_outputs(outputs, args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    field = load_sample_field()
    cutouts = make_cutouts(field["g"], field["r"], field["i"], members["coord"],
                           size=args.size, rotate=not args.no_rotate, seed=args.seed)
    rows = []
    for name, stem, cutout in zip(members["name"], stems, cutouts, strict=True):
        _save_image(cutout.image, out / f"{stem}.png", args.overwrite)
        _save_figure(cutout.plot()[0], out / f"{stem}_steps.png", args.overwrite)
        rows.append(_cutout_row(name, cutout))
    table = Table(rows=rows, names=list(rows[0]))
    table["kron_radius"].unit = "pix"
    table["orientation"].unit = "deg"
    table["ra"] = members["coord"].ra.deg
    table["dec"] = members["coord"].dec.deg
    table["ra"].unit = table["dec"].unit = "deg"
    _add_provenance(table, cutouts)
    table.meta["COMMENT"] = ["galmorphsearch demo: TSGICAS preprocessing of HCG 88 members"]
    _write_table(table, out / "hcg88_cutouts.fits", args.overwrite)
    _save_figure(_gallery_figure(members, cutouts), out / "hcg88_gallery.png", args.overwrite)
    table.pprint(max_width=120)
    print(f"wrote {len(rows)} cutouts, figures and hcg88_cutouts.fits to {out}/")
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


def main(argv=None):
    """
    Run the ``galmorphsearch`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : int
        The exit status: 0 on success, 1 on a user error, which is printed
        as one line rather than a traceback.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    runner = {"demo": _run_demo, "cutout": _run_cutout, "catalog": _run_catalog}[args.verb]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return runner(args)
    except (ValueError, OSError) as exc:
        print(f"galmorphsearch {args.verb}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
