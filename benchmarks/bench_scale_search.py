# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Survey-scale search: exact, approximate and memory-mapped float16 search.

Run from the repository root, with the package and its ``scale`` extra
installed (faiss-cpu, psutil; ``pip install ".[scale]"``)::

    python benchmarks/bench_scale_search.py                    # all three parts
    python benchmarks/bench_scale_search.py exact --rows 1e4 1e5 1e6
    python benchmarks/bench_scale_search.py ann --rows 1e6 [--hnsw]
    python benchmarks/bench_scale_search.py memmap --rows 1e7 --dir /big/disk [--cold]
    python benchmarks/bench_scale_search.py --quick            # smoke test, a minute

Options common to every part: ``--threads`` (default: every core this
process may use; all thread pools are capped at it), ``--queries`` (the
batch, default 100), ``--single`` (queries timed one at a time), ``--k``
(10), ``--encoder`` and ``--cutouts`` (the latent model, below) and
``--output`` (default ``benchmarks/results/scale_search.ecsv``, or
``scale_search_<part>.ecsv`` when one part is run). The figures
are printed and written as one ECSV table (one row per method, N and query
count; the header records date, machine, load, threads and versions).
Each case runs in its own Python process, so its peak memory
(``max_rss_mb``, the high-water mark of its resident set) is its own; ``phase_rss_mb`` is the peak
resident set sampled while that method was built and searched (it includes
the database held by the process). Timing machines shared with other jobs
vary by 15 % or more: read the load average in the header.

Latents. Search time does not depend on the values, but recall of an
approximate index does, and random normal 512-d vectors are the worst case
for IVF and HNSW. The latents are sampled from a model of real encodings:
``--real`` galaxies (the SDSS cutouts of a `CutoutSet` file given with
``--cutouts``, e.g. ``spiral_train_64.fits`` made by ``eval_retrieval.py``;
by default synthetic galaxies of the 12 GZ2 types) are encoded by
``--encoder`` (``auto``: the shipped ``tsgicas-ae`` if its weights are
installed, else a seeded random ResNet-18 at 64 px; or a name, a
``.safetensors`` file, ``random``), a PCA(64) + diagonal Gaussian mixture
(32 components) is fitted to 80 % of the encodings, and N rows are sampled
from it plus isotropic noise of the PCA residual's size. The other 20 %
(real encodings, not samples) are the queries. The model is cached in
``benchmarks/.cache``.

Parts:

``exact`` -- for each ``--rows`` N (default 1e4 1e5 1e6; float32 in memory):
`~galmorphsearch.search.ExactBackend`, a NumPy brute force
(``||a||^2 - 2 a.b + ||b||^2`` with one BLAS float32 matrix product over the
database, in place, then ``argpartition`` and ``argsort`` of the k best),
``faiss.IndexFlatL2`` and ``FaissBackend('flat')``, all in the same process
on the same latents and queries. ``ms_per_query``: the median of
``--single`` queries searched one at a time, and for a batch of
``--queries`` the best of 3 runs (2 at N >= 1e6) divided by the batch size.
``ratio`` = ms/query over the faster of NumPy and IndexFlatL2 (the target
is <= 1.2 at every N); ``recall_at_k`` checks each result against
ExactBackend's (1 unless ties). ``build_s``: fit time (norms, index).
Memory at 1e6 x 512: about 2 GB for the latents, 2 GB more per faiss
index, 0.4 GB for a batch's scores.

``ann`` -- at ``--rows`` (default 1e6): the exact neighbours of every
held-out query (ExactBackend), then ``FaissBackend('ivf')`` (IVF-Flat, about
4 sqrt(N) lists, its ``nprobe`` tuned at build time to recall@10 >= 0.95 on
database rows): build time (k-means training, adding, tuning), estimated
index size, and for each ``--nprobe`` latency (single, batch) and recall@k
against exact on the held-out queries; also the bare faiss index
(``faiss-ivf-index``, no exact re-ranking). Target: recall@10 >= 0.95 at
< 2 ms per query. ``--hnsw`` adds ``FaissBackend('hnsw')`` (M = 32,
efConstruction = 40; ``--hnsw-rows`` builds it on the first rows only) with
an ``--ef`` sweep (building it on 2.5 x 10^5 rows took 52 s on the 2-core
development machine); the build time is printed.

``memmap`` -- a database of ``--rows`` rows (default 1e7) with float16
latents in a FITS file (``--format fits``, the default; or ``hdf5``;
``LatentDatabase.write(format=..., dtype='float16')``) is written chunk by
chunk (the latents are generated as they are written, never all in memory;
the H-similarity column is left NaN:
an all-pairs search of 10^7 rows is not what is measured here). The file
holds the latents and the background latents, ``rows x 512 x 2 x 2``
bytes: 20.5 GB at 1e7 (the other columns -- objid, ra, dec, morphology,
type_index, catalog ``'synthetic'``, h_similarity -- take 98 bytes a row
in memory once read, 0.98 GB at 1e7, part of the searcher's RSS; strings
are 4 bytes a character); the
script checks the free disk of ``--dir``
(default ``benchmarks/.cache``) first and deletes the file at the end
unless ``--keep-file`` (``--reuse-file`` uses one left by an earlier run).
Then, each in a fresh process: ExactBackend on the file's latent source
(``FITSLatents`` or ``HDF5Latents``; the norm pass at fit, then single and batch searches,
each one pass over the file), and the user path, ``LatentDatabase.read(path,
memmap=True)`` + ``SimilaritySearcher(backend='exact').search_latents``.
Target: peak RSS (``max_rss_mb``) < 2 GB. The searches run with the file in
the page cache when it fits (``warm``); ``--cold`` also times them after
dropping the file's pages (``posix_fadvise(DONTNEED)``). With
``--in-memory-references`` (only if free memory allows about 2.3 x the
float32 latents) NumPy brute force and IndexFlatL2 on the latents loaded
as float32, and ExactBackend on the file, run in one more process, for the
ratio at this N.
"""

import argparse
import gc
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _scale
from _scale import MB, PeakRSS, best_of, call_times

COLUMNS = {
    "part": ("U8", "exact, ann or memmap"),
    "method": ("U40", "what was timed"),
    "n_rows": ("i8", "database rows N"),
    "dim": ("i8", "latent dimension D"),
    "dtype": ("U8", "stored precision of the database latents"),
    "storage": ("U16", "where the latents are: memory, a FITS or an HDF5 file"),
    "cache": ("U8", "file searches: warm (page cache) or cold (pages dropped)"),
    "n_queries": ("i8", "queries per search call"),
    "k": ("i8", "neighbours per query"),
    "param": ("U24", "search parameter (nprobe, efSearch)"),
    "ms_per_query": ("f8", "median over single queries, or best batch time / batch size"),
    "ms_per_query_min": ("f8", "fastest single query"),
    "ms_per_batch": ("f8", "best time of one batch search"),
    "ratio": ("f8", ("ms_per_query over the faster of numpy and faiss IndexFlatL2, same N "
                     "and query count")),
    "recall_at_k": ("f8", ("fraction of the exact k nearest found (exact methods: "
                           "agreement with ExactBackend)")),
    "build_s": ("f8", "fit / index build / norm pass / file write time"),
    "index_mb": ("f8", "index size (estimated) or file size"),
    "phase_rss_mb": ("f8", "peak RSS sampled while this method was built and searched"),
    "max_rss_mb": ("f8", "peak RSS (VmHWM) of the whole case process"),
    "note": ("U160", "remarks"),
}


# ----------------------------------------------------------------------
# helpers of the case processes
def _model(case):
    return _scale.LatentModel(dict(np.load(case["model"])))


def _recall(found, truth):
    k = truth.shape[1]
    return float(np.mean([np.intersect1d(f[f >= 0], t).size / k
                          for f, t in zip(found, truth, strict=True)]))


def numpy_brute_force(queries, database, db_sqnorms, k):
    """Plain NumPy: ||a||^2 - 2 a.b + ||b||^2 with one matrix product, in place."""
    d2 = queries @ database.T
    d2 *= -2.0
    d2 += db_sqnorms
    d2 += np.einsum("ij,ij->i", queries, queries)[:, None]
    part = np.argpartition(d2, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(d2, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def _time_search(search, singles, batch, repeat):
    """Warm up, then time single queries (median, min) and a batch (best of repeat)."""
    search(singles[0])
    t_single = call_times(search, singles)
    search(batch)
    t_batch, found = best_of(lambda: search(batch), repeat)
    return t_single, t_batch, found


def _fit_and_time(fit, search, singles, batch, repeat):
    """
    ``fit()``, then `_time_search` of ``search(fitted, queries)``.

    Returns the fitted object, the fit time, the single and batch times, the
    batch's results and the peak RSS sampled meanwhile (MB).
    """
    gc.collect()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        obj = fit()
        build = time.perf_counter() - t0
        t_single, t_batch, found = _time_search(lambda q: search(obj, q), singles, batch, repeat)
    return obj, build, t_single, t_batch, found, mem.peak


def _rows(base, t_single, t_batch, n_batch, **extra):
    single = dict(base, n_queries=1, ms_per_query=1e3 * float(np.median(t_single)),
                  ms_per_query_min=1e3 * float(np.min(t_single)), **extra)
    batch = dict(base, n_queries=n_batch, ms_per_query=1e3 * t_batch / n_batch,
                 ms_per_batch=1e3 * t_batch, **extra)
    return [single, batch]


def _say(rows):
    for r in rows:
        extra = []
        for key, fmt in (("ratio", "ratio {:.2f}"), ("recall_at_k", "recall {:.3f}"),
                         ("build_s", "build {:.2f} s"), ("phase_rss_mb", "RSS {:.0f} MB")):
            if r.get(key) is not None and np.isfinite(r[key]):
                extra.append(fmt.format(r[key]))
        param = f" {r['param']}" if r.get("param") else ""
        print(f"  {r['method']:<26}{param:<12} N={r['n_rows']:<9} Q={r['n_queries']:<4} "
              f"{r['ms_per_query']:10.3f} ms/query  " + ", ".join(extra), flush=True)


def _faiss():
    try:
        import faiss
    except ImportError:
        return None
    return faiss


# ----------------------------------------------------------------------
# case: exact search in memory
def case_exact(case, threads):
    faiss = _faiss()
    from galmorphsearch.search import ExactBackend, FaissBackend

    _scale.limit_threads(threads)
    model = _model(case)
    n, k, n_batch, repeat = case["rows"], case["k"], case["queries"], case["repeat"]
    t0 = time.perf_counter()
    db = model.sample(n, seed=case["seed"])
    print(f"exact, N={n}: {n} x {model.dim} float32 latents sampled in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    queries = model.query_batch(max(n_batch, case["single"]))
    batch = queries[:n_batch]
    singles = [queries[i:i + 1] for i in range(case["single"])]
    base = {"part": "exact", "n_rows": n, "dim": model.dim, "dtype": "float32",
            "storage": "memory", "k": k}
    rows, truth = [], None

    def run(method, fit, search, note=""):
        nonlocal truth
        # The fitted object is not kept: its memory is freed before the next one.
        _, build, t_single, t_batch, found, peak = _fit_and_time(fit, search, singles, batch,
                                                                 repeat)
        if truth is None:
            truth = found
        new = _rows(dict(base, method=method, note=note), t_single, t_batch, n_batch,
                    build_s=build, recall_at_k=_recall(found, truth), phase_rss_mb=peak)
        _say(new)
        rows.extend(new)

    run("exact (ExactBackend)", lambda: ExactBackend().fit(db),
        lambda b, q: b.search(q, k)[0])
    run("numpy brute force", lambda: np.einsum("ij,ij->i", db, db),
        lambda sq, q: numpy_brute_force(q, db, sq, k))
    if faiss is not None:
        def flat():
            index = faiss.IndexFlatL2(model.dim)
            index.add(db)
            return index

        run("faiss IndexFlatL2", flat, lambda index, q: index.search(q, k)[1])
        run("faiss-flat (FaissBackend)", lambda: FaissBackend("flat").fit(db),
            lambda b, q: b.search(q, k)[0])
    else:
        print("  (faiss is not installed: no faiss rows)")
    return rows


# ----------------------------------------------------------------------
# case: approximate search
def _ivf_bytes(index):
    """IVF-Flat in memory: vectors, ids, centroids, the direct map."""
    return index.ntotal * (index.d * 4 + 8 + 8) + index.nlist * index.d * 4


def _hnsw_bytes(index):
    """HNSW-Flat in memory: vectors and the graph's neighbour lists (NaN if unknown)."""
    try:
        graph = index.hnsw.neighbors.size() * 4 + index.hnsw.offsets.size() * 8
    except AttributeError:
        return float("nan")
    return index.ntotal * index.d * 4 + graph


def case_ann(case, threads):
    faiss = _faiss()
    if faiss is None:
        print("ann: faiss is not installed (pip install faiss-cpu); nothing to do")
        return []
    from galmorphsearch.search import ExactBackend, FaissBackend

    _scale.limit_threads(threads)
    model = _model(case)
    n, k, n_batch, repeat = case["rows"], case["k"], case["queries"], case["repeat"]
    db = model.sample(n, seed=case["seed"])
    # Recall over every held-out encoding (and samples, if they are too few).
    queries = model.query_batch(max(n_batch, case["single"], len(model.queries)))
    batch = queries[:n_batch]
    singles = [queries[i:i + 1] for i in range(case["single"])]
    print(f"ann, N={n}: recall over {len(queries)} held-out queries, latency over "
          f"{len(singles)} single queries and a batch of {n_batch}", flush=True)
    base = {"part": "ann", "dim": model.dim, "dtype": "float32", "storage": "memory", "k": k}
    rows = []

    def exact_truth(data):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            backend = ExactBackend().fit(data)
            build = time.perf_counter() - t0
            t_single, t_batch, _ = _time_search(lambda q: backend.search(q, k)[0], singles,
                                                batch, repeat)
            truth = backend.search(queries, k)[0]
        new = _rows(dict(base, method="exact (ExactBackend)", n_rows=len(data)), t_single,
                    t_batch, n_batch, build_s=build, recall_at_k=1.0, phase_rss_mb=mem.peak)
        _say(new)
        rows.extend(new)
        return truth

    def sweep(method, backend, values, set_value, truth, build, size_mb, mem, name, tuned):
        for value in values:
            set_value(value)
            t_single, t_batch, _ = _time_search(lambda q: backend.search(q, k)[0], singles,
                                                batch, repeat)
            found = backend.search(queries, k)[0]
            note = f"tuned at build time (recall {backend.recall:.3f} on database rows)" \
                if value == tuned else ""
            new = _rows(dict(base, method=method, n_rows=int(backend.n_rows),
                             param=f"{name}={value}", note=note),
                        t_single, t_batch, n_batch, build_s=build, index_mb=size_mb,
                        recall_at_k=_recall(found, truth), phase_rss_mb=mem.peak)
            if method == "faiss-ivf (FaissBackend)":
                raw = lambda q: backend.index.search(q, k)[1]  # noqa: E731
                t_single, t_batch, _ = _time_search(raw, singles, batch, repeat)
                new += _rows(dict(base, method="faiss-ivf-index (no re-rank)",
                                  n_rows=int(backend.n_rows), param=f"{name}={value}"),
                             t_single, t_batch, n_batch, index_mb=size_mb,
                             recall_at_k=_recall(raw(queries), truth))
            _say(new)
            rows.extend(new)

    truth = exact_truth(db)
    gc.collect()
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        ivf = FaissBackend("ivf", seed=0).fit(db)
        build = time.perf_counter() - t0
        tuned = ivf.search_parameter
        print(f"  IVF{ivf.index.nlist},Flat built in {build:.1f} s (training, adding, tuning "
              f"nprobe={tuned})", flush=True)
        nprobes = sorted({p for p in case["nprobe"] if p <= ivf.index.nlist} | {tuned})

        def set_nprobe(p):
            ivf.index.nprobe = p

        sweep("faiss-ivf (FaissBackend)", ivf, nprobes, set_nprobe, truth, build,
              _ivf_bytes(ivf.index) / MB, mem, "nprobe", tuned)
    ivf = None
    gc.collect()
    if case["hnsw"]:
        n_h = min(n, case["hnsw_rows"] or n)
        data = db[:n_h]
        if n_h < n:
            print(f"  HNSW on the first {n_h} rows (exact neighbours recomputed)", flush=True)
            truth = exact_truth(data)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            hnsw = FaissBackend("hnsw", M=32, ef_construction=40, seed=0).fit(data)
            build = time.perf_counter() - t0
            tuned = hnsw.search_parameter
            print(f"  HNSW32,Flat built in {build:.1f} s (efSearch tuned to {tuned})",
                  flush=True)

            def set_ef(ef):
                hnsw.index.hnsw.efSearch = ef

            sweep("faiss-hnsw (FaissBackend)", hnsw, sorted(set(case["ef"]) | {tuned}), set_ef,
                  truth, build, _hnsw_bytes(hnsw.index) / MB, mem, "efSearch", tuned)
    return rows


# ----------------------------------------------------------------------
# case: write the float16 database file
def _model_source(model, n, seed):
    from galmorphsearch.database import LatentSource

    class ModelLatents(LatentSource):
        """Rows of the latent model, made as they are read: block b from (seed, b)."""

        block_rows = 16384

        def __len__(self):
            return n

        @property
        def dim(self):
            return model.dim

        @property
        def dtype(self):
            return np.dtype(np.float32)

        def _block(self, b):
            if self._cached[0] != b:
                start = b * self.block_rows
                self._cached = (b, model.block(seed, b, min(self.block_rows, n - start)))
            return self._cached[1]

        def _rows(self, start, stop, out):
            pos = start
            while pos < stop:
                b, offset = divmod(pos, self.block_rows)
                block = self._block(b)
                m = min(stop - pos, len(block) - offset)
                out[pos - start:pos - start + m] = block[offset:offset + m]
                pos += m
            return out

        def iter_chunks(self, chunk_rows=None):
            rows = self._default_rows(chunk_rows)
            self._cached = (-1, None)
            for start in range(0, n, rows):
                stop = min(start + rows, n)
                yield start, self._rows(start, stop, np.empty((stop - start, self.dim),
                                                              np.float32))

        def take(self, indices):
            idx = self._indices(indices)
            self._cached = (-1, None)
            out = np.empty((idx.size, self.dim), np.float32)
            for i, row in enumerate(idx):
                self._rows(int(row), int(row) + 1, out[i:i + 1])
            return out

    return ModelLatents()


def _file_bytes(rows, dim):
    return rows * dim * 2 * 2 + rows * 80  # two float16 latent columns + the others


def _file_source(case):
    from galmorphsearch.database import FITSLatents, HDF5Latents

    cls = FITSLatents if case["format"] == "fits" else HDF5Latents
    return cls(case["path"])


def case_make_file(case, threads):
    from astropy.table import Table

    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.datasets import GZ2_TYPES

    _scale.limit_threads(threads)
    model = _model(case)
    n, path = case["rows"], Path(case["path"])
    rng = np.random.default_rng(case["seed"])
    types = np.asarray(GZ2_TYPES)
    index = rng.integers(0, len(types), n)
    table = Table({"objid": np.arange(1, n + 1, dtype=np.int64),
                   "ra": rng.uniform(0.0, 360.0, n),
                   "dec": np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n))),
                   "morphology": types[index], "type_index": index.astype(np.int16),
                   "catalog": np.full(n, "synthetic"),
                   "h_similarity": np.full(n, np.nan)})
    del index
    table.meta.update(model.encoder_meta)
    table.meta.update(SCHEME="gz2", HSIMMEAN=None, HSIMSTD=None, HSIMN=0)
    sources = {"latent": _model_source(model, n, case["seed"]),
               "background_latent": _model_source(model, n, case["seed"] + 1)}
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        # No public constructor takes latent sources (LatentDatabase.build
        # encodes images; a table would hold the latents in memory): the
        # private one that build_database uses.
        database = LatentDatabase._from_sources(table, sources)
        database.write(path, format=case["format"], dtype="float16", overwrite=True)
        write = time.perf_counter() - t0
    size = path.stat().st_size
    print(f"memmap: wrote {path} ({size / 2**30:.2f} GiB, {n} rows, float16) in "
          f"{write:.1f} s; RSS peak {mem.peak:.0f} MB", flush=True)
    return [{"part": "memmap", "method": f"write float16 {case['format'].upper()} file",
             "n_rows": n, "dim": model.dim,
             "dtype": "float16", "storage": case["format"], "n_queries": 0, "k": 0,
             "ms_per_query": np.nan, "build_s": write, "index_mb": size / MB,
             "phase_rss_mb": mem.peak,
             "note": "latents generated chunk by chunk as they are written"}]


# ----------------------------------------------------------------------
# cases: search the file
def _drop_cache(path):
    """Drop the file's pages from the page cache (Linux; no-op elsewhere)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return True


def _file_searches(base, search, singles, batch, n_batch, repeat, path, cold, mem, **extra):
    rows = []
    t_single, t_batch, _ = _time_search(search, singles, batch, repeat)
    rows += _rows(dict(base, cache="warm"), t_single, t_batch, n_batch, phase_rss_mb=mem.peak,
                  **extra)
    if cold and _drop_cache(path):
        t_single = []
        for q in singles:
            _drop_cache(path)
            t_single.append(call_times(search, [q])[0])
        t_batch = np.inf
        for _ in range(repeat):
            _drop_cache(path)
            t_batch = min(t_batch, call_times(search, [batch])[0])
        rows += _rows(dict(base, cache="cold"), np.array(t_single), t_batch, n_batch,
                      phase_rss_mb=mem.peak, **extra)
    _say(rows)
    return rows


def case_memmap_exact(case, threads):
    from galmorphsearch.search import ExactBackend

    _scale.limit_threads(threads)
    model = _model(case)
    k, path = case["k"], case["path"]
    queries = model.query_batch(max(case["queries"], case["single"]))
    batch, singles = queries[:case["queries"]], [queries[i:i + 1] for i in range(case["single"])]
    with PeakRSS() as mem:
        source = _file_source(case)
        t0 = time.perf_counter()
        backend = ExactBackend().fit(source)
        build = time.perf_counter() - t0
        print(f"memmap: ExactBackend on {type(source).__name__}, fit (one pass for the norms) "
              f"{build:.1f} s", flush=True)
        base = {"part": "memmap", "method": "exact (ExactBackend, file)", "n_rows": len(source),
                "dim": source.dim,
                "dtype": "float16", "storage": case["format"], "k": k, "build_s": build}
        return _file_searches(base, lambda q: backend.search(q, k)[0], singles, batch,
                              len(batch), case["repeat"], path, case["cold"], mem)


def case_memmap_searcher(case, threads):
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.search import SimilaritySearcher

    _scale.limit_threads(threads)
    model = _model(case)
    k, path = case["k"], case["path"]
    queries = model.query_batch(max(case["queries"], case["single"]))
    backgrounds = model.sample(len(queries), seed=case["seed"] + 2)
    batch = queries[:case["queries"]], backgrounds[:case["queries"]]
    singles = [(queries[i], backgrounds[i]) for i in range(case["single"])]
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        database = LatentDatabase.read(path, memmap=True)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        searcher = SimilaritySearcher(database, backend="exact")
        t_fit = time.perf_counter() - t0
        print(f"memmap: LatentDatabase.read(memmap=True) {t_read:.1f} s, RSS "
              f"{_scale.current_rss() / MB:.0f} MB; SimilaritySearcher(backend='exact') "
              f"{t_fit:.1f} s", flush=True)
        base = {"part": "memmap", "method": "SimilaritySearcher.search_latents", "dim": model.dim,
                "n_rows": len(database), "dtype": "float16", "storage": case["format"], "k": k,
                "build_s": t_read + t_fit}
        return _file_searches(base, lambda q: searcher.search_latents(q[0], q[1], k=k),
                              singles, batch, case["queries"], case["repeat"], path,
                              case["cold"], mem,
                              note=f"read {t_read:.1f} s + searcher {t_fit:.1f} s")


def case_memmap_references(case, threads):
    faiss = _faiss()
    from galmorphsearch.search import ExactBackend

    _scale.limit_threads(threads)
    model = _model(case)
    k, n_batch, repeat = case["k"], case["queries"], case["repeat"]
    queries = model.query_batch(max(n_batch, case["single"]))
    batch, singles = queries[:n_batch], [queries[i:i + 1] for i in range(case["single"])]
    source = _file_source(case)
    n = len(source)
    rows, truth = [], None
    base = {"part": "memmap", "n_rows": n, "dim": source.dim, "dtype": "float16", "k": k,
            "cache": "warm"}

    def run(method, storage, fit, search, note="in one process with the in-memory references"):
        nonlocal truth
        obj, build, t_single, t_batch, found, peak = _fit_and_time(fit, search, singles, batch,
                                                                   repeat)
        if truth is None:
            truth = found
        new = _rows(dict(base, method=method, storage=storage, note=note), t_single, t_batch,
                    n_batch, build_s=build, recall_at_k=_recall(found, truth),
                    phase_rss_mb=peak)
        _say(new)
        rows.extend(new)
        return obj

    run("exact (ExactBackend, file)", case["format"], lambda: ExactBackend().fit(source),
        lambda b, q: b.search(q, k)[0])
    t0 = time.perf_counter()
    db = source.read()
    print(f"  loaded the latents as float32 in {time.perf_counter() - t0:.1f} s", flush=True)
    run("exact (ExactBackend)", "memory", lambda: ExactBackend().fit(db),
        lambda b, q: b.search(q, k)[0])
    run("numpy brute force", "memory", lambda: np.einsum("ij,ij->i", db, db),
        lambda sq, q: numpy_brute_force(q, db, sq, k))
    if faiss is not None:
        def flat():
            index = faiss.IndexFlatL2(model.dim)
            index.add(db)
            return index

        run("faiss IndexFlatL2", "memory", flat, lambda index, q: index.search(q, k)[1])
    return rows


CASES = {"exact": case_exact, "ann": case_ann, "make-file": case_make_file,
         "memmap-exact": case_memmap_exact, "memmap-searcher": case_memmap_searcher,
         "memmap-references": case_memmap_references}


# ----------------------------------------------------------------------
# the command line
def _add_ratios(rows):
    """ratio = ms/query over the faster reference (numpy, IndexFlatL2) at the same N, Q, storage."""
    refs = ("numpy brute force", "faiss IndexFlatL2")
    for row in rows:
        if row.get("part") not in ("exact", "memmap") or row.get("method") in refs:
            continue
        same = [r["ms_per_query"] for r in rows
                if r.get("method") in refs and r.get("part") == row["part"]
                and r.get("n_rows") == row["n_rows"] and r.get("n_queries") == row["n_queries"]]
        if same:
            row["ratio"] = row["ms_per_query"] / min(same)


def _print_summary(rows):
    print("\nsummary (ms per query; ratio to the faster of numpy and IndexFlatL2):")
    for row in rows:
        if row.get("error"):
            print(f"  {row['case']}: FAILED ({row['error']})")
            continue
        if not row.get("n_queries"):
            continue
        ratio = row.get("ratio")
        ratio = f"  ratio {ratio:5.2f}" if ratio is not None and np.isfinite(ratio) else ""
        recall = row.get("recall_at_k")
        recall = f"  recall {recall:.3f}" if recall is not None and np.isfinite(recall) else ""
        print(f"  {row['part']:<7}{row['method']:<35}{row.get('param') or '':<12}"
              f"{row.get('cache') or '':<5} N={row['n_rows']:<9} Q={row['n_queries']:<4}"
              f"{row['ms_per_query']:10.3f}{ratio}{recall}  maxRSS "
              f"{row.get('max_rss_mb', float('nan')):.0f} MB")


def _int(text):
    return int(float(text))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", default="all",
                        choices=["all", "exact", "ann", "memmap"])
    parser.add_argument("--rows", type=_int, nargs="+", default=None,
                        help="database rows: a list for exact (default 1e4 1e5 1e6), one "
                             "value for ann (1e6) and memmap (1e7)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (N <= 2e4) to check that everything runs")
    parser.add_argument("--threads", type=int, default=_scale.available_cores())
    parser.add_argument("--queries", type=int, default=100, help="queries per batch")
    parser.add_argument("--single", type=int, default=None,
                        help="queries timed one at a time (default for exact 200, 20 at "
                             "N >= 1e6; 100 for ann, 3 for memmap)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--encoder", default="auto")
    parser.add_argument("--cutouts", default=None, help="a CutoutSet FITS file of real galaxies")
    parser.add_argument("--real", type=int, default=1000,
                        help="galaxies encoded for the latent model")
    parser.add_argument("--nprobe", type=int, nargs="+",
                        default=[1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256])
    parser.add_argument("--hnsw", action="store_true", help="also build and sweep HNSW")
    parser.add_argument("--hnsw-rows", type=_int, default=None)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--dir", default=str(_scale.CACHE), help="where the memmap file goes")
    parser.add_argument("--format", default="fits", choices=["fits", "hdf5"],
                        help="memmap: the database file format (default fits)")
    parser.add_argument("--keep-file", action="store_true")
    parser.add_argument("--reuse-file", action="store_true")
    parser.add_argument("--cold", action="store_true",
                        help="memmap: also time searches with the file out of the page cache")
    parser.add_argument("--in-memory-references", action="store_true",
                        help="memmap: numpy and IndexFlatL2 on the latents in memory")
    parser.add_argument("--cache", default=str(_scale.CACHE), help="latent model cache")
    parser.add_argument("--output", default=None,
                        help="the ECSV table (default: benchmarks/results/scale_search.ecsv, or "
                             "scale_search_<part>.ecsv for one part)")
    args = parser.parse_args(argv)
    if args.output is None:
        suffix = "" if args.part == "all" else f"_{args.part}"
        args.output = str(_scale.RESULTS / f"scale_search{suffix}.ecsv")
    parts = ["exact", "ann", "memmap"] if args.part == "all" else [args.part]
    if args.rows is not None and args.part == "all":
        parser.error("--rows needs a part (exact, ann or memmap)")
    if args.quick:
        args.real = min(args.real, 150)
        args.queries = min(args.queries, 20)
        args.nprobe = [p for p in args.nprobe if p <= 32]
        args.ef = [16, 64]
    rows_of = {"exact": [10_000, 100_000, 1_000_000], "ann": [1_000_000],
               "memmap": [10_000_000]}
    if args.quick:
        rows_of = {"exact": [2_000, 20_000], "ann": [20_000], "memmap": [20_000]}
    if args.rows is not None:
        rows_of[args.part] = args.rows
    for part in ("ann", "memmap"):
        if len(rows_of[part]) != 1:
            parser.error(f"{part} takes one --rows value")

    meta = _scale.environment(args.threads, benchmark="bench_scale_search.py")
    _scale.print_environment(meta)
    model, model_path = _scale.latent_model(args.encoder, args.cutouts, args.real,
                                            seed=args.seed, cache=args.cache)
    meta["latents"] = model.description
    print(f"latents: {model.description}")
    common = {"model": str(model_path), "k": args.k, "queries": args.queries,
              "seed": args.seed, "dim": model.dim}
    script = Path(__file__).resolve()
    rows = []
    if "exact" in parts:
        for n in rows_of["exact"]:
            rows += _scale.run_case(script, dict(
                common, name="exact", rows=n,
                single=args.single or (20 if n >= 1_000_000 else 200),
                repeat=2 if n >= 1_000_000 else 3), args.threads)
    if "ann" in parts:
        rows += _scale.run_case(script, dict(
            common, name="ann", rows=rows_of["ann"][0], single=args.single or 100, repeat=3,
            nprobe=args.nprobe, hnsw=args.hnsw, hnsw_rows=args.hnsw_rows, ef=args.ef),
            args.threads)
    if "memmap" in parts:
        rows += memmap_part(args, common, rows_of["memmap"][0], script)
    _add_ratios(rows)
    _print_summary(rows)
    _scale.write_results([r for r in rows if not r.get("error")], COLUMNS, args.output, meta)
    return 1 if any(r.get("error") for r in rows) else 0


def memmap_part(args, common, n, script):
    folder = Path(args.dir)
    suffix = ".fits" if args.format == "fits" else ".h5"
    path = folder / f"scale_search_{n}_float16{suffix}"
    rows = []
    reuse = args.reuse_file and path.exists()
    if not reuse:
        _scale.check_free_disk(folder, _file_bytes(n, common["dim"]),
                               f"a {n}-row float16 {args.format.upper()} database")
    with _scale.temporary_file(path, keep=args.keep_file or args.reuse_file):
        if reuse:
            print(f"memmap: reusing {path}")
        else:
            rows += _scale.run_case(script, dict(common, name="make-file", rows=n,
                                                 path=str(path), format=args.format),
                                    args.threads)
        if not path.exists():
            return rows
        case = dict(common, rows=n, path=str(path), format=args.format, single=args.single or 3,
                    repeat=2, cold=args.cold)
        rows += _scale.run_case(script, dict(case, name="memmap-exact"), args.threads)
        rows += _scale.run_case(script, dict(case, name="memmap-searcher"), args.threads)
        if args.in_memory_references:
            need = n * common["dim"] * 4 * 2.3
            have = _scale.available_memory()
            if have < need:
                print(f"memmap: skipping the in-memory references: they need about "
                      f"{need / 2**30:.1f} GiB, {have / 2**30:.1f} GiB available")
            else:
                rows += _scale.run_case(script, dict(case, name="memmap-references"),
                                        args.threads)
    return rows


if __name__ == "__main__":
    if not _scale.case_main(CASES):
        sys.exit(main())
