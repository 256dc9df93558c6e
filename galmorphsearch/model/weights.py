# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Weight files that can never execute code: safetensors with provenance.

A galmorphsearch weight file is a `safetensors
<https://huggingface.co/docs/safetensors>`_ file: an 8-byte little-endian
header length, a JSON header (tensor names, dtypes, shapes, offsets and a
flat string-to-string ``__metadata__`` dictionary), then the raw tensor
bytes. Reading it parses JSON and copies bytes; unlike a pickled PyTorch
checkpoint it cannot run code. The metadata records what the weights are
(architecture, input size, latent size, preprocessing, package version) and
`state_dict_hash` of the tensors, which `load_weights` verifies.
"""

import hashlib
import json
import os
import pickle
import re
import struct
import warnings

import numpy as np
import torch

from ..utils.exceptions import UnsafeCheckpointError, WeightFileFormatError
from ..utils.io import atomic_path

__all__ = ["state_dict_hash", "save_weights", "load_weights", "read_weights_metadata"]

#: Value of the ``format`` metadata entry of galmorphsearch weight files.
FORMAT_NAME = "galmorphsearch-weights"
#: Version of the layout of the metadata.
FORMAT_VERSION = "1"
# Largest header accepted (safetensors itself refuses headers over 100 MB).
_MAX_HEADER = 100_000_000
#: Length of the ``weights_hash`` that `save_weights` records (hexadecimal digits).
HASH_LENGTH = 16
# A recorded hash: at least HASH_LENGTH lower-case hexadecimal digits (64 for the full
# SHA-256). A shorter one would let most edits of the tensors through.
_HASH_PATTERN = re.compile(rf"[0-9a-f]{{{HASH_LENGTH},64}}")


def state_dict_hash(state_dict, length=HASH_LENGTH):
    """
    Content hash of a state dict: SHA-256 over names, dtypes, shapes and bytes.

    The tensors are taken in sorted name order, moved to the CPU, floating
    point ones cast to float32 and integer ones to int64, and serialised
    little-endian, so the hash does not depend on the device, the memory
    layout or the byte order of the machine. Any change of any weight (or
    batch-norm running statistic) changes the hash.

    Parameters
    ----------
    state_dict : dict of str to `torch.Tensor`
        For example ``module.state_dict()``.
    length : int, optional
        Number of hexadecimal characters kept (64 for the full digest).

    Returns
    -------
    digest : str
        Lower-case hexadecimal digest.

    Examples
    --------
    >>> import torch
    >>> from galmorphsearch.model import state_dict_hash
    >>> state_dict_hash({"w": torch.zeros(2, 3)})
    '...'
    >>> len(state_dict_hash({"w": torch.zeros(2, 3)}))
    16
    """
    sha = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu")
        if tensor.is_floating_point():
            arr = tensor.to(torch.float32).contiguous().numpy().astype("<f4", copy=False)
        elif tensor.dtype == torch.bool:
            arr = tensor.contiguous().numpy().astype("u1")
        else:
            arr = tensor.to(torch.int64).contiguous().numpy().astype("<i8", copy=False)
        sha.update(name.encode())
        sha.update(arr.dtype.str.encode())
        sha.update(repr(tuple(arr.shape)).encode())
        sha.update(np.ascontiguousarray(arr).tobytes())
    return sha.hexdigest()[:length]


def _check_header(path):
    """
    Read and check the safetensors header of ``path`` without trusting it.

    Returns the parsed JSON header. Raises a `ValueError` naming the file
    when it is not a safetensors file (and says so when it looks like a
    pickled or zipped PyTorch checkpoint instead).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        msg = f"weight file {path!r} does not exist"
        raise FileNotFoundError(msg)
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            msg = f"{path!r} is not a safetensors weight file: it is only {size} bytes long"
            raise WeightFileFormatError(msg)
        (n,) = struct.unpack("<Q", head)
        # A safetensors file is a plausible header length followed by a JSON object.
        # Only when it is not one are the zip and pickle signatures looked for: the
        # length's first bytes may by chance read "PK" or 0x80.
        first = fh.read(1) if 2 <= n <= min(_MAX_HEADER, size - 8) else b""
        if first != b"{":
            if head[:4] == b"PK\x03\x04" or (head[:1] == b"\x80"
                                             and head[1:2] in (b"\x02", b"\x03", b"\x04",
                                                               b"\x05")):
                msg = (f"{path!r} is a pickled or zipped PyTorch file, not a safetensors "
                       "weight file; galmorphsearch never unpickles weights. For a plain "
                       "state dict use Encoder.from_state_dict_file, which loads with "
                       "weights_only=True")
                raise WeightFileFormatError(msg)
            msg = f"{path!r} is not a safetensors weight file (bad header length {n})"
            raise WeightFileFormatError(msg)
        raw = first + fh.read(n - 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        msg = f"{path!r} is not a safetensors weight file (unreadable header: {exc})"
        raise WeightFileFormatError(msg) from None
    if not isinstance(header, dict):
        msg = f"{path!r} is not a safetensors weight file (header is not a JSON object)"
        raise WeightFileFormatError(msg)
    return header


def read_weights_metadata(path):
    """
    The metadata stored in the header of a weight file, without reading the tensors.

    Parameters
    ----------
    path : str or path-like
        A file written by `save_weights` (or any safetensors file).

    Returns
    -------
    metadata : dict of str to str
        The ``__metadata__`` of the safetensors header (empty if none).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ~galmorphsearch.utils.WeightFileFormatError
        If the file is not a safetensors file (a `ValueError`).
    """
    header = _check_header(path)
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        msg = f"{os.fspath(path)!r}: the safetensors metadata is not a string-to-string mapping"
        raise WeightFileFormatError(msg)
    return dict(meta)


def save_weights(state_dict, path, metadata=None, overwrite=False):
    """
    Write a state dict and its metadata to a safetensors file, atomically.

    The file records ``format``, ``format_version`` and ``weights_hash``
    (`state_dict_hash` of the tensors) besides ``metadata``.

    Parameters
    ----------
    state_dict : dict of str to `torch.Tensor`
        The tensors to save (moved to the CPU, made contiguous).
    path : str or path-like
        Output file (conventionally ``*.safetensors``).
    metadata : dict, optional
        Flat mapping of str to str, int, float, bool or None. Values that are
        not strings are stored as JSON text (safetensors metadata holds
        strings only) and decoded again by `load_weights`.
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    weights_hash : str
        The hash stored in the file.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is `False`.
    ValueError
        If a metadata value is not a scalar.
    """
    from safetensors.torch import save_file

    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state_dict.items()}
    digest = state_dict_hash(tensors)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str):
            msg = f"metadata keys must be strings, not {key!r}"
            raise ValueError(msg)
        header[key] = _encode_value(key, value)
    header["weights_hash"] = digest
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(tensors, os.fspath(tmp), metadata=header)
    return digest


def _encode_value(key, value):
    if isinstance(value, str):
        # A string that would decode as JSON to something else is quoted.
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
        return json.dumps(value)
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    msg = (f"metadata value of {key!r} must be a str, int, float, bool or None, "
           f"not {type(value).__name__}")
    raise ValueError(msg)


def _decode_value(value):
    try:
        return json.loads(value)
    except (json.JSONDecodeError, RecursionError):  # not JSON, or absurdly nested: as text
        return value


def load_weights(path, verify=True):
    """
    Read a weight file written by `save_weights`; never executes code.

    Parameters
    ----------
    path : str or path-like
        The safetensors file.
    verify : bool, optional
        Recompute the hash of the tensors and compare it with the stored
        ``weights_hash``.

    Returns
    -------
    state_dict : dict of str to `torch.Tensor`
        CPU tensors.
    metadata : dict
        The metadata, with numbers, booleans and nulls decoded from their
        JSON text.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ~galmorphsearch.utils.WeightFileFormatError
        If the file is not a galmorphsearch safetensors weight file, is
        truncated, records no hash of at least 16 hexadecimal digits, or its
        tensors do not match the stored hash (the file was corrupted or
        modified). A `ValueError`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = os.fspath(path)
    raw = read_weights_metadata(path)
    if raw.get("format") != FORMAT_NAME:
        msg = (f"{path!r} is a safetensors file but not a galmorphsearch weight file "
               f"(format={raw.get('format')!r:.60}, expected {FORMAT_NAME!r})")
        raise WeightFileFormatError(msg)
    if raw.get("format_version") != FORMAT_VERSION:
        msg = (f"{path!r} has weight-file format version {raw.get('format_version')!r:.60}; "
               f"this galmorphsearch reads version {FORMAT_VERSION}")
        raise WeightFileFormatError(msg)
    stored = raw.get("weights_hash")
    if verify and not (isinstance(stored, str) and _HASH_PATTERN.fullmatch(stored)):
        what = "records no weights_hash" if stored is None else (
            f"records weights_hash={stored!r:.80}, not a hash of {HASH_LENGTH} to 64 "
            "lower-case hexadecimal digits")
        msg = f"weight file {path!r} is damaged: it {what}"
        raise WeightFileFormatError(msg)
    try:
        tensors = load_file(path, device="cpu")
    except (SafetensorError, OSError, RuntimeError) as exc:
        msg = f"cannot read the tensors of weight file {path!r}: {_one_line(exc)}"
        raise WeightFileFormatError(msg) from None
    meta = {key: (value if key in ("format", "format_version", "weights_hash")
                  else _decode_value(value)) for key, value in raw.items()}
    if verify:
        actual = state_dict_hash(tensors, length=len(stored))
        if stored != actual:
            msg = (f"weight file {path!r} is corrupted or was modified: its tensors hash to "
                   f"{actual}, but the file records weights_hash={stored}")
            raise WeightFileFormatError(msg)
    return tensors, meta


def _one_line(exc, limit=200):
    """The message of ``exc`` on one line of printable characters, cut at ``limit``."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", " ".join(str(exc).split()))
    text = "".join(c if c.isprintable() and (c.isascii() or c.isalnum()) else "?"
                   for c in text)
    return (text[:limit] + "...") if len(text) > limit else (text or type(exc).__name__)


# Findings of torch's weights-only unpickler that name an object it refused.
_REFUSED = (r"GLOBAL (\S+) (?:was not an allowed global|whose module)",
            r"reduce for unrecognized function (.+?)(?: which belongs to |$)",
            r"(?:Can only create new object|Can only build).*? but got (.+)$")


def _unpickler_finding(exc):
    """
    What torch's loader found, on one line, without its advice.

    torch's weights-only errors suggest loading with ``weights_only=False``
    or allowlisting the refused object, that is, running the file: only the
    unpickler's own finding is kept. Returns ``(finding, refused)``, the
    second the name of the object refused (or None).
    """
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", " ".join(str(exc).split()))
    text = re.split(r" ?Check the documentation of torch\.load", text)[0]
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
        text = re.split(r" ?Please use `torch\.serialization", text)[0].strip()
    elif "Weights only load failed" in text:
        match = re.search(r"(Trying to load unsupported GLOBAL \S+ whose module \S+ is blocked"
                          r"|\S+ must be imported to load [^.]*)", text)
        text = match.group(1) if match else "an object the safe loader does not accept"
    refused = None
    for pattern in _REFUSED:
        match = re.search(pattern, text)
        if match:
            refused = _one_line(match.group(1).rstrip("."), limit=80)
            break
    text = _one_line(text)
    if re.search(r"weights_only|safe_globals|trust", text):  # never relay torch's advice
        text = "an object the safe loader does not accept"
    return text, refused


def _load_state_dict_file(path):
    """
    The content of a PyTorch file read with ``torch.load(..., weights_only=True)``.

    Nothing in the file runs, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
    says (an explicit ``weights_only=True`` is not overridden by it): only
    tensors, numbers, strings and plain containers are loaded. Errors are
    one line naming the file; they never suggest loading it unsafely.

    Parameters
    ----------
    path : str or path-like
        A ``.pt``, ``.pth`` or ``.ckpt`` file.

    Returns
    -------
    content : object
        What the file holds, tensors on the CPU (not checked further).

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ~galmorphsearch.utils.UnsafeCheckpointError
        If the file refers to other objects (a class, a function): refused
        before any of it runs.
    ~galmorphsearch.utils.WeightFileFormatError
        If the file is damaged or not a PyTorch file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        msg = f"weight file {path!r} does not exist (or is not a file)"
        raise FileNotFoundError(msg)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols other than 2 before it refuses or
            # reads them; the outcome (a clear error, or the content) says enough.
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol",
                                    category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason, refused = _unpickler_finding(exc)
        if refused is not None:
            msg = (f"{path!r} contains objects that are not allowed in a weight file (first "
                   f"refused: {refused}) and was refused without running any of it; only "
                   "tensors, numbers, strings and plain containers are loaded "
                   "(weights_only=True)")
            raise UnsafeCheckpointError(msg) from None
    except Exception as exc:  # any other failure: damaged, or not a PyTorch file
        reason, _ = _unpickler_finding(exc)
    msg = (f"cannot read {path!r} safely as a plain PyTorch state dict (weights_only=True): "
           f"it is damaged, not a PyTorch file, or written in a way the safe loader does not "
           f"accept ({reason})")
    raise WeightFileFormatError(msg)
