# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Hostile and damaged training checkpoints given to ``resume=`` (and ``train --resume``).

A checkpoint is read with ``torch.load(..., weights_only=True)`` by
galmorphsearch itself, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` says,
and Lightning is handed the loaded dictionary: a pickled payload never
runs, and a damaged or foreign file is one clear error naming it.
"""

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch
from astropy.table import Table

from galmorphsearch.model import train_autoencoder, train_classifier, train_contrastive
from galmorphsearch.utils import CheckpointFormatError, UnsafeCheckpointError

CPU = {"accelerator": "cpu", "devices": 1}
SETTINGS = {
    "autoencoder": (train_autoencoder, {"input_size": 32, "decoder_channels": (8,),
                                        "fc_channels": 16, "latent_dim": 32,
                                        "batch_size": 8, **CPU}),
    "classifier": (train_classifier, {"input_size": 32, "latent_dim": 16, "batch_size": 8,
                                      **CPU}),
    "contrastive": (train_contrastive, {"architecture": "resnet18-trimmed", "input_size": 32,
                                        "batch_size": 4, "val_fraction": 0.25,
                                        "test_fraction": 0.25, **CPU}),
}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)


def train(kind, images, **kwargs):
    function, settings = SETTINGS[kind]
    args = (images, ["a", "b"] * (len(images) // 2)) if kind == "classifier" else (images,)
    return function(*args, **{**settings, **kwargs})


class _Payload:
    """Unpickling this runs ``exec``: it would create the marker file."""

    def __init__(self, marker):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def malicious_checkpoint(path, marker, layout):
    """A checkpoint-looking file whose unpickling runs code."""
    content = {"state_dict": {"w": torch.zeros(2)}, "epoch": 0, "global_step": 0,
               "pytorch-lightning_version": "2.6.0", "optimizer_states": [],
               "hyper_parameters": {"payload": _Payload(marker)}}
    if layout == "zip":
        torch.save(content, path)
    elif layout == "legacy":  # torch's pre-1.6 format: a bare pickle stream
        torch.save(content, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle file
        with open(path, "wb") as f:
            pickle.dump(content, f, protocol=2)
    return path


def attempt(*args, **kwargs):
    """The exception ``train(*args, **kwargs)`` raises (None if none)."""
    try:
        train(*args, **kwargs)
    except Exception as exc:  # checked by the caller, after the marker file
        return exc
    return None


# torch warns when TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns a load without an explicit
# weights_only into a full unpickling. galmorphsearch never loads that way (the spy
# below checks it), so the warning cannot come from it; it is ignored here so that the
# marker file, not a warning turned into an error, is what decides these tests.
ignore_torch_env_warning = pytest.mark.filterwarnings(
    "ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD:UserWarning")


@ignore_torch_env_warning
@pytest.mark.parametrize("layout", ["zip", "legacy", "pickle"])
@pytest.mark.parametrize("kind", ["autoencoder", "classifier", "contrastive"])
def test_malicious_checkpoint_never_runs(images, tmp_path, monkeypatch, kind, layout):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    evil = malicious_checkpoint(tmp_path / "evil.ckpt", marker, layout)
    error = attempt(kind, images, max_epochs=2, checkpoint_dir=tmp_path / "out", resume=evil)
    assert not marker.exists(), "code from the checkpoint ran"
    assert isinstance(error, CheckpointFormatError) and isinstance(error, ValueError), error
    assert "evil.ckpt" in str(error)
    if layout != "pickle":  # a torch.save file: the offending global is named
        assert isinstance(error, UnsafeCheckpointError)
        assert "not allowed" in str(error) and "exec" in str(error)
    assert "\n" not in str(error)  # one line for the CLI
    assert not (tmp_path / "out" / "last.ckpt").exists()  # refused before any training


@ignore_torch_env_warning
def test_malicious_last_checkpoint_never_runs(images, tmp_path, monkeypatch):
    """``resume='last'`` reads checkpoint_dir/last.ckpt the same safe way."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "true")
    marker = tmp_path / "pwned"
    (tmp_path / "out").mkdir()
    malicious_checkpoint(tmp_path / "out" / "last.ckpt", marker, "zip")
    error = attempt("classifier", images, max_epochs=2, checkpoint_dir=tmp_path / "out",
                    resume="last")
    assert not marker.exists(), "code from the checkpoint ran"
    assert isinstance(error, UnsafeCheckpointError), error
    assert "last.ckpt" in str(error) and "not allowed" in str(error)


@ignore_torch_env_warning
def test_refused_checkpoint_is_one_cli_line(images, tmp_path, monkeypatch, capsys):
    from galmorphsearch.preprocessing import CutoutSet
    from galmorphsearch.scripts.main import main

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    table = Table({"objid": np.arange(len(images)), "ra": np.zeros(len(images)),
                   "dec": np.zeros(len(images))})
    cutouts = tmp_path / "cutouts.fits"
    CutoutSet(table, images, np.zeros_like(images)).write(cutouts)
    marker = tmp_path / "pwned"
    evil = malicious_checkpoint(tmp_path / "evil.ckpt", marker, "zip")
    status = main(["train", str(cutouts), "-o", str(tmp_path / "e.safetensors"),
                   "--input-size", "32", "--epochs", "2", "--resume", str(evil)])
    err = capsys.readouterr().err
    assert not marker.exists(), "code from the checkpoint ran"
    assert status == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "evil.ckpt" in err and "not allowed" in err and "unexpected" not in err


@pytest.fixture(scope="module")
def genuine(images, tmp_path_factory):
    """A checkpoint written by train_classifier after one epoch."""
    folder = tmp_path_factory.mktemp("genuine")
    train("classifier", images, max_epochs=1, checkpoint_dir=folder)
    return folder / "last.ckpt"


class _LoadSpy:
    """Records the ``weights_only`` of every torch.load call."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = torch.load

        def spy(*args, **kwargs):
            self.calls.append(kwargs.get("weights_only", "not given"))
            return real(*args, **kwargs)

        monkeypatch.setattr(torch, "load", spy)


def test_genuine_checkpoint_resumes_through_the_safe_loader(images, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    train("classifier", images, max_epochs=1, checkpoint_dir=folder)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    spy = _LoadSpy(monkeypatch)
    encoder, history = train("classifier", images, max_epochs=2, checkpoint_dir=folder,
                             resume=folder / "last.ckpt")
    assert len(history) == 2 and history["step"][-1] == 4  # continued from epoch 1
    assert spy.calls and all(value is True for value in spy.calls), spy.calls
    # the same result as an uninterrupted run
    monkeypatch.undo()
    whole, _ = train("classifier", images, max_epochs=2)
    assert whole.weights_hash == encoder.weights_hash


def test_numpy_hyperparameters_still_resume(images, tmp_path):
    """numpy numbers given as settings are written as plain numbers, and old files still load."""
    folder = tmp_path / "np"
    train("classifier", images, max_epochs=1, checkpoint_dir=folder,
          learning_rate=np.float64(1e-3))
    # written without numpy objects: any weights_only reader takes it
    assert torch.serialization.get_unsafe_globals_in_checkpoint(folder / "last.ckpt") == []
    # a checkpoint written before (numpy scalars among the hyper-parameters) resumes too
    content = torch.load(folder / "last.ckpt", weights_only=True)
    content["hyper_parameters"]["learning_rate"] = np.float64(1e-3)
    content["hyper_parameters"]["dropout"] = np.float32(0.5)
    old = folder / "old.ckpt"
    torch.save(content, old)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(old)  # numpy scalars inside
    _, history = train("classifier", images, max_epochs=2, resume=old, checkpoint_dir=folder)
    assert len(history) == 2


def _damage(kind, genuine, path):
    data = genuine.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(1).bytes(4096))
    elif kind == "text":
        path.write_text("epoch: 3\nthis is not a checkpoint\n")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "corrupted bytes":
        # zero bytes in the middle of the largest tensor: the zip CRC no longer matches
        with zipfile.ZipFile(genuine) as archive:
            member = max(archive.infolist(), key=lambda m: m.file_size)
        local_header = 30 + len(member.filename.encode()) + int.from_bytes(
            data[member.header_offset + 28:member.header_offset + 30], "little")
        start = member.header_offset + local_header + member.file_size // 2
        damaged = bytearray(data)
        damaged[start:start + 64] = bytes(64)
        assert damaged != bytearray(data)
        path.write_bytes(bytes(damaged))
    elif kind == "plain state dict":
        torch.save(torch.load(genuine, weights_only=True)["state_dict"], path)
    elif kind == "weights only":  # ModelCheckpoint(save_weights_only=True): no optimizer
        content = torch.load(genuine, weights_only=True)
        del content["optimizer_states"]
        torch.save(content, path)
    elif kind == "wrong types":
        content = torch.load(genuine, weights_only=True)
        content["global_step"] = "many"
        torch.save(content, path)
    elif kind == "bad loss history":
        content = torch.load(genuine, weights_only=True)
        content["callbacks"]["_LossHistory"] = {"rows": 5}
        torch.save(content, path)
    elif kind == "list":
        torch.save([torch.zeros(3)], path)
    return path


DAMAGE = {
    "empty": "empty",
    "random bytes": "cannot be read",
    "text": "cannot be read",
    "truncated": "cannot be read",
    "corrupted bytes": "CRC",
    "plain state dict": "not a training checkpoint",
    "weights only": "optimizer_states",
    "wrong types": "global_step",
    "bad loss history": "loss history",
    "list": "not a training checkpoint",
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_checkpoint_is_a_clear_error(images, genuine, tmp_path, kind):
    path = _damage(kind, genuine, tmp_path / "damaged.ckpt")
    with pytest.raises(CheckpointFormatError, match=DAMAGE[kind]) as info:
        train("classifier", images, max_epochs=2, resume=path)
    assert "damaged.ckpt" in str(info.value) and "\n" not in str(info.value)
    assert not isinstance(info.value, UnsafeCheckpointError)


def test_checkpoint_of_another_model_is_a_clear_error(images, genuine, tmp_path):
    """A checkpoint that does not fit the model being trained names what differs."""
    with pytest.raises(CheckpointFormatError, match="does not fit") as info:
        train("classifier", images, max_epochs=2, resume=genuine, latent_dim=8)
    assert "last.ckpt" in str(info.value) and "shape" in str(info.value)
    with pytest.raises(CheckpointFormatError, match="does not fit.*missing"):
        train("autoencoder", images, max_epochs=2, resume=genuine)


def test_strategy_reading_files_itself_gets_a_checked_copy(images, tmp_path):
    """A strategy with its own (unsafe) file reading never sees the user's file."""
    from lightning.pytorch.strategies import SingleDeviceStrategy

    asked = []

    class OwnReader(SingleDeviceStrategy):
        def load_checkpoint(self, checkpoint_path, weights_only=None):
            asked.append(os.fspath(checkpoint_path))
            return torch.load(checkpoint_path, map_location="cpu", weights_only=False)

    folder = tmp_path / "out"
    train("classifier", images, max_epochs=1, checkpoint_dir=folder)
    mine = os.fspath(folder / "last.ckpt")
    _, history = train("classifier", images, max_epochs=2, checkpoint_dir=folder, resume=mine,
                       strategy=OwnReader(device="cpu"))
    assert len(history) == 2 and history["step"][-1] == 4
    assert len(asked) == 1 and asked[0] != mine  # a copy written from the checked content
    assert not os.path.exists(asked[0])  # and removed afterwards


@ignore_torch_env_warning
@pytest.mark.parametrize("name", ["AutoencoderModule", "ClassifierModule", "ContrastiveModule"])
def test_load_from_checkpoint_never_runs_code(tmp_path, monkeypatch, name):
    """The modules' load_from_checkpoint reads the file safely too."""
    import galmorphsearch.model as model

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    evil = malicious_checkpoint(tmp_path / "evil.ckpt", marker, "zip")
    try:
        getattr(model, name).load_from_checkpoint(evil, map_location="cpu")
    except Exception as exc:  # checked after the marker file
        error = exc
    else:
        error = None
    assert not marker.exists(), "code from the checkpoint ran"
    assert isinstance(error, UnsafeCheckpointError) and "evil.ckpt" in str(error), error


def test_load_from_checkpoint_still_rebuilds(images, tmp_path, monkeypatch):
    from galmorphsearch.model import ClassifierModule

    folder = tmp_path / "out"
    encoder, _ = train("classifier", images, max_epochs=1, checkpoint_dir=folder)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    spy = _LoadSpy(monkeypatch)
    module = ClassifierModule.load_from_checkpoint(folder / "last.ckpt", map_location="cpu")
    assert module.classes == ["a", "b"]
    assert module.encoder.weights_hash == encoder.weights_hash
    assert spy.calls and all(value is True for value in spy.calls), spy.calls
    with pytest.raises(CheckpointFormatError, match="not a training checkpoint"):
        ClassifierModule.load_from_checkpoint(_damage("list", folder / "last.ckpt",
                                                      tmp_path / "damaged.ckpt"))


# ----------------------------------------------------------------------
# Weight files: hostile metadata, pickled payloads given as init weights,
# hyper-parameter files, shortened hashes.
def _cutout_file(images, path):
    from galmorphsearch.preprocessing import CutoutSet

    table = Table({"objid": np.arange(len(images)), "ra": np.zeros(len(images)),
                   "dec": np.zeros(len(images))})
    CutoutSet(table, images, np.zeros_like(images)).write(path)
    return path


@pytest.fixture(scope="module")
def weight_file(tmp_path_factory):
    """A genuine, small encoder weight file."""
    from galmorphsearch.model import Encoder

    path = tmp_path_factory.mktemp("weights") / "good.safetensors"
    Encoder("vgg-small", input_size=32).save(path)
    return path


def edit_metadata(source, path, **changes):
    """A copy of ``source`` with metadata entries replaced (None removes one); tensors kept."""
    import json
    import struct

    data = source.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    for key, value in changes.items():
        if value is None:
            header["__metadata__"].pop(key, None)
        else:
            header["__metadata__"][key] = value
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    return path


# metadata entry -> (stored text, what the message says about it)
HOSTILE_METADATA = {
    "architecture as a list": ("architecture", '["vgg-small"]', "architecture"),
    "architecture as a number": ("architecture", "7", "architecture"),
    "architecture unknown": ("architecture", "resnet19", "architecture"),
    "no architecture": ("architecture", None, "architecture"),
    "input_size infinite": ("input_size", "1e400", "input_size"),
    "input_size negative": ("input_size", "-5", "input_size"),
    "input_size fractional": ("input_size", "64.5", "input_size"),
    "input_size boolean": ("input_size", "true", "input_size"),
    "input_size huge": ("input_size", str(10**9), "input_size"),
    "input_size as text": ("input_size", "big", "input_size"),
    "latent_dim huge": ("latent_dim", str(10**13), "latent_dim"),
    "latent_dim zero": ("latent_dim", "0", "latent_dim"),
    "latent_dim as a list": ("latent_dim", "[256]", "latent_dim"),
    "latent_dim without a projection": ("latent_dim", "300", "latent_dim"),
    "name as a number": ("name", "5", "name"),
    "name as a list": ("name", '["x"]', "name"),
    "name empty": ("name", '""', "name"),
    "name with terminal escapes": ("name", '"a\\u001b[2Jb"', "name"),
    "input_mode as a list": ("input_mode", '["rgb"]', "input_mode"),
    "input_mode unknown": ("input_mode", "cmyk", "input_mode"),
    "training as a number": ("training", "5", "training"),
    "kind as a list": ("kind", '["encoder"]', "kind"),
    "preprocessing_keys as a number": ("preprocessing_keys", "5", "preprocessing_keys"),
    "preprocessing key missing": ("preprocessing_keys", "BKGBOX", "BKGBOX"),
    "info_keys as a list": ("info_keys", '["a"]', "info_keys"),
}


@pytest.mark.parametrize("case", list(HOSTILE_METADATA))
def test_weight_file_with_hostile_metadata_is_a_clear_error(weight_file, tmp_path, case):
    from galmorphsearch.model import Encoder
    from galmorphsearch.utils import WeightFileFormatError

    key, value, word = HOSTILE_METADATA[case]
    path = edit_metadata(weight_file, tmp_path / "hostile.safetensors", **{key: value})
    with pytest.raises(WeightFileFormatError) as info:
        Encoder.load(path)
    text = str(info.value)
    assert "hostile.safetensors" in text and word in text, text
    assert "\n" not in text and "\x1b" not in text and len(text) < 400, text


def test_hostile_metadata_values_are_refused_by_type(weight_file, tmp_path):
    """Preprocessing and info values must be scalars, as save() writes them."""
    from galmorphsearch.model import Encoder
    from galmorphsearch.utils import WeightFileFormatError

    path = edit_metadata(weight_file, tmp_path / "values.safetensors",
                         preprocessing_keys="BKGBOX", BKGBOX="[1, 2]")
    with pytest.raises(WeightFileFormatError, match="values.safetensors.*BKGBOX"):
        Encoder.load(path)
    path = edit_metadata(weight_file, tmp_path / "info.safetensors",
                         info_keys="epochs", epochs='{"a": 1}')
    with pytest.raises(WeightFileFormatError, match="info.safetensors.*epochs"):
        Encoder.load(path)
    deep = edit_metadata(weight_file, tmp_path / "deep.safetensors",
                         architecture="[" * 100_000 + "]" * 100_000)
    with pytest.raises(WeightFileFormatError, match="deep.safetensors.*architecture"):
        Encoder.load(deep)


def test_hostile_metadata_is_one_cli_line(images, weight_file, tmp_path, capsys):
    from galmorphsearch.scripts.main import main

    cutouts = _cutout_file(images, tmp_path / "cutouts.fits")
    bad = edit_metadata(weight_file, tmp_path / "badarch.safetensors",
                        architecture='["resnet18-trimmed"]')
    status = main(["build-db", str(cutouts), "-o", str(tmp_path / "db.fits"),
                   "--encoder", str(bad)])
    err = capsys.readouterr().err
    assert status == 1, err
    assert len(err.strip().splitlines()) == 1 and "unexpected" not in err, err
    assert "badarch.safetensors" in err and "architecture" in err


@pytest.mark.parametrize("stored", [1, 8, 15])
def test_shortened_weights_hash_is_refused(weight_file, tmp_path, stored):
    """A hash cut short would let most edits of the tensors through: it is refused."""
    from galmorphsearch.model import Encoder, read_weights_metadata
    from galmorphsearch.utils import WeightFileFormatError

    digest = read_weights_metadata(weight_file)["weights_hash"]
    assert len(digest) == 16
    path = edit_metadata(weight_file, tmp_path / "short.safetensors",
                         weights_hash=digest[:stored])
    with pytest.raises(WeightFileFormatError, match="short.safetensors.*weights_hash"):
        Encoder.load(path)
    Encoder.load(edit_metadata(weight_file, tmp_path / "same.safetensors"))  # intact: loads


@pytest.mark.parametrize("tensor", ["huge", "scalar", "matrix of zero width"])
def test_state_dict_projection_of_absurd_size_is_refused(tmp_path, tensor):
    """from_state_dict_file takes latent_dim from the file's projection layer: checked first."""
    from galmorphsearch.model import Encoder
    from galmorphsearch.utils import WeightFileFormatError

    weight = {"huge": torch.zeros(10**13, 0), "scalar": torch.tensor(3.0),
              "matrix of zero width": torch.zeros(5, 0)}[tensor]
    path = tmp_path / "proj.pt"
    torch.save({"projection.weight": weight, "projection.bias": torch.zeros(1)}, path)
    with pytest.raises(WeightFileFormatError, match="proj.pt.*projection.weight") as info:
        Encoder.from_state_dict_file(path, architecture="vgg-small", input_size=32)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("reader", ["from_state_dict_file", "load_backbone_weights"])
def test_state_dict_with_names_that_are_not_strings_is_refused(tmp_path, reader):
    from galmorphsearch.model import Encoder
    from galmorphsearch.utils import WeightFileFormatError

    path = tmp_path / "keys.pt"
    torch.save({1: torch.zeros(2), "features.0.weight": torch.zeros(2)}, path)
    with pytest.raises(WeightFileFormatError, match="keys.pt.*not a string"):
        if reader == "from_state_dict_file":
            Encoder.from_state_dict_file(path, architecture="vgg-small", input_size=32)
        else:
            Encoder("vgg-small", input_size=32).load_backbone_weights(path)


def _short_refusal(error, name, payload="exec"):
    text = str(error)
    assert name in text and "not allowed" in text and payload in text, text
    assert "\n" not in text and "\x1b" not in text and len(text) < 400, text
    # never tells the user how to run the payload
    assert "weights_only=False" not in text.replace(" ", "") and "safe_globals" not in text


@ignore_torch_env_warning
@pytest.mark.parametrize("layout", ["zip", "legacy", "pickle"])
@pytest.mark.parametrize("reader", ["from_state_dict_file", "load_backbone_weights"])
def test_malicious_weight_file_is_one_short_line(tmp_path, monkeypatch, reader, layout):
    from galmorphsearch.model import Encoder

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    evil = malicious_checkpoint(tmp_path / "evil.pt", marker, layout)
    with pytest.raises(UnsafeCheckpointError) as info:
        if reader == "from_state_dict_file":
            Encoder.from_state_dict_file(evil, architecture="vgg-small", input_size=32)
        else:
            Encoder("vgg-small", input_size=32).load_backbone_weights(evil)
    assert not marker.exists(), "code from the weight file ran"
    # a plain pickle of a tensor refers to torch's own pickling helper first
    _short_refusal(info.value, "evil.pt", "exec" if layout != "pickle" else "_load_from_bytes")


@ignore_torch_env_warning
def test_malicious_init_weights_is_one_short_cli_line(images, tmp_path, monkeypatch, capsys):
    from galmorphsearch.scripts.main import main

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    cutouts = _cutout_file(images, tmp_path / "cutouts.fits")
    marker = tmp_path / "pwned"
    evil = malicious_checkpoint(tmp_path / "evil.pt", marker, "zip")
    status = main(["train", str(cutouts), "-o", str(tmp_path / "e.safetensors"),
                   "--input-size", "32", "--epochs", "1", "--init-weights", str(evil)])
    err = capsys.readouterr().err
    assert not marker.exists(), "code from the weight file ran"
    assert status == 1, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    _short_refusal(err.strip(), "evil.pt")


def test_protocol_4_pickle_is_refused_quietly(tmp_path):
    """A pickle the safe loader cannot parse is refused without torch's warning or advice."""
    from galmorphsearch.model import Encoder
    from galmorphsearch.utils import WeightFileFormatError

    marker = tmp_path / "pwned"
    path = tmp_path / "p4.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": _Payload(marker)}, f, protocol=4)
    with pytest.raises(WeightFileFormatError) as info:  # and no warning (filterwarnings=error)
        Encoder.from_state_dict_file(path)
    text = str(info.value)
    assert not marker.exists()
    assert "p4.pt" in text and "\n" not in text and "weights_only=False" not in text, text


@pytest.mark.parametrize("name", ["AutoencoderModule", "ClassifierModule", "ContrastiveModule"])
def test_load_from_checkpoint_refuses_hparams_file(genuine, tmp_path, name):
    """A YAML hyper-parameter file would be read with yaml.full_load: refused."""
    import galmorphsearch.model as model

    hparams = tmp_path / "h.yaml"
    hparams.write_text("name: !!python/name:os.system\nlearning_rate: 0.01\n")
    with pytest.raises(ValueError, match="hparams_file.*checkpoint") as info:
        getattr(model, name).load_from_checkpoint(genuine, hparams_file=hparams)
    assert "\n" not in str(info.value)
    if name == "ClassifierModule":  # what the message advises instead works
        module = model.ClassifierModule.load_from_checkpoint(genuine, dropout=0.25)
        assert module.hparams.dropout == 0.25
