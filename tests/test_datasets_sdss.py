# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Tests of `galmorphsearch.datasets.fetch_sdss_images`.

Offline tests follow astroquery's own style: the SkyServer request method of
``astroquery.sdss.SDSS`` is patched to return a recorded answer
(``tests/data/sdss``), and the download of frames is patched to serve tiny
SDSS-like frames written by the test (cut from the bundled HCG 88 images,
with their original header cards). Only the test marked ``remote_data``
touches the network.
"""

import re
import warnings
from contextlib import contextmanager
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from astroquery.sdss import SDSS
from astroquery.utils import commons
from astroquery.utils.mocks import MockResponse

from galmorphsearch.datasets import (
    MultiBandField,
    clear_sdss_cache,
    conf,
    fetch_sdss_images,
    get_sample_field_paths,
    get_sdss_cache_dir,
)
from galmorphsearch.utils.exceptions import NoResultsWarning, RemoteServiceError

DATA = Path(__file__).parent / "data" / "sdss"
HCG88A = SkyCoord(313.147825 * u.deg, -5.711098 * u.deg)
# Pixel of HCG 88a in the bundled images, around which the tiny frames are cut.
CENTER = (278, 188)
HALF = 32


class Recorder:
    """Counts and records the (patched) network calls."""

    def __init__(self):
        self.requests = []  # every SkyServer request
        self.downloads = []  # every frame download

    @property
    def queries(self):
        """The position queries (astroquery also asks for column docs, by GET)."""
        return [call for call in self.requests if call[0] == "POST"]


def _write_frames(directory):
    """Tiny SDSS frames (64x64) with the original header cards, one per band."""
    paths = {}
    x0, y0 = CENTER
    for band, path in get_sample_field_paths().items():
        with fits.open(path) as hdul:
            header = hdul[0].header.copy()
            data = hdul[0].data[y0 - HALF : y0 + HALF, x0 - HALF : x0 + HALF].astype(np.float32)
        header["CRPIX1"] -= x0 - HALF
        header["CRPIX2"] -= y0 - HALF
        header["FILTER"] = band
        primary = fits.PrimaryHDU(data=data, header=header)
        # SDSS frames also hold a calibration vector and a sky model.
        calib = fits.ImageHDU(np.ones(2 * HALF, dtype=np.float32), name="CALIB")
        paths[band] = directory / f"frame-{band}-001737-5-0047.fits"
        fits.HDUList([primary, calib]).writeto(paths[band])
    return paths


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    return _write_frames(tmp_path_factory.mktemp("remote"))


@pytest.fixture
def patch_sdss(monkeypatch, frames):
    """Serve the recorded query answer and the tiny frames; count the calls."""
    recorder = Recorder()
    recorder.answer = DATA / "query_region_hcg88a.csv"

    def mock_request(method, url, **kwargs):
        recorder.requests.append((method, url, kwargs))
        if "fDocColumns" in kwargs.get("params", {}).get("cmd", ""):
            # Column documentation: an unreadable answer makes astroquery use
            # its built-in column lists, as in astroquery's own tests.
            return MockResponse(content=b"", url=url)
        return MockResponse(content=recorder.answer.read_bytes(), url=url)

    @contextmanager
    def mock_get_readable_fileobj(target, **kwargs):
        recorder.downloads.append(target)
        band = re.search(r"frame-([ugriz])-", target).group(1)
        with open(frames[band], "rb") as stream:
            yield stream

    monkeypatch.setattr(SDSS, "_request", mock_request)
    monkeypatch.setattr(commons, "get_readable_fileobj", mock_get_readable_fileobj)
    return recorder


def test_fetch_returns_gri_hdus(patch_sdss, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        field = fetch_sdss_images(HCG88A, cache_dir=tmp_path / "cache")
        wcs = field.wcs  # the header fix makes the WCS silent
    assert isinstance(field, MultiBandField)
    assert field.bands == ("g", "r", "i")
    for band, hdu in field.items():
        assert isinstance(hdu, fits.PrimaryHDU)
        assert hdu.header["FILTER"] == band
        assert hdu.header["BUNIT"] == "nanomaggy"
        assert "RADECSYS" not in hdu.header
        assert hdu.header["RADESYS"] == "ICRS"
        assert hdu.data.dtype == np.float32
        assert hdu.data.shape == (2 * HALF, 2 * HALF)
    assert field.meta["run"] == 1737
    assert field.meta["camcol"] == 5
    assert field.meta["field"] == 47
    assert field.meta["data_release"] == conf.data_release
    # The position lies in the frame, near the pixel it was cut around.
    x, y = wcs.world_to_pixel(HCG88A)
    assert abs(x - HALF) < 1.5
    assert abs(y - HALF) < 1.5
    # One position query, one download per band, at the configured services.
    assert len(patch_sdss.queries) == 1
    assert patch_sdss.queries[0][1].startswith(conf.skyserver_url)
    assert f"/dr{conf.data_release}/" in patch_sdss.queries[0][1]
    assert len(patch_sdss.downloads) == 3
    assert all(url.startswith(conf.sas_url) for url in patch_sdss.downloads)
    assert all("/301/1737/5/" in url for url in patch_sdss.downloads)


def test_second_call_uses_cache(patch_sdss, tmp_path):
    cache_dir = tmp_path / "cache"
    first = fetch_sdss_images(HCG88A, bands="gr", cache_dir=cache_dir)
    n_requests, n_downloads = len(patch_sdss.requests), len(patch_sdss.downloads)
    n_queries = len(patch_sdss.queries)
    cached = sorted(p.name for p in (cache_dir / f"dr{conf.data_release}" / "frames").iterdir())
    assert cached == ["frame-g-001737-5-0047.fits", "frame-r-001737-5-0047.fits"]

    second = fetch_sdss_images(HCG88A, bands="gr", cache_dir=cache_dir)
    assert len(patch_sdss.requests) == n_requests  # no network at all
    assert len(patch_sdss.downloads) == n_downloads
    for band in "gr":
        np.testing.assert_array_equal(first[band].data, second[band].data)
        assert second[band].header["FILTER"] == band

    # A new band downloads only that band; the position look-up is cached.
    third = fetch_sdss_images(HCG88A, bands="gri", cache_dir=cache_dir)
    assert len(patch_sdss.requests) == n_requests
    assert len(patch_sdss.downloads) == n_downloads + 1
    assert third.bands == ("g", "r", "i")

    assert clear_sdss_cache(cache_dir) == 4  # three frames and one look-up
    assert cache_dir.is_dir()
    assert list(cache_dir.iterdir()) == []
    fetch_sdss_images(HCG88A, bands="g", cache_dir=cache_dir)
    assert len(patch_sdss.queries) == n_queries + 1


def test_cache_false_always_downloads(patch_sdss, tmp_path):
    cache_dir = tmp_path / "cache"
    fetch_sdss_images(HCG88A, bands="r", cache=False, cache_dir=cache_dir)
    fetch_sdss_images(HCG88A, bands="r", cache=False, cache_dir=cache_dir)
    assert len(patch_sdss.queries) == 2
    assert len(patch_sdss.downloads) == 2
    assert not cache_dir.exists()


def test_configuration_items(patch_sdss, tmp_path):
    with (
        conf.set_temp("cache_dir", str(tmp_path / "conf_cache")),
        conf.set_temp("data_release", 12),
        conf.set_temp("sas_url", "https://mirror.example.org/sas"),
    ):
        assert get_sdss_cache_dir() == tmp_path / "conf_cache"
        field = fetch_sdss_images(HCG88A, bands="i")
    assert field.meta["data_release"] == 12
    assert "/dr12/" in patch_sdss.queries[0][1]
    assert patch_sdss.downloads[0].startswith("https://mirror.example.org/sas/dr12/")
    assert (tmp_path / "conf_cache" / "dr12" / "frames" / "frame-i-001737-5-0047.fits").is_file()


def test_default_cache_dir_is_astropy_cache():
    with conf.set_temp("cache_dir", ""):
        path = get_sdss_cache_dir()
    assert path.name == "sdss"
    assert "galmorphsearch" in str(path)


def test_cutout_and_several_positions(patch_sdss, tmp_path):
    positions = SkyCoord([HCG88A.ra, HCG88A.ra], [HCG88A.dec, HCG88A.dec])
    fields = fetch_sdss_images(positions, cutout_size=21, cache_dir=tmp_path / "cache")
    assert isinstance(fields, list)
    assert len(fields) == 2
    for field in fields:
        assert field.shape == (21, 21)
        x, y = field.wcs.world_to_pixel(HCG88A)
        assert abs(x - 10) < 1
        assert abs(y - 10) < 1
        assert field["g"].header["CUTX0"] >= 0
    # One look-up (the second position is read from the cache), three downloads.
    assert len(patch_sdss.queries) == 1
    assert len(patch_sdss.downloads) == 3


def test_position_outside_frame(patch_sdss, tmp_path):
    far = SkyCoord(313.5 * u.deg, -5.0 * u.deg)
    with pytest.raises(RemoteServiceError, match="outside the SDSS frame"):
        fetch_sdss_images(far, cutout_size=21, cache_dir=tmp_path / "cache")


def test_string_coordinates(patch_sdss, tmp_path):
    field = fetch_sdss_images("313.147825 -5.711098", bands="r", cache_dir=tmp_path)
    assert field.bands == ("r",)
    with pytest.raises(ValueError, match="names are not resolved"):
        fetch_sdss_images("HCG 88", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="SkyCoord"):
        fetch_sdss_images((313.1, -5.7), cache_dir=tmp_path)


def test_no_results(patch_sdss, tmp_path):
    patch_sdss.answer = DATA / "query_region_empty.csv"
    with pytest.warns(NoResultsWarning, match="no object within"):
        field = fetch_sdss_images(HCG88A, cache_dir=tmp_path / "cache")
    assert isinstance(field, MultiBandField)
    assert len(field) == 0
    assert field.meta["position"] == HCG88A
    assert patch_sdss.downloads == []
    # Empty answers are not cached.
    with pytest.warns(NoResultsWarning):
        fetch_sdss_images(HCG88A, cache_dir=tmp_path / "cache")
    assert len(patch_sdss.queries) == 2


@pytest.mark.parametrize("bands", ["gry", "", "gg", ["g", "R"]])
def test_bad_bands(patch_sdss, tmp_path, bands):
    with pytest.raises(ValueError, match="bands must be"):
        fetch_sdss_images(HCG88A, bands=bands, cache_dir=tmp_path)
    assert patch_sdss.requests == []


def test_service_error_answer(monkeypatch, tmp_path):
    def mock_request(method, url, **kwargs):
        return MockResponse(content=b"error_message: the server is down", url=url)

    monkeypatch.setattr(SDSS, "_request", mock_request)
    with pytest.raises(RemoteServiceError, match="position query failed"):
        fetch_sdss_images(HCG88A, cache_dir=tmp_path)


def test_network_failure(monkeypatch, tmp_path):
    from requests.exceptions import ConnectionError as RequestsConnectionError

    def mock_request(method, url, **kwargs):
        raise RequestsConnectionError("no route to host")

    monkeypatch.setattr(SDSS, "_request", mock_request)
    with pytest.raises(RemoteServiceError, match="no route to host"):
        fetch_sdss_images(HCG88A, cache_dir=tmp_path)


def test_download_failure(patch_sdss, monkeypatch, tmp_path):
    @contextmanager
    def failing(target, **kwargs):
        raise OSError("timed out")
        yield  # pragma: no cover

    monkeypatch.setattr(commons, "get_readable_fileobj", failing)
    with pytest.raises(RemoteServiceError, match="image download failed"):
        fetch_sdss_images(HCG88A, cache_dir=tmp_path / "cache")
    # Nothing half-written is left in the frame cache.
    frames = tmp_path / "cache" / f"dr{conf.data_release}" / "frames"
    assert not frames.exists() or not any(frames.iterdir())


def test_clear_cache_keeps_foreign_files(patch_sdss, tmp_path):
    """Only what fetch_sdss_images writes is deleted, never the folder given."""
    cache_dir = tmp_path / "shared_folder"
    cache_dir.mkdir()
    foreign = {
        cache_dir / "notes.txt": "mine",
        cache_dir / "frames" / "frame-r-001737-5-0047.fits": "not in a dr* folder",
        cache_dir / "dr17" / "frames" / "my_image.fits": "not an SDSS frame name",
        cache_dir / "dr17" / "positions" / "targets.ecsv": "not a look-up name",
        cache_dir / "dr17" / "other" / "frame-g-001737-5-0047.fits": "not in frames/",
        cache_dir / "drafts" / "frames" / "frame-g-001737-5-0047.fits": "not dr<N>",
    }
    for path, text in foreign.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    fetch_sdss_images(HCG88A, bands="gr", cache_dir=cache_dir, data_release=17)
    release = cache_dir / "dr17"
    # A temporary file left by an interrupted write is the package's too.
    (release / "frames" / ".frame-i-001737-5-0047.fits.x1y2z3.tmp.fits").write_text("")
    written = sorted(p.name for p in (release / "frames").iterdir())
    assert "frame-g-001737-5-0047.fits" in written

    assert clear_sdss_cache(cache_dir) == 4  # g, r, the temporary file, one look-up
    for path, text in foreign.items():
        assert path.read_text() == text
    assert sorted(p.name for p in (release / "frames").iterdir()) == ["my_image.fits"]
    assert sorted(p.name for p in (release / "positions").iterdir()) == ["targets.ecsv"]
    # Nothing is left to delete; a missing cache directory is not an error.
    assert clear_sdss_cache(cache_dir) == 0
    assert clear_sdss_cache(tmp_path / "absent") == 0


def test_cache_writes_are_atomic(patch_sdss, tmp_path, monkeypatch):
    """Cache files are written under a unique temporary name, then renamed."""
    import os

    renames = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renames.append((os.fspath(src), os.fspath(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    cache_dir = tmp_path / "cache"
    fetch_sdss_images(HCG88A, bands="gr", cache_dir=cache_dir)
    targets = sorted(Path(dst).name for _, dst in renames)
    assert len([t for t in targets if t.startswith("frame-")]) == 2
    assert len([t for t in targets if t.startswith("pos_")]) == 1
    sources = [Path(src) for src, _ in renames]
    assert len(set(sources)) == len(sources)
    for src, dst in renames:
        assert Path(src).parent == Path(dst).parent  # same folder: atomic rename
        assert Path(src).name != Path(dst).name + ".part"
        assert ".tmp" in Path(src).name
    leftovers = [p for p in cache_dir.rglob("*") if p.is_file() and ".tmp" in p.name]
    assert leftovers == []


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"data_release": "dr17"}, ValueError, "data_release must be a positive integer"),
        ({"data_release": 0}, ValueError, "data_release must be a positive integer"),
        ({"data_release": 17.5}, ValueError, "data_release must be a positive integer"),
        ({"radius": -2 * u.arcsec}, ValueError, "radius must be a positive"),
        ({"radius": 0}, ValueError, "radius must be a positive"),
        ({"radius": 3 * u.kg}, ValueError, "radius must be a positive angle"),
        ({"timeout": -1}, ValueError, "timeout must be a positive number of seconds"),
        ({"timeout": "soon"}, ValueError, "timeout must be a positive number"),
        ({"cutout_size": -5}, ValueError, "cutout_size must be"),
        ({"cutout_size": (10, 0)}, ValueError, "cutout_size must be"),
        ({"cutout_size": (1, 2, 3)}, ValueError, "cutout_size must be"),
        ({"cutout_size": 3 * u.kg}, ValueError, "cutout_size must be"),
        ({"cache": "yes"}, TypeError, "cache must be True or False"),
        ({"cache_dir": 5}, TypeError, "cache_dir must be a path"),
    ],
)
def test_bad_arguments_fail_before_network(patch_sdss, tmp_path, kwargs, error, match):
    kwargs.setdefault("cache_dir", tmp_path)
    with pytest.raises(error, match=match):
        fetch_sdss_images(HCG88A, **kwargs)
    assert patch_sdss.requests == []
    assert patch_sdss.downloads == []


@pytest.mark.parametrize(
    "kwargs",
    [{"data_release": "12"}, {"radius": 3}, {"radius": 0.1 * u.arcmin}, {"timeout": 5},
     {"cutout_size": (21, 11)}, {"cutout_size": 20 * u.arcsec},
     {"cutout_size": (9, 7) * u.pixel}],
)
def test_good_arguments_accepted(patch_sdss, tmp_path, kwargs):
    field = fetch_sdss_images(HCG88A, bands="r", cache_dir=tmp_path, **kwargs)
    assert field.bands == ("r",)


@pytest.mark.remote_data
def test_fetch_real_sdss(tmp_path):
    field = fetch_sdss_images(HCG88A, bands="gr", cutout_size=64, cache_dir=tmp_path)
    assert field.bands == ("g", "r")
    assert field.shape == (64, 64)
    assert field["r"].header["BUNIT"] == "nanomaggy"
    x, y = WCS(field["r"].header).world_to_pixel(HCG88A)
    assert abs(x - 32) < 2
    assert abs(y - 32) < 2
    # HCG 88a is bright: the centre is well above the sky.
    assert field["r"].data[30:35, 30:35].mean() > 0.5
