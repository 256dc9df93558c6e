# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Survey-scale database builds: encoding, preprocessing and build_database.

Run from the repository root, with the package and its ``scale`` extra
installed (dask[distributed], psutil; ``pip install ".[scale]"``)::

    python benchmarks/bench_scale_build.py                     # all three parts
    python benchmarks/bench_scale_build.py encode --size 64 256 --batch 64
    python benchmarks/bench_scale_build.py preprocess --galaxies 200
    python benchmarks/bench_scale_build.py build --galaxies 250 1000 2000 --workers 2
    python benchmarks/bench_scale_build.py --quick             # smoke test, 1-2 minutes

Every case runs in a fresh Python process with all thread pools capped
(`_scale.run_case`); the figures are printed and written to one ECSV table
(``--output``, default ``benchmarks/results/scale_build.ecsv``, or
``scale_build_<part>.ecsv`` when one part is run; its header
records date, machine, load average, threads and versions). Shared
machines vary by 15 % or more between runs.

``encode`` -- `Encoder.encode` of (N, size, size, 3) uint8 images against
plain ``torchvision.models.resnet18`` forward passes (``fc`` removed, same
weights, eval mode, `torch.inference_mode`) on float32 batches made in
advance, and on channels-last batches; same size, batch (``--batch``,
default 64, the default of ``build_database``) and threads (``--threads``,
default every core); best of 3 rounds in which the three run in turn.
``ratio`` = encode / plain images per second (target >= 0.9).

``preprocess`` -- `GalaxyCutout.from_image` per galaxy, image and
background patch rendered, at the encoder's input size with ``rotate=True``
(as the shipped encoders' training cutouts), one thread: median and mean ms
per galaxy over ``--galaxies`` images.

``build`` -- `~galmorphsearch.pipeline.build_database` of ``--galaxies`` N
(several values give the time against N) from the colour images
(preprocessing included), ``--partition-size`` rows per task, HDF5 output
(``--format``), written in ``--dir`` and deleted afterwards:

* in-process on one thread, and on ``--threads`` threads if more than one;
  the stage times are measured inside that build (the package's functions
  are wrapped with timers in the benchmark process: preprocessing =
  ``GalaxyCutout.from_image`` + rendering, encoding = ``Encoder.encode``
  of images and backgrounds, partition writes, H-similarity blocks, the
  final streamed write of the database, reading it back; ``other`` is the
  rest of the wall time);
* on a Dask ``LocalCluster`` of ``--workers`` worker processes with one
  thread each (started and warmed up -- torch imported -- before the
  clock starts; shipping the encoder is part of the build). Dask's task
  stream gives each phase's span and the summed task time; the peak RSS of
  every worker is read at the end.

Stage time, and the slowest stage. Partitions are preprocessed, encoded and
written inside one task, and tasks of all partitions run on all workers at
once, so on P workers the stages are spread over the same P cores rather
than each owning a core. The definition used here: the *work* of a stage
is its total time in the one-thread in-process build of the same N; its
*stage time* on P workers is work / P for the stages that run as tasks
(preprocessing, encoding, partition writes, H-similarity) and the work
itself for those that run once in the client (the final write, the read
back). The slowest stage is the largest stage time. Printed:
``ratio`` = wall / slowest stage (the issue's target is <= 1.1; reachable
only where stages overlap on different resources, e.g. encoding on a GPU
while CPUs preprocess) and ``ratio_sum`` = wall / sum of stage times (close
to 1 when the build adds little to its stages; on CPUs the stages compete
for the same cores, so the sum is the floor). For the in-process builds P
is 1 and the stage times are those measured in that build.
"""

import argparse
import collections
import functools
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _scale
from _scale import MB, PeakRSS

STAGES = ("preprocess", "encode", "write_parts", "hsim", "write_db", "read_back")
PARALLEL_STAGES = ("preprocess", "encode", "write_parts", "hsim")
STAGE_TEXT = {"preprocess": "preprocessing", "encode": "encoding",
              "write_parts": "partition writes", "hsim": "H-similarity",
              "write_db": "database write", "read_back": "read back", "other": "other"}

COLUMNS = {
    "part": ("U10", "encode, preprocess or build"),
    "method": ("U40", "what was timed"),
    "n": ("i8", "images or galaxies"),
    "size": ("i8", "image side in pixels"),
    "batch": ("i8", "images per forward pass"),
    "workers": ("i8", "parallel workers (1 in-process)"),
    "threads": ("i8", "threads per worker"),
    "wall_s": ("f8", "wall time"),
    "per_item_ms": ("f8", "wall time per image or galaxy (median for preprocess)"),
    "items_per_s": ("f8", "images or galaxies per second"),
    "ratio": ("f8", "encode: encode / plain images per second; build: wall / slowest stage"),
    "ratio_sum": ("f8", "build: wall / sum of the stage times"),
    "slowest_stage": ("U16", "build: the stage with the largest stage time"),
    **{f"t_{s}_s": ("f8", f"build: stage time of {STAGE_TEXT[s]}") for s in STAGES},
    "t_other_s": ("f8", "build: wall time outside the timed stages (in-process)"),
    "span_partitions_s": ("f8", "Dask: first start to last end of the partition tasks"),
    "span_hsim_s": ("f8", "Dask: first start to last end of the H-similarity tasks"),
    "task_s_partitions": ("f8", "Dask: summed compute time of the partition tasks"),
    "task_s_hsim": ("f8", "Dask: summed compute time of the H-similarity tasks"),
    "before_tasks_s": ("f8", "Dask: from the call to the first task (encoder shipping)"),
    "after_tasks_s": ("f8", "Dask: from the last task to the return (write, read back)"),
    "startup_s": ("f8", "Dask: cluster start and worker warm-up (not in wall_s)"),
    "phase_rss_mb": ("f8", "peak RSS of this process sampled while timed"),
    "max_rss_mb": ("f8", "peak RSS (VmHWM) of the case process (the Dask client)"),
    "workers_max_rss_mb": ("f8", "Dask: sum over the workers of their peak RSS"),
    "note": ("U200", "remarks"),
}


# ----------------------------------------------------------------------
# inputs
def image_files(folder):
    """Colour image files under ``folder`` (sorted; SDSS ``*_large`` views left out)."""
    files = sorted(p for p in Path(folder).rglob("*")
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                   and not p.stem.endswith("_large"))
    if not files:
        raise SystemExit(f"No JPEG or PNG files under {folder}")
    return [str(p) for p in files]


def default_images():
    """The 2,000 SDSS JPEGs of ``../shared/data`` when present, else the bundled gallery."""
    shared = _scale.ROOT.parent / "shared" / "data" / "sdss-kaggle-spiral-2000"
    if shared.is_dir():
        return shared
    from importlib.resources import files

    return Path(str(files("galmorphsearch") / "data" / "gz2_gallery"))


def catalog_for(paths, n, seed=0):
    """A catalog of ``n`` rows and the image of each (the files repeated if fewer)."""
    from astropy.table import Table

    from galmorphsearch.datasets import GZ2_TYPES

    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(GZ2_TYPES), n)
    catalog = Table({"objid": np.arange(1, n + 1, dtype=np.int64),
                     "ra": rng.uniform(0.0, 360.0, n),
                     "dec": np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n))),
                     "morphology": np.asarray(GZ2_TYPES)[index], "type_index": index})
    catalog.meta["SCHEME"] = "gz2"
    return catalog, [paths[i % len(paths)] for i in range(n)]


def _quiet_cutouts():
    from galmorphsearch.utils import CutoutWarning

    warnings.simplefilter("ignore", CutoutWarning)  # quality flags: not what is timed


# ----------------------------------------------------------------------
# case: encoding
def case_encode(case, threads):
    import torch
    from bench_encoding import _run_plain, plain_reference

    from galmorphsearch.model import Encoder

    _scale.limit_threads(threads)
    size, batch, n, repeat = case["size"], case["batch"], case["n"], case["repeat"]
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    encoder = Encoder(architecture="resnet18", input_size=size)
    plain, batches, batches_cl = plain_reference(encoder, images, batch)

    def forward(chunks):
        _run_plain(plain, chunks)

    with torch.inference_mode():
        reference = plain(batches[0]).numpy()
    same = np.allclose(encoder.encode(images[:batch], batch_size=batch), reference, rtol=1e-4,
                       atol=1e-5)
    base = {"part": "encode", "n": n, "size": size, "batch": batch, "workers": 1,
            "threads": threads}
    methods = {"Encoder.encode": lambda: encoder.encode(images, batch_size=batch),
               "plain torchvision forward": lambda: forward(batches),
               "plain forward, channels-last": lambda: forward(batches_cl)}
    best = dict.fromkeys(methods, np.inf)
    with PeakRSS() as mem:
        for fn in methods.values():
            fn()  # warm-up
        # Rounds of all three, so that a change of machine load hits them alike.
        for _ in range(repeat):
            for method, fn in methods.items():
                t, _ = _scale.best_of(fn, 1)
                best[method] = min(best[method], t)
    rows = [dict(base, method=method, wall_s=t, per_item_ms=1e3 * t / n, items_per_s=n / t,
                 phase_rss_mb=mem.peak) for method, t in best.items()]
    rows[0]["ratio"] = rows[0]["items_per_s"] / rows[1]["items_per_s"]
    rows[0]["note"] = f"outputs equal to the plain forward: {same}"
    for r in rows:
        print(f"  encode {size:4d} px, batch {batch}, {threads} threads: {r['method']:<30}"
              f"{r['items_per_s']:9.1f} img/s" + (f"  ratio {r['ratio']:.3f}" if "ratio" in r
                                                  else ""), flush=True)
    return rows


# ----------------------------------------------------------------------
# case: preprocessing
def case_preprocess(case, threads):
    from galmorphsearch import GalaxyCutout

    _scale.limit_threads(threads)
    _quiet_cutouts()
    kwargs = case["preprocess_kwargs"]
    paths = case["paths"]
    cut = GalaxyCutout.from_image(paths[0], **kwargs)  # warm-up (imports, caches)
    cut.image, cut.background  # noqa: B018 - force the lazy rendering
    times = []
    with PeakRSS() as mem:
        for path in paths:
            t0 = time.perf_counter()
            cut = GalaxyCutout.from_image(path, **kwargs)
            cut.image, cut.background  # noqa: B018
            times.append(time.perf_counter() - t0)
    times = np.array(times)
    row = {"part": "preprocess", "method": "GalaxyCutout.from_image", "n": len(paths),
           "size": kwargs["size"], "workers": 1, "threads": 1, "wall_s": times.sum(),
           "per_item_ms": 1e3 * float(np.median(times)), "items_per_s": len(paths) / times.sum(),
           "phase_rss_mb": mem.peak,
           "note": f"mean {1e3 * times.mean():.1f} ms; {case['source']}"}
    print(f"  preprocess {len(paths)} galaxies at {kwargs['size']} px: median "
          f"{row['per_item_ms']:.1f} ms, mean {1e3 * times.mean():.1f} ms per galaxy", flush=True)
    return [row]


# ----------------------------------------------------------------------
# case: builds
class StageTimer:
    """Wall time summed per stage over calls of wrapped functions."""

    def __init__(self):
        self.seconds = collections.defaultdict(float)
        self.calls = collections.Counter()

    def wrap(self, stage, func):
        @functools.wraps(func)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - t0
                self.calls[stage] += 1

        return timed


def instrument(timer, encoder):
    """Wrap the functions of each build stage (in this process only)."""
    from galmorphsearch import GalaxyCutout
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.pipeline import build as _build

    GalaxyCutout.from_image = classmethod(timer.wrap("preprocess",
                                                     GalaxyCutout.from_image.__func__))
    # _Cutout.of renders the cutout's image and background (lazy in GalaxyCutout).
    _build._Cutout.of = classmethod(timer.wrap("preprocess", _build._Cutout.of.__func__))
    encoder.encode = timer.wrap("encode", encoder.encode)
    _build.write_hdf5 = timer.wrap("write_parts", _build.write_hdf5)
    _build._h_similarity_block = timer.wrap("hsim", _build._h_similarity_block)
    LatentDatabase.write = timer.wrap("write_db", LatentDatabase.write)
    LatentDatabase.read = classmethod(timer.wrap("read_back", LatentDatabase.read.__func__))


def _hwm(dask_worker=None):
    """A worker's peak RSS in bytes (VmHWM; run on the workers, so self-contained)."""
    import resource

    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _warm(dask_worker=None):
    """Import torch and the package on a worker; silence the cutouts' quality warnings."""
    import galmorphsearch.model  # torch and the package, imported once
    import galmorphsearch.preprocessing  # noqa: F401
    from galmorphsearch.utils import CutoutWarning

    warnings.simplefilter("ignore", CutoutWarning)
    return os.getpid()


def _task_phases(records, t_start, t_end):
    """Spans and summed compute time of the partition and H-similarity tasks."""
    phases = {}
    for name, func in (("partitions", "_build_partition"), ("hsim", "_h_similarity_block")):
        starts, stops, total = [], [], 0.0
        for rec in records:
            if f"-{func}-" not in str(rec.get("key", "")):
                continue
            for ss in rec.get("startstops", ()):
                if ss.get("action") == "compute":
                    starts.append(ss["start"])
                    stops.append(ss["stop"])
                    total += ss["stop"] - ss["start"]
        if starts:
            phases[name] = (min(starts), max(stops), total)
    out = {}
    if "partitions" in phases:
        out["span_partitions_s"] = phases["partitions"][1] - phases["partitions"][0]
        out["task_s_partitions"] = phases["partitions"][2]
        out["before_tasks_s"] = phases["partitions"][0] - t_start
    if "hsim" in phases:
        out["span_hsim_s"] = phases["hsim"][1] - phases["hsim"][0]
        out["task_s_hsim"] = phases["hsim"][2]
    last = max((p[1] for p in phases.values()), default=None)
    if last is not None:
        out["after_tasks_s"] = t_end - last
    return out


def case_build(case, threads):
    from galmorphsearch.pipeline import build_database

    _scale.limit_threads(threads)
    _quiet_cutouts()
    encoder, encoder_text = _scale.load_encoder(case["encoder"], size=case["size"])
    n = case["n"]
    catalog, paths = catalog_for(case["paths"], n)
    folder = Path(tempfile.mkdtemp(prefix="scale_build-", dir=case["dir"]))
    output = folder / f"database.{'h5' if case['format'] == 'hdf5' else 'fits'}"
    kwargs = {"partition_size": case["partition_size"], "format": case["format"],
              "preprocess_kwargs": case["preprocess_kwargs"], "batch_size": case["batch"],
              "overwrite": True}
    row = {"part": "build", "n": n, "size": case["size"], "batch": case["batch"],
           "threads": threads}
    client = cluster = None
    try:
        if case["mode"] == "inprocess":
            timer = StageTimer()
            instrument(timer, encoder)
            row.update(method="build_database in-process", workers=1)
        else:
            from distributed import Client, get_task_stream

            from galmorphsearch.pipeline import local_cluster

            t0 = time.perf_counter()
            cluster = local_cluster(case["workers"])
            client = Client(cluster)
            client.run(_warm)
            startup = time.perf_counter() - t0
            row.update(method="build_database LocalCluster", workers=case["workers"],
                       threads=1, startup_s=startup)
        with PeakRSS() as mem:
            if client is None:
                t_start = time.time()
                t0 = time.perf_counter()
                database, failures = build_database(catalog, paths, encoder, output, **kwargs)
                wall = time.perf_counter() - t0
            else:
                with get_task_stream(client) as stream:
                    t_start = time.time()
                    t0 = time.perf_counter()
                    database, failures = build_database(catalog, paths, encoder, output,
                                                        client=client, **kwargs)
                    wall = time.perf_counter() - t0
                    t_end = time.time()
                row.update(_task_phases(stream.data, t_start, t_end))
                peaks = client.run(_hwm)
                row["workers_max_rss_mb"] = sum(peaks.values()) / MB
        n_ok = len(database)
        row.update(wall_s=wall, per_item_ms=1e3 * wall / n, items_per_s=n / wall,
                   phase_rss_mb=mem.peak)
        note = [f"{n_ok} of {n} galaxies in the database ({len(failures)} failed)",
                f"{len(set(paths))} distinct images", encoder_text]
        if client is None:
            stages = {s: timer.seconds.get(s, 0.0) for s in STAGES}
            row.update({f"t_{s}_s": t for s, t in stages.items()})
            row["t_other_s"] = wall - sum(stages.values())
            row["stage_work"] = stages  # for the stage times of the Dask build
        row["note"] = "; ".join(note)
        print(f"  build N={n} {row['method']} ({row['workers']} x {row['threads']} thread(s)): "
              f"{wall:.2f} s, {n / wall:.1f} galaxies/s; {note[0]}", flush=True)
        return [row]
    finally:
        if client is not None:
            client.close()
            cluster.close()
        shutil.rmtree(folder, ignore_errors=True)


CASES = {"encode": case_encode, "preprocess": case_preprocess, "build": case_build}


# ----------------------------------------------------------------------
# stage times
def stage_times(row, work, parallel):
    """Put the stage times (work / P for task stages) and the ratios into ``row``."""
    times = {s: work[s] / (parallel if s in PARALLEL_STAGES else 1) for s in STAGES}
    if row["workers"] > 1 or row.get("method", "").endswith("LocalCluster"):
        row.update({f"t_{s}_s": t for s, t in times.items()})
    slowest = max(times, key=times.get)
    row["slowest_stage"] = slowest
    row["ratio"] = row["wall_s"] / times[slowest]
    row["ratio_sum"] = row["wall_s"] / sum(times.values())


def _print_build_summary(rows):
    print("\nbuild summary: wall, stage times (s), ratio = wall / slowest stage, "
          "ratio_sum = wall / sum of stage times")
    head = "".join(f"{STAGE_TEXT[s][:11]:>12}" for s in STAGES)
    print(f"  {'method':<30}{'N':>6}{'P':>3}{'wall':>9}{head}{'ratio':>7}{'sum':>6}"
          f"{'maxRSS MB':>10}")
    for r in rows:
        if r.get("part") != "build":
            continue
        stages = "".join(f"{r.get(f't_{s}_s', np.nan):12.2f}" for s in STAGES)
        rss = r.get("max_rss_mb", np.nan) + (r.get("workers_max_rss_mb") or 0.0)
        print(f"  {r['method']:<30}{r['n']:>6}{r['workers']:>3}{r['wall_s']:9.2f}{stages}"
              f"{r.get('ratio', np.nan):7.2f}{r.get('ratio_sum', np.nan):6.2f}{rss:10.0f}")
    print("  (stage time = the stage's work in the one-thread in-process build of the same N, "
          "divided by P for the stages that run as tasks; maxRSS = client + workers)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all",
                        choices=["all", "encode", "preprocess", "build"])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--threads", type=int, default=_scale.available_cores())
    parser.add_argument("--size", type=int, nargs="+", default=None,
                        help="encode: image sizes (default 64 256); preprocess and build: the "
                             "encoder's input size (default 64)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--galaxies", type=int, nargs="+", default=None,
                        help="preprocess: galaxies timed (default 200); build: N values "
                             "(default 250 1000 2000)")
    parser.add_argument("--images", default=None,
                        help="folder of colour JPEG/PNG images (default: ../shared/data/"
                             "sdss-kaggle-spiral-2000 if present, else the bundled gallery)")
    parser.add_argument("--encoder", default="auto",
                        help="auto, random, a shipped name or a .safetensors file")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partition-size", type=int, default=256)
    parser.add_argument("--format", default="hdf5", choices=["hdf5", "fits"])
    parser.add_argument("--no-dask", action="store_true", help="build: in-process only")
    parser.add_argument("--dir", default=str(_scale.CACHE), help="where the builds write")
    parser.add_argument("--output", default=None,
                        help="the ECSV table (default: benchmarks/results/scale_build.ecsv, or "
                             "scale_build_<part>.ecsv for one part)")
    args = parser.parse_args(argv)
    if args.output is None:
        suffix = "" if args.part == "all" else f"_{args.part}"
        args.output = str(_scale.RESULTS / f"scale_build{suffix}.ecsv")
    parts = ["encode", "preprocess", "build"] if args.part == "all" else [args.part]
    sizes = args.size or ([32] if args.quick else [64, 256])
    size = args.size[0] if args.size else (32 if args.quick else 64)
    if args.quick:
        args.batch = min(args.batch, 8)
        args.partition_size = min(args.partition_size, 8)
    galaxies = args.galaxies or ([12, 24] if args.quick else [250, 1000, 2000])
    n_prep = (args.galaxies or ([6] if args.quick else [200]))[0]

    meta = _scale.environment(args.threads, benchmark="bench_scale_build.py")
    _scale.print_environment(meta)
    folder = Path(args.images) if args.images else default_images()
    paths = image_files(folder)
    meta["images"] = f"{len(paths)} files under {folder}"
    print(f"images: {meta['images']}")
    prep = {"size": size, "rotate": True, "seed": 0}
    script = Path(__file__).resolve()
    rows = []
    if "encode" in parts:
        for s in sizes:
            n = args.batch * (2 if args.quick else max(4, 2048 // s))
            rows += _scale.run_case(script, {"name": "encode", "size": s, "batch": args.batch,
                                             "n": n, "repeat": 1 if args.quick else 3},
                                    args.threads)
    if "preprocess" in parts:
        rows += _scale.run_case(script, {"name": "preprocess", "paths": paths[:n_prep],
                                         "preprocess_kwargs": prep, "source": meta["images"]},
                                1)
    if "build" in parts:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
        common = {"name": "build", "paths": paths, "encoder": args.encoder, "size": size,
                  "batch": args.batch, "partition_size": args.partition_size,
                  "format": args.format, "preprocess_kwargs": prep, "dir": args.dir}
        for n in galaxies:
            one = _scale.run_case(script, dict(common, n=n, mode="inprocess"), 1)
            work = one[0].get("stage_work") if one and not one[0].get("error") else None
            builds = list(one)
            if args.threads > 1:
                builds += _scale.run_case(script, dict(common, n=n, mode="inprocess"),
                                          args.threads)
            if not args.no_dask:
                builds += _scale.run_case(script, dict(common, n=n, mode="dask",
                                                       workers=args.workers), 1)
            for row in builds:
                if row.get("error"):
                    continue
                own = row.pop("stage_work", None)
                if row["method"].endswith("in-process"):
                    stage_times(row, own, 1)
                elif work is not None:
                    stage_times(row, work, row["workers"])
                    row["note"] += (f"; stage times from the 1-thread in-process build / "
                                    f"{row['workers']}")
            rows += builds
        _print_build_summary(rows)
    failed = [r for r in rows if r.get("error")]
    for r in failed:
        print(f"!! case {r['case']} FAILED ({r['error']})")
    _scale.write_results([r for r in rows if not r.get("error")], COLUMNS, args.output, meta)
    return 1 if failed else 0


if __name__ == "__main__":
    if not _scale.case_main(CASES):
        sys.exit(main())
