# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The Dask worker plugin that gives every worker one copy of an encoder.

Imported only when `~galmorphsearch.pipeline.build_database` is given a
``dask.distributed`` client (and by its tasks on the workers):
``distributed`` is an optional dependency. The encoders the plugin loads are
kept here, by worker and weights hash, for the tasks of
`galmorphsearch.pipeline.build`.
"""

import collections
import os
import tempfile
import threading
from pathlib import Path

try:
    from distributed import WorkerPlugin
except ImportError:  # pragma: no cover - the plugin is only made with a client
    WorkerPlugin = object

__all__ = []

# Encoders loaded on Dask workers by `EncoderPlugin`, keyed by
# (worker id, weights hash): one per worker, even for threaded workers that
# share this module.
_WORKER_ENCODERS = {}
# How many times each (worker id, weights hash) was loaded.
_ENCODER_LOADS = collections.Counter()
_LOCK = threading.Lock()


def _keep_worker_encoder(worker_id, key, encoder):
    with _LOCK:
        _WORKER_ENCODERS[(worker_id, key)] = encoder
        _ENCODER_LOADS[(worker_id, key)] += 1


def _drop_worker_encoder(worker_id, key):
    with _LOCK:
        _WORKER_ENCODERS.pop((worker_id, key), None)


def _encoder_loads(key, dask_worker=None):
    """How many times this worker loaded the encoder ``key`` (run with ``client.run``)."""
    return _ENCODER_LOADS[(dask_worker.id, key)]


class EncoderPlugin(WorkerPlugin):
    """
    Load an encoder once on every worker, from the bytes of its weight file.

    The plugin travels to each worker once (and to workers that join
    later); its `setup` loads the encoder with
    `~galmorphsearch.model.Encoder.load`, checks its weights hash and keeps
    it for the tasks of that worker, keyed by the worker's id and the
    hash. Registered under the name ``galmorphsearch-encoder-<hash>`` and
    idempotent: registering the same encoder again loads nothing.

    Parameters
    ----------
    key : str
        The encoder's ``weights_hash``.
    payload : bytes
        The file written by `~galmorphsearch.model.Encoder.save`.
    """

    idempotent = True

    def __init__(self, key, payload):
        self.key = str(key)
        self.payload = bytes(payload)
        self.name = plugin_name(self.key)

    def setup(self, worker):
        from ..model import Encoder

        folder = getattr(worker, "local_directory", None) or tempfile.gettempdir()
        fd, tmp = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".safetensors", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.payload)
            encoder = Encoder.load(tmp)
        finally:
            Path(tmp).unlink(missing_ok=True)
        if encoder.weights_hash != self.key:
            msg = (f"The encoder shipped to worker {worker.id} has weights hash "
                   f"{encoder.weights_hash}, not {self.key}.")
            raise RuntimeError(msg)
        _keep_worker_encoder(worker.id, self.key, encoder)

    def teardown(self, worker):
        _drop_worker_encoder(worker.id, self.key)


def plugin_name(key):
    """The name under which the encoder of weights hash ``key`` is registered."""
    return f"galmorphsearch-encoder-{key}"
