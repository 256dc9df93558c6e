# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""Tests of the safetensors weight files: round trip, hash checks, no pickle."""

import json
import struct

import numpy as np
import pytest
import torch

from galmorphsearch.model import (
    Encoder,
    load_weights,
    read_weights_metadata,
    save_weights,
    state_dict_hash,
)


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(1)
    return Encoder(input_size=64, latent_dim=16, name="unit",
                   preprocessing={"SIZE": 64, "KRONFAC": 3.0, "SEED": None, "BKGSUB": "T"})


@pytest.fixture
def saved(encoder, tmp_path):
    path = tmp_path / "enc.safetensors"
    encoder.save(path)
    return path


def test_round_trip(encoder, saved):
    loaded = Encoder.load(saved)
    assert loaded.weights_hash == encoder.weights_hash
    assert loaded.metadata == encoder.metadata
    assert loaded.preprocessing == {"SIZE": 64, "KRONFAC": 3.0, "SEED": None, "BKGSUB": "T"}
    assert not loaded.training
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_array_equal(loaded.encode(x), encoder.encode(x))


def test_no_pickle_header(saved):
    raw = saved.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    assert raw[8:9] == b"{"
    assert header["__metadata__"]["weights_hash"]
    assert header["__metadata__"]["format"] == "galmorphsearch-weights"
    assert header["__metadata__"]["architecture"] == "resnet18"
    assert b"\x80\x02" not in raw[:2] and not raw.startswith(b"PK")
    meta = read_weights_metadata(saved)
    assert all(isinstance(v, str) for v in meta.values())


def test_overwrite(encoder, saved):
    with pytest.raises(FileExistsError):
        encoder.save(saved)
    encoder.save(saved, overwrite=True)


def test_tampered_file_refused(saved):
    raw = bytearray(saved.read_bytes())
    raw[-100] ^= 0x01  # flip one bit of the tensor data
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupted or was modified") as err:
        Encoder.load(saved)
    assert str(saved) in str(err.value)


def test_truncated_and_foreign_files(saved, tmp_path):
    raw = saved.read_bytes()
    (tmp_path / "short.safetensors").write_bytes(raw[:-1000])
    with pytest.raises(ValueError, match="short.safetensors"):
        Encoder.load(tmp_path / "short.safetensors")
    (tmp_path / "tiny").write_bytes(b"abc")
    with pytest.raises(ValueError, match="only 3 bytes"):
        Encoder.load(tmp_path / "tiny")
    torch.save({"w": torch.zeros(2)}, tmp_path / "pickle.pt")
    with pytest.raises(ValueError, match="never unpickles"):
        Encoder.load(tmp_path / "pickle.pt")
    with pytest.raises(FileNotFoundError):
        Encoder.load(tmp_path / "nothing.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "foreign.safetensors")
    with pytest.raises(ValueError, match="not a galmorphsearch weight file"):
        Encoder.load(tmp_path / "foreign.safetensors")
    save_weights({"w": torch.zeros(2)}, tmp_path / "decoder.safetensors", {"kind": "decoder"})
    with pytest.raises(ValueError, match="not an encoder"):
        Encoder.load(tmp_path / "decoder.safetensors")


@pytest.mark.parametrize("length", [0x4B50, 0x180, 0x0280])
def test_header_lengths_that_look_like_zip_or_pickle_signatures(length, tmp_path):
    # The first bytes of a safetensors file are its header length, little-endian:
    # 0x4B50 reads "PK" and 0x180 starts with 0x80, the bytes that open zip and
    # pickle files. Such files are still read as what they are.
    tensors = {"w": torch.arange(4, dtype=torch.float32)}
    meta = {"format": "galmorphsearch-weights", "format_version": "1",
            "weights_hash": state_dict_hash(tensors)}
    header = json.dumps({"__metadata__": meta,
                         "w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    assert len(header) <= length
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", length) + header.ljust(length, b" ")
                     + tensors["w"].numpy().tobytes())
    loaded, read_meta = load_weights(path)
    assert torch.equal(loaded["w"], tensors["w"])
    assert read_meta["weights_hash"] == meta["weights_hash"]


def test_legacy_pickle_files_are_named_as_such(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    with pytest.raises(ValueError, match="never unpickles"):
        load_weights(path)


def test_save_load_weights_metadata_types(tmp_path):
    meta = {"a": 1, "b": 2.5, "c": None, "d": True, "e": "text", "f": "3"}
    digest = save_weights({"w": torch.arange(4.0)}, tmp_path / "w.safetensors", meta)
    tensors, back = load_weights(tmp_path / "w.safetensors")
    assert back["weights_hash"] == digest
    assert {k: back[k] for k in meta} == meta
    torch.testing.assert_close(tensors["w"], torch.arange(4.0))
    with pytest.raises(ValueError, match="must be a str"):
        save_weights({"w": torch.zeros(1)}, tmp_path / "x.safetensors", {"a": [1]})


def test_state_dict_hash():
    a = {"w": torch.ones(2, 2), "b": torch.zeros(3)}
    assert state_dict_hash(a) == state_dict_hash({"b": torch.zeros(3), "w": torch.ones(2, 2)})
    assert state_dict_hash(a) == state_dict_hash({k: v.double() for k, v in a.items()})
    assert state_dict_hash(a) != state_dict_hash({"w": torch.ones(2, 2), "b": torch.ones(3)})
    assert state_dict_hash(a) != state_dict_hash({"w": torch.ones(4), "b": torch.zeros(3)})
    assert len(state_dict_hash(a, length=64)) == 64


def test_from_state_dict_file(tmp_path):
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    torch.save(resnet.state_dict(), tmp_path / "resnet.pth")
    enc = Encoder.from_state_dict_file(tmp_path / "resnet.pth", input_size=64)
    torch.testing.assert_close(enc.backbone.conv1.weight, resnet.conv1.weight)
    other = Encoder(input_size=64, latent_dim=8)
    torch.save(other.state_dict(), tmp_path / "enc.pt")
    again = Encoder.from_state_dict_file(tmp_path / "enc.pt", input_size=64, latent_dim=8)
    assert again.weights_hash == other.weights_hash
    # Without latent_dim, the stored projection layer gives it.
    inferred = Encoder.from_state_dict_file(tmp_path / "enc.pt", input_size=64)
    assert inferred.latent_dim == 8 and inferred.weights_hash == other.weights_hash
    with pytest.raises(ValueError, match="do not fit"):
        Encoder.from_state_dict_file(tmp_path / "enc.pt", input_size=64, latent_dim=16)

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        Encoder.from_state_dict_file(tmp_path / "evil.pt")
