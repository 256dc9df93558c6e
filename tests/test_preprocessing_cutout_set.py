# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of CutoutSet: many cutouts and their table in one FITS file."""

import numpy as np
import pytest
from astropy.table import Table

from galmorphsearch import GalaxyCutout
from galmorphsearch.datasets import make_synthetic_sample
from galmorphsearch.preprocessing import CutoutSet
from galmorphsearch.utils import DatabaseFormatError


@pytest.fixture(scope="module")
def cutout_set():
    truth, fields = make_synthetic_sample(n_per_type=1, types=["Er", "Sb", "SBc"], seed=3)
    cutouts = [GalaxyCutout(f["g"], f["r"], f["i"], f.position, size=32, seed=0)
               for f in fields]
    return CutoutSet.from_cutouts(cutouts, truth["objid", "ra", "dec", "morphology"]), cutouts


def test_from_cutouts_keeps_images_and_measurements(cutout_set):
    cs, cutouts = cutout_set
    assert len(cs) == 3 and cs.size == 32
    np.testing.assert_array_equal(cs.images[1], cutouts[1].image)
    np.testing.assert_array_equal(cs.backgrounds[2], cutouts[2].background)
    assert list(cs.table["morphology"]) == ["Er", "Sb", "SBc"]
    assert cs.table["kron_radius"][0] == pytest.approx(cutouts[0].kron_radius)
    assert cs.table.meta["CUTSIZE"] == 32
    assert "PREPVERS" in cs.table.meta


def test_write_read_round_trip(cutout_set, tmp_path):
    cs, _ = cutout_set
    path = tmp_path / "set.fits"
    cs.write(path)
    back = CutoutSet.read(path)
    np.testing.assert_array_equal(back.images, cs.images)
    np.testing.assert_array_equal(back.backgrounds, cs.backgrounds)
    assert list(back.table["objid"]) == list(cs.table["objid"])
    assert back.table["kron_radius"].unit == "pix"
    # The table is an ordinary FITS binary table.
    assert len(Table.read(path, hdu="CATALOG")) == 3
    with pytest.raises(FileExistsError):
        cs.write(path)


def test_corrupted_file_is_refused(cutout_set, tmp_path):
    cs, _ = cutout_set
    path = tmp_path / "set.fits"
    cs.write(path)
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0xFF  # one byte of the last image cube
    path.write_bytes(bytes(raw))
    with pytest.raises(DatabaseFormatError, match="corrupted"):
        CutoutSet.read(path)


def test_bad_shapes():
    table = Table({"objid": [1, 2]})
    with pytest.raises(ValueError, match="shape"):
        CutoutSet(table, np.zeros((3, 8, 8, 3), np.uint8), np.zeros((3, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        CutoutSet(table, np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3)))
    with pytest.raises(ValueError, match="no cutouts"):
        CutoutSet.from_cutouts([])


def test_database_built_from_a_cutout_set_matches_the_cutouts(cutout_set):
    from galmorphsearch.database import LatentDatabase
    from galmorphsearch.model import Encoder

    cs, cutouts = cutout_set
    encoder = Encoder(input_size=32)
    catalog = cs.table["objid", "ra", "dec", "morphology"]
    catalog["type_index"] = [0, 5, 10]
    from_set = LatentDatabase.build(catalog, cs, encoder, scheme="gz2")
    from_cutouts = LatentDatabase.build(catalog, cutouts, encoder, scheme="gz2")
    np.testing.assert_allclose(from_set.latents, from_cutouts.latents, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(from_set.background_latents, from_cutouts.background_latents,
                               rtol=1e-5, atol=1e-6)
    assert from_set.meta["CUTSIZE"] == 32
