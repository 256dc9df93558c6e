# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Plot search and build time against N from the survey-scale benchmark tables.

Run after ``bench_scale_search.py`` and ``bench_scale_build.py``::

    python benchmarks/plot_scale.py
    python benchmarks/plot_scale.py --search benchmarks/results/scale_search*.ecsv \\
        --build benchmarks/results/scale_build*.ecsv \\
        --output docs/_static/performance/scale.png

By default it reads every ``scale_search*.ecsv`` and ``scale_build*.ecsv``
of ``benchmarks/results`` (one per part when the parts were run apart) and
writes ``docs/_static/performance/scale.png``.

Left: milliseconds per query against database rows N (log-log) for the
exact methods in memory (one query at a time: solid; in batches: dashed),
the memory-mapped float16 search (FITS or HDF5) and the IVF index at its
tuned ``nprobe``
(labelled with its recall@k). Right: wall time of ``build_database``
against the number of galaxies, in-process and on the LocalCluster, with
the slowest stage time of each (dotted). Either kind of table may be
missing; its panel is then left out. The dates, machine and load of the
tables go in the panel titles.
"""

import argparse
from pathlib import Path

import numpy as np
from matplotlib.ticker import NullFormatter, ScalarFormatter

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DEFAULT_PNG = HERE.parent / "docs" / "_static" / "performance" / "scale.png"

SEARCH_STYLE = {
    "exact (ExactBackend)": ("C0", "o"),
    "numpy brute force": ("C1", "s"),
    "faiss IndexFlatL2": ("C2", "^"),
    "faiss-flat (FaissBackend)": ("C4", "v"),
}


def _title(table, what):
    metas = table.meta["tables"]
    dates = sorted({m.get("date_utc", "?")[:10] for m in metas})
    machines = sorted({f"{m.get('cpu_model', '?')}, {m.get('threads', '?')} threads"
                       for m in metas})
    loads = sorted({str(m.get("load_average_1min", "?")) for m in metas})
    return f"{what}\n{', '.join(dates)}, {'; '.join(machines)}, load {', '.join(loads)}"


def read_tables(paths):
    """The ECSV tables at ``paths`` stacked; their headers in ``meta['tables']``."""
    from astropy.table import MaskedColumn, Table, vstack

    tables = [Table.read(path, format="ascii.ecsv") for path in paths]
    stacked = vstack(tables, metadata_conflicts="silent")
    for name in stacked.colnames:
        col = stacked[name]
        if isinstance(col, MaskedColumn):  # ECSV reads empty strings back as masked
            kind = col.dtype.kind
            stacked[name] = col.filled("" if kind in "US" else (np.nan if kind == "f" else -1))
    stacked.meta = {"tables": [dict(t.meta) for t in tables]}
    return stacked


def _legend(ax):
    """A legend with each label once."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=6.5)


def plot_search(ax, table):
    exact = table[table["part"] == "exact"]
    batches = sorted({int(q) for q in exact["n_queries"] if q > 1})
    for method, (colour, marker) in SEARCH_STYLE.items():
        for q, style in ((1, "-"), *((b, "--") for b in batches)):
            sel = exact[(exact["method"] == method) & (exact["n_queries"] == q)]
            if len(sel):
                sel.sort("n_rows")
                label = f"{method}, {'1 query' if q == 1 else f'batch of {q}'}"
                ax.plot(sel["n_rows"], sel["ms_per_query"], style, color=colour, marker=marker,
                        label=label)
    memmap = table[(table["part"] == "memmap")
                   & np.isin(np.asarray(table["storage"], dtype=str), ["fits", "hdf5"])
                   & (table["method"] == "exact (ExactBackend, file)")
                   & (table["note"] == "")]
    for row in memmap:
        q = int(row["n_queries"])
        fill = "full" if row["cache"] == "warm" else "none"
        ax.plot(row["n_rows"], row["ms_per_query"], marker="D" if q == 1 else "d",
                color="C3", linestyle="none", fillstyle=fill,
                label=f"ExactBackend, float16 {str(row['storage']).upper()} file "
                      f"({row['cache']}), {'1 query' if q == 1 else f'batch of {q}'}")
    ann = table[(table["part"] == "ann") & (table["method"] == "faiss-ivf (FaissBackend)")]
    tuned = ann[np.char.startswith(np.asarray(ann["note"], dtype=str), "tuned")]
    for row in tuned:
        q = int(row["n_queries"])
        ax.plot(row["n_rows"], row["ms_per_query"], marker="*", markersize=12, color="C5",
                linestyle="none", fillstyle="full" if q == 1 else "none",
                label=f"faiss-ivf {row['param']}, recall@{row['k']} {row['recall_at_k']:.3f}, "
                      f"{'1 query' if q == 1 else f'batch of {q}'}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("database rows N")
    ax.set_ylabel("ms per query")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax)
    dims = sorted({int(d) for d in table["dim"]}) if "dim" in table.colnames else []
    ks = sorted({int(k) for k in table["k"] if k > 0})
    what = (f"Search (k = {', '.join(map(str, ks))}"
            + (f", {', '.join(map(str, dims))}-d latents)" if dims else ")"))
    ax.set_title(_title(table, what), fontsize=9)


def plot_build(ax, table):
    build = table[table["part"] == "build"]
    keys = sorted({(str(r["method"]), int(r["workers"]), int(r["threads"])) for r in build})
    for i, (method, workers, threads) in enumerate(keys):
        sel = build[(build["method"] == method) & (build["workers"] == workers)
                    & (build["threads"] == threads)]
        sel.sort("n")
        colour = f"C{i}"
        label = (f"{method.replace('build_database ', '')}, {workers} worker(s) x "
                 f"{threads} thread(s)")
        ax.plot(sel["n"], sel["wall_s"], "-o", color=colour, label=label)
        slowest = [row[f"t_{row['slowest_stage']}_s"] if row["slowest_stage"] else np.nan
                   for row in sel]
        ax.plot(sel["n"], slowest, ":", color=colour, label=f"  slowest stage ({label})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted({int(n) for n in build["n"]}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("galaxies N")
    ax.set_ylabel("wall time (s)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax)
    ax.set_title(_title(table, "build_database (preprocessing included)"), fontsize=9)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--search", nargs="*", default=None,
                        help="search tables (default: results/scale_search*.ecsv)")
    parser.add_argument("--build", nargs="*", default=None,
                        help="build tables (default: results/scale_build*.ecsv)")
    parser.add_argument("--output", default=str(DEFAULT_PNG))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = []
    for paths, kind, func in ((args.search, "search", plot_search),
                              (args.build, "build", plot_build)):
        if paths is None:
            paths = sorted(RESULTS.glob(f"scale_{kind}*.ecsv"))
        paths = [p for p in paths if Path(p).exists()]
        if paths:
            print(f"{kind}: " + ", ".join(str(p) for p in paths))
            tables.append((read_tables(paths), func))
        else:
            print(f"no {kind} table: that panel is left out")
    if not tables:
        raise SystemExit("No benchmark table found; run bench_scale_search.py and "
                         "bench_scale_build.py first.")
    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 5.5), squeeze=False)
    for ax, (table, func) in zip(axes[0], tables, strict=True):
        func(ax, table)
    fig.tight_layout()
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=130)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
