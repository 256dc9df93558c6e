# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Damaged, forged and foreign faiss index files and sidecars.

Whatever is wrong with an index file or its JSON sidecar, the index is
stale: rebuilt with a `StaleIndexWarning`, or refused with a
`StaleIndexError` (``on_stale='raise'``), the message naming the file and
the problem, never a traceback from faiss or json. An index is used only
for the latents it was built on: the file's SHA-256 must match its sidecar,
its header (kind, rows, dimension) and a sample of its vectors the database.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from galmorphsearch.utils import StaleIndexError, StaleIndexWarning

faiss = pytest.importorskip("faiss")

from galmorphsearch.search import FaissBackend  # noqa: E402

DIM = 16
PROV = {"ENCHASH": "0123abcd", "FILE": "db.fits"}


def clustered(n, dim=DIM, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, dim)) * 4
    return (centres[rng.integers(0, 20, n)] + rng.normal(size=(n, dim)) * 0.5).astype(
        np.float32)


LAT = {"ivf": clustered(1200), "hnsw": clustered(300)}


def sidecar_of(path):
    return Path(f"{path}.json")


def read_sidecar(path):
    return json.loads(sidecar_of(path).read_text())


def write_sidecar(path, info):
    sidecar_of(path).write_text(json.dumps(info))


def rehash(path):
    """Make the sidecar's size and SHA-256 match the index file (a consistent forgery)."""
    info = read_sidecar(path)
    info["index_size"] = path.stat().st_size
    info["index_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    write_sidecar(path, info)


def build(path, kind="ivf", latents=None):
    latents = LAT[kind] if latents is None else latents
    backend = FaissBackend(kind, seed=0).fit(latents, index_path=path, provenance=PROV)
    assert backend.index_state == "saved"
    return backend


def refused_then_rebuilt(path, expected, kind="ivf"):
    """The index is stale for ``expected``: refused, then rebuilt, then up to date."""
    latents = LAT[kind]
    with pytest.raises(StaleIndexError, match=expected) as info:
        FaissBackend(kind).fit(latents, index_path=path, provenance=PROV, on_stale="raise")
    assert str(path) in str(info.value)
    with pytest.warns(StaleIndexWarning, match=expected) as record:
        backend = FaissBackend(kind).fit(latents, index_path=path, provenance=PROV)
    assert str(path) in str(record[0].message)
    assert backend.index_state == "rebuilt"
    assert backend.index.ntotal == len(latents)
    again = FaissBackend(kind).fit(latents, index_path=path, provenance=PROV, on_stale="raise")
    assert again.index_state == "loaded"
    idx, _ = again.search(latents[:3], 1)
    assert idx[:, 0].tolist() == [0, 1, 2]


# ----------------------------------------------------------------------
# sidecar parameters and entries
SIDECAR_CASES = {
    "nprobe not a number": ("ivf", ("params", "nprobe"), "abc", "nprobe"),
    "nprobe negative": ("ivf", ("params", "nprobe"), -3, "nprobe"),
    "nprobe fractional": ("ivf", ("params", "nprobe"), 2.5, "nprobe"),
    "nprobe boolean": ("ivf", ("params", "nprobe"), True, "nprobe"),
    "nprobe huge": ("ivf", ("params", "nprobe"), 10**30, "nprobe"),
    "nprobe above nlist": ("ivf", ("params", "nprobe"), 10**6, "nprobe"),
    "nlist not a number": ("ivf", ("params", "nlist"), "many", "nlist"),
    "nlist not the file's": ("ivf", ("params", "nlist"), 3, "nlist"),
    "recall not a number": ("ivf", ("params", "recall"), "high", "recall"),
    "recall above 1": ("ivf", ("params", "recall"), 7.0, "recall"),
    "params not a mapping": ("ivf", ("params",), 5, "params"),
    "params missing": ("ivf", ("params",), KeyError, "params"),
    "database not a mapping": ("ivf", ("database",), 5, "database"),
    "sha256 missing": ("ivf", ("index_sha256",), KeyError, "index_sha256"),
    "size not a number": ("ivf", ("index_size",), "big", "index_size"),
    "ef_search not a number": ("hnsw", ("params", "ef_search"), "deep", "ef_search"),
    "ef_search zero": ("hnsw", ("params", "ef_search"), 0, "ef_search"),
    "M not the file's": ("hnsw", ("params", "M"), 5, "M="),
    "ef_construction not a number": ("hnsw", ("params", "ef_construction"), [1], "ef_construction"),
}


@pytest.mark.parametrize("case", list(SIDECAR_CASES))
def test_bad_sidecar_entry_is_stale(tmp_path, case):
    kind, keys, value, expected = SIDECAR_CASES[case]
    path = tmp_path / "db.index"
    build(path, kind)
    info = read_sidecar(path)
    holder = info
    for key in keys[:-1]:
        holder = holder[key]
    if value is KeyError:
        del holder[keys[-1]]
    else:
        holder[keys[-1]] = value
    write_sidecar(path, info)
    refused_then_rebuilt(path, expected, kind)


@pytest.mark.parametrize("damage", ["truncated", "deeply nested", "not utf-8"])
def test_damaged_sidecar_of_ours_is_stale(tmp_path, damage):
    path = tmp_path / "db.index"
    build(path)
    text = sidecar_of(path).read_bytes()
    if damage == "truncated":
        sidecar_of(path).write_bytes(text[: len(text) // 2])
    elif damage == "deeply nested":
        info = read_sidecar(path)
        nested = "[" * 100_000 + "]" * 100_000
        sidecar_of(path).write_text(json.dumps(info)[:-1] + ', "extra": ' + nested + "}")
    else:
        sidecar_of(path).write_bytes(text.replace(b"db.fits", b"db\xff\xfe.fits"))
    refused_then_rebuilt(path, "sidecar")


# ----------------------------------------------------------------------
# index files that do not hold what the sidecar says
def test_garbage_index_with_consistent_sidecar_is_stale(tmp_path):
    path = tmp_path / "db.index"
    build(path)
    path.write_bytes(np.random.default_rng(3).bytes(5000))
    rehash(path)
    refused_then_rebuilt(path, "not a faiss IVF")


@pytest.mark.parametrize("cut", ["header only", "half"])
def test_truncated_index_with_consistent_sidecar_is_stale(tmp_path, cut):
    path = tmp_path / "db.index"
    build(path)
    data = path.read_bytes()
    path.write_bytes(data[:45] if cut == "header only" else data[: len(data) // 2])
    rehash(path)
    refused_then_rebuilt(path, "too short|cannot be read by faiss")


def test_faiss_header_then_garbage_is_stale(tmp_path):
    path = tmp_path / "db.index"
    build(path)
    data = path.read_bytes()
    garbage = np.random.default_rng(4).bytes(len(data) - 45)
    path.write_bytes(data[:45] + garbage)
    rehash(path)
    refused_then_rebuilt(path, "cannot be read by faiss")


@pytest.mark.parametrize(("rows", "dim"), [(600, DIM), (1200, 8)])
def test_index_of_other_shape_behind_right_lathash_is_stale(tmp_path, monkeypatch, rows,
                                                             dim):
    """A sidecar that claims this database (rows, dimension, LATHASH) over another index."""
    path = tmp_path / "db.index"
    build(path)
    claims = read_sidecar(path)
    other = tmp_path / "other.index"
    build(other, latents=clustered(rows, dim, seed=5))
    path.write_bytes(other.read_bytes())
    write_sidecar(path, claims)
    rehash(path)
    # the header is checked before faiss parses the file
    parsed = []
    with monkeypatch.context() as m:
        m.setattr(faiss, "read_index", lambda *args: parsed.append(args))
        with pytest.raises(StaleIndexError, match=f"{rows} x {dim} vectors"):
            FaissBackend("ivf").fit(LAT["ivf"], index_path=path, provenance=PROV,
                                    on_stale="raise")
    assert not parsed, "faiss parsed a file whose header does not match the database"
    refused_then_rebuilt(path, f"{rows} x {dim} vectors")


def test_index_of_other_latents_behind_right_lathash_is_stale(tmp_path):
    """Same shape, other vectors: the sample of the index does not match the database."""
    path = tmp_path / "db.index"
    build(path)
    claims = read_sidecar(path)
    other = tmp_path / "other.index"
    build(other, latents=clustered(1200, seed=6))
    path.write_bytes(other.read_bytes())
    write_sidecar(path, claims)
    rehash(path)
    refused_then_rebuilt(path, "vectors of the index differ from the database")


def test_index_of_another_kind_behind_its_sidecar_is_stale(tmp_path):
    path = tmp_path / "db.index"
    build(path, "hnsw")
    claims = read_sidecar(path)
    flat = faiss.IndexFlatL2(DIM)
    flat.add(LAT["hnsw"])
    faiss.write_index(flat, str(path))
    write_sidecar(path, claims)
    rehash(path)
    refused_then_rebuilt(path, "not a faiss HNSW", "hnsw")


@pytest.mark.parametrize("name", ["nlist", "nprobe", "ef_search", "M"])
def test_parameter_too_large_for_faiss_is_refused_up_front(name):
    kind = "ivf" if name in ("nlist", "nprobe") else "hnsw"
    with pytest.raises(ValueError, match=f"{name} must be at most"):
        FaissBackend(kind, **{name: 2**40})
