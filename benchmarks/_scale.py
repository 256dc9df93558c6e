# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Helpers shared by the survey-scale benchmarks (``bench_scale_search.py``,
``bench_scale_build.py``, ``plot_scale.py``); not a benchmark itself.

* Every measured case runs in a fresh Python process (`run_case`), with
  the same thread caps for every thread pool (``OMP_NUM_THREADS`` and
  friends in its environment, threadpoolctl, torch and faiss), so that each
  case's peak memory (`max_rss`) is its own and one case's caches and
  pools do not leak into the next.
* `PeakRSS` samples the resident set size of the process in a thread while
  a phase runs (psutil when installed, else ``/proc/self/statm``).
* `LatentModel` makes latents that look like encoder outputs: a few hundred
  real (or synthetic) galaxies are encoded, a PCA + Gaussian-mixture model
  is fitted to them, and N rows are sampled from it with the measured
  residual noise added back. Queries are held-out encodings of galaxies, not
  samples of the model.
"""

import contextlib
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
CACHE = HERE / ".cache"

#: Prefix of the lines by which a case process hands its results back.
_RESULT = "@@RESULT "

_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                     "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

MB = 2.0**20


# ----------------------------------------------------------------------
# machine, threads, memory
def available_cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def total_memory():
    """Physical memory in bytes (0 if unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 0


def available_memory():
    """Memory available to new allocations in bytes (0 if unknown)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
    return 0


def _versions():
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("galmorphsearch", "torch", "torchvision", "faiss", "dask", "distributed",
                 "h5py", "astropy", "sklearn", "psutil"):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except Exception:  # not installed, or broken: recorded as absent
                continue
        out[name] = str(getattr(module, "__version__", "?"))
    return out


def environment(threads, **extra):
    """What the figures depend on: date, machine, threads, versions (the ECSV meta)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    meta = {
        "date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_model": _cpu_model(),
        "cores_available": available_cores(),
        "memory_gb": round(total_memory() / 2**30, 1),
        "load_average_1min": round(load[0], 2),
        "threads": threads,
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "versions": _versions(),
    }
    meta.update(extra)
    return meta


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_environment(meta):
    print(f"# {meta['date_utc']}  {meta['cpu_model']}, {meta['cores_available']} cores, "
          f"{meta['memory_gb']} GB, load {meta['load_average_1min']}, "
          f"threads {meta['threads']}")
    print("# " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))


def limit_threads(threads):
    """Cap every thread pool of this process at ``threads`` (call after the imports)."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    faiss = sys.modules.get("faiss")
    if faiss is not None:
        faiss.omp_set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads)
    except ImportError:
        pass


def current_rss():
    """Resident set size of this process in bytes."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def max_rss():
    """
    Peak resident set size of this process so far, in bytes.

    On Linux the high-water mark of this process image (``VmHWM`` in
    ``/proc/self/status``): ``ru_maxrss`` also counts the parent's memory
    copied at fork, which survives ``exec``, so a small case started from
    a big parent would report the parent's peak. Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakRSS:
    """
    The peak resident set size of this process while a block runs.

    Sampled every ``interval`` seconds in a thread (short allocations may
    be missed; `max_rss` never misses one but covers the whole life of the
    process). In MiB: ``before`` (at entry), ``peak``
    (so far, inside the block; the final value after it) and ``after``.
    """

    def __init__(self, interval=0.005):
        self.interval = interval
        self.before = self.after = float("nan")
        self._peak = 0
        self._thread = None

    def __enter__(self):
        self._stop = threading.Event()
        self._peak = current_rss()
        self.before = self._peak / MB
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, current_rss())

    @property
    def peak(self):
        if self._thread is not None and self._thread.is_alive():
            return max(self._peak, current_rss()) / MB
        return self._peak / MB if self._peak else float("nan")

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        end = current_rss()
        self._peak = max(self._peak, end)
        self.after = end / MB
        return False


# ----------------------------------------------------------------------
# timing
def call_times(func, calls):
    """Wall time in seconds of ``func(arg)`` for each ``arg`` of ``calls``."""
    out = []
    for arg in calls:
        t0 = time.perf_counter()
        func(arg)
        out.append(time.perf_counter() - t0)
    return np.array(out)


def best_of(func, repeat):
    """The shortest of ``repeat`` timed calls of ``func()``, and its result."""
    best, result = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = func()
        best = min(best, time.perf_counter() - t0)
    return best, result


# ----------------------------------------------------------------------
# one case per process
def run_case(script, case, threads, *, timeout=None):
    """
    Run ``case`` (a dict with a ``name``) in a fresh Python process.

    The process runs ``script --case -`` with the case as JSON on its
    standard input and every thread pool capped at ``threads``. Its output
    is passed through; the result rows it prints (see `case_main`) are
    returned, each with the case's ``max_rss_mb``
    (its peak RSS, `max_rss`) unless the row has one.
    """
    env = os.environ.copy()
    for name in _THREAD_VARIABLES:
        env[name] = str(threads)
    env["GMS_BENCH_THREADS"] = str(threads)
    cmd = [sys.executable, str(script), "--case", "-"]
    rows = []
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=env, bufsize=1) as proc:
        try:
            proc.stdin.write(json.dumps(case))
            proc.stdin.close()
            for line in proc.stdout:
                if line.startswith(_RESULT):
                    rows.append(json.loads(line[len(_RESULT):]))
                else:
                    print(line, end="", flush=True)
            proc.wait(timeout=timeout)
        except BaseException:
            proc.kill()
            raise
    if proc.returncode:
        print(f"!! case {case.get('name')} failed (exit status {proc.returncode})", flush=True)
        rows.append({"case": case.get("name"), "error": f"exit status {proc.returncode}"})
    return rows


def case_main(cases, argv=None):
    """
    In a case process: run ``cases[case['name']](case)`` and print its rows.

    Returns True when ``argv`` asked for a case (``--case -``: the case as
    JSON on standard input, or ``--case JSON``), False otherwise (the
    caller then runs its own command line).
    """
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--case":
        return False
    case = json.load(sys.stdin) if argv[1] == "-" else json.loads(argv[1])
    threads = int(os.environ.get("GMS_BENCH_THREADS", available_cores()))
    rows = cases[case["name"]](case, threads)
    peak = max_rss() / MB
    for row in rows:
        row.setdefault("max_rss_mb", round(peak, 1))
        print(_RESULT + json.dumps(row, default=_json_default), flush=True)
    return True


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ----------------------------------------------------------------------
# results
def write_results(rows, columns, path, meta):
    """
    Write ``rows`` (dicts) as an ECSV table with ``columns`` in that order.

    ``columns`` maps names to ``(dtype, description)``; a row without a
    column gets NaN (floats), -1 (ints) or "" (strings). Keys of the rows
    that are not columns are dropped. ``meta`` goes into the header.
    """
    from astropy.table import Column, Table

    table = Table(meta=dict(meta))
    for name, (dtype, description) in columns.items():
        kind = np.dtype(dtype).kind
        fill = np.nan if kind == "f" else (-1 if kind in "iu" else "")
        values = [row.get(name, fill) for row in rows]
        values = [fill if v is None else v for v in values]
        table[name] = Column(np.array(values, dtype=dtype) if rows else np.array([], dtype),
                             description=description)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.write(path, format="ascii.ecsv", overwrite=True)
    print(f"wrote {path}")
    return table


def check_free_disk(folder, need_bytes, what):
    """Exit with a message unless ``folder`` has ``need_bytes`` free plus 5 % and 1 GiB."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    want = int(need_bytes * 1.05) + 2**30
    print(f"{what}: needs {need_bytes / 2**30:.1f} GiB in {folder}; "
          f"{free / 2**30:.1f} GiB free")
    if free < want:
        raise SystemExit(f"Not enough free disk in {folder} for {what}: {free / 2**30:.1f} GiB "
                         f"free, {want / 2**30:.1f} GiB wanted. Use fewer rows (--rows) or "
                         "another folder (--dir).")


# ----------------------------------------------------------------------
# encoders and galaxies
def load_encoder(spec, size=64, seed=0):
    """
    An encoder from ``spec`` and a line saying which.

    ``spec``: ``'random'`` (a seeded, randomly initialised ResNet-18 of
    ``size`` px, 512-d latents), a shipped name (``'tsgicas-ae'``...), a
    ``.safetensors`` file (`Encoder.load`), or ``'auto'``: the shipped
    ``tsgicas-ae`` when its weights are installed, else ``'random'``.
    """
    import torch

    from galmorphsearch.model import Encoder

    if spec == "auto":
        try:
            encoder = Encoder.pretrained("tsgicas-ae")
        except Exception as exc:  # weights not installed in this checkout
            print(f"(the shipped tsgicas-ae weights are not available: {exc}; "
                  "using a random encoder)")
        else:
            return encoder, "shipped tsgicas-ae"
        spec = "random"
    if spec == "random":
        torch.manual_seed(seed)
        encoder = Encoder(architecture="resnet18", input_size=size)
        return encoder, f"random resnet18 {size} px (seed {seed})"
    if str(spec).endswith(".safetensors") or Path(spec).is_file():
        return Encoder.load(spec), f"Encoder.load({spec})"
    return Encoder.pretrained(spec), f"shipped {spec}"


def galaxy_images(cutouts, n, size, seed=0):
    """
    ``n`` (n, s, s, 3) uint8 galaxy images and where they come from.

    From a `~galmorphsearch.preprocessing.CutoutSet` file (``cutouts``,
    e.g. SDSS cutouts made by ``eval_retrieval.py``), or else synthetic
    galaxies of the 12 GZ2 types cut with `GalaxyCutout` (`Encoder.encode`
    resizes images of another size).
    """
    rng = np.random.default_rng(seed)
    if cutouts:
        from galmorphsearch.preprocessing import CutoutSet

        cs = CutoutSet.read(cutouts)
        rows = np.sort(rng.choice(len(cs), size=min(n, len(cs)), replace=False))
        images = cs.images[rows]
        where = f"{len(rows)} {cs.size} px cutouts of {Path(cutouts).name}"
        return np.ascontiguousarray(images), where
    import warnings

    from galmorphsearch import GalaxyCutout
    from galmorphsearch.datasets import make_synthetic_sample

    per_type = max(1, -(-n // 12))
    _, fields = make_synthetic_sample(n_per_type=per_type, seed=seed, shuffle=True,
                                      shape=(2 * size, 2 * size))
    images = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quality flags do not matter here
        for field in fields[:n]:
            cut = GalaxyCutout(field["g"], field["r"], field["i"], field.position, size=size,
                               seed=0)
            images.append(cut.image)
    return np.stack(images), f"{len(images)} synthetic galaxies (make_synthetic_sample)"


# ----------------------------------------------------------------------
# realistic latents
class LatentModel:
    """
    A generative model of encoder latents fitted to real encodings.

    ``PCA(n_pca)`` of the encodings of the fit galaxies, a diagonal
    ``GaussianMixture(n_mix)`` of their PCA coefficients, and the
    isotropic residual: the RMS per dimension of what the PCA leaves out.
    `sample` draws rows from the mixture, maps them back to latent space and
    adds Gaussian noise of the residual's size. The held-out encodings
    (``queries``) are real galaxies, not samples.
    """

    def __init__(self, params):
        self.p = params

    @property
    def dim(self):
        return int(self.p["pca_mean"].size)

    @property
    def queries(self):
        """Encodings of held-out galaxies, float32 (n, D)."""
        return self.p["queries"]

    @property
    def description(self):
        return str(self.p["description"])

    @property
    def encoder_meta(self):
        return json.loads(str(self.p["encoder_meta"]))

    def block(self, seed, index, n):
        """``n`` rows, a function of (seed, index) only; float32."""
        p = self.p
        rng = np.random.default_rng([seed, index])
        weights = p["gmm_weights"] / p["gmm_weights"].sum()
        comp = rng.choice(weights.size, size=n, p=weights)
        z = rng.standard_normal((n, p["gmm_means"].shape[1]), dtype=np.float32)
        z *= np.sqrt(p["gmm_vars"][comp]).astype(np.float32)
        z += p["gmm_means"][comp].astype(np.float32)
        out = rng.standard_normal((n, self.dim), dtype=np.float32)
        out *= np.float32(p["residual_rms"])
        out += z @ p["pca_components"].astype(np.float32)
        out += p["pca_mean"].astype(np.float32)
        return out

    def sample(self, n, seed, block_rows=65536):
        """``n`` rows as one float32 array, made block by block."""
        out = np.empty((n, self.dim), dtype=np.float32)
        for b, start in enumerate(range(0, n, block_rows)):
            stop = min(start + block_rows, n)
            out[start:stop] = self.block(seed, b, stop - start)
        return out

    def query_batch(self, n, seed=0):
        """``n`` queries: the held-out encodings, then new samples if more are needed."""
        q = self.queries
        if n <= len(q):
            return np.ascontiguousarray(q[:n])
        extra = self.sample(n - len(q), seed=seed + 10_000)
        return np.concatenate([q, extra])


def latent_model(encoder_spec="auto", cutouts=None, n_real=1000, seed=0, size=64,
                 n_pca=64, n_mix=32, held_out=0.2, cache=CACHE):
    """
    A `LatentModel` fitted to ``n_real`` encoded galaxies (cached by its inputs).

    A fraction ``held_out`` of the galaxies is not used for the fit; their
    encodings are the queries.
    """
    encoder, encoder_text = load_encoder(encoder_spec, size=size, seed=seed)
    key = json.dumps([encoder.weights_hash, str(cutouts), n_real, seed, size, n_pca, n_mix,
                      held_out, 1])
    path = Path(cache) / f"latent_model_{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.exists():
        return LatentModel(dict(np.load(path))), path
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    t0 = time.perf_counter()
    images, where = galaxy_images(cutouts, n_real, encoder.input_size, seed=seed)
    latents = encoder.encode(images, batch_size=64).astype(np.float64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(latents))
    n_query = max(1, int(round(held_out * len(latents))))
    fit, queries = latents[order[n_query:]], latents[order[:n_query]]
    n_pca = min(n_pca, len(fit) - 1, fit.shape[1])
    pca = PCA(n_components=n_pca, random_state=seed).fit(fit)
    coeffs = pca.transform(fit)
    residual = fit - pca.inverse_transform(coeffs)
    gmm = GaussianMixture(n_components=min(n_mix, max(1, len(fit) // 10)),
                          covariance_type="diag", random_state=seed, reg_covar=1e-6)
    gmm.fit(coeffs)
    meta = {"ENCODER": str(encoder.name), "ENCARCH": str(encoder.architecture),
            "ENCHASH": str(encoder.weights_hash), "INSIZE": int(encoder.input_size),
            "LATDIM": int(encoder.latent_dim)}
    params = {
        "pca_mean": pca.mean_, "pca_components": pca.components_,
        "gmm_weights": gmm.weights_, "gmm_means": gmm.means_, "gmm_vars": gmm.covariances_,
        "residual_rms": np.sqrt(np.mean(residual**2)),
        "queries": queries.astype(np.float32),
        "description": (f"{encoder_text}; PCA({n_pca}) + diagonal GaussianMixture("
                        f"{gmm.n_components}) + isotropic residual fitted to {len(fit)} "
                        f"encodings of {where}; {len(queries)} held-out encodings are the "
                        "queries"),
        "encoder_meta": json.dumps(meta),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **params)
    model = LatentModel(dict(np.load(path)))
    sample = model.sample(2000, seed=seed)
    print(f"latent model: {model.description} ({time.perf_counter() - t0:.1f} s); "
          f"mean latent norm real {np.linalg.norm(fit, axis=1).mean():.3f}, "
          f"sampled {np.linalg.norm(sample, axis=1).mean():.3f}; residual RMS "
          f"{float(params['residual_rms']):.4g} of {fit.std():.4g} per value")
    return model, path


@contextlib.contextmanager
def temporary_file(path, keep=False):
    """Yield ``path``; remove it (and its ``.tmp`` siblings) afterwards unless ``keep``."""
    path = Path(path)
    try:
        yield path
    finally:
        if not keep:
            for p in [path, *path.parent.glob(f".{path.name}*"),
                      *path.parent.glob(f"{path.name}.*")]:
                with contextlib.suppress(OSError):
                    if p.is_dir():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
