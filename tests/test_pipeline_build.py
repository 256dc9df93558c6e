# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Tests of `galmorphsearch.pipeline.build_database`: partitioned builds in-process and on a Dask
``LocalCluster`` give the file `LatentDatabase.build` gives.
"""

import os

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch import GalaxyCutout
from galmorphsearch.database import LatentDatabase
from galmorphsearch.datasets import make_synthetic_sample
from galmorphsearch.pipeline import _dask_plugin, build_database
from galmorphsearch.pipeline import build as pipeline_build
from galmorphsearch.preprocessing import CutoutSet
from galmorphsearch.utils import GalMorphSearchWarning

torch = pytest.importorskip("torch")
model = pytest.importorskip("galmorphsearch.model")

PREP = {"size": 32, "seed": 0}
# Keywords that hold the time of writing (and the checksums, which cover it).
TIME_KEYWORDS = ("DATE",)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """Seven colour PNGs of six synthetic galaxies (the last repeats the first)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    truth, fields = make_synthetic_sample(n_per_type=2, types=["Er", "Sb", "SBc"], seed=0,
                                          shape=(96, 96))
    files = []
    for i, field in enumerate(fields):
        cutout = GalaxyCutout(field["g"], field["r"], field["i"], field.position, size=64,
                              seed=0)
        files.append(str(folder / f"galaxy{i}.png"))
        Image.fromarray(cutout.image).save(files[-1])
    catalog = Table(truth[["objid", "ra", "dec", "morphology", "type_index", "r_half"]])
    catalog.add_row(catalog[0])
    catalog["objid"][-1] = 99
    files.append(files[0])  # identical latents: the H-similarity skips them
    catalog.meta["SCHEME"] = "gz2"
    return catalog, files


def make_encoder(seed):
    torch.manual_seed(seed)
    return model.Encoder(architecture="vgg-small", input_size=32)


@pytest.fixture(scope="module")
def encoder():
    return make_encoder(0)


# The HTTP servers of the scheduler and workers listen on the loopback
# interface, on a free port: pytest-remotedata refuses other interfaces, and
# a fixed port (8787 by default, even without a dashboard) may be taken,
# which warns.
DASHBOARD = "127.0.0.1:0"


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    from distributed.comm import inproc

    # In-process workers are addressed by this machine's IP, which
    # distributed finds by opening a UDP socket towards 8.8.8.8: a network
    # access for pytest-remotedata. The loopback address serves as well.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(inproc.global_manager, "_ip", "127.0.0.1")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                           dashboard_address=DASHBOARD,
                                           worker_dashboard_address=DASHBOARD)
        client = distributed.Client(cluster)
        yield client
        client.close()
        cluster.close()


def reference(catalog, files, encoder, path):
    """`LatentDatabase.build` from the same cutouts, written to ``path`` and read back."""
    cutouts = [GalaxyCutout.from_image(f, **PREP) for f in files]
    LatentDatabase.build(catalog, cutouts, encoder, carry=["r_half"]).write(path)
    return LatentDatabase.read(path)


def assert_same_database(a, b, exact=True):
    """The same rows, columns and keywords (``DATE`` aside)."""
    assert a.table.colnames == b.table.colnames
    for name in a.table.colnames:
        assert a.table[name].dtype == b.table[name].dtype, name
        assert a.table[name].unit == b.table[name].unit, name
        if exact:
            np.testing.assert_array_equal(a.table[name], b.table[name], err_msg=name)
        elif a.table[name].dtype.kind == "f":
            np.testing.assert_allclose(a.table[name], b.table[name], rtol=1e-5, atol=1e-6,
                                       err_msg=name)
        else:
            np.testing.assert_array_equal(a.table[name], b.table[name], err_msg=name)
    ma = {k: v for k, v in a.meta.items() if k not in TIME_KEYWORDS}
    mb = {k: v for k, v in b.meta.items() if k not in TIME_KEYWORDS}
    if exact:
        assert ma == mb
    else:
        assert ma.keys() == mb.keys()
        for key in ma:
            if isinstance(ma[key], float):
                assert ma[key] == pytest.approx(mb[key], rel=1e-5), key
            else:
                assert ma[key] == mb[key], key


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if ".parts-" in p.name or ".tmp" in p.name)


def test_in_process_matches_build(sample, encoder, tmp_path):
    catalog, files = sample
    db, failures = build_database(catalog, files, encoder, tmp_path / "db.fits",
                                  partition_size=3, carry=["r_half"], preprocess_kwargs=PREP,
                                  progress_bar=True)
    assert len(failures) == 0
    assert failures.colnames == ["row", "objid", "source", "error", "message"]
    ref = reference(catalog, files, encoder, tmp_path / "ref.fits")
    assert len(db) == len(catalog) == 7
    # Other batches than build's: equal up to float32 rounding of the encoder.
    assert_same_database(db, ref, exact=False)
    # Rows 0 and 6 are the same image (latents equal but for float32 rounding,
    # encoded in different batches): each skips the other.
    assert np.isfinite(db.h_similarity).all()
    assert db.h_similarity[0] == pytest.approx(db.h_similarity[6], rel=1e-5)
    assert db.h_similarity[0] < 99
    assert leftovers(tmp_path) == []


def test_h_similarity_blocks(sample, encoder, tmp_path, monkeypatch):
    """The H-similarity computed in blocks of two rows is that of one block."""
    catalog, files = sample
    one, _ = build_database(catalog, files, encoder, tmp_path / "one.fits",
                            carry=["r_half"], preprocess_kwargs=PREP)
    monkeypatch.setattr(pipeline_build, "_HSIM_BLOCK_ROWS", 2)
    blocks, _ = build_database(catalog, files, encoder, tmp_path / "blocks.fits",
                               carry=["r_half"], preprocess_kwargs=PREP)
    np.testing.assert_array_equal(one.h_similarity, blocks.h_similarity)


@pytest.mark.parametrize("name", ["db.fits", "db.h5"])
def test_dask_matches_in_process(sample, encoder, client, tmp_path, monkeypatch, name):
    catalog, files = sample
    monkeypatch.setattr(pipeline_build, "_HSIM_BLOCK_ROWS", 3)
    kwargs = {"partition_size": 2, "carry": ["r_half"], "preprocess_kwargs": PREP}
    local, _ = build_database(catalog, files, encoder, tmp_path / f"local-{name}", **kwargs)
    dask, failures = build_database(catalog, files, encoder, tmp_path / name, client=client,
                                    memmap=True, **kwargs)
    assert len(failures) == 0
    assert dask.out_of_core
    back = LatentDatabase.read(tmp_path / name)
    assert_same_database(back, local)
    assert back.lathash == local.lathash
    assert leftovers(tmp_path) == []


def test_encoder_loaded_once_per_worker(sample, client, tmp_path):
    catalog, files = sample
    encoder = make_encoder(1)
    key = encoder.weights_hash
    for i in range(2):
        build_database(catalog, files, encoder, tmp_path / f"db{i}.fits", client=client,
                       partition_size=1, carry=["r_half"], preprocess_kwargs=PREP)
    # Seven tasks a build, two builds: one load on each of the two workers.
    loads = client.run(_dask_plugin._encoder_loads, key)
    assert sorted(loads.values()) == [1, 1]
    workers = {wid for wid, k in _dask_plugin._WORKER_ENCODERS if k == key}
    assert len(workers) == 2


def test_cutout_set_float16(sample, encoder, client, tmp_path):
    catalog, files = sample
    cutouts = [GalaxyCutout.from_image(f, **PREP) for f in files]
    cutout_set = CutoutSet.from_cutouts(cutouts, catalog)
    table = cutout_set.table  # the catalog, with the cutouts' quality flags
    ref = LatentDatabase.build(table, cutout_set, encoder, carry=["flag"])
    ref.write(tmp_path / "ref.h5", dtype="float16")
    ref = LatentDatabase.read(tmp_path / "ref.h5")
    db, _ = build_database(table, cutout_set, encoder, tmp_path / "db.h5", client=client,
                           dtype="float16", partition_size=4, carry=["flag"])
    assert db.latent_dtype == np.float16
    assert_same_database(db, ref, exact=False)
    np.testing.assert_array_equal(db.table["flag"], table["flag"])


def test_cutouts_and_files_mixed(sample, encoder, tmp_path):
    """Cutouts made beforehand and files preprocessed by the build give one database."""
    catalog, files = sample
    mixed = [GalaxyCutout.from_image(f, **PREP) if i % 2 else f for i, f in enumerate(files)]
    scratch = tmp_path / "scratch"
    db, _ = build_database(catalog, mixed, encoder, tmp_path / "mixed.fits", partition_size=3,
                           carry=["r_half"], preprocess_kwargs=PREP, scratch_dir=scratch)
    assert list(scratch.iterdir()) == []
    plain, _ = build_database(catalog, files, encoder, tmp_path / "plain.fits",
                              partition_size=3, carry=["r_half"], preprocess_kwargs=PREP)
    assert_same_database(db, plain)


def test_failures_are_left_out(sample, encoder, client, tmp_path):
    catalog, files = sample
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    broken = list(files)
    broken[2] = str(tmp_path / "missing.png")
    broken[5] = str(text)
    with pytest.warns(GalMorphSearchWarning, match="2 of the 7 galaxies"):
        db, failures = build_database(catalog, broken, encoder, tmp_path / "db.fits",
                                      client=client, partition_size=2, carry=["r_half"],
                                      preprocess_kwargs=PREP)
    assert failures["row"].tolist() == [2, 5]
    assert failures["objid"].tolist() == [catalog["objid"][2], catalog["objid"][5]]
    assert failures["source"].tolist() == [broken[2], broken[5]]
    assert all(failures["error"]) and all(failures["message"])
    keep = [0, 1, 3, 4, 6]
    ref = reference(catalog[keep], [files[i] for i in keep], encoder, tmp_path / "ref.fits")
    assert_same_database(db, ref, exact=False)


@pytest.mark.parametrize("use_client", [False, True])
def test_error_leaves_nothing(sample, encoder, client, tmp_path, use_client):
    catalog, files = sample
    broken = list(files)
    broken[4] = str(tmp_path / "missing.png")
    output = tmp_path / "db.fits"
    with pytest.raises(Exception, match="missing.png") as info:
        build_database(catalog, broken, encoder, output, partition_size=2,
                       client=client if use_client else None, on_error="raise",
                       carry=["r_half"], preprocess_kwargs=PREP)
    assert "while preprocessing catalog row 4" in "\n".join(
        getattr(info.value, "__notes__", []))
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_nothing_preprocessed(sample, encoder, tmp_path):
    catalog, _ = sample
    output = tmp_path / "db.fits"
    missing = [str(tmp_path / f"missing{i}.png") for i in range(len(catalog))]
    with pytest.raises(ValueError, match="None of the 7 galaxies"):
        build_database(catalog, missing, encoder, output)
    assert not output.exists()
    assert leftovers(tmp_path) == []


def test_overwrite(sample, encoder, tmp_path):
    catalog, files = sample
    output = tmp_path / "db.fits"
    output.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        build_database(catalog, files, encoder, output, preprocess_kwargs=PREP)
    assert output.read_bytes() == b"precious"
    assert leftovers(tmp_path) == []
    db, _ = build_database(catalog, files, encoder, output, overwrite=True,
                           preprocess_kwargs=PREP)
    assert len(LatentDatabase.read(output)) == len(db) == 7


def test_bad_arguments(sample, encoder, client, tmp_path):
    catalog, files = sample
    output = tmp_path / "db.fits"
    with pytest.raises(ValueError, match="7 rows but 6 images"):
        build_database(catalog, files[:6], encoder, output)
    with pytest.raises(ValueError, match="partition_size"):
        build_database(catalog, files, encoder, output, partition_size=0)
    with pytest.raises(ValueError, match="on_error"):
        build_database(catalog, files, encoder, output, on_error="ignore")
    with pytest.raises(ValueError, match="dtype"):
        build_database(catalog, files, encoder, output, dtype="float64")
    with pytest.raises(ValueError, match="format"):
        build_database(catalog, files, encoder, output, format="csv")

    class Plain:
        """An encoder-like object that cannot be saved for the workers."""

        weights_hash = "0123456789abcdef"

    with pytest.raises(TypeError, match="weight file"):
        build_database(catalog, files, Plain(), output, client=client)
    assert not output.exists()
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_worker_processes(sample, encoder, tmp_path):
    """Workers in their own processes import the tasks and the plugin from the package."""
    distributed = pytest.importorskip("distributed")
    catalog, files = sample
    kwargs = {"partition_size": 3, "carry": ["r_half"], "preprocess_kwargs": PREP}
    local, _ = build_database(catalog, files, encoder, tmp_path / "local.fits", **kwargs)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=DASHBOARD,
                                  worker_dashboard_address=DASHBOARD) as cluster, \
            distributed.Client(cluster) as client:
        db, _ = build_database(catalog, files, encoder, tmp_path / "db.fits", client=client,
                               **kwargs)
        loads = client.run(_dask_plugin._encoder_loads, encoder.weights_hash)
    assert sorted(loads.values()) == [1, 1]
    assert_same_database(db, local, exact=False)
    assert leftovers(tmp_path) == []


def test_dask_imported_only_when_used():
    """galmorphsearch.database and .pipeline work without dask and do not import it."""
    import subprocess
    import sys

    code = ("import sys, galmorphsearch.database, galmorphsearch.pipeline; "
            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_local_cluster_workers_keep_the_default_malloc_trimming(monkeypatch):
    # Dask's nanny would start the workers with MALLOC_TRIM_THRESHOLD_=65536,
    # which slows preprocessing down; local_cluster leaves it unset.
    distributed = pytest.importorskip("distributed")
    from galmorphsearch.pipeline import local_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with local_cluster(1) as cluster, distributed.Client(cluster) as client:
        env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_"))
        assert list(env.values()) == [None]
        assert sum(client.nthreads().values()) == 1
    with pytest.raises(ValueError, match="n_workers must be a positive integer"):
        local_cluster(0)
