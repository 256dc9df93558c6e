# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Reading and checking the inputs of `GalaxyCutout` (private)."""

import bz2
import contextlib
import gzip
import io
import itertools
import lzma
import math
import os
import re
import warnings
import zipfile
import zlib

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

__all__ = []

# magic numbers of the compressions that astropy.io.fits opens transparently
# and that carry a checksum of the decompressed data (LZW ``.Z`` has none)
_COMPRESSIONS = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"PK\x03\x04", "zip"),
)

# Decompressed FITS content is held in memory, and a few megabytes of gzip
# can expand to gigabytes (a decompression bomb). A compressed band is
# therefore decompressed in chunks while its FITS headers are followed, and
# refused once it yields more than its HDUs need (header blocks plus
# NAXIS1 x ... x NAXISn x |BITPIX|/8 data bytes each, padded to 2880) plus
# _TRAILING_BYTES, or, whatever its headers say, more than
# _MAX_DECOMPRESSED_BYTES (the same limit applies to the image of a
# tile-compressed HDU). Larger genuine files can be decompressed beforehand:
# an uncompressed file is read as it is.
_MAX_DECOMPRESSED_BYTES = 4 * 2**30
_TRAILING_BYTES = 2**20
_CHUNK_BYTES = 2**20
_BLOCK = 2880  # FITS block size
_CARD = 80  # FITS header card size

# astropy warns about a file shorter than its headers announce, then fails
# (or not, when only the last padding is missing) when the data are read;
# the failure is what is reported
_TRUNCATED = "File may have been truncated"
# band files are opened with checksum=True: data that fail the DATASUM of
# their header are corrupted and refused; a failed CHECKSUM alone (the
# header's own sum) only means that the header was edited, and is ignored
_DATASUM_FAILED = "Datasum verification failed"
_CHECKSUM_FAILED = "Checksum verification failed"


@contextlib.contextmanager
def _reading_fits():
    """The warning filters under which band files are read (see above)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TRUNCATED)
        warnings.filterwarnings("ignore", message=_CHECKSUM_FAILED)
        warnings.filterwarnings("error", message=_DATASUM_FAILED)
        yield


def _damaged(what, exc):
    """The `ValueError` message for a band whose HDU or data cannot be read."""
    if isinstance(exc, MemoryError):
        return (f"{what} is too large to be read into memory "
                f"({_first_line(exc) if str(exc) else 'MemoryError'})")
    if _DATASUM_FAILED in str(exc):
        return (f"{what} is damaged: its image data fail the DATASUM checksum recorded in "
                "its header")
    return f"{what} is truncated or damaged: {type(exc).__name__}: {exc}"


def _describe(band, name):
    """How to name one band input in messages: its file, else its kind."""
    if isinstance(band, (str, os.PathLike)):
        return f"the {name} band file {os.fspath(band)!r}"
    filename = getattr(band, "filename", None)
    path = filename() if callable(filename) else None
    if path:
        return f"the {name} band (from {path!r})"
    return f"the {name} band"


def _wcs_from_header(header, what, shape):
    """
    Build the celestial WCS of a FITS header, or `None` if it has none.

    SDSS frame headers carry the deprecated ``RADECSYS`` keyword and a
    ``DATE-OBS`` that astropy silently normalises; the resulting
    `~astropy.wcs.FITSFixedWarning` only reports these cosmetic fixes, so
    it is ignored here (and only here). A WCS that astropy cannot build
    (an unknown projection code in ``CTYPEn``, inconsistent axes) or that
    cannot map the image centre to the sky and back (a singular matrix)
    raises a `ValueError` naming ``what`` (the band and its file).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header)
    except Exception as exc:  # wcslib errors of every kind: the header is at fault
        ctypes = ", ".join(f"CTYPE{k}={header[f'CTYPE{k}']!r}" for k in (1, 2)
                           if f"CTYPE{k}" in header)
        msg = (f"{what} has a WCS that astropy cannot read"
               + (f" ({ctypes})" if ctypes else "") + f": {_first_line(exc)}")
        raise ValueError(msg) from exc
    if not wcs.has_celestial:
        return None
    wcs = wcs.celestial
    ny, nx = shape
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            world = wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
            back = wcs.world_to_pixel_values(*world)
        usable = bool(np.all(np.isfinite(world)) and np.all(np.isfinite(back)))
    except Exception as exc:  # any wcslib failure means unusable
        msg = (f"{what} has a WCS that cannot map its pixels to the sky: "
               f"{_first_line(exc)}")
        raise ValueError(msg) from exc
    if not usable:
        msg = (f"{what} has a WCS that cannot map its pixels to the sky (the image centre "
               "maps to NaN): check its CRPIX, CDELT/CD/PC and CTYPE keywords")
        raise ValueError(msg)
    return wcs


def _first_line(exc):
    """An exception's text on one line, without wcslib's "ERROR n in f() at line" prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    lines = [line for line in lines if not re.match(r"ERROR \d+ in \S+ at line", line)]
    return " ".join(lines) or type(exc).__name__


def _check_file(path, what):
    """Raise a clear error unless ``path`` names an existing file."""
    if not os.path.exists(path):
        msg = f"the {what} {os.fspath(path)!r} does not exist"
        raise FileNotFoundError(msg)
    if os.path.isdir(path):
        msg = f"the {what} {os.fspath(path)!r} is a directory, not a file"
        raise ValueError(msg)


def _numeric_array(obj, must):
    """``obj`` as a numeric array, else `TypeError` with ``must`` and its type."""
    arr = np.asarray(obj)
    if arr.dtype.kind not in "biuf":
        msg = f"{must}, not {type(obj).__name__}"
        raise TypeError(msg)
    return arr


def _compression(path):
    """The compression of the file ``path`` ('gzip', 'bzip2', 'xz', 'zip') or `None`."""
    with open(path, "rb") as fh:
        magic = fh.read(8)
    for prefix, kind in _COMPRESSIONS:
        if magic.startswith(prefix):
            return kind
    return None


def _size(nbytes):
    """A number of bytes for messages: exact, and in MiB or GiB when large."""
    if nbytes >= 2**30:
        return f"{nbytes} bytes ({nbytes / 2**30:.1f} GiB)"
    if nbytes >= 2**20:
        return f"{nbytes} bytes ({nbytes / 2**20:.1f} MiB)"
    return f"{nbytes} bytes"


def _hdu_bytes(header):
    """
    The size of the data of the HDU with FITS header ``header``, unpadded.

    ``|BITPIX|/8 x GCOUNT x (PCOUNT + NAXIS1 x ... x NAXISn)`` (NAXIS1 left
    out of the product for random groups), or `None` when the header lacks
    or garbles one of these keywords.
    """
    try:
        bitpix = int(header["BITPIX"])
        naxis = int(header["NAXIS"])
        dims = [int(header[f"NAXIS{k}"]) for k in range(1, naxis + 1)]
        pcount = int(header.get("PCOUNT", 0))
        gcount = int(header.get("GCOUNT", 1))
    except (KeyError, TypeError, ValueError):
        return None
    if (bitpix not in (8, 16, 32, 64, -32, -64) or not 0 <= naxis <= 999
            or any(n < 0 for n in dims) or pcount < 0 or gcount < 0):
        return None
    if naxis == 0:
        return 0
    if header.get("GROUPS") is True and dims[0] == 0:
        dims = dims[1:]
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(dims))


class _FitsLayout:
    """
    The HDU layout of a FITS byte stream, followed as it is decompressed.

    Call `feed` with all the bytes received so far. ``described`` is the
    end of the last HDU whose header has been read (header blocks plus
    padded data); ``end`` is set once the stream is known to hold no
    further HDU (the block after the last one is not an ``XTENSION``
    header, or the stream ended); ``broken`` is set when the stream does
    not parse as FITS headers, and ``not_fits`` when it does not even
    start with ``SIMPLE``.
    """

    def __init__(self):
        self.described = 0
        self.end = None
        self.broken = False
        self.not_fits = False
        self._scan = 0  # the next header block to search for the END card

    def feed(self, buffer, eof):
        while self.end is None and not self.broken:
            start = self.described
            if len(buffer) < start + _BLOCK:
                if not eof:
                    return
                if start == 0:
                    self.broken = self.not_fits = True
                else:
                    self.end = start
                return
            first = bytes(buffer[start:start + 8])
            if start == 0 and first != b"SIMPLE  ":
                self.broken = self.not_fits = True
                return
            if start > 0 and first != b"XTENSION":
                self.end = start  # trailing bytes after the last HDU
                return
            stop = self._header_end(buffer)
            if stop is None:
                if eof:
                    self.broken = True
                return
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    header = fits.Header.fromstring(
                        bytes(buffer[start:stop]).decode("ascii", "replace"))
            except Exception:  # a header astropy cannot parse
                self.broken = True
                return
            nbytes = _hdu_bytes(header)
            if nbytes is None:
                self.broken = True
                return
            self.described = self._scan = stop + -(-nbytes // _BLOCK) * _BLOCK

    def _header_end(self, buffer):
        """The end of the header starting at ``described``, or `None` if unseen."""
        while self._scan + _BLOCK <= len(buffer):
            block = self._scan
            self._scan += _BLOCK
            for card in range(block, block + _BLOCK, _CARD):
                if buffer[card:card + 8] == b"END     ":
                    return self._scan
        return None


@contextlib.contextmanager
def _decompressed_stream(path, kind):
    """A binary file object reading the decompressed content of ``path``."""
    if kind == "zip":
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if not names:
                msg = "the archive is empty"
                raise zipfile.BadZipFile(msg)
            with archive.open(names[0]) as stream:
                yield stream
        return
    opener = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}[kind]
    with opener(path, "rb") as stream:
        yield stream


def _decompress(path, kind, what):
    """
    The whole decompressed content of a compressed file, checksums verified.

    astropy decompresses lazily and stops reading once it has the data it
    needs, so that gzip's CRC-32 (stored at the end of the stream) is never
    checked and damaged deflate data decode silently to wrong pixels.
    Reading the stream to its end here makes Python verify every checksum
    (gzip and zip CRC-32, bzip2 block CRCs, xz integrity check).

    The stream is read in chunks while its FITS headers are followed (see
    `_FitsLayout`), and refused with a `ValueError` as soon as it yields
    more than its HDUs need plus ``_TRAILING_BYTES``, or more than
    ``_MAX_DECOMPRESSED_BYTES`` in any case, or its headers describe more
    than that (a decompression bomb). Of a stream that does not start as a
    FITS file only the first block is kept (for astropy's own message),
    the rest being read only to verify its checksum. Running out of
    memory is a `ValueError` naming the file as well.
    """
    layout = _FitsLayout()
    kept = bytearray()
    total = 0
    refusal = None
    try:
        with _decompressed_stream(path, kind) as stream:
            while True:
                chunk = stream.read(_CHUNK_BYTES)
                total += len(chunk)
                if not layout.not_fits:
                    kept += chunk
                layout.feed(kept, eof=not chunk)
                if layout.not_fits:
                    del kept[_BLOCK:]
                refusal = _refusal(layout, total, what)
                if refusal or not chunk:
                    break
        content = None if refusal else bytes(kept)
        kept.clear()
    except MemoryError as exc:
        msg = (f"{what} cannot be decompressed: it does not fit in memory ("
               f"{_size(total)} decompressed so far; {exc or 'MemoryError'})")
        raise ValueError(msg) from exc
    except (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile,
            ValueError) as exc:
        msg = (f"{what} is a damaged {kind} file (its compressed data fail to decompress "
               f"or fail their checksum): {exc or type(exc).__name__}")
        raise ValueError(msg) from exc
    if refusal:
        raise ValueError(refusal)
    return content


def _refusal(layout, total, what):
    """Why a decompressed stream is too large for its FITS headers, or `None` (see above)."""
    advice = ("refused as a possible decompression bomb (or a damaged file); if the file is "
              "genuine, decompress it and give the uncompressed file")
    if layout.described > _MAX_DECOMPRESSED_BYTES:
        return (f"{what}: its FITS headers describe {_size(layout.described)}, more than "
                f"the limit of {_size(_MAX_DECOMPRESSED_BYTES)} on decompressed data: "
                f"{advice}")
    if layout.end is not None and total > layout.end + _TRAILING_BYTES:
        return (f"{what} decompresses to more than {_size(layout.end + _TRAILING_BYTES)} "
                f"while its FITS headers describe {_size(layout.end)}: {advice}")
    if total > _MAX_DECOMPRESSED_BYTES:
        return (f"{what} decompresses to more than {_size(_MAX_DECOMPRESSED_BYTES)} (the "
                f"limit on decompressed data): {advice}")
    return None


def _hdu_data(hdu, what):
    """
    The data of one image HDU as float64 (`None` if it has none).

    Any failure of astropy while reading the data (a file truncated inside
    its data, a damaged tile-compressed HDU, too little memory) raises a
    `ValueError` naming ``what``. A tile-compressed image is refused
    before it is decompressed if it would exceed ``_MAX_DECOMPRESSED_BYTES``
    or if its HCOMPRESS tiles declare other sizes than their own (see
    `_check_hcompress_tiles`), and checked after against the ``ZDATASUM``
    its header may record (see `_check_zdatasum`).
    """
    compressed = isinstance(hdu, fits.CompImageHDU)
    if compressed:
        _check_tile_compressed_size(hdu, what)
        _check_hcompress_tiles(hdu, what)
    try:
        with _reading_fits():
            data = hdu.data
            if data is None:
                return None
            values = np.array(data, dtype=np.float64)
    except Exception as exc:  # whatever astropy raises, the file is at fault
        raise ValueError(_damaged(what, exc)) from exc
    if compressed:
        _check_zdatasum(hdu, data, what)
    return values


def _check_tile_compressed_size(hdu, what):
    """Refuse a tile-compressed image larger than ``_MAX_DECOMPRESSED_BYTES``."""
    try:
        nbytes = math.prod(int(n) for n in hdu.shape) * abs(int(hdu.header["BITPIX"])) // 8
    except Exception:  # a garbled header: astropy reports it when reading the data
        return
    if nbytes > _MAX_DECOMPRESSED_BYTES:
        msg = (f"{what} holds a tile-compressed image of {_size(nbytes)} once decompressed, "
               f"more than the limit of {_size(_MAX_DECOMPRESSED_BYTES)} on decompressed "
               "data: refused as a possible decompression bomb (or a damaged header); if "
               "the file is genuine, decompress it (funpack) and give the uncompressed file")
        raise ValueError(msg)


# an HCOMPRESS tile starts with this code, then its two dimensions (int32)
_HCOMPRESS_MAGIC = b"\xdd\x99"


def _check_hcompress_tiles(hdu, what):
    """
    Check, before decoding, the size that each HCOMPRESS tile declares.

    astropy's HCOMPRESS decoder (from CFITSIO) reads a tile's dimensions
    from the compressed stream itself and writes that many pixels into a
    buffer sized from the header (CFITSIO issue 131): a damaged or crafted
    tile makes it write out of bounds, which corrupts memory and can crash
    the interpreter long before any error could be raised. So every tile
    stream must start with the HCOMPRESS code and declare exactly the
    pixels of its tile, else a `ValueError` names the file and the tile.
    (A file with a ``DATASUM`` on its compressed HDU fails that first,
    when it is opened.) The heap is read through astropy's table of tiles
    (private API): where that is not available (an HDU made in memory, a
    future astropy) the tiles are not checked.
    """
    if getattr(hdu, "compression_type", None) != "HCOMPRESS_1":
        return
    try:
        table = hdu._bintable
        heap = np.asarray(table._get_raw_data(table.header["PCOUNT"], np.uint8,
                                              table._data_offset + table._theap))
        descriptors = np.array(hdu.compressed_data["COMPRESSED_DATA"]).reshape(-1, 2)
        shape = tuple(int(n) for n in hdu.shape)
        tiles = tuple(int(t) for t in hdu.tile_shape)
    except Exception:  # no file behind the HDU, or other astropy internals
        return
    grid = itertools.product(*(range(-(-n // t)) for n, t in zip(shape, tiles, strict=True)))
    for row, (index, (length, offset)) in enumerate(zip(grid, descriptors, strict=False)):
        if length == 0:
            continue  # the tile is stored in another column (GZIP, uncompressed)
        pixels = math.prod(min(t, n - i * t) for n, t, i in zip(shape, tiles, index,
                                                                 strict=True))
        head = heap[offset:offset + min(length, 10)].tobytes()
        nx = int.from_bytes(head[2:6], "big", signed=True) if len(head) == 10 else 0
        ny = int.from_bytes(head[6:10], "big", signed=True) if len(head) == 10 else 0
        if head[:2] != _HCOMPRESS_MAGIC or nx <= 0 or ny <= 0 or nx * ny != pixels:
            msg = (f"{what} is damaged: tile {row + 1} of its HCOMPRESS_1 image "
                   + (f"declares {nx} x {ny} pixels where the tile holds {pixels}"
                      if head[:2] == _HCOMPRESS_MAGIC else "does not start as HCOMPRESS data")
                   + " (refused before decoding: astropy's decoder would write out of bounds)")
            raise ValueError(msg)


def _check_zdatasum(hdu, data, what):
    """
    Check decompressed tile data against the ``ZDATASUM`` of their header.

    ``ZDATASUM`` is the ``DATASUM`` of the image before compression, kept
    by fpack when the original file had one (astropy shows it as the
    ``DATASUM`` of the decompressed HDU's header but does not verify it).
    PLIO and HCOMPRESS tiles carry no checksum of their own and damaged
    ones can decode to wrong pixels without an error; the ``DATASUM`` of
    the compressed HDU itself, when present, is verified on opening
    (``checksum=True``). The comparison is only meaningful for lossless
    compression, so it is made for integer images (not rescaled to
    floats) that are not HCOMPRESS-ed with a non-zero scale, read from a
    file.
    """
    recorded = hdu.header.get("DATASUM")
    if recorded is None or data.dtype.kind not in "iu" or hdu.fileinfo() is None:
        return  # no ZDATASUM, a lossy (float) image, or an HDU made in memory
    if hdu.compression_type == "HCOMPRESS_1" and getattr(hdu, "hcomp_scale", 0):
        return
    try:
        recorded = int(str(recorded).strip())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            computed = int(fits.ImageHDU(data=np.array(data)).add_datasum())
    except Exception:  # a garbled ZDATASUM or an unusual layout: not checked
        return
    if computed != recorded:
        msg = (f"{what} is damaged: its tile-compressed image decompresses to data that "
               f"fail the ZDATASUM checksum recorded in its header ({recorded}, the DATASUM "
               f"of the image before compression; the decompressed data give {computed})")
        raise ValueError(msg)


def _first_image_hdu(hdulist, what):
    """
    The first 2D image HDU of ``hdulist``: its data (float64) and header.

    Also returns the header of the primary HDU when the image is in an
    extension (multi-extension files from DECam or HSC keep keywords such
    as ``FILTER`` there), else `None`.
    """
    hdus = iter(hdulist)  # a lazily opened file reads each header on demand
    primary = None
    while True:
        try:
            with _reading_fits():
                hdu = next(hdus)
        except StopIteration:
            break
        except Exception as exc:  # whatever astropy raises, the file is at fault
            raise ValueError(_damaged(what, exc)) from exc
        if hdu.is_image:
            data = _hdu_data(hdu, what)
            if data is not None and data.ndim == 2:
                return data, hdu.header, primary
        if primary is None:
            primary = hdu.header
    msg = f"{what} contains no 2D image HDU"
    raise ValueError(msg)


@contextlib.contextmanager
def _open_fits(path, what):
    """
    Open a FITS file for reading, as a context manager yielding the HDUList.

    Compressed files are decompressed in full (and their checksums
    verified) first, within the size their FITS headers allow (see
    `_decompress`). The file is opened here and handed to astropy, so
    that it is closed even when astropy fails half-way.
    """
    kind = _compression(path)
    # Closed by the with-block below, whichever of the two it is.
    source = open(path, "rb") if kind is None else io.BytesIO(_decompress(path, kind, what))  # noqa: SIM115
    with source:
        try:
            with _reading_fits():
                hdulist = fits.open(source, checksum=True)
        except Exception as exc:  # OSError, VerifyError, ...: not a FITS file
            if _DATASUM_FAILED in str(exc) or isinstance(exc, MemoryError):
                raise ValueError(_damaged(what, exc)) from exc
            msg = f"{what} is not a readable FITS file: {type(exc).__name__}: {exc}"
            raise ValueError(msg) from exc
        with hdulist:
            yield hdulist


# Keywords that name the filter of an image, in the order they are read
# (BAND: some survey pipelines; FILTNAM: WFPC2 and other HST-style headers).
_FILTER_KEYWORDS = ("FILTER", "BAND", "FILTNAM")

# Filter values: a bare band letter, possibly primed or numbered ("g",
# "g'", "gp", "r2" as HSC's second r filter), also quoted ("'r'"); the
# letter as the first word ("r.00000" Pan-STARRS, "g.MP9401" MegaCam,
# "r DECam SDSS c0002 ..." DECam, "r_SDSS" OmegaCAM) or glued to SDSS
# ("rSDSS", "SDSSr"); upper case or later in the value only next to a
# survey name ("SDSS g", "HSC-R2", "ZTF_g"). Bare upper-case letters ("R",
# "I": Johnson-Cousins) are not SDSS bands, and a value naming two bands
# ("gri", "g r SDSS") names none.
_SURVEY_WORDS = frozenset({"sdss", "sloan", "decam", "des", "hsc", "ps1", "panstarrs", "ztf",
                           "megacam", "megaprime", "omegacam", "kids", "vst", "lsst", "legacy",
                           "skymapper", "atlas"})
_BAND_LETTERS = "ugrizy"
_GLUED_TO_SDSS = re.compile(r"([ugriz])(?:sdss|sloan)|(?:sdss|sloan)([ugriz])")


def _filter_band(value):
    """
    The band letter (one of u, g, r, i, z, y) that a filter keyword value names.

    Returns `None` for a missing, empty or unrecognised value (for example
    Johnson-Cousins ``'R'`` or ``'Halpha'``) or one naming several bands:
    such a keyword says nothing about which SDSS-like band the image is.
    """
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip().strip("'\"").strip()
    if not text:
        return None
    match = re.fullmatch(r"([ugrizy])(?:'|p|prime|\d)?", text)
    if match:
        return match.group(1)
    tokens = [t.rstrip("'") for t in re.split(r"[\s_\-.,:;/()\[\]]+", text) if t]
    if not tokens:
        return None
    lower = [t.lower() for t in tokens]
    glued = {m.group(1) or m.group(2) for m in map(_GLUED_TO_SDSS.fullmatch, lower) if m}
    if glued or any(t in _SURVEY_WORDS for t in lower):
        letters = glued | {t[0] for t in lower if re.fullmatch(r"[ugrizy]\d?", t)}
        return letters.pop() if len(letters) == 1 else None
    if len(tokens[0]) == 1 and tokens[0] in _BAND_LETTERS:
        return tokens[0]
    return None


def _header_filter(*headers):
    """
    The filter keyword of an image, as ``(keyword, value)``.

    ``headers`` (FITS headers or ``meta`` mappings; `None` is skipped) are
    searched in order, each for the keywords of ``_FILTER_KEYWORDS``: the
    first value that names a band (see `_filter_band`) is returned, else
    the first non-empty one, else ``(None, None)``. For an image in a FITS
    extension the headers are its own, then the primary header of its
    file (where DECam and HSC files keep ``FILTER``).
    """
    found = (None, None)
    for header in headers:
        if header is None:
            continue
        for keyword in _FILTER_KEYWORDS:
            try:
                value = header.get(keyword)
            except Exception:  # a meta object without a usable get
                break
            text = "" if value is None else str(value).strip()
            if _filter_band(text) is not None:
                return keyword, text
            if text and found[0] is None:
                found = (keyword, text)
    return found


def _read_band(band, name):
    """
    Return the data, WCS and ``FILTER`` keyword of one band.

    Parameters
    ----------
    band : str, path-like, `~astropy.io.fits.HDUList`, image HDU, NDData or array
        The band image.
    name : str
        Name of the band, used in error messages.

    Returns
    -------
    data : `~numpy.ndarray`
        2D float64 array in native byte order.
    wcs : `~astropy.wcs.WCS` or `None`
        The celestial WCS, if the input carries one.
    info : dict
        ``'what'``: how to name the input in messages (the band and its
        file); ``'filter'`` and ``'filter_keyword'``: the value of the
        filter keyword of its header or meta and the keyword's name (see
        `_header_filter`), or `None`; ``'path'``: the file name, or `None`.

    Raises
    ------
    ValueError
        The band is missing, not 2D, all non-finite; its file is not a
        readable FITS file, is truncated or damaged (including compressed
        data that fail their checksum), decompresses to more than its
        headers describe or than ``_MAX_DECOMPRESSED_BYTES``, or does not
        fit in memory; its WCS is unusable.
    """
    if band is None:
        msg = f"the {name} band is missing: give g, r and i images"
        raise ValueError(msg)
    what = _describe(band, name)
    info = {"what": what, "filter": None, "filter_keyword": None, "path": None}
    header = primary = None
    if isinstance(band, (str, os.PathLike)):
        _check_file(band, f"{name} band file")
        info["path"] = os.fspath(band)
        with _open_fits(band, what) as hdulist:
            data, header, primary = _first_image_hdu(hdulist, what)
            header = header.copy()
            primary = None if primary is None else primary.copy()
    elif isinstance(band, fits.HDUList):
        data, header, primary = _first_image_hdu(band, what)
    elif isinstance(band, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        data, header = _hdu_data(band, what), band.header
        if data is None:
            msg = f"{what} HDU holds no data"
            raise ValueError(msg)
    elif hasattr(band, "data") and hasattr(band, "wcs"):  # NDData, CCDData
        data = np.array(band.data, dtype=np.float64)
        info["filter_keyword"], info["filter"] = _header_filter(getattr(band, "meta", None))
    else:
        arr = _numeric_array(band, f"the {name} band must be a FITS file name, an HDU, an "
                                   "NDData or a numeric array")
        data = np.array(arr, dtype=np.float64)
    if data.ndim != 2:
        msg = f"the {name} band must be a 2D image, got an array of shape {data.shape}"
        raise ValueError(msg)
    if header is not None:
        wcs = _wcs_from_header(header, what, data.shape)
        info["filter_keyword"], info["filter"] = _header_filter(header, primary)
    else:
        wcs = getattr(band, "wcs", None)
    if not np.isfinite(data).any():
        msg = f"the {name} band holds no finite pixel (all NaN or inf)"
        raise ValueError(msg)
    return data, wcs, info


def _same_grid(wcs1, wcs2, shape, tol=0.1):
    """Whether two WCSs map the corners and centre of ``shape`` to the same sky."""
    ny, nx = shape
    x = np.array([0.0, nx - 1.0, 0.0, nx - 1.0, (nx - 1) / 2])
    y = np.array([0.0, 0.0, ny - 1.0, ny - 1.0, (ny - 1) / 2])
    try:
        world = wcs1.pixel_to_world_values(x, y)
        x2, y2 = wcs2.world_to_pixel_values(*world)
    except Exception:  # any failure means the grids are not comparable
        return False
    return bool(np.all(np.hypot(np.asarray(x2) - x, np.asarray(y2) - y) < tol))


# file names of FITS images, compressed or not (Pillow reads plain 2D FITS
# files as greyscale, which from_image must not take for a colour image)
_FITS_NAME = re.compile(r"\.(fits?|fts|fz)(\.(gz|bz2|xz|zip|z))?$", re.IGNORECASE)
_FITS_MAGIC = b"SIMPLE  ="


def _refuse_fits(what):
    msg = (f"{what} is a FITS image: from_image takes a rendered colour image (a JPEG, PNG or "
           "TIFF file, a PIL image, or an (ny, nx, 3) array in display order); give the g, "
           "r and i FITS bands to GalaxyCutout(g, r, i, position) instead")
    raise ValueError(msg)


def _is_fits_file(path):
    if _FITS_NAME.search(os.fspath(path)):
        return True
    with open(path, "rb") as fh:
        return fh.read(len(_FITS_MAGIC)) == _FITS_MAGIC


def _open_image(path, what):
    """
    Open and load an image file with PIL; every failure is a `ValueError`.

    An image larger than ``PIL.Image.MAX_IMAGE_PIXELS`` (where PIL warns of
    a possible decompression bomb, and refuses at twice that size) is
    refused whatever the warning filters say.
    """
    from PIL import Image

    pil = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil = Image.open(path)
            pil.load()
    except Exception as exc:  # UnidentifiedImageError, truncated data, ...
        if pil is not None:
            pil.close()
        if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
            msg = (f"{what} is refused as a possible decompression bomb: {exc} (if the image "
                   "is genuine, raise PIL.Image.MAX_IMAGE_PIXELS)")
        else:
            msg = f"{what} is not an image file that PIL can read: {exc}"
        raise ValueError(msg) from exc
    return pil


def _pil_to_array(pil, what="the PIL image"):
    """
    A PIL image as an (ny, nx, 3) or (ny, nx, 4) array.

    * 8-bit modes (L, P, RGB, CMYK, ...) give uint8 RGB; greyscale is
      repeated in the three channels;
    * modes with transparency (RGBA, LA, PA, P with a transparent colour)
      give uint8 RGBA, whose alpha channel `_read_colour_image` turns into
      missing pixels where it is 0;
    * 16-bit greyscale images (PNG opens them in mode ``'I;16'`` or
      ``'I'``) are scaled by 1/65535, not clipped to 8 bits as
      ``convert('RGB')`` would (which turns everything above 255 white);
    * floating-point images (mode ``'F'``: float TIFF) are taken as grey
      intensities when they lie in [0, 1] and refused otherwise, instead
      of being clipped to 0..255 (which turns flux values black);
    * FITS images are refused (they are bands, not colour images).
    """
    if pil.format == "FITS":
        _refuse_fits(what)
    try:
        mode = pil.mode
        if mode.startswith("I;16") or mode == "I":
            arr = np.asarray(pil).astype(np.float64)
            if arr.size and (arr.min() < 0 or arr.max() > 65535):
                msg = (f"{what}: {mode!r} images must hold 16-bit values (0..65535), got "
                       f"{arr.min():g}..{arr.max():g}")
                raise ValueError(msg)
            return np.repeat((arr / 65535.0)[..., None], 3, axis=-1)
        if mode == "F":
            arr = np.asarray(pil).astype(np.float64)
            finite = np.isfinite(arr)
            if finite.any() and (arr[finite].min() < 0 or arr[finite].max() > 1):
                msg = (f"{what} holds floating-point values from {arr[finite].min():g} to "
                       f"{arr[finite].max():g} (mode 'F'): from_image takes display "
                       "intensities in [0, 1]; rescale the image to [0, 1], or give linear "
                       "flux images (FITS bands) to GalaxyCutout(g, r, i, position)")
                raise ValueError(msg)
            return np.repeat(arr[..., None], 3, axis=-1)
        if "A" in mode or mode in ("RGBa", "La") or "transparency" in pil.info:
            return np.asarray(pil.convert("RGBA"))
        return np.asarray(pil.convert("RGB"))
    except ValueError:
        raise
    except Exception as exc:  # a mode PIL cannot convert
        msg = f"{what} (mode {pil.mode!r}) cannot be converted to RGB: {exc}"
        raise ValueError(msg) from exc


def _read_colour_image(image):
    """
    Return a colour image as an (ny, nx, 3) float64 array in [0, 1].

    Parameters
    ----------
    image : str, path-like, `PIL.Image.Image` or array
        JPEG/PNG/TIFF file, PIL image, or (ny, nx, 3) or (ny, nx, 4) array
        of uint8 (0..255), uint16 (0..65535) or floats in [0, 1]. Pixels
        whose alpha is 0 (fully transparent) are missing data (NaN); the
        alpha channel is otherwise dropped. Greyscale image files are
        repeated in the three channels (16-bit ones scaled to [0, 1]).
        FITS files are refused.

    Returns
    -------
    rgb : `~numpy.ndarray`
        (ny, nx, 3) float64 array in [0, 1], NaN where transparent.
    """
    from PIL import Image

    what = "the image"
    if isinstance(image, (str, os.PathLike)):
        _check_file(image, "image file")
        what = f"the image file {os.fspath(image)!r}"
        if _is_fits_file(image):
            _refuse_fits(what)
        pil = _open_image(image, what)
        with pil:
            arr = _pil_to_array(pil, what)
    elif isinstance(image, Image.Image):
        what = "the PIL image"
        try:
            image.load()
        except Exception as exc:  # truncated or damaged image data
            msg = f"{what} cannot be read: {exc}"
            raise ValueError(msg) from exc
        arr = _pil_to_array(image, what)
    else:
        arr = _numeric_array(image, "the image must be a file name, a PIL image or a numeric "
                                    "array")
        if arr.dtype.kind == "b":
            msg = ("a boolean array is not a colour image: give uint8 (0..255), uint16 "
                   "(0..65535) or floats in [0, 1]")
            raise TypeError(msg)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        hint = ""
        if arr.ndim == 2:
            hint = ("; this is a single-band image: for a grey image stack it into three "
                    "channels (np.dstack([a, a, a])), for a FITS band use "
                    "GalaxyCutout(g, r, i, position)")
        elif arr.ndim == 3 and arr.shape[0] in (3, 4):
            hint = "; for a channels-first array use np.moveaxis(a, 0, -1)"
        msg = (f"a colour image must have shape (ny, nx, 3) or (ny, nx, 4), got "
               f"{arr.shape}{hint}")
        raise ValueError(msg)
    if arr.dtype.kind in "iu":
        top = 65535 if arr.dtype == np.uint16 else 255
        if arr.min() < 0 or arr.max() > top:
            msg = (f"integer colour images must hold values in 0..{top} ({arr.dtype}), got "
                   f"{arr.min()}..{arr.max()}")
            raise ValueError(msg)
        values = arr.astype(np.float64) / top
    else:
        values = arr.astype(np.float64)
        finite = np.isfinite(values[..., :3])
        if not finite.any():
            msg = "the colour image holds no finite pixel (all NaN or inf)"
            raise ValueError(msg)
        colours = values[..., :3][finite]
        if colours.min() < 0 or colours.max() > 1:
            msg = (f"float colour images must hold values in [0, 1], got "
                   f"{colours.min():g}..{colours.max():g}; divide 0..255 data by 255 or "
                   "pass it as uint8")
            raise ValueError(msg)
    rgb = values[..., :3]
    if values.shape[2] == 4:
        transparent = values[..., 3] == 0
        if transparent.all():
            msg = (f"{what} is fully transparent (alpha 0 everywhere): it holds no data; "
                   "drop the fourth channel if it is not an alpha channel")
            raise ValueError(msg)
        if transparent.any():
            rgb = rgb.copy()
            rgb[transparent] = np.nan
    if min(rgb.shape[:2]) < 8:
        msg = f"the colour image is too small ({rgb.shape[1]}x{rgb.shape[0]} pixels)"
        raise ValueError(msg)
    return rgb
