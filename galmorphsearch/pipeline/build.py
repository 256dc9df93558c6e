# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Building latent databases at scale: preprocessing and encoding in
partitions, on a Dask cluster or in-process, merged into one file.

`build_database` cuts the catalog into partitions of rows. Each partition
is one task: it preprocesses the galaxies that need it (colour image files
through `~galmorphsearch.preprocessing.GalaxyCutout.from_image`), encodes
the images and background patches with the encoder of its worker and
writes the latents to a partition file. The H-similarity of every galaxy
against the whole database is then computed in blocks of rows (more
tasks), and the partitions are streamed, in catalog order, into one
database file. With a ``dask.distributed`` client the tasks run on the
cluster; without one the same tasks run one after the other in this
process, and the file is the same.
"""

import itertools
import os
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
from astropy.table import Column, Table

from ..database import HDF5Latents, LatentDatabase
from ..database._hdf5 import write_hdf5
from ..latents import ArrayLatents, LatentSource, storage_dtype
from ..latents.similarity import h_similarity_rows
from ..preprocessing import CutoutSet, GalaxyCutout
from ..utils import GalMorphSearchWarning
from ..utils.progress import progress_iter

__all__ = ["build_database", "local_cluster"]

#: Rows whose H-similarity one task computes (each task reads every
#: partition once, or a few times when many latents are identical).
_HSIM_BLOCK_ROWS = 8192

#: Database rows compared at once in the H-similarity search (as in
#: `~galmorphsearch.latents.database_h_similarity`).
_HSIM_CHUNK_ROWS = 32768

_ON_ERROR = ("skip", "raise")

#: Seconds that a failed build waits for its running tasks to end before
#: it removes the partition folder.
_STOP_TIMEOUT = 120.0

def _task_encoder(key, encoder):
    """The encoder of a task: the one given in-process, else the worker's."""
    if encoder is not None:
        return encoder, None
    from distributed import get_worker

    from ._dask_plugin import _WORKER_ENCODERS, plugin_name

    worker = get_worker()
    try:
        return _WORKER_ENCODERS[(worker.id, key)], worker.id
    except KeyError:
        msg = (f"Worker {worker.id} has no encoder with weights hash {key}: the worker "
               f"plugin {plugin_name(key)!r} was unregistered during the build.")
        raise RuntimeError(msg) from None


class _Cutout:
    """What a partition needs of a preprocessed galaxy: images and keywords."""

    __slots__ = ("image", "background", "keywords")

    def __init__(self, image, background, keywords):
        self.image = image
        self.background = background
        self.keywords = keywords

    @classmethod
    def of(cls, cutout):
        return cls(cutout.image, cutout.background, cutout.header_keywords())

    def header_keywords(self):
        return self.keywords


def _describe(item):
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    return f"<{type(item).__name__}>"


# ----------------------------------------------------------------------
# tasks (module level, so that Dask workers in other processes import them)
def _build_partition(index, start, payload, key, folder, batch_size, preprocess_kwargs,
                     on_error, encoder=None):
    """
    Preprocess, encode and store one partition of rows.

    Parameters
    ----------
    index : int
        Partition number (names the file).
    start : int
        Catalog row of the partition's first item.
    payload : tuple
        ``('arrays', images, backgrounds)``: (n, size, size, 3) uint8
        images and background patches of stored cutouts; or ``('items',
        items)``: per row a `_Cutout`, or what
        `~galmorphsearch.preprocessing.GalaxyCutout.from_image` reads.
    key : str
        Weights hash of the encoder.
    folder : str
        Where the partition file goes.
    batch_size : int
        Images encoded at once.
    preprocess_kwargs : dict
        Passed to ``GalaxyCutout.from_image``.
    on_error : {'skip', 'raise'}
        What a galaxy that cannot be preprocessed does.
    encoder : `~galmorphsearch.model.Encoder`, optional
        The encoder, in-process; on a Dask worker, the worker's.

    Returns
    -------
    result : dict
        ``index``, ``path`` (of the partition file, or None if no row
        could be preprocessed), ``rows`` (the catalog rows stored, int64),
        ``failures`` (``(row, source, error type, message)`` tuples),
        ``keywords`` (the preprocessing keyword summary), ``worker`` (the
        worker id or None) and ``encoder_id`` (``id`` of the encoder used).
    """
    from ..database.database import _cutout_keywords

    encoder, worker_id = _task_encoder(key, encoder)
    failures = []
    if payload[0] == "arrays":
        images, backgrounds = payload[1], payload[2]
        rows = np.arange(start, start + len(images), dtype=np.int64)
        keywords = ({}, set())
    else:
        cutouts, rows = [], []
        for offset, item in enumerate(payload[1]):
            row = start + offset
            if not isinstance(item, _Cutout):
                try:
                    item = _Cutout.of(GalaxyCutout.from_image(item, **preprocess_kwargs))
                except Exception as exc:  # any failure of one galaxy's preprocessing
                    if on_error == "raise":
                        exc.add_note(f"while preprocessing catalog row {row} "
                                     f"({_describe(item)})")
                        raise
                    failures.append((row, _describe(item), type(exc).__name__, str(exc)))
                    continue
            cutouts.append(item)
            rows.append(row)
        rows = np.asarray(rows, dtype=np.int64)
        keywords = _cutout_keywords(cutouts)
        if cutouts:
            images = _stack([c.image for c in cutouts], "images")
            backgrounds = _stack([c.background for c in cutouts], "background patches")
    result = {"index": index, "path": None, "rows": rows, "failures": failures,
              "keywords": keywords, "worker": worker_id, "encoder_id": id(encoder)}
    if not rows.size:
        return result
    latents = _checked_latents(encoder.encode(images, batch_size=batch_size), encoder,
                               "latents", rows)
    background = _checked_latents(encoder.encode(backgrounds, batch_size=batch_size),
                                  encoder, "background latents", rows)
    folder = Path(folder)
    if not folder.is_dir():  # the build was given up meanwhile
        msg = f"The partition folder {folder} no longer exists."
        raise FileNotFoundError(msg)
    path = folder / f"part-{index:06d}.h5"
    write_hdf5(Table({"row": rows}), {"latent": ArrayLatents(latents, check_finite=False),
                                      "background_latent": ArrayLatents(
                                          background, check_finite=False)}, path)
    result["path"] = str(path)
    return result


def _stack(arrays, what):
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) > 1:
        msg = (f"The {what} of one build must share one shape; got {sorted(shapes)}. Make "
               "every cutout with the same size.")
        raise ValueError(msg)
    return np.stack(arrays)


def _checked_latents(latents, encoder, what, rows):
    from ..database.database import _checked_encoder_output

    return _checked_encoder_output(latents, encoder, what, len(rows),
                                   lambda bad: f"catalog rows {rows[bad[:5]].tolist()}")


def _h_similarity_block(paths, q0, q1, chunk_rows=None):
    """
    The H-similarity of rows ``q0`` to ``q1`` of the partitions' latents.

    Every row is searched against all the others, exactly as
    `~galmorphsearch.latents.database_h_similarity` does for latents in
    memory (same candidates, same float64 re-ranking, same handling of
    identical latents), reading the partitions chunk by chunk.
    """
    chunk_rows = _HSIM_CHUNK_ROWS if chunk_rows is None else chunk_rows
    lat = _PartitionLatents(paths, "latent")
    bkg = _PartitionLatents(paths, "background_latent")
    rows = np.arange(q0, q1, dtype=np.int64)
    return h_similarity_rows(lat.take(rows), rows, lat, bkg.take(rows), None, chunk_rows)


class _PartitionLatents(LatentSource):
    """The latents of partition files, one after the other, as one latent source."""

    def __init__(self, paths, column):
        self._parts = [HDF5Latents(path, column) for path in paths]
        lengths = [len(part) for part in self._parts]
        self._starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        self._dim = self._parts[0].dim if self._parts else 0

    def __len__(self):
        return int(self._starts[-1])

    @property
    def dim(self):
        return self._dim

    @property
    def dtype(self):
        return np.dtype(np.float32)

    def iter_chunks(self, chunk_rows=None):
        # Chunks of exactly ``rows`` rows (but the last), across partition
        # boundaries: the FITS writer expects them so.
        rows = self._default_rows(chunk_rows)
        buf = np.empty((min(rows, max(len(self), 1)), self._dim), dtype=np.float32)
        filled, start = 0, 0
        for part in self._parts:
            for _, chunk in part.iter_chunks(rows):
                pos = 0
                while pos < len(chunk):
                    n = min(rows - filled, len(chunk) - pos)
                    buf[filled:filled + n] = chunk[pos:pos + n]
                    filled += n
                    pos += n
                    if filled == rows:
                        yield start, buf
                        start += filled
                        filled = 0
        if filled:
            yield start, buf[:filled]

    def take(self, indices):
        idx = self._indices(indices)
        out = np.empty((idx.size, self._dim), dtype=np.float32)
        part = np.searchsorted(self._starts, idx, side="right") - 1
        for p in np.unique(part):
            sel = part == p
            out[sel] = self._parts[p].take(idx[sel] - self._starts[p])
        return out


# ----------------------------------------------------------------------
# the build
def build_database(catalog, images, encoder, output, *, client=None, partition_size=256,
                   carry=(), catalog_name=None, scheme=None, dtype=None, format=None,
                   overwrite=False, memmap=False, batch_size=64, preprocess_kwargs=None,
                   on_error="skip", scratch_dir=None, progress_bar=False):
    """
    Build a latent database file from many galaxies, on Dask or in-process.

    The catalog rows are cut into partitions of ``partition_size`` rows.
    For each partition one task makes the cutouts that are not made yet
    (from colour image files, with
    `~galmorphsearch.preprocessing.GalaxyCutout.from_image`), encodes the
    images and background patches and writes the latents to a partition
    file (HDF5, in a temporary folder beside ``output``). The
    H-similarity of every galaxy against the whole database is then
    computed in blocks of rows, reading the partitions chunk by chunk, and
    the partitions are streamed in catalog order into ``output``, written
    atomically; the partition folder is removed in any case, failure
    included.

    With a ``dask.distributed`` ``client`` the tasks run on its cluster:
    the encoder is shipped once to every worker (a worker plugin that
    loads it from the bytes of its weight file), never once per task.
    Without a client the same tasks run one after the other in this
    process, and for the same ``partition_size`` the file is the same (the
    ``DATE`` keyword and the checksums that cover it aside). Either way it
    holds what `~galmorphsearch.database.LatentDatabase.build` and
    `~galmorphsearch.database.LatentDatabase.write` make from the same
    cutouts (the latents up to float32 rounding, as the encoder sees other
    batches), but the latents are never all in memory at once (the other
    columns are).

    Parameters
    ----------
    catalog : `~astropy.table.Table`
        Catalog rows with at least ``objid``, ``ra``, ``dec``,
        ``morphology`` and ``type_index`` (see `~galmorphsearch.database.LatentDatabase.build`).
    images : `~galmorphsearch.preprocessing.CutoutSet` or sequence
        One item per catalog row, in the same order: a
        `~galmorphsearch.preprocessing.CutoutSet`, or a sequence whose
        items are `~galmorphsearch.preprocessing.GalaxyCutout` objects
        (used as they are) or colour images to preprocess (JPEG or PNG
        file paths, or anything else ``GalaxyCutout.from_image`` reads).
        Paths must be readable by the workers. All cutouts must have one
        size.
    encoder : `~galmorphsearch.model.Encoder`
        The encoder. With a client it is saved (`Encoder.save
        <galmorphsearch.model.Encoder.save>`) and loaded once on each
        worker, on the CPU.
    output : str or path-like
        The database file; its name (or ``format``) chooses FITS or HDF5,
        as for `~galmorphsearch.database.LatentDatabase.write`.
    client : `distributed.Client`, optional
        Run the tasks on this Dask cluster. The folder of ``output`` (or
        ``scratch_dir``) must be reachable by the workers under the same
        path.
    partition_size : int, optional
        Catalog rows per partition (per task).
    carry, catalog_name, scheme : optional
        As for `~galmorphsearch.database.LatentDatabase.build`.
    dtype : {'float32', 'float16'}, optional
        Stored precision of the latents (see `~galmorphsearch.database.LatentDatabase.write`); the
        H-similarity is computed from the float32 latents either way.
    format : {'fits', 'hdf5'}, optional
        The file format, whatever the name of ``output``.
    overwrite : bool, optional
        Replace an existing ``output``. Without it an existing file is an
        error raised before any work is done.
    memmap : bool, optional
        Read the database returned with ``memmap=True`` (latents left in
        the file; see `~galmorphsearch.database.LatentDatabase.read`).
    batch_size : int, optional
        Images encoded at once.
    preprocess_kwargs : dict, optional
        Keyword arguments of ``GalaxyCutout.from_image`` (``size``,
        ``rotate``, ``seed``...) for the images preprocessed here. Give a
        ``seed`` for reproducible background patches.
    on_error : {'skip', 'raise'}, optional
        What a galaxy whose preprocessing raises an exception does:
        ``'skip'`` leaves it out of the database and lists it in
        ``failures``; ``'raise'`` stops the build with that exception.
        Encoding errors always stop the build.
    scratch_dir : str or path-like, optional
        Where the temporary partition folder goes; default: the folder of
        ``output``.
    progress_bar : bool, optional
        Show progress bars of the tasks (needs tqdm), here on the client.

    Returns
    -------
    database : `~galmorphsearch.database.LatentDatabase`
        The database read back from ``output``.
    failures : `~astropy.table.Table`
        One row per galaxy left out (``on_error='skip'``): ``row`` (in
        the catalog), ``objid``, ``source`` (the file or the type of
        image), ``error`` (the exception's type) and ``message``. Empty
        when every galaxy was preprocessed.

    Raises
    ------
    FileExistsError
        If ``output`` exists and ``overwrite`` is `False`.
    ~galmorphsearch.utils.CatalogFormatError
        If the catalog lacks a standard or carried column.
    ValueError
        If the number of images differs from the number of catalog rows,
        an argument is out of range, no galaxy could be preprocessed, or
        as for `~galmorphsearch.database.LatentDatabase.build`.

    Warns
    -----
    ~galmorphsearch.utils.GalMorphSearchWarning
        When galaxies were left out (``failures`` is not empty), or when
        the cutouts were not preprocessed like the encoder's training
        images.

    Notes
    -----
    The H-similarity is an exact all-pairs search: its cost grows as
    :math:`N^2 D` for N galaxies of latent length D, against :math:`N`
    for preprocessing and encoding, so it dominates large builds. It is
    computed once, on the merged latents, in blocks of rows that run as
    tasks too.

    Quality flags are not stored: the cutouts' warnings
    (`~galmorphsearch.utils.CutoutWarning`) follow the warning filters of
    the process that makes them (a worker logs them), and a warning that
    the filters turn into an error makes the galaxy fail. To keep the
    flags, make a `~galmorphsearch.preprocessing.CutoutSet` first (its
    table has a ``flag`` column) and carry it.

    Examples
    --------
    >>> from dask.distributed import Client, LocalCluster  # doctest: +SKIP
    >>> from galmorphsearch.pipeline import build_database
    >>> client = Client(LocalCluster(n_workers=4, threads_per_worker=1))  # doctest: +SKIP
    >>> db, failures = build_database(catalog, jpeg_paths, encoder, "gz2.fits",
    ...                               client=client, partition_size=512,
    ...                               preprocess_kwargs={"size": 64, "seed": 0}
    ...                               )  # doctest: +SKIP
    """
    from ..database.database import (
        _build_meta,
        _catalog_table,
        _check_catalog,
        _check_unique_objids,
        _few,
        _file_format,
        _merge_keyword_summaries,
        _resolve_scheme,
        _set_h_similarity,
    )

    output = Path(output)
    if output.exists() and not overwrite:
        msg = f"{output} already exists; pass overwrite=True to replace it"
        raise FileExistsError(msg)
    fmt = _file_format(output, format)
    if dtype is not None:
        storage_dtype(dtype)
    carry = _check_catalog(catalog, carry)
    scheme = _resolve_scheme(scheme, catalog)
    partition_size = _positive_int("partition_size", partition_size)
    batch_size = _positive_int("batch_size", batch_size)
    if on_error not in _ON_ERROR:
        msg = f"on_error must be one of {_ON_ERROR}; got {on_error!r}."
        raise ValueError(msg)
    preprocess_kwargs = dict(preprocess_kwargs or {})
    specs, set_keywords = _partition_specs(images, len(catalog), partition_size)
    _check_unique_objids(catalog["objid"])

    if client is not None and not callable(getattr(encoder, "save", None)):
        msg = (f"A Dask build ships the encoder to the workers as a weight file, which a "
               f"{type(encoder).__name__} cannot write; give a galmorphsearch Encoder.")
        raise TypeError(msg)
    parent = Path(scratch_dir) if scratch_dir is not None else output.parent
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{output.name}.parts-", dir=parent))
    try:
        args = (str(encoder.weights_hash), str(folder), batch_size, preprocess_kwargs,
                on_error)
        results = _run(client, encoder, _build_partition,
                       [(i, start, payload, *args) for i, (start, payload) in enumerate(specs)],
                       "partitions", progress_bar)
        del specs
        results.sort(key=lambda r: r["index"])
        rows = np.concatenate([r["rows"] for r in results])
        failures = _failure_table(catalog, [f for r in results for f in r["failures"]])
        if not rows.size:
            msg = (f"None of the {len(catalog)} galaxies could be preprocessed; first error: "
                   f"{failures['error'][0]}: {failures['message'][0]}")
            raise ValueError(msg)
        paths = [r["path"] for r in results if r["path"] is not None]
        # Every block reads all partitions: their list goes to the workers once.
        shared = paths if client is None else client.scatter([paths], broadcast=True,
                                                             hash=False)[0]
        blocks = [(shared, q0, min(q0 + _HSIM_BLOCK_ROWS, rows.size))
                  for q0 in range(0, rows.size, _HSIM_BLOCK_ROWS)]
        hsim = np.concatenate(_run(client, None, _h_similarity_block, blocks,
                                   "H-similarity", progress_bar))

        table = _catalog_table(catalog[rows], carry, catalog_name)
        summary = _merge_keyword_summaries([set_keywords, *(r["keywords"] for r in results)])
        table.meta = _build_meta(encoder, (), scheme, summary)
        _set_h_similarity(table, hsim)
        sources = {name: _PartitionLatents(paths, name)
                   for name in ("latent", "background_latent")}
        database = LatentDatabase._from_sources(table, sources)
        database.write(output, overwrite=overwrite, format=fmt, dtype=dtype)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if len(failures):
        warnings.warn(f"{len(failures)} of the {len(catalog)} galaxies could not be "
                      f"preprocessed and are not in {output} (catalog rows "
                      f"{_few(failures['row'])}; first error: {failures['error'][0]}: "
                      f"{failures['message'][0]}).", GalMorphSearchWarning, stacklevel=2)
    return LatentDatabase.read(output, memmap=memmap), failures


def local_cluster(n_workers, **kwargs):
    """
    A ``dask.distributed.LocalCluster`` of one-thread worker processes for builds.

    Dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``), which makes glibc hand freed
    memory back to the system so eagerly that the many short-lived arrays of
    preprocessing get slower: `GalaxyCutout.from_image
    <galmorphsearch.preprocessing.GalaxyCutout.from_image>` of 24 SDSS JPEGs
    took 14.2 s with it and 9.5 s without on the development machine. This
    cluster starts its workers without it (a value set in the environment
    still applies). For a cluster of your own, set
    ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_`` to None
    in the Dask configuration before starting the workers.

    Parameters
    ----------
    n_workers : int
        Worker processes.
    **kwargs
        Other `distributed.LocalCluster` arguments; by default one thread
        per worker, processes, no dashboard.

    Returns
    -------
    cluster : `distributed.LocalCluster`
        The cluster, started (close it, or use it in a ``with`` block).

    Examples
    --------
    >>> from dask.distributed import Client  # doctest: +SKIP
    >>> from galmorphsearch.pipeline import build_database, local_cluster
    >>> with local_cluster(4) as cluster, Client(cluster) as client:  # doctest: +SKIP
    ...     db, failures = build_database(catalog, jpeg_paths, encoder, "gz2.fits",
    ...                                   client=client)
    """
    try:
        import dask
        from distributed import LocalCluster
    except ImportError:
        msg = 'A Dask cluster needs dask.distributed: pip install "galmorphsearch[scale]"'
        raise ImportError(msg) from None
    options = {"threads_per_worker": 1, "processes": True, "dashboard_address": None}
    options.update(kwargs)
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=_positive_int("n_workers", n_workers), **options)


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        msg = f"{name} must be a positive integer; got {value!r}."
        raise ValueError(msg)
    return int(value)


def _partition_specs(images, n_rows, partition_size):
    """``[(start, payload)]`` of the partitions, and the keywords of a cutout set."""
    if isinstance(images, CutoutSet):
        n = len(images)
        keywords = (images.header_keywords(), set())
    else:
        if isinstance(images, (str, os.PathLike, GalaxyCutout)):
            images = [images]
        images = list(images)
        n = len(images)
        keywords = ({}, set())
    if n != n_rows:
        msg = (f"The catalog has {n_rows} rows but {n} images were given; they must be "
               "aligned one to one.")
        raise ValueError(msg)
    if n == 0:
        msg = "Cannot build a latent database from an empty catalog."
        raise ValueError(msg)
    specs = []
    for start in range(0, n, partition_size):
        stop = min(start + partition_size, n)
        if isinstance(images, CutoutSet):
            payload = _Scatter(("arrays", images.images[start:stop],
                                images.backgrounds[start:stop]))
        else:
            items = [_Cutout.of(item) if isinstance(item, GalaxyCutout) else item
                     for item in images[start:stop]]
            payload = ("items", items)
            if any(isinstance(item, (_Cutout, np.ndarray)) for item in items):
                payload = _Scatter(payload)
        specs.append((start, payload))
    return specs, keywords


def _failure_table(catalog, failures):
    rows = np.array([f[0] for f in failures], dtype=np.int64)
    table = Table()
    table["row"] = Column(rows, description="row of the galaxy in the catalog")
    table["objid"] = catalog["objid"][rows] if rows.size else catalog["objid"][:0]
    for i, (name, description) in enumerate(
            (("source", "what was preprocessed"), ("error", "type of the exception"),
             ("message", "message of the exception")), start=1):
        table[name] = Column([str(f[i]) for f in failures], dtype=str,
                             description=description)
    return table


class _Scatter:
    """An argument of `_run` that goes to the workers apart from the task (it is large)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


def _run(client, encoder, func, arguments, desc, progress_bar):
    """
    ``func(*args)`` for every tuple of ``arguments``, in-process or as Dask tasks.

    Returns the results in the order of ``arguments``. On Dask, at most
    twice as many tasks as the cluster has threads are submitted at a time
    (so the data of all partitions is never on the cluster at once), each
    `_Scatter` argument is scattered to the workers rather than sent
    within the task, and the first error cancels every task.
    """
    if client is None:
        results = []
        for args in progress_iter(arguments, progress_bar, desc=desc, total=len(arguments)):
            args = [a.value if isinstance(a, _Scatter) else a for a in args]
            kwargs = {} if encoder is None else {"encoder": encoder}
            results.append(func(*args, **kwargs))
        return results
    from distributed import as_completed

    if encoder is not None:
        _register_encoder(client, encoder)
    prefix = f"galmorphsearch-{func.__name__}-{uuid.uuid4().hex[:12]}-"
    window = max(2, 2 * sum(client.nthreads().values()))
    results = [None] * len(arguments)
    submitted = {}
    done = as_completed()

    def submit(i):
        args = [client.scatter([a.value], hash=False)[0] if isinstance(a, _Scatter) else a
                for a in arguments[i]]
        future = client.submit(func, *args, key=f"{prefix}{i}", pure=False)
        submitted[future.key] = (i, future)
        done.add(future)

    waiting = iter(range(len(arguments)))
    try:
        for i in itertools.islice(waiting, window):
            submit(i)
        for future in progress_iter(done, progress_bar, desc=desc, total=len(arguments)):
            i, _ = submitted.pop(future.key)
            results[i] = future.result()
            future.release()
            i = next(waiting, None)
            if i is not None:
                submit(i)
    except BaseException:
        client.cancel([future for _, future in submitted.values()])
        _wait_until_stopped(client, prefix)
        raise
    return results


def _running_tasks(prefix, dask_worker=None):
    """How many tasks whose key starts with ``prefix`` run on this worker (``client.run``)."""
    return sum(str(ts.key).startswith(prefix) for ts in dask_worker.state.all_running_tasks)


def _wait_until_stopped(client, prefix, timeout=_STOP_TIMEOUT):
    """
    Wait for cancelled tasks that were already running to end.

    Dask cannot interrupt a running task; waiting for them keeps a task
    from writing a partition into the folder while it is being removed.
    """
    deadline = time.monotonic() + timeout
    try:
        while sum(client.run(_running_tasks, prefix).values()) and time.monotonic() < deadline:
            time.sleep(0.05)
    except Exception:  # the cluster is gone: nothing runs any more
        pass


def _register_encoder(client, encoder):
    """Ship ``encoder`` to every worker of ``client`` once (a worker plugin)."""
    from ._dask_plugin import EncoderPlugin

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "encoder.safetensors"
        key = encoder.save(path)
        payload = path.read_bytes()
    if key != encoder.weights_hash:  # pragma: no cover - save keeps the weights as they are
        msg = f"The saved encoder has weights hash {key}, not {encoder.weights_hash}."
        raise RuntimeError(msg)
    client.register_plugin(EncoderPlugin(key, payload))
