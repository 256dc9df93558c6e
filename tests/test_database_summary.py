# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""`LatentDatabase.summary`, and ``galmorphsearch info`` printing it unchanged."""

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch.catalogs import GZ2_SCHEME
from galmorphsearch.database import LatentDatabase
from galmorphsearch.model import available_pretrained
from galmorphsearch.scripts.main import main


class _Cutout:
    def __init__(self, seed, size=8):
        rng = np.random.default_rng(seed)
        self.image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        self.background = (rng.random((size, size, 3)) * 40).astype(np.uint8)

    def header_keywords(self):
        return {"BKGBOX": 64, "KRONFACT": 3.0, "PREPVERS": "0.1"}


class _Encoder:
    def __init__(self, weights_hash="0123456789abcdef", latent_dim=8):
        self.name = "stub-64px"
        self.architecture = "resnet18"
        self.input_size = 64
        self.latent_dim = latent_dim
        self.weights_hash = weights_hash
        self.metadata = {"name": self.name, "architecture": self.architecture,
                         "input_size": 64, "latent_dim": latent_dim,
                         "weights_hash": weights_hash}

    def encode(self, images, *, batch_size=64, background=False, progress_bar=False,
               device=None):
        out = []
        for cutout in images:
            pix = np.asarray(cutout.background if background else cutout.image, float) / 255
            stats = [pix.mean(), pix.std(), pix[..., 0].mean(), pix[..., 2].mean()]
            out.append([np.cos((k + 1) * stats[k % 4]) * (k + 1)
                        for k in range(self.latent_dim)])
        return np.asarray(out, dtype=np.float32)


def _database(n=6, weights_hash="0123456789abcdef"):
    types = [GZ2_SCHEME.types[i % 3] for i in range(n)]
    catalog = Table({"objid": np.arange(n, dtype=np.int64) + 1000,
                     "ra": np.linspace(150, 151, n), "dec": np.linspace(1, 2, n),
                     "morphology": types, "type_index": [GZ2_SCHEME.index(t) for t in types]})
    catalog["ra"].unit = catalog["dec"].unit = "deg"
    return LatentDatabase.build(catalog, [_Cutout(s) for s in range(n)],
                                _Encoder(weights_hash), scheme="gz2")


def _info_before_the_move(path):
    """What ``galmorphsearch info`` printed when the CLI formatted it itself."""
    from galmorphsearch.model.pretrained import identify_pretrained

    database = LatentDatabase.read(path, memmap=True)
    meta = database.meta
    lines = [f"{path}: latent database of {len(database)} galaxies",
             f"  latents    {database.latent_dtype} in the file; LATHASH {database.lathash}"]
    shipped = identify_pretrained(str(meta.get("ENCHASH")))
    lines.append(f"  encoder    {meta.get('ENCODER')} ({meta.get('ENCARCH')}, "
                 f"{meta.get('INSIZE')} px, {meta.get('LATDIM')} latents, "
                 f"weights hash {meta.get('ENCHASH')}"
                 + (f"; the shipped pretrained encoder {shipped!r})" if shipped else ")"))
    lines.append(f"  scheme     {meta.get('SCHEME')}; built {meta.get('DATE')} with "
                 f"galmorphsearch {meta.get('GMSVERS')}")
    if database.h_similarity_mean is not None and np.isfinite(database.h_similarity_mean):
        lines.append(f"  H-similarity {database.h_similarity_mean:.2f} +/- "
                     f"{database.h_similarity_std:.2f} (no similar galaxy below "
                     f"{database.h_similarity_mean - database.h_similarity_std:.2f})")
    morphology = np.asarray(database.table["morphology"], dtype=str)
    types, counts = np.unique(morphology, return_counts=True)
    lines.append("  types      " + ", ".join(f"{t}={c}" for t, c in
                                             zip(types, counts, strict=True)))
    lines.append("  columns    " + ", ".join(database.table.colnames))
    others = {k: v for k, v in meta.items() if k not in ("COMMENT", "HISTORY")}
    lines.append("  keywords   " + ", ".join(f"{k}={v}" for k, v in others.items()))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("shipped", [False, True])
@pytest.mark.parametrize(("suffix", "dtype"), [(".fits", None), (".fits", "float16"),
                                               (".h5", None)])
def test_info_prints_the_summary_as_before(tmp_path, capsys, monkeypatch, shipped, suffix,
                                           dtype):
    if suffix == ".h5":
        pytest.importorskip("h5py")
    weights_hash = (str(available_pretrained()["weights_hash"][0]) if shipped
                    else "0123456789abcdef")
    monkeypatch.chdir(tmp_path)
    path = f"db{suffix}"
    _database(weights_hash=weights_hash).write(path, dtype=dtype)
    expected = _info_before_the_move(path)
    assert ("the shipped pretrained encoder" in expected) == shipped
    assert "H-similarity" in expected
    capsys.readouterr()
    assert main(["info", path]) == 0
    assert capsys.readouterr().out == expected
    database = LatentDatabase.read(path, memmap=True)
    assert database.summary(name=path) + "\n" == expected
    # Named by its path by default.
    assert database.summary().startswith(f"{database.path}: latent database of 6 galaxies\n")


def test_summary_of_a_database_in_memory():
    database = _database(n=2)
    text = database.summary()
    assert text.startswith("latent database of 2 galaxies\n")
    assert not text.endswith("\n")
    assert "  columns    objid, ra, dec, morphology, type_index" in text
    assert "SCHEME=gz2" in text
    assert database.summary(name="toy").startswith("toy: latent database of 2 galaxies")
