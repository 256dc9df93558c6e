# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
SDSS imaging through astroquery, with an on-disk cache.

`fetch_sdss_images` finds the SDSS field that covers a sky position (an
`astroquery.sdss.SDSSClass.query_region` cross-match against ``PhotoObj``),
downloads its calibrated ``frame`` images in the requested bands
(`astroquery.sdss.SDSSClass.get_images`), keeps them in a cache directory, and
returns them, optionally cut around the position, ready for
`~galmorphsearch.GalaxyCutout`.
"""

import contextlib
import os
import re
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.config import get_cache_dir_path
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D, NoOverlapError
from astropy.table import Table
from astropy.wcs import WCS

from ..utils.exceptions import NoResultsWarning, RemoteServiceError
from ..utils.io import atomic_path
from ..utils.progress import progress_iter
from ._bands import parse_bands
from ._fields import MultiBandField, fix_sdss_header

__all__ = ["fetch_sdss_images", "get_sdss_cache_dir", "clear_sdss_cache"]

_SDSS_BANDS = "ugriz"
_MATCH_FIELDS = ["ra", "dec", "objid", "run", "rerun", "camcol", "field"]

# What this module writes below the cache directory: dr<N>/frames/ holds
# frame-<band>-<run>-<camcol>-<field>.fits and dr<N>/positions/ the position
# look-ups, each possibly as a temporary file of `atomic_path` (or of the
# ".part" scheme of earlier versions) left by an interrupted write.
_RELEASE_DIR_RE = re.compile(r"^dr\d+$")
_CACHE_NAMES = {
    "frames": r"frame-[ugriz]-\d{6}-\d-\d{4}\.fits",
    "positions": r"pos_[0-9.]+_[+-][0-9.]+_[0-9.]+\.ecsv",
}
_CACHE_FILE_RE = {
    sub: re.compile(rf"^(?:{name}|\.{name}\.\w+\.tmp\.(?:fits|ecsv)|{name}\.part)$")
    for sub, name in _CACHE_NAMES.items()
}


def _conf():
    from . import conf

    return conf


def get_sdss_cache_dir(cache_dir=None):
    """
    Return the directory where SDSS frames are cached.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        Overrides ``galmorphsearch.datasets.conf.cache_dir``; when both are
        empty, ``sdss/`` in the astropy cache directory of galmorphsearch
        (``~/.galmorphsearch/cache`` or ``$XDG_CACHE_HOME/galmorphsearch``).

    Returns
    -------
    path : `pathlib.Path`
        The directory (not created by this function).
    """
    cache_dir = cache_dir or _conf().cache_dir
    if cache_dir:
        return Path(os.path.expanduser(os.fspath(cache_dir)))
    return Path(get_cache_dir_path("galmorphsearch")) / "sdss"


def clear_sdss_cache(cache_dir=None):
    """
    Delete the SDSS frames and position look-ups kept in the cache.

    Only what `fetch_sdss_images` writes is deleted: the files named like
    SDSS frames (``dr<N>/frames/frame-<band>-<run>-<camcol>-<field>.fits``)
    and position look-ups (``dr<N>/positions/pos_*.ecsv``), with the
    temporary files of interrupted writes, then those sub-folders if they
    are left empty. Any other file, and the cache directory itself, are
    left alone, so pointing ``cache_dir`` at a folder that holds other data
    is safe.

    Parameters
    ----------
    cache_dir : str or path-like, optional
        The cache directory; see `get_sdss_cache_dir`.

    Returns
    -------
    removed : int
        The number of files deleted.
    """
    directory = get_sdss_cache_dir(cache_dir)
    removed = 0
    if not directory.is_dir():
        return removed
    for release in sorted(directory.iterdir()):
        if not (_RELEASE_DIR_RE.match(release.name) and release.is_dir()
                and not release.is_symlink()):
            continue
        for sub, pattern in _CACHE_FILE_RE.items():
            folder = release / sub
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in sorted(folder.iterdir()):
                if pattern.match(path.name) and path.is_file() and not path.is_symlink():
                    path.unlink()
                    removed += 1
            _remove_if_empty(folder)
        _remove_if_empty(release)
    return removed


def _remove_if_empty(folder):
    with contextlib.suppress(OSError):  # not empty (foreign files), or already gone
        folder.rmdir()


def _parse_coordinates(coordinates):
    if isinstance(coordinates, SkyCoord):
        return coordinates.icrs
    if isinstance(coordinates, str):
        try:
            return SkyCoord(coordinates, unit=(u.deg, u.deg), frame="icrs")
        except ValueError as exc:
            msg = (
                f"cannot read coordinates {coordinates!r} "
                "(names are not resolved: give a SkyCoord)"
            )
            raise ValueError(msg) from exc
    msg = f"coordinates must be a SkyCoord or a string, got {type(coordinates).__name__}"
    raise TypeError(msg)


def _is_number(value):
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _check_data_release(value):
    """The SDSS data release as a positive int (17, '17'; not 'dr17' or 17.5)."""
    number = None
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if is_int or (isinstance(value, str) and value.strip().isdigit()):
        number = int(value)
    if number is None or number < 1:
        msg = f"data_release must be a positive integer such as 17, got {value!r}"
        raise ValueError(msg)
    return number


def _check_positive(name, value, unit):
    """A positive finite float, or a ValueError naming the argument."""
    if not _is_number(value) or not np.isfinite(value) or value <= 0:
        msg = f"{name} must be a positive number of {unit}, got {value!r}"
        raise ValueError(msg)
    return float(value)


def _check_radius(radius):
    """The search radius as a positive angle (a number means arcsec)."""
    if isinstance(radius, u.Quantity):
        if not radius.isscalar or radius.unit.physical_type != "angle":
            msg = f"radius must be a positive angle (or a number of arcsec), got {radius!r}"
            raise ValueError(msg)
        _check_positive("radius", float(radius.to_value(u.arcsec)), "arcsec")
        return radius.to(u.arcsec)
    return _check_positive("radius", radius, "arcsec") * u.arcsec


def _check_cutout_size(size):
    """None, or a size `~astropy.nddata.Cutout2D` accepts with positive parts."""
    if size is None:
        return None
    if isinstance(size, u.Quantity):
        parts = [size] if size.isscalar else list(size)
    elif isinstance(size, tuple | list | np.ndarray):
        parts = list(size)
    else:
        parts = [size]
    ok = len(parts) in (1, 2)
    for part in parts if ok else ():
        if isinstance(part, u.Quantity):
            ok &= part.unit == u.pixel or part.unit.physical_type == "angle"
            value = part.value
        else:
            value = part
        ok &= _is_number(value) and bool(np.isfinite(value)) and value > 0
    if not ok:
        msg = (
            "cutout_size must be a positive number of pixels, an angle, or a pair of "
            f"them (ny, nx), got {size!r}"
        )
        raise ValueError(msg)
    return size


def _lookup_key(coord, radius_arcsec):
    return f"pos_{coord.ra.deg:010.6f}_{coord.dec.deg:+010.6f}_{radius_arcsec:.2f}.ecsv"


def _frame_name(band, run, camcol, field):
    return f"frame-{band}-{int(run):06d}-{int(camcol)}-{int(field):04d}.fits"


def _service_errors():
    """The exceptions by which astroquery and requests report a failed service."""
    from astroquery.exceptions import RemoteServiceError as AstroqueryRemoteServiceError
    from astroquery.exceptions import TimeoutError as AstroqueryTimeoutError
    from requests.exceptions import RequestException

    # OSError covers urllib errors and socket time-outs; TypeError is what
    # astroquery raises for an empty file.
    return (AstroqueryRemoteServiceError, AstroqueryTimeoutError, RequestException, OSError,
            TypeError)


def _call_service(what, method, data_release, timeout, **kwargs):
    """
    Call an astroquery method without its own cache, as every SDSS call here is made.

    Its failures become `RemoteServiceError`.
    """
    try:
        return method(data_release=data_release, timeout=timeout, cache=False, **kwargs)
    except _service_errors() as exc:
        msg = f"SDSS {what} failed: {type(exc).__name__}: {exc}"
        raise RemoteServiceError(msg) from exc


def _find_field(sdss, coord, radius, data_release, timeout, directory, cache):
    """The (run, rerun, camcol, field) row of the PhotoObj nearest to ``coord``, or None."""
    key = directory / "positions" / _lookup_key(coord, radius.to_value(u.arcsec))
    if cache and key.is_file():
        return Table.read(key, format="ascii.ecsv")[0]
    matches = _call_service("position query", sdss.query_region, data_release, timeout,
                            coordinates=coord, radius=radius, fields=_MATCH_FIELDS)
    if matches is None or len(matches) == 0:
        return None
    missing = [name for name in ("run", "rerun", "camcol", "field") if name not in matches.colnames]
    if missing:
        msg = f"SDSS position query returned no {missing} column(s): {matches.colnames}"
        raise RemoteServiceError(msg)
    if "ra" in matches.colnames and "dec" in matches.colnames:
        found = SkyCoord(np.asarray(matches["ra"]) * u.deg, np.asarray(matches["dec"]) * u.deg)
        best = int(np.argmin(coord.separation(found).to_value(u.arcsec)))
    else:
        best = 0
    row = Table(matches[best : best + 1])
    if cache:
        with atomic_path(key, overwrite=True) as tmp:
            row.write(tmp, format="ascii.ecsv")
    return row[0]


def _get_frames(sdss, row, bands, data_release, timeout, directory, cache, show_progress):
    """Band to HDUList of the SDSS frame of ``row``, from the cache or the SAS."""
    paths = {b: directory / "frames" / _frame_name(b, row["run"], row["camcol"], row["field"])
             for b in bands}
    frames = {}
    missing = [b for b in bands if not (cache and paths[b].is_file())]
    if missing:
        matches = Table(row.table[row.index : row.index + 1])
        hduls = _call_service("image download", sdss.get_images, data_release, timeout,
                              matches=matches, band=missing, show_progress=show_progress)
        if not hduls or len(hduls) != len(missing):
            msg = f"SDSS returned {0 if not hduls else len(hduls)} frames for bands {missing}"
            raise RemoteServiceError(msg)
        for band, hdul in zip(missing, hduls, strict=True):
            frames[band] = hdul
            if cache:
                with atomic_path(paths[band], overwrite=True) as tmp:
                    hdul.writeto(tmp)
    for band in bands:
        if band not in frames:
            with fits.open(paths[band]) as hdul:
                frames[band] = fits.HDUList([hdu.copy() for hdu in hdul])
    return frames


def _to_hdu(hdul, band, coord, cutout_size):
    header = hdul[0].header.copy()
    fix_sdss_header(header, band)
    data = np.asarray(hdul[0].data, dtype=np.float32)
    if cutout_size is not None:
        wcs = WCS(header)
        try:
            cut = Cutout2D(data, coord, cutout_size, wcs=wcs, mode="trim")
        except NoOverlapError:
            msg = f"position {coord.to_string('decimal')} is outside the SDSS frame"
            raise RemoteServiceError(msg) from None
        data = cut.data
        header["CRPIX1"], header["CRPIX2"] = (float(v) for v in cut.wcs.wcs.crpix)
        header["CUTX0"] = (int(cut.xmin_original), "[pix] 0-based x of cutout in frame")
        header["CUTY0"] = (int(cut.ymin_original), "[pix] 0-based y of cutout in frame")
    return fits.PrimaryHDU(data=data, header=header)


def fetch_sdss_images(
    coordinates,
    bands="gri",
    *,
    cutout_size=None,
    radius=None,
    data_release=None,
    timeout=None,
    cache=True,
    cache_dir=None,
    progress_bar=False,
):
    """
    Fetch SDSS frame images (nanomaggies) around sky positions.

    For each position, the nearest ``PhotoObj`` within ``radius`` tells which
    SDSS field covers it (`astroquery.sdss.SDSSClass.query_region`); the
    calibrated ``frame`` images of that field are downloaded from the SDSS
    Science Archive Server (`astroquery.sdss.SDSSClass.get_images`), stored
    in the cache directory (``frame-<band>-<run>-<camcol>-<field>.fits``,
    with the look-up of the position), and read from there on later calls.

    Parameters
    ----------
    coordinates : `~astropy.coordinates.SkyCoord` or str
        One position or an array of positions. A string must hold decimal
        degrees or sexagesimal coordinates (names are not resolved).
    bands : str or sequence of str, optional
        SDSS bands among ``'ugriz'``.
    cutout_size : int, tuple or `~astropy.units.Quantity`, optional
        Cut each frame around the position to this size (as in
        `~astropy.nddata.Cutout2D`; pixels or angle), trimmed at the frame
        edge. By default the whole 2048x1489 frame is returned.
    radius : `~astropy.units.Quantity` or float, optional
        Search radius (arcsec if a float) of the position look-up; defaults to
        ``conf.search_radius`` (arcsec).
    data_release : int, optional
        SDSS data release (a positive integer such as 17); defaults to
        ``conf.data_release``.
    timeout : float, optional
        Network time limit in seconds; defaults to ``conf.timeout``.
    cache : bool, optional
        Read from and write to the cache. With ``False`` everything is
        downloaded again and nothing is stored.
    cache_dir : str or path-like, optional
        Cache directory; defaults to `get_sdss_cache_dir`.
    progress_bar : bool, optional
        Show a progress bar over positions (needs tqdm).

    Returns
    -------
    result : `~galmorphsearch.datasets.MultiBandField` or list of them
        For a scalar position, band to `~astropy.io.fits.PrimaryHDU` of the
        frame (``float32`` nanomaggies, header with the frame's WCS,
        ``FILTER``, ``BUNIT`` and ``RADESYS``/``MJD-OBS`` made standard);
        for an array of positions, a list with one such field per position.
        A position where SDSS has no object within ``radius`` gives an empty
        field and a `~galmorphsearch.utils.exceptions.NoResultsWarning`.
        The field's ``meta`` holds ``position``, ``run``, ``rerun``,
        ``camcol``, ``field`` and ``data_release``.

    Raises
    ------
    ValueError
        If a band is not an SDSS band, ``data_release`` is not a positive
        integer, or ``radius``, ``timeout`` or ``cutout_size`` is not
        positive. All arguments are checked before any network access.
    TypeError
        If ``coordinates``, ``cache``, ``progress_bar`` or ``cache_dir`` has
        the wrong type.
    galmorphsearch.utils.exceptions.RemoteServiceError
        If the SDSS services fail (network error, time-out, error answer,
        unreadable file) or a position lies outside its frame.

    Examples
    --------
    >>> from astropy.coordinates import SkyCoord
    >>> from galmorphsearch.datasets import fetch_sdss_images
    >>> position = SkyCoord(313.1548, -5.7474, unit='deg')  # HCG 88a
    >>> field = fetch_sdss_images(position, cutout_size=256)  # doctest: +REMOTE_DATA
    >>> field['r'].header['BUNIT']  # doctest: +REMOTE_DATA
    'nanomaggy'
    """
    # Every argument is checked here, before any network access.
    bands = parse_bands(bands, _SDSS_BANDS)
    coords = _parse_coordinates(coordinates)
    conf = _conf()
    data_release = _check_data_release(conf.data_release if data_release is None
                                       else data_release)
    timeout = _check_positive("timeout", conf.timeout if timeout is None else timeout, "seconds")
    radius = _check_radius(conf.search_radius * u.arcsec if radius is None else radius)
    cutout_size = _check_cutout_size(cutout_size)
    for name, value in (("cache", cache), ("progress_bar", progress_bar)):
        if not isinstance(value, bool | np.bool_):
            msg = f"{name} must be True or False, got {value!r}"
            raise TypeError(msg)
    if cache_dir is not None and not isinstance(cache_dir, str | os.PathLike):
        msg = f"cache_dir must be a path, got {type(cache_dir).__name__}"
        raise TypeError(msg)
    directory = get_sdss_cache_dir(cache_dir) / f"dr{data_release}"

    from astroquery.sdss import SDSS
    from astroquery.sdss import conf as aq_conf

    scalar = coords.isscalar
    positions = coords.reshape(1) if scalar else coords.ravel()
    results = []
    with (
        aq_conf.set_temp("skyserver_baseurl", conf.skyserver_url),
        aq_conf.set_temp("sas_baseurl", conf.sas_url),
    ):
        for coord in progress_iter(positions, progress_bar, desc="SDSS", total=len(positions)):
            row = _find_field(SDSS, coord, radius, data_release, timeout, directory, cache)
            meta = {"position": coord, "data_release": data_release}
            if row is None:
                warnings.warn(
                    f"SDSS has no object within {radius} of {coord.to_string('decimal')} "
                    f"in DR{data_release}",
                    NoResultsWarning,
                )
                results.append(MultiBandField(meta=meta))
                continue
            frames = _get_frames(SDSS, row, bands, data_release, timeout, directory, cache,
                                 show_progress=progress_bar)
            hdus = {band: _to_hdu(frames[band], band, coord, cutout_size) for band in bands}
            meta.update({name: int(row[name]) for name in ("run", "rerun", "camcol", "field")})
            results.append(MultiBandField(hdus, meta=meta))
    return results[0] if scalar else results
