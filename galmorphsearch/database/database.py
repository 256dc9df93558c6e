# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
`LatentDatabase`: the latent vectors of galaxies of known morphology, with
the provenance needed to search them (Seo et al. 2023, section 2.4).
"""

import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Column, MaskedColumn, Table, vstack
from astropy.time import Time

from ..latents import (
    ArrayLatents,
    LatentHasher,
    database_h_similarity,
    latent_hash,
    lathash_mismatch,
    storage_dtype,
)
from ..utils import (
    DEFAULT_LOCK_TIMEOUT,
    CatalogFormatError,
    DatabaseFormatError,
    EncoderMismatchError,
    GalMorphSearchWarning,
    file_lock,
)
from ._fits import (
    fits_latent_column,
    fits_layout,
    lattype_of,
    native_float32,
    read_fits,
    read_fits_catalog,
    write_fits,
    write_fits_streaming,
)
from ._hdf5 import is_hdf5, read_hdf5, write_hdf5
from .sources import FITSLatents, HDF5Latents

__all__ = ["LatentDatabase", "STANDARD_COLUMNS", "REQUIRED_KEYWORDS"]

#: Columns every database has, in this order, before any carried columns.
STANDARD_COLUMNS = ("objid", "ra", "dec", "morphology", "type_index", "catalog")

#: Columns computed by the database, after any carried columns.
_COMPUTED_COLUMNS = ("h_similarity", "latent", "background_latent")

_CATALOG_COLUMNS = ("objid", "ra", "dec", "morphology", "type_index")

#: Header keywords every database file has (besides the preprocessing ones).
REQUIRED_KEYWORDS = ("ENCODER", "ENCARCH", "ENCHASH", "INSIZE", "LATDIM", "SCHEME",
                     "GMSVERS", "DATE", "HSIMMEAN", "HSIMSTD", "NROWS")

_ENCODER_KEYWORDS = ("ENCODER", "ENCARCH", "ENCHASH", "INSIZE", "LATDIM")

_COMMENTS = {
    "ENCODER": "name of the encoder that made the latents",
    "ENCARCH": "encoder architecture",
    "ENCHASH": "sha256 (16 hex) of the encoder weights",
    "INSIZE": "[pix] encoder input image size",
    "LATDIM": "length of the latent vectors",
    "ENCMODE": "encoder input mode (rgb, grey, +residual)",
    "ENCTRAIN": "how the encoder was trained",
    "SCHEME": "morphology scheme of the morphology column",
    "GMSVERS": "galmorphsearch version that wrote the table",
    "DATE": "UTC creation date of the database",
    "HSIMMEAN": "[%] mean H-similarity within the database",
    "HSIMSTD": "[%] std of the H-similarity within the database",
    "HSIMN": "galaxies with a defined H-similarity",
    "NROWS": "number of galaxies",
    "LATTYPE": "latents stored as float16 bits in int16 columns",
    "LATHASH": "sha256 (16 hex) of the latent column as stored",
}

_DESCRIPTIONS = {
    "objid": "identifier in the source catalog",
    "ra": "right ascension (ICRS)",
    "dec": "declination (ICRS)",
    "morphology": "morphological type in the scheme SCHEME",
    "type_index": "position of the type in the scheme's ordered sequence",
    "catalog": "name of the source catalog",
    "h_similarity": "highest Sp (percent) of the galaxy against the rest of the database",
    "latent": "latent vector of the galaxy image",
    "background_latent": "latent vector of the galaxy's background patch",
}

# Header keywords that are ours or FITS's, never preprocessing parameters.
_RESERVED_KEYWORDS = {*REQUIRED_KEYWORDS, "HSIMN", "ENCMODE", "ENCTRAIN", "HDUVERS", "ORIGIN",
                      "EXTNAME", "CHECKSUM", "DATASUM", "COMMENT", "HISTORY", "LATTYPE",
                      "LATHASH"}

# Keywords that describe the latents as stored in a file.
_STORAGE_KEYWORDS = ("LATTYPE", "LATHASH")

_LATENT_COLUMNS = ("latent", "background_latent")

#: File formats of `LatentDatabase.write`, by file name suffix.
_SUFFIX_FORMATS = {".h5": "hdf5", ".hdf5": "hdf5", ".he5": "hdf5"}


def _package_version():
    from .. import __version__

    return __version__


def _few(values, n=5):
    values = [str(v) for v in values]
    text = ", ".join(values[:n])
    return text + (f" (and {len(values) - n} more)" if len(values) > n else "")


def _scheme_name(scheme):
    return getattr(scheme, "name", scheme)


class LatentDatabase:
    """
    A table of galaxies of known morphology with their latent vectors.

    A latent database is what a `~galmorphsearch.search.SimilaritySearcher`
    searches: for every galaxy, its catalog identity and morphology, the
    latent vector of its image and the latent vector of its background
    patch (needed for the similarity :math:`S_p`), together with the
    provenance of the latents (encoder name, weights hash, input size,
    preprocessing parameters, package version) in flat FITS keywords.
    Build one with `build`, save it with `write` and load it with `read`.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Columns ``objid``, ``ra``, ``dec`` (degrees), ``morphology``,
        ``type_index``, ``catalog``, any carried columns, ``latent`` (N, D)
        and ``background_latent`` (N, D); ``meta`` with at least the
        encoder keywords ``ENCODER``, ``ENCARCH``, ``ENCHASH``, ``INSIZE``,
        ``LATDIM`` and ``SCHEME``. The H-similarity column and keywords
        (``h_similarity``, ``HSIMMEAN``, ``HSIMSTD``), ``NROWS``,
        ``GMSVERS`` and ``DATE`` are computed or filled in when absent.
    copy : bool, optional
        Copy the table (the default) rather than keep a reference to it.

    Raises
    ------
    ValueError
        If columns or keywords are missing, the latents do not have the
        shape ``LATDIM`` says, hold NaN or infinite values, or objids are
        repeated.

    See Also
    --------
    galmorphsearch.search.SimilaritySearcher

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import Table
    >>> from galmorphsearch.database import LatentDatabase
    >>> rng = np.random.default_rng(0)
    >>> table = Table({"objid": [1, 2, 3], "ra": [10.0, 11.0, 12.0],
    ...                "dec": [1.0, 2.0, 3.0], "morphology": ["Er", "Sb", "SBc"],
    ...                "type_index": [0, 5, 10], "catalog": ["demo"] * 3,
    ...                "latent": rng.normal(size=(3, 4)).astype(np.float32),
    ...                "background_latent": np.zeros((3, 4), np.float32)})
    >>> table.meta.update(ENCODER="demo", ENCARCH="resnet18", ENCHASH="0123456789abcdef",
    ...                   INSIZE=64, LATDIM=4, SCHEME="gz2")
    >>> db = LatentDatabase(table)
    >>> len(db), db.latents.shape, db.latents.dtype
    (3, (3, 4), dtype('float32'))
    """

    def __init__(self, table, *, copy=True):
        if not isinstance(table, Table):
            msg = f"LatentDatabase needs an astropy Table; got {type(table).__name__}."
            raise TypeError(msg)
        table = Table(table, copy=copy)
        table.meta = dict(table.meta)
        self._sources = None
        self._path = None
        self._lathash = None
        self._table = self._validate(table)

    # ------------------------------------------------------------------
    # validation
    @staticmethod
    def _validate(table, convert=True, trusted=False, sources=None):
        # ``sources``: latent columns left in a file (out-of-core databases),
        # already checked for NaN (or checked as they are read).
        sources = sources or {}
        missing = [name for name in (*STANDARD_COLUMNS, *_LATENT_COLUMNS)
                   if name not in table.colnames and name not in sources]
        if missing:
            msg = f"The database table lacks the column(s) {', '.join(missing)}."
            raise ValueError(msg)
        meta = table.meta
        if not trusted:
            # What a file says about its stored latents does not describe a
            # table handed in (it may have been edited).
            for key in _STORAGE_KEYWORDS:
                meta.pop(key, None)
        missing = [key for key in (*_ENCODER_KEYWORDS, "SCHEME") if key not in meta]
        if missing:
            msg = f"The database table meta lacks the keyword(s) {', '.join(missing)}."
            raise ValueError(msg)
        bad = [key for key in meta if len(str(key)) > 8 or str(key) != str(key).upper()]
        if bad:
            msg = (f"Database meta keywords must be upper case and at most 8 characters "
                   f"(FITS); got {_few(bad)}.")
            raise ValueError(msg)
        n = len(table)
        latdim = int(meta["LATDIM"])
        for name, source in sources.items():
            if source.dim != latdim or len(source) != n:
                msg = (f"Column {name!r} must have shape (N={n}, LATDIM={latdim}); "
                       f"got {source.shape}.")
                raise ValueError(msg)
        for name in _LATENT_COLUMNS:
            if name in sources:
                continue
            col = table[name]
            if col.ndim != 2 or col.shape[1] != latdim:
                msg = (f"Column {name!r} must have shape (N, LATDIM={latdim}); "
                       f"got {col.shape}.")
                raise ValueError(msg)
            if isinstance(col, MaskedColumn) and np.any(col.mask):
                msg = f"Column {name!r} has masked values."
                raise ValueError(msg)
            if not np.issubdtype(col.dtype, np.floating):
                msg = f"Column {name!r} must hold floats; got {col.dtype}."
                raise ValueError(msg)
            bad_rows = _non_finite_rows(col)
            if bad_rows.size:
                msg = (f"Column {name!r} has NaN or infinite values in {bad_rows.size} "
                       f"row(s), objid {_few(np.asarray(table['objid'])[bad_rows])}.")
                raise ValueError(msg)
        _check_unique_objids(table["objid"])
        _check_types_and_positions(table, meta["SCHEME"])
        if convert:
            # Read from a file, float16 latents stay float16 (native); any
            # other table gets native float32 latents.
            keep = (np.float32, np.float16) if trusted else (np.float32,)
            for name in _LATENT_COLUMNS:
                if name in sources:
                    continue
                dtype = table[name].dtype
                if dtype not in keep or not dtype.isnative:
                    target = dtype if dtype in keep else np.float32
                    values = np.ascontiguousarray(np.asarray(table[name]),
                                                  dtype=np.dtype(target).newbyteorder("="))
                    table[name] = _latent_column(values, name)
        # The H-similarity statistics describe this exact set of galaxies:
        # they are recomputed for any table handed in (a slice or an edited
        # table would otherwise keep the statistics of the database it came
        # from), and trusted only as read back from a checksummed file.
        if not trusted or "h_similarity" not in table.colnames or any(
                key not in meta for key in ("HSIMMEAN", "HSIMSTD")):
            _set_h_similarity(table)
        table = _order_columns(table)
        meta = table.meta
        meta["NROWS"] = n
        meta.setdefault("GMSVERS", _package_version())
        meta.setdefault("DATE", _now())
        return table

    # ------------------------------------------------------------------
    # construction
    @classmethod
    def build(cls, catalog, images, encoder, *, carry=(), catalog_name=None, scheme=None,
              batch_size=64, progress_bar=False):
        """
        Encode the cutouts of catalog galaxies into a new database.

        Parameters
        ----------
        catalog : `~astropy.table.Table`
            Catalog rows with at least ``objid``, ``ra``, ``dec`` (degrees),
            ``morphology`` and ``type_index``, as returned by the readers of
            `galmorphsearch.catalogs`.
        images : list of `~galmorphsearch.preprocessing.GalaxyCutout`, or `CutoutSet`
            One cutout per catalog row, in the same order. The latent
            comes from each cutout's image and the background latent from
            its background patch.
        encoder : `~galmorphsearch.model.Encoder`
            The encoder. Only its ``name``, ``architecture``,
            ``input_size``, ``latent_dim``, ``weights_hash``, ``metadata``
            and ``encode`` are used.
        carry : sequence of str, optional
            Further catalog columns to keep in the database (returned by
            searches next to the standard columns).
        catalog_name : str, optional
            Name of the source catalog, stored in the ``catalog`` column.
            Default: the catalog's ``CATALOG`` meta keyword, else
            ``'unknown'``.
        scheme : str or `~galmorphsearch.catalogs.MorphologyScheme`, optional
            The morphology scheme. Default: the catalog's ``SCHEME`` meta
            keyword; one of the two is required.
        batch_size : int, optional
            Images encoded at once.
        progress_bar : bool, optional
            Show progress bars while encoding.

        Returns
        -------
        database : `LatentDatabase`

        Raises
        ------
        ~galmorphsearch.utils.CatalogFormatError
            If the catalog lacks a standard or carried column.
        ValueError
            If the number of images differs from the number of catalog
            rows, no scheme is known, objids repeat, or the encoder returns
            latents of the wrong shape or with NaN values.
        """
        carry = _check_catalog(catalog, carry)
        from ..preprocessing import CutoutSet

        if isinstance(images, CutoutSet):
            # Stored cutouts: the colour images and background patches are
            # arrays, and the preprocessing keywords are the set's.
            sources = (images.images, images.backgrounds)
            keyword_sources = [images]
        else:
            if not isinstance(images, (list, tuple)):
                images = [images] if hasattr(images, "image") else list(images)
            sources = (images, images)
            keyword_sources = images
        if len(images) != len(catalog):
            msg = (f"The catalog has {len(catalog)} rows but {len(images)} images were given; "
                   "they must be aligned one to one.")
            raise ValueError(msg)
        if len(catalog) == 0:
            msg = "Cannot build a latent database from an empty catalog."
            raise ValueError(msg)
        scheme = _resolve_scheme(scheme, catalog)
        _check_unique_objids(catalog["objid"])

        kwargs = {"batch_size": batch_size, "progress_bar": progress_bar}
        latents = _check_latents(encoder.encode(sources[0], **kwargs), encoder, "latents",
                                 catalog)
        if sources[1] is sources[0]:
            background = encoder.encode(sources[1], background=True, **kwargs)
        else:
            background = encoder.encode(sources[1], **kwargs)
        background = _check_latents(background, encoder, "background latents", catalog)

        table = _catalog_table(catalog, carry, catalog_name)
        table["latent"] = _latent_column(latents, "latent")
        table["background_latent"] = _latent_column(background, "background_latent")
        table.meta = _build_meta(encoder, keyword_sources, scheme)
        return cls(table, copy=False)

    @classmethod
    def _from_sources(cls, table, sources):
        """
        A database whose latents stay in latent sources (out of core).

        ``table`` holds every other column, the H-similarity column and
        keywords included (they are trusted, not recomputed); ``sources``
        maps ``latent`` and ``background_latent`` to latent sources that
        have been checked for NaN and infinite values.
        """
        database = cls.__new__(cls)
        database._sources = dict(sources)
        database._path = None
        database._lathash = None
        database._table = cls._validate(table, trusted=True, sources=database._sources)
        return database

    # ------------------------------------------------------------------
    # accessors
    @property
    def table(self):
        """
        The database as an `~astropy.table.Table` (latents in columns).

        For a database read with ``memmap=True`` the latents stay in the
        file: the table then holds every column but ``latent`` and
        ``background_latent`` (see `latent_source` and `out_of_core`).
        """
        return self._table

    @property
    def meta(self):
        """The header keywords (``table.meta``)."""
        return self._table.meta

    @property
    def path(self):
        """
        The file the database was read from (`read`), or None.

        A search index is saved beside this file. It is None for a database
        built or merged in memory, and after `append`, when the galaxies no
        longer match the file.
        """
        return getattr(self, "_path", None)

    def __len__(self):
        return len(self._table)

    def __repr__(self):
        meta = self.meta
        return (f"<LatentDatabase: {len(self)} galaxies, scheme {meta['SCHEME']!r}, "
                f"encoder {meta['ENCODER']!r} ({meta['ENCARCH']}, {meta['INSIZE']} px, "
                f"latent {meta['LATDIM']}, weights {meta['ENCHASH']})>")

    @property
    def latents(self):
        """
        Latent vectors, (N, D) native-endian float32, in memory.

        For float16 latents and for a database read with ``memmap=True``
        this is a new array on each access (for the latter, read from the
        file: the whole column in memory). An out-of-core search reads
        `latent_source` instead.
        """
        if self._sources:
            return self._sources["latent"].read()
        return native_float32(self._table["latent"])

    @property
    def background_latents(self):
        """Background-patch latent vectors, (N, D) native-endian float32 (see `latents`)."""
        if self._sources:
            return self._sources["background_latent"].read()
        return native_float32(self._table["background_latent"])

    @property
    def latent_source(self):
        """
        The latents as a latent source, for chunked (out-of-core) search.

        An `~galmorphsearch.database.FITSLatents` or
        `~galmorphsearch.database.HDF5Latents` reading the file for a
        database read with ``memmap=True``, else an
        `~galmorphsearch.latents.ArrayLatents` over the latent column (no
        copy). `~galmorphsearch.search.SimilaritySearcher` searches it; see
        also `~galmorphsearch.latents.exact_neighbours`.
        """
        return self._source("latent")

    @property
    def background_latent_source(self):
        """The background-patch latents as a latent source (see `latent_source`)."""
        return self._source("background_latent")

    def _source(self, name):
        if self._sources:
            return self._sources[name]
        return ArrayLatents(self._table[name], check_finite=False)

    @property
    def latent_dtype(self):
        """
        The precision of the latents, ``float32`` or ``float16`` (a `numpy.dtype`).

        Float16 only for a database read from a file written with
        ``dtype='float16'``; `latents` are float32 in any case.
        """
        return self._source("latent").dtype

    @property
    def out_of_core(self):
        """Whether the latents stay in the file (read with ``memmap=True``)."""
        return bool(self._sources)


    @property
    def lathash(self):
        """
        The short sha256 of the latents as stored (the ``LATHASH`` keyword).

        The first 16 hexadecimal digits of the sha256 of the ``latent``
        column in row order, as little-endian float32 or float16 (the
        stored precision, `latent_dtype`). Every file written by `write`
        records it in its ``LATHASH`` keyword, so a search index can be
        checked against a database cheaply. For a database read from a
        file it is the recorded value, verified against the latents (see
        `read`; computed once, with a pass over the latents, for files
        written before it was recorded); otherwise it is computed on each
        access. Like ``LATTYPE``, it describes the file and is not kept in
        `meta`.

        Raises
        ------
        ~galmorphsearch.utils.DatabaseFormatError
            For an HDF5 file read with ``memmap=True`` (whose latents are
            only hashed by the first complete pass over them) whose latents
            do not match the ``LATHASH`` it records.
        """
        value = self._lathash
        if value is None:
            # A file source checks the value its file records against the
            # latents (one pass, once); an array is hashed.
            value = self.latent_source.lathash
            if self._path is not None:
                self._lathash = value
        return value

    @property
    def h_similarity(self):
        """Each galaxy's H-similarity within the database, (N,) float64 (NaN if undefined)."""
        col = self._table["h_similarity"]
        if isinstance(col, MaskedColumn):
            col = col.filled(np.nan)
        return np.asarray(col, dtype=np.float64)

    @property
    def h_similarity_mean(self):
        """Mean H-similarity of the database galaxies (``HSIMMEAN``; NaN if undefined)."""
        return _float_or_nan(self.meta.get("HSIMMEAN"))

    @property
    def h_similarity_std(self):
        """Standard deviation of the H-similarity (``HSIMSTD``; NaN if undefined)."""
        return _float_or_nan(self.meta.get("HSIMSTD"))

    @property
    def scheme(self):
        """Name of the morphology scheme (``SCHEME``)."""
        return self.meta["SCHEME"]

    @property
    def encoder_info(self):
        """
        What identifies the encoder that made the latents.

        Returns
        -------
        info : dict
            ``name``, ``architecture``, ``weights_hash``, ``input_size``,
            ``latent_dim``, ``input_mode`` and ``training`` (the last two
            ``'rgb'`` and ``'unknown'`` for databases written before they
            were recorded).
        """
        meta = self.meta
        return {"name": str(meta["ENCODER"]), "architecture": str(meta["ENCARCH"]),
                "weights_hash": str(meta["ENCHASH"]), "input_size": int(meta["INSIZE"]),
                "latent_dim": int(meta["LATDIM"]),
                "input_mode": str(meta.get("ENCMODE", "rgb")),
                "training": str(meta.get("ENCTRAIN", "unknown"))}

    def summary(self, name=None):
        """
        What the database holds, as a few lines of text.

        The number of galaxies, the precision and ``LATHASH`` of the
        latents, the encoder (and which shipped pretrained encoder it is,
        if any), the scheme and the build, the H-similarity statistics, the
        count of each type, the columns and the header keywords. This is
        what ``galmorphsearch info`` prints.

        Parameters
        ----------
        name : str, optional
            How the first line names the database (default: its `path`,
            or nothing for a database that was not read from a file).

        Returns
        -------
        text : str
            The lines, joined by newlines (no final newline).

        Examples
        --------
        >>> from galmorphsearch.database import LatentDatabase
        >>> database = LatentDatabase.read('db.fits', memmap=True)  # doctest: +SKIP
        >>> print(database.summary())  # doctest: +SKIP
        db.fits: latent database of 12 galaxies
          latents    float32 in the file; LATHASH 3f5e0c2a9b1d4e67
          ...
        """
        from ..model import identify_pretrained

        meta = self.meta
        if name is None and self.path is not None:
            name = str(self.path)
        head = f"{name}: " if name is not None else ""
        lines = [f"{head}latent database of {len(self)} galaxies",
                 f"  latents    {self.latent_dtype} in the file; LATHASH {self.lathash}"]
        shipped = identify_pretrained(str(meta.get("ENCHASH")))
        lines.append(f"  encoder    {meta.get('ENCODER')} ({meta.get('ENCARCH')}, "
                     f"{meta.get('INSIZE')} px, {meta.get('LATDIM')} latents, "
                     f"weights hash {meta.get('ENCHASH')}"
                     + (f"; the shipped pretrained encoder {shipped!r})" if shipped else ")"))
        lines.append(f"  scheme     {meta.get('SCHEME')}; built {meta.get('DATE')} with "
                     f"galmorphsearch {meta.get('GMSVERS')}")
        mean, std = self.h_similarity_mean, self.h_similarity_std
        if mean is not None and np.isfinite(mean):
            lines.append(f"  H-similarity {mean:.2f} +/- {std:.2f} (no similar galaxy "
                         f"below {mean - std:.2f})")
        morphology = np.asarray(self.table["morphology"], dtype=str)
        types, counts = np.unique(morphology, return_counts=True)
        lines.append("  types      " + ", ".join(f"{t}={c}" for t, c in
                                                 zip(types, counts, strict=True)))
        lines.append("  columns    " + ", ".join(self.table.colnames))
        others = {k: v for k, v in meta.items() if k not in ("COMMENT", "HISTORY")}
        lines.append("  keywords   " + ", ".join(f"{k}={v}" for k, v in others.items()))
        return "\n".join(lines)

    # ------------------------------------------------------------------
    # provenance
    def check_encoder(self, encoder):
        """
        Make sure ``encoder`` is the encoder that built this database.

        Latents of different encoders live in different spaces: searching
        a database with another encoder's latents gives meaningless
        distances, so any difference in the weights hash, architecture,
        input size or latent size is an error. The encoder's display name
        is not compared.

        Parameters
        ----------
        encoder : `~galmorphsearch.model.Encoder` or `LatentDatabase`
            The encoder (or another database, whose encoder is compared).

        Raises
        ------
        ~galmorphsearch.utils.EncoderMismatchError
            Naming every difference.
        """
        other = encoder.encoder_info if isinstance(encoder, LatentDatabase) else {
            "weights_hash": str(encoder.weights_hash),
            "architecture": str(encoder.architecture),
            "input_size": int(encoder.input_size),
            "latent_dim": int(encoder.latent_dim),
            "input_mode": str(getattr(encoder, "input_mode", "rgb")),
            "name": str(getattr(encoder, "name", "?")),
        }
        label = "the other database" if isinstance(encoder, LatentDatabase) else "the encoder"
        _compare_encoders(self.encoder_info, other, "the database", label)

    # ------------------------------------------------------------------
    # input / output
    def write(self, path, overwrite=False, *, format=None, dtype=None,
              lock_timeout=DEFAULT_LOCK_TIMEOUT):
        """
        Write the database as a FITS (default) or HDF5 file.

        A FITS file holds an empty primary HDU and the binary table HDU
        ``LATENTS`` (with ``HDUVERS``, ``ORIGIN``, the database keywords,
        ``LATHASH`` and ``CHECKSUM``/``DATASUM``). An HDF5 file holds the
        latents in chunked, Fletcher-32 checksummed datasets of their own,
        one dataset per other column and the same keywords as root
        attributes (see :ref:`database-hdf5`). Either is written to a
        temporary file beside ``path`` and renamed into place, so an
        interrupted write leaves any existing file untouched (and the
        temporary file of a killed write is removed by the next write to
        ``path``, see `~galmorphsearch.utils.remove_stale_temporaries`).
        The write holds the lock file ``path + '.lock'`` (see
        `~galmorphsearch.utils.file_lock`), so writes and appends to one
        file by several processes take turns. A ``path`` that is a symbolic
        link writes the file it points to, under that file's lock, and
        stays a link. The latents of a database read with ``memmap=True``
        are copied from its file chunk by chunk, never all in memory.

        Parameters
        ----------
        path : str or path-like
            Destination. A name ending in ``.h5``, ``.hdf5`` or ``.he5``
            is written as HDF5, any other as FITS (conventionally
            ``.fits``), unless ``format`` says otherwise.
        overwrite : bool, optional
            Replace an existing file.
        format : {'fits', 'hdf5'}, optional
            The file format, whatever the name of the file.
        dtype : {'float32', 'float16'}, optional
            Stored precision of the latents. Default: the database's
            (`latent_dtype`; float32 unless it was read from a float16
            file). FITS has no 16-bit floats: float16 latents are stored as
            their raw bits in 16-bit integer (``I``) columns, with the
            keyword ``LATTYPE = 'float16'``, and read back exactly by
            `read`. Float16 halves the size of the latents and rounds each
            value to 11 significant bits (a relative error of at most
            :math:`2^{-11}`); the H-similarity column and statistics are
            kept as computed from the unrounded latents.
        lock_timeout : float or None, optional
            Seconds to wait for another process writing ``path`` (default
            600); `None` waits for ever.

        Raises
        ------
        FileExistsError
            If ``path`` exists and ``overwrite`` is `False`.
        ~galmorphsearch.utils.DatabaseLockedError
            If another process still holds the lock of ``path`` after
            ``lock_timeout`` seconds.
        ValueError
            If ``format`` or ``dtype`` is not one of those listed, if a
            latent is beyond the float16 range (about 65504) when
            ``dtype='float16'``, or if the H-similarity statistics in
            `meta` no longer match the ``h_similarity`` column (edited).
        """
        fmt = _file_format(path, format)
        lattype = storage_dtype(self.latent_dtype if dtype is None else dtype).name
        if not overwrite and Path(path).exists():  # said at once, not after waiting for a lock
            msg = f"{path} already exists; pass overwrite=True to replace it"
            raise FileExistsError(msg)
        with file_lock(path, lock_timeout):
            self._write(path, overwrite, fmt, lattype)

    def _write(self, path, overwrite, fmt, lattype):
        """`write`, the lock of ``path`` held."""
        problems = _h_similarity_problems(self._table)
        if problems:
            # A file that its own reader would refuse is not written.
            msg = (f"Cannot write {path}: the database's H-similarity statistics do not match "
                   f"its h_similarity column ({'; '.join(problems)}). They are computed by the "
                   "database; edit neither them nor the column in meta or table.")
            raise ValueError(msg)
        table = self._table.copy(copy_data=False)
        table.meta = {key: value for key, value in self.meta.items()
                      if key not in _STORAGE_KEYWORDS}
        if isinstance(table["h_similarity"], MaskedColumn):
            table["h_similarity"] = Column(self.h_similarity, name="h_similarity",
                                           description=_DESCRIPTIONS["h_similarity"])
        descriptions = {name: _DESCRIPTIONS[name] for name in _LATENT_COLUMNS}
        if fmt == "hdf5" or self._sources:
            catalog = Table([table[name] for name in table.colnames
                             if name not in _LATENT_COLUMNS], meta=table.meta, copy=False)
            sources = {name: self._source(name) for name in _LATENT_COLUMNS}
            writer = write_hdf5 if fmt == "hdf5" else write_fits_streaming
            extra = {} if fmt == "hdf5" else {"comments": _COMMENTS}
            lathash = writer(catalog, sources, path, overwrite=overwrite, lattype=lattype,
                             descriptions=descriptions, **extra)
            if (self._sources and self._path is not None
                    and Path(path).resolve() == self._path.resolve()):
                # Written over its own file: read the latents from the new one.
                reader = HDF5Latents if fmt == "hdf5" else FITSLatents
                self._sources = {name: reader(path, name) for name in _LATENT_COLUMNS}
                for source in self._sources.values():
                    source._validated = True
                latent = self._sources["latent"]
                latent._lathash, latent._lathash_checked = lathash, True
                self._lathash = lathash
            return
        for name in _LATENT_COLUMNS:
            table[name] = Column(fits_latent_column(table[name], lattype), name=name,
                                 description=descriptions[name])
        stored = np.asarray(table["latent"])
        if lattype == "float16":
            table.meta["LATTYPE"] = "float16"
            stored = stored.view(np.float16)  # the raw bits of the int16 column
        table.meta["LATHASH"] = latent_hash(ArrayLatents(stored, check_finite=False))
        write_fits(table, path, overwrite=overwrite, comments=_COMMENTS)

    @classmethod
    def read(cls, path, memmap=False, *, format=None, verify=True):
        """
        Read a database file written by `write`.

        Parameters
        ----------
        path : str or path-like
            A FITS or HDF5 database file (told apart by their first bytes).
        memmap : bool, optional
            Leave the latents in the file (out-of-core reading, for
            databases larger than memory). Every other column is read into
            `table`; the latents are read chunk by chunk, with bounded
            memory, through `latent_source` (``latents`` still gives the
            whole column in memory, on request). Reading a FITS file this
            way makes one pass over it in chunks, which verifies the
            checksums, checks the latents for NaN and infinite values and
            copies the other columns (FITS stores the columns of a row
            together, so this reads the whole file once). An HDF5 file keeps
            its latents apart: only the other columns are read, and the
            latents are checked (Fletcher-32 checksums by HDF5, NaN and
            infinite values by the source) as they are read.
        format : {'fits', 'hdf5'}, optional
            The file format; default: told by the file's first bytes.
        verify : bool, optional
            Check what the file records about its own content against that
            content (the default): its ``LATHASH`` against the latents and
            its H-similarity statistics (``HSIMMEAN``, ``HSIMSTD``,
            ``HSIMN``) against its ``h_similarity`` column. Reading a file
            into memory, or a FITS file with ``memmap=True``, hashes the
            latents as they are read (no extra pass over the file); an HDF5
            file read with ``memmap=True`` hashes them in the first complete
            pass over them, and raises there if they do not match (the
            first search, `latents`, `lathash` or `write` makes that pass;
            rows taken one by one before it are not checked). `False`
            ignores the recorded values instead (the hash is computed from
            the latents when needed, the statistics from the column): a way
            to read a file whose latents or column were changed on purpose,
            and write it again consistent.

        Returns
        -------
        database : `LatentDatabase`

        Raises
        ------
        FileNotFoundError
            If there is no file at ``path``.
        ~galmorphsearch.utils.DatabaseFormatError
            If the file is corrupted (checksum failure), truncated (the
            message says so), is neither a FITS nor an HDF5 database, has
            no ``LATENTS`` HDU, lacks required columns or keywords, or (with
            ``verify``) its ``LATHASH`` or H-similarity statistics do not
            match its latents or ``h_similarity`` column.
        """
        path = Path(path)
        if not path.exists():
            msg = f"No latent database file at {path}"
            raise FileNotFoundError(msg)
        fmt = _detect_format(path) if format is None else _file_format(path, format)
        sources = {}
        content_lathash = None  # the hash of the latents, when read (None: not yet)
        if fmt == "hdf5":
            table, left = read_hdf5(path, memmap=memmap)
            sources = {name: HDF5Latents(path, name) for name in left}
        elif memmap:
            present = fits_layout(path)["columns"]
            sources = {name: FITSLatents(path, name) for name in _LATENT_COLUMNS
                       if name in present}
            table, layout = read_fits_catalog(path)
            content_lathash = layout.get("content_lathash")
            for source in sources.values():
                source._check_unchanged()
                source._validated = True  # checked by the pass over the file
        else:
            table = read_fits(path)
            lattype = lattype_of(table.meta, path)
            if lattype == "float16":
                for name in _LATENT_COLUMNS:
                    if name in table.colnames:
                        if table[name].dtype.kind != "i" or table[name].dtype.itemsize != 2:
                            msg = (f"{path} is not a valid galmorphsearch latent database: "
                                   f"LATTYPE = 'float16' but column {name!r} is "
                                   f"{table[name].dtype}.")
                            raise DatabaseFormatError(msg)
                        values = np.asarray(table[name]).view(
                            table[name].dtype.str.replace("i", "f"))
                        table[name] = _latent_column(values, name)
        missing = [name for name in (*STANDARD_COLUMNS, *_COMPUTED_COLUMNS)
                   if name not in table.colnames and name not in sources]
        missing_keys = [key for key in REQUIRED_KEYWORDS if key not in table.meta]
        if missing or missing_keys:
            what = []
            if missing:
                what.append(f"column(s) {', '.join(missing)}")
            if missing_keys:
                what.append(f"keyword(s) {', '.join(missing_keys)}")
            msg = (f"{path} is not a valid galmorphsearch latent database: it lacks the "
                   f"{' and the '.join(what)}.")
            raise DatabaseFormatError(msg)
        for key in ("HDUVERS", "ORIGIN", "EXTNAME", "CHECKSUM", "DATASUM", "LATTYPE"):
            table.meta.pop(key, None)
        lathash = table.meta.pop("LATHASH", None)
        for key, value in table.meta.items():
            if isinstance(value, fits.card.Undefined):
                table.meta[key] = None  # FITS undefined value, written from None
        table.convert_bytestring_to_unicode()
        for name in _LATENT_COLUMNS:
            if name in table.colnames and table[name].dtype.kind == "f":
                values = np.asarray(table[name])
                table[name] = _latent_column(
                    np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("=")), name)
        hsim = table["h_similarity"]
        if isinstance(hsim, MaskedColumn):
            table["h_similarity"] = Column(hsim.filled(np.nan), name="h_similarity",
                                           description=hsim.description)
        if not verify:
            lathash = None
            for key in ("HSIMMEAN", "HSIMSTD", "HSIMN"):
                table.meta.pop(key, None)  # recomputed from the column below
        database = cls.__new__(cls)
        database._sources = sources or None
        database._path = path
        database._lathash = None
        try:
            if not verify:
                _set_h_similarity(table, table["h_similarity"])
            database._table = cls._validate(table, trusted=True, sources=sources)
        except ValueError as exc:
            msg = f"{path} is not a valid galmorphsearch latent database: {exc}"
            raise DatabaseFormatError(msg) from exc
        _check_h_similarity(database._table, path)
        if lathash is not None and "latent" in database._table.colnames:
            # Checked as read; without a recorded value, hashed when asked for.
            content_lathash = LatentHasher()
            content_lathash.update(np.asarray(database._table["latent"]))
            content_lathash = content_lathash.hexdigest()
        if lathash is not None:
            lathash = str(lathash).strip()
            if content_lathash is not None and lathash != content_lathash:
                raise lathash_mismatch(path, lathash, content_lathash)
        latent = (sources or {}).get("latent")
        if latent is not None:
            # What the source reports is this check's result; an HDF5 source
            # not hashed yet checks the recorded value on first use.
            latent._lathash = lathash if content_lathash is None else content_lathash
            latent._lathash_checked = content_lathash is not None
        if content_lathash is not None:
            database._lathash = content_lathash
        database._path = Path(path)
        return database

    # ------------------------------------------------------------------
    # growing
    @classmethod
    def merge(cls, databases):
        """
        Combine databases built by the same encoder into a new one.

        Parameters
        ----------
        databases : sequence of `LatentDatabase`
            Databases with the same encoder (weights hash, architecture,
            input size, latent size) and the same morphology scheme.
            Carried columns missing from some are masked there.

        Returns
        -------
        database : `LatentDatabase`
            The rows of all databases in order, with the H-similarity of
            every galaxy and its statistics recomputed over the merged set.

        Raises
        ------
        ~galmorphsearch.utils.EncoderMismatchError
            If the encoders differ (latent size included).
        ValueError
            If the schemes differ or objids repeat across databases.
        """
        databases = list(databases)
        if not databases:
            msg = "merge() needs at least one database."
            raise ValueError(msg)
        for db in databases:
            if not isinstance(db, LatentDatabase):
                msg = f"merge() takes LatentDatabase objects; got {type(db).__name__}."
                raise TypeError(msg)
        first = databases[0]
        for i, db in enumerate(databases[1:], start=1):
            _compare_encoders(first.encoder_info, db.encoder_info, "database 0",
                              f"database {i}")
            if db.scheme != first.scheme:
                msg = (f"Cannot merge databases of different morphology schemes: "
                       f"{first.scheme!r} (database 0) and {db.scheme!r} (database {i}).")
                raise ValueError(msg)
        tables = []
        for db in databases:
            table = db.table.copy(copy_data=False)
            table.meta = {}
            table["latent"] = _latent_column(db.latents, "latent")
            table["background_latent"] = _latent_column(db.background_latents,
                                                         "background_latent")
            table.remove_column("h_similarity")
            tables.append(table)
        kinds = {"S": "U"}
        if len({kinds.get(t["objid"].dtype.kind, t["objid"].dtype.kind) for t in tables}) > 1:
            msg = "Cannot merge databases whose objid columns have different types."
            raise ValueError(msg)
        for table in tables:
            if table["objid"].dtype.kind == "S":
                table.convert_bytestring_to_unicode()
        objids = np.concatenate([np.asarray(t["objid"]) for t in tables])
        _check_unique_objids(objids, where="across the merged databases")
        try:
            merged = vstack(tables, join_type="outer", metadata_conflicts="silent")
        except Exception as exc:  # astropy's merge errors, made clearer
            msg = f"Cannot merge the database tables: {exc}"
            raise ValueError(msg) from exc
        merged.meta = _merge_meta([db.meta for db in databases])
        return cls(merged, copy=False)

    def append(self, other, images=None, encoder=None, **build_kwargs):
        """
        Add galaxies to this database, in place.

        Parameters
        ----------
        other : `LatentDatabase` or `~astropy.table.Table`
            Another database built by the same encoder, or a catalog whose
            ``images`` are encoded with ``encoder`` (see `build`).
        images : list of `~galmorphsearch.preprocessing.GalaxyCutout`, optional
            Cutouts of the catalog rows, when ``other`` is a catalog.
        encoder : `~galmorphsearch.model.Encoder`, optional
            The encoder, when ``other`` is a catalog; it must be the one
            that built this database.
        **build_kwargs
            Passed to `build` (``carry``, ``catalog_name``, ``batch_size``,
            ``progress_bar``). The scheme is this database's.

        Raises
        ------
        ~galmorphsearch.utils.EncoderMismatchError
            If the encoders differ.
        ValueError
            If objids repeat or the schemes differ.
        """
        if not isinstance(other, LatentDatabase):
            if images is None or encoder is None:
                msg = "append() of a catalog needs its images and the encoder."
                raise ValueError(msg)
            self.check_encoder(encoder)
            build_kwargs.setdefault("scheme", self.scheme)
            other = type(self).build(other, images, encoder, **build_kwargs)
        elif images is not None or encoder is not None:
            msg = "append() of a LatentDatabase takes no images or encoder."
            raise ValueError(msg)
        self._table = type(self).merge([self, other])._table
        self._sources = None
        self._path = None
        self._lathash = None

    @classmethod
    def append_to_file(cls, path, other, *, memmap=False, lock_timeout=DEFAULT_LOCK_TIMEOUT):
        """
        Append a database to a database file, safely.

        The file is read, merged with ``other`` and written back through a
        temporary file, so an interrupted append leaves the old file whole.
        All of it holds the lock file ``path + '.lock'`` (see
        `~galmorphsearch.utils.file_lock`): appends (and writes) of several
        processes to one file take turns, and none is lost. The lock works
        on NFS; a lock left by a killed process of this machine is removed
        with a warning, one of another machine is waited for, then named
        in the error.

        Parameters
        ----------
        path : str or path-like
            An existing database file.
        other : `LatentDatabase`
            The galaxies to add.
        memmap : bool, optional
            Memory-map the existing file while reading it.
        lock_timeout : float or None, optional
            Seconds to wait for another process writing ``path`` (default
            600); `None` waits for ever.

        Returns
        -------
        database : `LatentDatabase`
            The merged database, as written (in the file's format and
            latent precision).

        Raises
        ------
        ~galmorphsearch.utils.DatabaseLockedError
            If another process still holds the lock of ``path`` after
            ``lock_timeout`` seconds (the file is not changed).
        """
        with file_lock(path, lock_timeout):
            fmt = _detect_format(path) if Path(path).exists() else None
            existing = cls.read(path, memmap=memmap, format=fmt)
            merged = cls.merge([existing, other])
            merged.write(path, overwrite=True, format=fmt, dtype=existing.latent_dtype)
        return merged


# ----------------------------------------------------------------------
# helpers
def _now():
    return Time.now().utc.isot[:19]


def _degrees(col, name):
    """A catalog coordinate column as float64 degrees, masked values kept."""
    unit = getattr(col, "unit", None)
    factor = 1.0 if unit is None else u.Unit(unit).to(u.deg)
    mask = np.ma.getmaskarray(col) if np.ma.isMaskedArray(col) or hasattr(col, "mask") else None
    values = np.asarray(getattr(col, "value", col), dtype=np.float64) * factor
    if mask is not None and mask.any():
        return MaskedColumn(values, name=name, mask=mask, unit="deg")
    return Column(values, name=name, unit="deg")


def _file_format(path, format):
    """The storage format of ``path``: ``format``, else told by the suffix."""
    if format is None:
        return _SUFFIX_FORMATS.get(Path(path).suffix.lower(), "fits")
    fmt = str(format).lower()
    if fmt not in ("fits", "hdf5"):
        msg = f"format must be 'fits' or 'hdf5'; got {format!r}."
        raise ValueError(msg)
    return fmt


def _detect_format(path):
    """``'hdf5'`` for a file with the HDF5 signature, else ``'fits'``."""
    return "hdf5" if is_hdf5(path) else "fits"


def _non_finite_rows(values, chunk_rows=65536):
    """Rows with NaN or infinite values, checked a chunk at a time."""
    arr = np.asarray(values)
    bad = [start + np.flatnonzero(~np.all(np.isfinite(arr[start:start + chunk_rows]), axis=1))
           for start in range(0, len(arr), chunk_rows)]
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)


def _float_or_nan(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _latent_column(values, name):
    return Column(values, name=name, description=_DESCRIPTIONS[name])


def _check_catalog(catalog, carry):
    """Check that ``catalog`` has what a database needs; return ``carry`` as a list."""
    if not isinstance(catalog, Table):
        msg = f"catalog must be an astropy Table; got {type(catalog).__name__}."
        raise TypeError(msg)
    carry = [carry] if isinstance(carry, str) else list(carry)
    missing = [name for name in (*_CATALOG_COLUMNS, *carry) if name not in catalog.colnames]
    if missing:
        msg = (f"The catalog lacks the column(s) {', '.join(missing)} needed for a latent "
               "database.")
        raise CatalogFormatError(msg)
    reserved = [name for name in carry if name in (*STANDARD_COLUMNS, *_COMPUTED_COLUMNS)]
    if reserved:
        msg = f"Cannot carry the column(s) {', '.join(reserved)}: the database makes them."
        raise ValueError(msg)
    return carry


def _resolve_scheme(scheme, catalog):
    """The scheme name: ``scheme``, else the catalog's ``SCHEME`` keyword."""
    from ..catalogs import MorphologyScheme, get_scheme

    source = "scheme=" if scheme is not None else "the catalog's SCHEME keyword"
    scheme = scheme if scheme is not None else catalog.meta.get("SCHEME")
    if scheme is None:
        msg = ("No morphology scheme: pass scheme= (e.g. 'gz2') or use a catalog whose "
               "meta has SCHEME.")
        raise ValueError(msg)
    if isinstance(scheme, MorphologyScheme):
        # A scheme of one's own, given as an object: its name is recorded.
        return scheme.name
    try:
        # A name must be one the package knows, or the database would record
        # a scheme that its evaluation cannot look up.
        return get_scheme(str(scheme)).name
    except ValueError as exc:
        msg = f"{source} {scheme!r} is not a morphology scheme: {exc}"
        raise ValueError(msg) from None


def _catalog_table(catalog, carry, catalog_name):
    """The database columns taken from catalog rows (all but the computed ones)."""
    if catalog_name is None:
        catalog_name = catalog.meta.get("CATALOG", "unknown")
    table = Table()
    table["objid"] = catalog["objid"]
    for name in ("ra", "dec"):
        table[name] = _degrees(catalog[name], name)
    table["morphology"] = catalog["morphology"]
    table["type_index"] = catalog["type_index"]
    table["catalog"] = Column([str(catalog_name)] * len(catalog))
    for name in carry:
        table[name] = catalog[name]
    return table


def _check_unique_objids(objids, where="in the catalog"):
    if isinstance(objids, MaskedColumn) and np.any(objids.mask):
        msg = f"{int(np.sum(objids.mask))} objid(s) are masked {where}; every row needs one."
        raise ValueError(msg)
    values = np.asarray(objids)
    unique, counts = np.unique(values, return_counts=True)
    repeated = unique[counts > 1]
    if repeated.size:
        msg = f"Duplicated objid(s) {where}: {_few(repeated)}."
        raise ValueError(msg)


def _check_types_and_positions(table, scheme_name):
    """
    Refuse rows whose ``type_index`` is not their morphology's position in the
    scheme, or whose coordinates are impossible.

    Both would be silent garbage: the evaluation compares type indices, the
    searcher returns morphologies, and a position feeds cross-matches. Only
    a scheme the package knows can be checked; NaN coordinates are allowed.
    """
    from ..catalogs import get_scheme

    objid = np.asarray(table["objid"])
    try:
        scheme = get_scheme(str(scheme_name))
    except ValueError:
        scheme = None  # a scheme of the user's own: nothing to check against
    if scheme is not None:
        index = np.asarray(table["type_index"])
        if not np.issubdtype(index.dtype, np.integer):
            msg = f"Column 'type_index' must hold integers; got {index.dtype}."
            raise ValueError(msg)
        outside = (index < 0) | (index >= len(scheme))
        if outside.any():
            msg = (f"Column 'type_index' holds {_few(np.unique(index[outside]))}, outside the "
                   f"{len(scheme)} types of the scheme {scheme.name!r} (objid "
                   f"{_few(objid[outside])}).")
            raise ValueError(msg)
        morphology = np.char.strip(np.asarray(table["morphology"]).astype(str))
        expected = np.asarray(scheme.types)[index]
        wrong = morphology != expected
        if wrong.any():
            first = np.flatnonzero(wrong)[0]
            msg = (f"Columns 'morphology' and 'type_index' disagree in {int(wrong.sum())} "
                   f"row(s) (objid {_few(objid[wrong])}): e.g. {str(morphology[first])!r} with "
                   f"type_index {int(index[first])}, which is {str(expected[first])!r} in the "
                   f"scheme {scheme.name!r}.")
            raise ValueError(msg)
    for name, limit in (("ra", 360.0), ("dec", 90.0)):
        values = np.asarray(table[name], dtype=np.float64)
        low = 0.0 if name == "ra" else -limit
        with np.errstate(invalid="ignore"):
            bad = np.isinf(values) | (values < low) | (values > limit)
        if bad.any():
            msg = (f"Column {name!r} holds {_few(values[bad])}, outside [{low:g}, {limit:g}] "
                   f"degrees (objid {_few(objid[bad])}).")
            raise ValueError(msg)


def _check_latents(latents, encoder, what, catalog):
    return _checked_encoder_output(
        latents, encoder, what, len(catalog),
        lambda bad: f"objid {_few(np.asarray(catalog['objid'])[bad])}")


def _checked_encoder_output(latents, encoder, what, n, name_rows):
    """
    The encoder's ``(n, latent_dim)`` output as float32, or a clear error.

    ``name_rows(bad)`` names the galaxies of the rows ``bad`` whose latents
    hold NaN or infinite values.
    """
    arr = np.asarray(latents)
    expected = (n, int(encoder.latent_dim))
    if arr.shape != expected:
        msg = f"The encoder returned {what} of shape {arr.shape}; expected {expected}."
        raise ValueError(msg)
    bad = np.flatnonzero(~np.all(np.isfinite(arr), axis=1))
    if bad.size:
        msg = (f"The encoder returned NaN or infinite {what} for {bad.size} galaxy(ies), "
               f"{name_rows(bad)}.")
        raise ValueError(msg)
    return np.ascontiguousarray(arr, dtype=np.float32)


def _compare_encoders(ours, theirs, our_label, their_label):
    checks = (("weights_hash", "weights hash"), ("architecture", "architecture"),
              ("input_size", "input size"), ("latent_dim", "latent size"),
              ("input_mode", "input mode"))
    diffs = [f"{label} {ours[key]!r} vs {theirs[key]!r}"
             for key, label in checks if ours[key] != theirs[key]]
    if diffs:
        msg = (f"{our_label[0].upper()}{our_label[1:]} was built by encoder "
               f"{ours['name']!r} but {their_label} is {theirs.get('name', '?')!r}; they "
               f"differ in {'; '.join(diffs)} ({our_label} vs {their_label}). Latents of "
               "different encoders cannot be compared.")
        raise EncoderMismatchError(msg)


def _cutout_keywords(images, summary=None):
    """
    The preprocessing keywords of cutouts: ``(first values, varying keys)``.

    ``summary`` is the result for the cutouts before these (it is updated
    and returned), so cutouts can be summarised a group at a time: the
    summaries of consecutive groups combine to that of all of them.
    """
    first, varying = summary if summary is not None else ({}, set())
    for image in images:
        getter = getattr(image, "header_keywords", None)
        if getter is None:
            continue
        _add_keywords(first, varying, getter().items())
    return first, varying


def _add_keywords(first, varying, items):
    for key, value in items:
        if key in first and first[key] != value:
            varying.add(key)
        first.setdefault(key, value)


def _merge_keyword_summaries(summaries):
    """Combine the `_cutout_keywords` of consecutive groups of cutouts."""
    first, varying = {}, set()
    for group_first, group_varying in summaries:
        _add_keywords(first, varying, group_first.items())
        varying |= set(group_varying)
    return first, varying


def _preprocessing_keywords(encoder, images, summary=None):
    """Preprocessing keywords of the cutouts, checked against the encoder's."""
    from ..preprocessing import warn_recipe_differences

    first, varying = _cutout_keywords(images) if summary is None else summary
    # Keywords whose value differs between cutouts are per-cutout results
    # (such as NMERGED), not parameters of the database: they are left out.
    cutout_keys = {key: value for key, value in first.items() if key not in varying}
    encoder_keys = {key: value for key, value in dict(encoder.metadata).items()
                    if isinstance(key, str) and key.isupper() and len(key) <= 8
                    and key not in _RESERVED_KEYWORDS}
    # The one comparison of recipes (also used by the searcher and the CLI).
    warn_recipe_differences(cutout_keys, encoder_keys, other="encoder",
                            message="The cutouts were not preprocessed like the encoder's "
                                    "training images", stacklevel=3)
    keys = {**encoder_keys, **cutout_keys}
    return {key: value for key, value in keys.items() if key not in _RESERVED_KEYWORDS}


def _build_meta(encoder, images, scheme, summary=None):
    meta = {
        "ENCODER": str(encoder.name),
        "ENCARCH": str(encoder.architecture),
        "ENCHASH": str(encoder.weights_hash),
        "INSIZE": int(encoder.input_size),
        "LATDIM": int(encoder.latent_dim),
        "ENCMODE": str(getattr(encoder, "input_mode", "rgb")),
        "ENCTRAIN": str(getattr(encoder, "training_method", "unknown")),
        "SCHEME": scheme,
        "GMSVERS": _package_version(),
        "DATE": _now(),
    }
    meta.update(_preprocessing_keywords(encoder, images, summary))
    return meta


def _merge_meta(metas):
    merged = dict(metas[0])
    for meta in metas[1:]:
        for key in set(merged) | set(meta):
            if key in _RESERVED_KEYWORDS:
                continue
            if merged.get(key) != meta.get(key):
                merged.pop(key, None)
                warnings.warn(f"The merged databases differ in the preprocessing keyword {key}; "
                              "it is not recorded in the merged database.",
                              GalMorphSearchWarning, stacklevel=4)
    for key in ("HSIMMEAN", "HSIMSTD", "HSIMN", "NROWS", *_STORAGE_KEYWORDS):
        merged.pop(key, None)
    merged["GMSVERS"] = _package_version()
    merged["DATE"] = _now()
    return merged


def _set_h_similarity(table, hsim=None):
    """
    Put the per-galaxy H-similarity and its statistics into ``table``.

    ``hsim`` is the H-similarity of every row when already known;
    otherwise it is computed from the latent columns.
    """
    if hsim is None:
        hsim = database_h_similarity(native_float32(table["latent"]),
                                     native_float32(table["background_latent"]))
    hsim = np.asarray(hsim, dtype=np.float64)
    table["h_similarity"] = Column(hsim, description=_DESCRIPTIONS["h_similarity"])
    defined = np.isfinite(hsim)
    meta = table.meta
    meta["HSIMMEAN"] = float(np.mean(hsim[defined])) if defined.any() else None
    meta["HSIMSTD"] = float(np.std(hsim[defined])) if defined.any() else None
    meta["HSIMN"] = int(defined.sum())


def _check_h_similarity(table, path):
    """
    Check the H-similarity keywords of a table read from ``path`` against its column.

    ``HSIMMEAN`` and ``HSIMSTD`` (the "no similar galaxy" threshold of a
    search) must be the mean and standard deviation of the defined values
    of the ``h_similarity`` column, and ``HSIMN`` (when present) their
    number, as written; anything else means the file was changed after.
    """
    problems = _h_similarity_problems(table)
    if problems:
        msg = (f"{path} is not a valid galmorphsearch latent database: its H-similarity "
               f"statistics do not match its h_similarity column ({'; '.join(problems)}); "
               "the file was changed after it was written, and the threshold for 'no similar "
               "galaxy' cannot be trusted. If the change was deliberate, read the file with "
               "verify=False (the statistics are then computed from the column) and write it "
               "again.")
        raise DatabaseFormatError(msg)


def _h_similarity_problems(table):
    """How the H-similarity keywords of ``table`` disagree with its column (a list)."""
    hsim = np.asarray(table["h_similarity"], dtype=np.float64)
    defined = hsim[np.isfinite(hsim)]
    expected = {"HSIMMEAN": float(np.mean(defined)) if defined.size else None,
                "HSIMSTD": float(np.std(defined)) if defined.size else None}
    meta = table.meta
    problems = []
    for key, value in expected.items():
        recorded = _float_or_nan(meta.get(key))  # NaN: undefined (None), or not a number
        if value is None:
            same = not np.isfinite(recorded)
        else:
            same = bool(np.isfinite(recorded)) and bool(
                np.isclose(recorded, value, rtol=1e-9, atol=1e-9))
        if not same:
            problems.append(f"{key} = {_number(meta.get(key))} but the h_similarity column "
                            f"gives {_number(value)}")
    if "HSIMN" in meta and meta["HSIMN"] is not None:
        try:
            same = int(meta["HSIMN"]) == defined.size
        except (TypeError, ValueError):
            same = False
        if not same:
            problems.append(f"HSIMN = {meta['HSIMN']!r} but the h_similarity column has "
                            f"{defined.size} defined value(s)")
    return problems


def _number(value):
    """A keyword value for a message: floats to 6 significant digits."""
    if value is None:
        return "undefined"
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


def _order_columns(table):
    standard = list(STANDARD_COLUMNS)
    computed = [name for name in _COMPUTED_COLUMNS if name in table.colnames]
    carried = [name for name in table.colnames
               if name not in standard and name not in _COMPUTED_COLUMNS]
    order = standard + carried + computed
    if table.colnames != order:
        table = Table([table[name] for name in order], meta=table.meta, copy=False)
    for name, description in _DESCRIPTIONS.items():
        if name in table.colnames and not table[name].description:
            table[name].description = description
    for name in ("ra", "dec"):
        if table[name].unit is None:
            table[name].unit = "deg"
    return table
