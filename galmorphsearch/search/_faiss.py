# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
faiss helpers: the lazy import, a latent source over a faiss index, and
index files with their JSON sidecars.

An index saved for a database is two files: ``<name>.index``, written by
``faiss.write_index`` (faiss's own binary format; no pickle), and
``<name>.index.json``, a sidecar that ties it to the latents it was built
from (rows, latent dimension, storage dtype, encoder hash, and the
database's ``LATHASH``, the content hash of the latents as stored defined
in ``galmorphsearch.database._lathash``), records the build parameters and
the size and SHA-256 of the index file. Both are written atomically.
"""

import hashlib
import json
import logging
import re
import struct
from pathlib import Path

import numpy as np
from astropy.time import Time

from ..latents import LatentSource, latent_hash
from ..utils import atomic_path

__all__ = []

log = logging.getLogger(__name__)

#: ``format`` of a sidecar written by galmorphsearch.
SIDECAR_FORMAT = "galmorphsearch-index"

#: Version of the sidecar layout; another version makes an index stale.
SIDECAR_VERSION = 1

_INSTALL_HINT = 'pip install "galmorphsearch[scale]"'


def import_faiss():
    """The faiss module, or an ImportError saying how to install it."""
    try:
        import faiss
    except ImportError as exc:
        msg = (
            "The faiss search backends need the optional package faiss (faiss-cpu), "
            f"which is not installed; install it with {_INSTALL_HINT} (the 'scale' extra), "
            "or use backend='exact'."
        )
        raise ImportError(msg) from exc
    return faiss


class IndexLatents(LatentSource):
    """A latent source over the vectors stored in a faiss index (Flat, IVF-Flat, HNSW-Flat)."""

    in_memory = True

    def __init__(self, index):
        self.index = index

    def __len__(self):
        return int(self.index.ntotal)

    @property
    def dim(self):
        return int(self.index.d)

    @property
    def dtype(self):
        return np.dtype(np.float32)

    def iter_chunks(self, chunk_rows=None):
        n = len(self)
        rows = self._default_rows(chunk_rows)
        for start in range(0, n, rows):
            yield start, self.index.reconstruct_n(start, min(rows, n - start))

    def take(self, indices):
        return self.index.reconstruct_batch(self._indices(indices))


def sidecar_path(index_path):
    """The JSON sidecar of an index file."""
    return Path(f"{index_path}.json")


def file_sha256(path, block=1 << 24):
    """SHA-256 (hex) of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class Provenance:
    """
    What ties an index to the latents of a database.

    Parameters
    ----------
    source : latent source
        The database latents.
    meta : dict, optional
        Database keywords: ``ENCHASH`` (encoder weights hash), ``LATHASH``
        (the database's `~galmorphsearch.database.LatentDatabase.lathash`,
        or a callable returning it or None, called at most once and only
        when the hash is needed) and ``FILE`` (the database file name,
        recorded for information only). Without ``LATHASH`` the same hash,
        `~galmorphsearch.latents.latent_hash`, is computed from ``source``.
    """

    def __init__(self, source, meta=None):
        meta = dict(meta or {})
        self.source = source
        enchash = meta.get("ENCHASH")
        self.fields = {
            "NROWS": len(source),
            "LATDIM": int(source.dim),
            "LATTYPE": np.dtype(source.dtype).name,
            "ENCHASH": None if enchash is None else str(enchash),
        }
        self.file = None if meta.get("FILE") is None else str(meta["FILE"])
        self._keyword = meta.get("LATHASH")
        self._computed = None

    @property
    def keyword_hash(self):
        """The ``LATHASH`` the database gave, or None."""
        if callable(self._keyword):
            self._keyword = self._keyword()
        return None if self._keyword is None else str(self._keyword)

    def computed_hash(self):
        """`~galmorphsearch.latents.latent_hash` of the source (computed once, streaming)."""
        if self._computed is None:
            self._computed = latent_hash(self.source)
        return self._computed

    def current_hash(self):
        """The ``LATHASH`` of the latents: the database's, else computed."""
        keyword = self.keyword_hash
        return self.computed_hash() if keyword is None else keyword

    def record(self):
        """The ``database`` entry of a sidecar."""
        origin = "computed" if self.keyword_hash is None else "keyword"
        return {**self.fields, "LATHASH": self.current_hash(), "LATHSRC": origin,
                "FILE": self.file}

    def differences(self, recorded, with_hash=True):
        """Reasons why ``recorded`` (a sidecar's ``database``) does not match."""
        reasons = []
        labels = {"NROWS": "rows", "LATDIM": "latent dimension",
                  "LATTYPE": "latents stored as", "ENCHASH": "encoder hash"}
        for key, label in labels.items():
            if recorded.get(key) != self.fields[key]:
                reasons.append(f"{label} {recorded.get(key)!r} in the index, "
                               f"{self.fields[key]!r} in the database")
        if reasons or not with_hash:
            return reasons
        # LATHASH hashes the latents as stored, whoever computed it (the
        # database's keyword or a pass over the latents): one definition.
        current = self.current_hash()
        if str(recorded.get("LATHASH")) != current:
            reasons.append("the latents differ (LATHASH "
                           f"{recorded.get('LATHASH')!r} in the index, {current!r} now)")
        return reasons


#: Largest sidecar read (a sidecar is a few hundred bytes).
_MAX_SIDECAR_BYTES = 1 << 20

#: What a sidecar must hold: key -> (accepted types, description).
_SIDECAR_SCHEMA = {
    "version": ((int,), "an integer"),
    "backend": ((str,), "a string"),
    "params": ((dict,), "a mapping"),
    "database": ((dict,), "a mapping"),
    "index_size": ((int,), "an integer"),
    "index_sha256": ((str,), "a SHA-256 hex digest"),
}


def _read_sidecar(side):
    """
    Read a sidecar.

    Returns ``(state, info, why)``: ``state`` is ``'missing'``,
    ``'foreign'`` (not written by galmorphsearch), ``'damaged'`` (ours, as
    its format marker says, but unreadable) or ``'ok'`` (``info`` is the
    parsed dict; its entries are checked by `_sidecar_problems`).
    """
    try:
        size = side.stat().st_size
        if not side.is_file():
            return "foreign", None, f"{side} is not a file"
        with open(side, "rb") as f:
            data = f.read(_MAX_SIDECAR_BYTES + 1)
    except FileNotFoundError:
        return "missing", None, f"it has no sidecar {side.name}"
    except OSError as exc:
        return "foreign", None, f"its sidecar {side.name} cannot be read ({exc})"
    ours = f'"{SIDECAR_FORMAT}"'.encode() in data
    if size > _MAX_SIDECAR_BYTES:
        problem = f"is {size} bytes long, not a sidecar of a few hundred bytes"
    else:
        try:
            info = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            problem = f"is not readable JSON ({reason})"
        else:
            if isinstance(info, dict) and info.get("format") == SIDECAR_FORMAT:
                return "ok", info, "up to date"
            return ("foreign", None,
                    f"its sidecar {side.name} was not written by galmorphsearch")
    if ours:
        return "damaged", None, f"its sidecar {side.name} is damaged: it {problem}"
    return "foreign", None, f"its sidecar {side.name} {problem}"


def _sidecar_problems(info, side):
    """Missing or mistyped entries of a galmorphsearch sidecar."""
    problems = []
    for key, (types, what) in _SIDECAR_SCHEMA.items():
        value = info.get(key)
        if key not in info:
            problems.append(f"it has no {key!r}")
        elif not isinstance(value, types) or isinstance(value, bool):
            problems.append(f"its {key!r} is {value!r:.40}, not {what}")
    sha = info.get("index_sha256")
    if isinstance(sha, str) and not re.fullmatch(r"[0-9a-f]{64}", sha):
        problems.append(f"its 'index_sha256' is {sha!r:.40}, not a SHA-256 hex digest")
    if problems:
        return f"its sidecar {side.name} is damaged: {'; '.join(problems)}"
    return None


def check_index_file(index_path, provenance, backend_name, params):
    """
    Whether an index file may be used for these latents.

    Parameters
    ----------
    index_path : path
        The index file.
    provenance : `Provenance`
        The latents it must match.
    backend_name : str
        The backend that asks (``'faiss-ivf'``, ...).
    params : dict
        Build parameters that must match; None values match anything.

    Returns
    -------
    state : str
        ``'missing'`` (no index file), ``'ok'``, ``'stale'`` (ours, but it
        does not match) or ``'foreign'`` (a file that galmorphsearch did not
        write: never overwritten).
    reason : str
        Why, for messages.
    info : dict or None
        The sidecar, when it was read.
    """
    index_path = Path(index_path)
    side = sidecar_path(index_path)
    sidecar_state, info, why = _read_sidecar(side)
    if index_path.exists() and not index_path.is_file():
        return "foreign", f"{index_path} is not a file", None
    if not index_path.exists():
        if sidecar_state == "foreign":
            return "foreign", f"there is a file {side} that is not a galmorphsearch sidecar", None
        return "missing", f"there is no index file {index_path}", info
    if sidecar_state in ("missing", "foreign"):
        return "foreign", why, None
    if sidecar_state == "damaged":
        return "stale", why, None
    if info.get("version") != SIDECAR_VERSION:
        return "stale", f"it has sidecar version {info.get('version')!r}", info
    problem = _sidecar_problems(info, side)
    if problem:
        return "stale", problem, info
    if info["backend"] != backend_name:
        return "stale", f"it is a {info['backend']!r} index, not {backend_name!r}", info
    reasons = []
    recorded = info["params"]
    for key, value in params.items():
        if value is not None and recorded.get(key) != value:
            reasons.append(f"{key}={recorded.get(key)!r} in the index, {value!r} asked for")
    reasons += provenance.differences(info["database"], with_hash=False)
    if not reasons:
        size = index_path.stat().st_size
        if size != info["index_size"] or file_sha256(index_path) != info["index_sha256"]:
            reasons.append("the index file does not match its sidecar (damaged or replaced)")
    if not reasons:
        reasons += provenance.differences(info["database"])
    if reasons:
        return "stale", "; ".join(reasons), info
    return "ok", "up to date", info


#: The four-character code that starts a faiss file of each index kind.
INDEX_FOURCC = {"flat": b"IxF2", "ivf": b"IwFl", "hnsw": b"IHNf"}
_FOURCC_NAMES = {b"IxF2": "Flat (L2)", b"IwFl": "IVF-Flat", b"IHNf": "HNSW-Flat"}
#: fourcc, d (int32), ntotal (int64), two unused int64, is_trained (bool), metric (int32).
_HEADER = struct.Struct("<4siqqq?i")
_METRIC_L2 = 1


def check_index_header(index_path, kind, n_rows, dim):
    """
    Why the header of a faiss index file does not fit, or None.

    Read before faiss parses the file: the kind of index, the metric, the
    number and dimension of the vectors, and a file long enough to hold
    them, so that faiss is never asked to read a file that cannot be the
    index of these latents.
    """
    try:
        size = Path(index_path).stat().st_size
        with open(index_path, "rb") as f:
            head = f.read(_HEADER.size)
    except OSError as exc:
        return f"the index file cannot be read ({exc})"
    expected = INDEX_FOURCC[kind]
    if len(head) < _HEADER.size:
        return f"the index file is too short ({size} bytes) to be a faiss index"
    fourcc, d, ntotal, _, _, _, metric = _HEADER.unpack(head)
    if fourcc != expected:
        found = _FOURCC_NAMES.get(fourcc, f"unknown ({fourcc!r})")
        return (f"the file is not a faiss {_FOURCC_NAMES[expected]} index (its header says "
                f"{found})")
    if (ntotal, d) != (n_rows, dim):
        return (f"the file holds {ntotal} x {d} vectors, the database has "
                f"{n_rows} x {dim}")
    if metric != _METRIC_L2:
        return f"the file's index uses metric {metric}, not L2"
    if size < _HEADER.size + 4 * n_rows * dim:
        return (f"the index file is too short ({size} bytes) to hold {n_rows} x {dim} "
                "float32 vectors")
    return None


def sample_mismatch(index, source, n_sample=64):
    """
    Why the vectors of a loaded index are not those of ``source``, or None.

    Compares the vectors the index holds at the first, the last and a
    spread of rows (exactly: the index holds the float32 values of the
    latents as stored), so that an index is not used for latents it was not
    built on even when its sidecar says otherwise.
    """
    n = len(source)
    if n == 0:
        return None
    rows = np.unique(np.linspace(0, n - 1, min(n, n_sample)).round().astype(np.int64))
    held = IndexLatents(index).take(rows)
    stored = np.asarray(source.take(rows), dtype=np.float32)
    differ = np.flatnonzero(~np.all(held == stored, axis=1))
    if differ.size:
        return (f"the vectors of the index differ from the database latents (row "
                f"{int(rows[differ[0]])} and {differ.size - 1} more of {rows.size} checked)")
    return None


def write_index_files(faiss, index, index_path, *, backend_name, factory, params,
                      database, overwrite=False):
    """
    Write an index and its sidecar, each atomically.

    Parameters
    ----------
    faiss : module
        The faiss module.
    index : faiss index
        The index to save.
    index_path : path
        The index file; the sidecar is ``index_path + '.json'``.
    backend_name, factory : str
        Recorded in the sidecar.
    params : dict
        Build and search parameters, recorded.
    database : dict
        The ``database`` entry (`Provenance.record`).
    overwrite : bool, optional
        Replace existing files.

    Returns
    -------
    info : dict
        The sidecar as written.

    Raises
    ------
    FileExistsError
        If either file exists and ``overwrite`` is False.
    """
    from .. import __version__

    index_path = Path(index_path)
    side = sidecar_path(index_path)
    for path in (index_path, side):
        if path.exists() and not overwrite:
            msg = f"{path} already exists; pass overwrite=True to replace it"
            raise FileExistsError(msg)
    with atomic_path(index_path, overwrite=overwrite) as tmp:
        faiss.write_index(index, str(tmp))
        size = tmp.stat().st_size
        sha = file_sha256(tmp)
    info = {
        "format": SIDECAR_FORMAT,
        "version": SIDECAR_VERSION,
        "backend": backend_name,
        "factory": factory,
        "params": params,
        "index_file": index_path.name,
        "index_size": size,
        "index_sha256": sha,
        "faiss_version": getattr(faiss, "__version__", None),
        "gms_version": __version__,
        "created": Time.now().utc.isot[:19],
        "database": database,
    }
    with atomic_path(side, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    log.info("Saved the %s index %s (%d bytes) and its sidecar.", backend_name, index_path, size)
    return info
