"""The model package: its contents, no pickle, faithful predictions, and tamper evidence.

Every tampering (a flipped byte, a missing, extra or linked file, a path in the manifest)
must be one IntegrityError that names the file at fault, raised before anything is parsed.
Packages are signed; the signature is checked first (tests/secure/test_signing.py goes
deeper), and `UnsafeNoVerify` still checks every digest against the manifest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import trustforge.package._format as fmt
from trustforge import _fs
from trustforge.data import prepare
from trustforge.errors import IntegrityError
from trustforge.evaluate import outputs_to_proba
from trustforge.package import FORMAT, FORMAT_VERSION, Model, UnsafeNoVerify, read_package, write_package
from trustforge.package._format import encode_manifest
from trustforge.pipeline import run
from trustforge.secure._keys import Keyring
from trustforge.settings import Settings
from trustforge.spec import load_spec, spec_digest, spec_to_dict
from trustforge.train import Callback

SPECS = {
    "iris": {
        "name": "iris-pkg",
        "data": {"source": "builtin:iris"},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 3, "batch_size": 16, "optimizer": {"name": "adamw", "lr": 0.03}},
    },
    "breast-cancer-bce": {
        "name": "bc-bce",
        "data": {"source": "builtin:breast_cancer"},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 2, "batch_size": 32, "loss": "bce", "precision": "bf16-mixed"},
    },
    "diabetes": {
        "name": "diabetes",
        "task": "regression",
        "data": {"source": "builtin:diabetes"},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"max_epochs": 3, "batch_size": 32},
    },
    "digits-cnn": {
        "name": "digits-cnn",
        "data": {"source": "builtin:digits"},
        "model": {"kind": "cnn", "channels": [4], "hidden": [16]},
        "train": {"max_epochs": 1, "batch_size": 64},
    },
}


class KeepModel(Callback):
    """Keeps a copy of the trained model as fit leaves it (best weights restored)."""

    def on_fit_end(self, trainer):
        self.model = copy.deepcopy(trainer.model).eval()


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> Settings:
    return Settings.from_env(tmp_path_factory.mktemp("ws"))


@pytest.fixture(scope="module")
def keyring(settings) -> Keyring:
    """The keys of the workspace the runs train in (the first run would create the same)."""
    return Keyring.load_or_init(settings.keys_dir)


@pytest.fixture(scope="module")
def runs(settings, keyring):
    """One run per spec, each with the model as it was in memory before packaging."""
    out = {}
    for key, spec in SPECS.items():
        keep = KeepModel()
        result = run(spec, settings=settings, callbacks=[keep], progress=False)
        out[key] = (result, keep.model)
    return out


@pytest.fixture
def package(runs, tmp_path, settings, workspace, monkeypatch) -> Path:
    """A private copy of the iris package, free to tamper with.

    The environment names the workspace that signed it, so a plain `Model.load(path)` finds
    the keys to verify it with, as it would for a user.
    """
    monkeypatch.setenv("TRUSTFORGE_HOME", str(settings.home))
    return Path(shutil.copytree(runs["iris"][0].package, tmp_path / "package"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- contents


def test_the_manifest_describes_the_package(runs, keyring):
    result, _ = runs["iris"]
    pkg = result.package
    assert pkg == result.run_dir / "package"
    files = ["manifest.json", "model.sig", "ood.safetensors", "preprocess.safetensors", "weights.safetensors"]
    assert sorted(p.name for p in pkg.iterdir()) == files
    m = json.loads((pkg / "manifest.json").read_text())
    assert m["format"] == FORMAT and m["format_version"] == FORMAT_VERSION
    assert re.fullmatch(r"[0-9a-f]{32}", m["package_id"])
    assert m["name"] == "iris-pkg"
    spec = load_spec(SPECS["iris"])
    assert m["spec"] == spec_to_dict(spec)
    assert [i["name"] for i in m["signature"]["inputs"]] == Model.load(pkg, keyring=keyring).schema.input_names
    assert m["signature"]["outputs"][1]["labels"] == ["setosa", "versicolor", "virginica"]
    assert m["preprocessing"]["schema"]["target"] == "target"
    # metrics.json holds the package's test metrics plus evidence measured after packaging (speed).
    on_disk = json.loads((result.run_dir / "metrics.json").read_text())
    assert {k: on_disk[k] for k in m["metrics"]} == m["metrics"] and "speed" in on_disk
    assert m["metrics"]["accuracy"] > 0.6
    lineage = m["lineage"]
    assert re.fullmatch(r"[0-9a-f]{64}", lineage["dataset_digest"])
    assert lineage["dataset_digest"] == prepare(spec).data_digest
    assert lineage["spec_digest"] == spec_digest(spec)
    assert {"torch", "numpy", "safetensors"} <= lineage["packages"].keys()
    assert lineage["packages"]["torch"] == torch.__version__
    assert lineage["created_by"] == "local-admin"  # the principal's kind, never the OS login (personal data)
    assert lineage["run"] == result.run_dir.name
    assert m["files"].keys() == {"weights.safetensors", "preprocess.safetensors", "ood.safetensors"}
    for name, entry in m["files"].items():
        assert entry == {"sha256": sha256(pkg / name), "size": (pkg / name).stat().st_size}


PICKLE_HEADERS = (b"\x80\x02", b"\x80\x03", b"\x80\x04\x95", b"\x80\x05\x95")


def _safetensors_layout_is_exact(blob: bytes) -> bytes:
    """Check header length, JSON header and tensor offsets cover the file exactly; return the header."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data_len = len(blob) - 8 - n
    spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    end = 0
    for start, stop in spans:
        assert start == end, "gap or overlap between tensors"
        end = stop
    assert end == data_len, "bytes after the last tensor"
    return blob[8 : 8 + n]


def test_nothing_in_a_run_is_pickle(runs):
    for result, _ in runs.values():
        for path in sorted(p for p in result.run_dir.rglob("*") if p.is_file()):
            blob = path.read_bytes()
            assert not blob.startswith(b"PK\x03\x04"), f"{path} is a zip (torch.save) file"
            if path.suffix == ".safetensors":
                header = _safetensors_layout_is_exact(blob)
                assert all(b < 0x80 for b in header), path
                # Tensor data is arbitrary bytes, so only a full pickle header (PROTO + FRAME) counts there.
                assert not any(h in blob for h in PICKLE_HEADERS[2:]), path
            else:
                assert path.suffix in (".json", ".yaml", ".csv", ".sig"), f"unexpected file {path}"
                assert all(b < 0x80 for b in blob), f"{path} is not plain text"
                assert not any(h in blob for h in PICKLE_HEADERS), path
        for path in result.package.iterdir():
            assert path.suffix in (".json", ".safetensors", ".sig"), path
            if path.suffix in (".json", ".sig"):  # the signature is a JSON Sigstore bundle
                json.loads(path.read_bytes())


# ---------------------------------------------------------------------------- loading and predicting


@pytest.mark.parametrize("key", list(SPECS))
def test_a_loaded_package_predicts_what_the_trained_model_did(key, runs, keyring):
    result, in_memory = runs[key]
    data = prepare(result.spec)
    model = Model.load(result.package, keyring=keyring)
    with torch.no_grad():
        expected = in_memory(*data.test.inputs).float()
    if result.spec.task == "classification":
        expected = expected / model.temperature  # the package predicts with its fitted temperature
    raw = data.test_raw
    got = model.outputs(raw)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    frame = model.predict(raw)
    assert len(frame) == len(raw)
    if result.spec.task == "classification":
        proba = outputs_to_proba(expected, len(model.classes))
        assert proba.shape == (len(raw), len(model.classes))  # two columns for one BCE logit too
        columns = [f"proba_{c}" for c in model.classes]
        np.testing.assert_allclose(frame[columns].to_numpy(), proba, atol=1e-6)
        np.testing.assert_allclose(model.predict_proba(raw), proba, atol=1e-6)
        assert list(frame["prediction"]) == [model.classes[i] for i in proba.argmax(1)]
    else:
        decoded = data.preprocessor.decode_regression(expected[:, 0].double().numpy())
        np.testing.assert_allclose(frame["prediction"].to_numpy(), decoded, rtol=1e-6)
    # The package's metrics describe the package's predictions (bf16-trained models included).
    again = model.evaluate(raw)
    keys = ("accuracy", "log_loss", "roc_auc") if result.spec.task == "classification" else ("mae", "rmse", "r2")
    for k in keys:
        assert again[k] == pytest.approx(result.metrics[k], rel=1e-9, abs=1e-12), k


def test_a_loaded_package_predicts_from_a_plain_table(runs, keyring):
    result, _ = runs["breast-cancer-bce"]
    data = prepare(result.spec)
    model = Model.load(result.package, keyring=keyring)
    table = data.test_raw.frame.drop(columns=["target"])
    frame = model.predict(table)
    assert list(frame.columns) == ["prediction", "proba_malignant", "proba_benign"]
    np.testing.assert_allclose(frame[["proba_malignant", "proba_benign"]].sum(axis=1), 1.0)
    assert (frame["prediction"] == data.test_raw.frame["target"]).mean() > 0.85


def test_the_same_spec_twice_gives_the_same_weights_digest(runs, tmp_path):
    first, _ = runs["iris"]
    again = run(SPECS["iris"], settings=Settings.from_env(tmp_path / "other"), progress=False)
    assert sha256(again.package / "weights.safetensors") == sha256(first.package / "weights.safetensors")
    assert sha256(again.package / "preprocess.safetensors") == sha256(first.package / "preprocess.safetensors")
    m1 = json.loads((first.package / "manifest.json").read_text())
    m2 = json.loads((again.package / "manifest.json").read_text())
    assert m1["files"] == m2["files"]
    assert m1["package_id"] != m2["package_id"]


# ---------------------------------------------------------------------------- tamper evidence


def _flip(path: Path, offset: int, mask: int = 0x01) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= mask
    path.write_bytes(bytes(blob))


def _offset_of(blob: bytes, needle: bytes, skip: int = 0) -> int:
    i = blob.index(needle)
    return i + skip


# Most positions keep the manifest valid JSON (a digit, a letter, a hex digit of a digest, a
# newline turned into a carriage return, which parses the same), so it is the digest or the
# canonical form, not the parser, that must notice. (offset, XOR mask) per case.
MANIFEST_FLIPS = {
    "metric-digit": lambda b: (_offset_of(b, b'"accuracy": 0.', len(b'"accuracy": 0.')), 0x01),
    "name-letter": lambda b: (_offset_of(b, b'"name": "iris-pkg"', len(b'"name": "')), 0x01),
    "file-digest": lambda b: (_offset_of(b, b'"sha256": "', len(b'"sha256": "') + 5), 0x01),
    "own-digest": lambda b: (_offset_of(b, b'"manifest_sha256": "', len(b'"manifest_sha256": "') + 5), 0x01),
    "newline-to-cr": lambda b: (_offset_of(b, b'\n "name"'), 0x0A ^ 0x0D),
    "indentation": lambda b: (_offset_of(b, b'\n "name"', 1), 0x01),
    "first-byte": lambda b: (0, 0x01),
    "last-byte": lambda b: (len(b) - 1, 0x01),
}


@pytest.mark.parametrize("where", list(MANIFEST_FLIPS))
def test_a_flipped_byte_in_the_manifest_is_caught(where, package):
    path = package / "manifest.json"
    _flip(path, *MANIFEST_FLIPS[where](path.read_bytes()))
    with pytest.raises(IntegrityError) as info:
        Model.load(package)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", ["weights.safetensors", "preprocess.safetensors"])
@pytest.mark.parametrize("where", ["header-length", "header", "middle", "last"])
def test_a_flipped_byte_in_a_tensor_file_is_caught(name, where, package):
    path = package / name
    size = path.stat().st_size
    offset = {"header-length": 0, "header": 12, "middle": size // 2 + 3, "last": size - 1}[where]
    _flip(path, offset)
    with pytest.raises(IntegrityError, match="SHA-256") as info:
        Model.load(package)
    assert str(path) in str(info.value)


def test_a_deleted_file_is_caught(package):
    (package / "preprocess.safetensors").unlink()
    with pytest.raises(IntegrityError, match="missing") as info:
        Model.load(package)
    assert "preprocess.safetensors" in str(info.value)


@pytest.mark.parametrize("name", ["evil.pkl", ".hidden", "notes.json"])
def test_an_unlisted_file_is_caught(name, package):
    import pickle

    (package / name).write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(IntegrityError, match="not listed") as info:
        Model.load(package)
    assert str(package / name) in str(info.value)


def test_an_unlisted_folder_is_caught(package):
    (package / "extra").mkdir()
    with pytest.raises(IntegrityError, match="folder not listed") as info:
        read_package(package)
    assert "extra" in str(info.value)


def test_a_symlink_is_caught(package, tmp_path):
    (package / "link").symlink_to(package / "weights.safetensors")
    with pytest.raises(IntegrityError, match="link") as info:
        Model.load(package)
    assert str(package / "link") in str(info.value)
    (package / "link").unlink()

    # A listed file replaced by a link to identical bytes elsewhere: still refused.
    outside = tmp_path / "elsewhere.safetensors"
    shutil.copy(package / "weights.safetensors", outside)
    (package / "weights.safetensors").unlink()
    (package / "weights.safetensors").symlink_to(outside)
    with pytest.raises(IntegrityError, match="symbolic link") as info:
        Model.load(package)
    assert str(package / "weights.safetensors") in str(info.value)


def test_a_linked_manifest_is_caught(package, tmp_path):
    outside = tmp_path / "manifest.json"
    shutil.move(package / "manifest.json", outside)
    (package / "manifest.json").symlink_to(outside)
    with pytest.raises(IntegrityError, match="manifest"):
        Model.load(package)


def _forge(package: Path, change) -> None:
    """Rewrite the manifest with a consistent self-digest, as someone who knows the format could."""
    path = package / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_bytes(encode_manifest(manifest))


@pytest.mark.parametrize("entry", ["../x", "sub/x", "/etc/passwd", ".hidden", "manifest.json", "..", "a\\b"])
def test_a_manifest_entry_that_is_not_a_plain_name_is_caught(entry, package):
    _forge(package, lambda m: m["files"].__setitem__(entry, {"sha256": "0" * 64, "size": 0}))
    # Signed: the rewritten manifest no longer matches the signature.
    with pytest.raises(IntegrityError, match="SHA-256 does not match the signature") as info:
        Model.load(package)
    assert str(package / "manifest.json") in str(info.value)
    # Signature skipped on purpose: the manifest's own entries are still checked.
    with pytest.raises(IntegrityError, match="not a plain file name") as info:
        Model.load(package, public_key=UnsafeNoVerify())
    assert repr(entry) in str(info.value)


def test_a_forged_manifest_that_lies_about_a_file_is_caught(package):
    _forge(package, lambda m: m["files"]["weights.safetensors"].__setitem__("sha256", "0" * 64))
    with pytest.raises(IntegrityError, match="SHA-256") as info:
        Model.load(package)
    assert str(package / "manifest.json") in str(info.value)
    with pytest.raises(IntegrityError, match="SHA-256 does not match the manifest") as info:
        Model.load(package, public_key=UnsafeNoVerify())
    assert str(package / "weights.safetensors") in str(info.value)


@pytest.mark.parametrize(
    "content",
    [b"not json {", b"", b"\xff\xfe", b"[1, 2]", b'{"format": "other"}', b"[" * 100_000],
    ids=["text", "empty", "not-utf8", "list", "other-format", "deep"],
)
def test_a_manifest_that_is_not_a_package_manifest_is_caught(content, package):
    (package / "manifest.json").write_bytes(content)
    with pytest.raises(IntegrityError) as info:
        Model.load(package)
    assert str(package / "manifest.json") in str(info.value)


def test_a_missing_manifest_or_folder_is_caught(package, tmp_path):
    with pytest.raises(IntegrityError, match="not a package folder"):
        Model.load(tmp_path / "nowhere")
    (package / "manifest.json").unlink()
    with pytest.raises(IntegrityError, match="manifest missing"):
        Model.load(package)


# ---------------------------------------------------------------------------- writing


def _parts():
    manifest = {"name": "tiny", "metrics": {"accuracy": 0.5}}
    tensors = {"weights.safetensors": {"w": torch.arange(6.0).reshape(2, 3)}, "extra.safetensors": {"b": torch.ones(2)}}
    return manifest, tensors


def test_write_then_read_round_trips(tmp_path, keyring):
    manifest, tensors = _parts()
    dest = write_package(tmp_path / "pkg", manifest, tensors, keyring=keyring)
    assert sorted(p.name for p in dest.iterdir()) == ["extra.safetensors", "manifest.json", "model.sig", "weights.safetensors"]
    pkg = read_package(dest, keyring=keyring)
    assert pkg.manifest["name"] == "tiny"
    assert torch.equal(pkg.tensors("weights.safetensors")["w"], tensors["weights.safetensors"]["w"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]  # no temporary folder left
    with pytest.raises(FileExistsError):
        write_package(dest, manifest, tensors)
    assert read_package(dest, keyring=keyring).manifest["package_id"] == pkg.manifest["package_id"]  # untouched


def test_an_unsigned_package_loads_only_without_verification(tmp_path, keyring, caplog):
    manifest, tensors = _parts()
    dest = write_package(tmp_path / "pkg", manifest, tensors)
    with pytest.raises(IntegrityError, match="signature missing") as info:
        read_package(dest, keyring=keyring)
    assert str(dest / "model.sig") in str(info.value)
    with caplog.at_level("WARNING", logger="trustforge.secure"):
        pkg = read_package(dest, public_key=UnsafeNoVerify())
    assert pkg.manifest["name"] == "tiny"
    assert "WITHOUT checking the signature" in caplog.text


@pytest.mark.parametrize("fail_in", ["second-tensor-file", "fsync"])
def test_a_failed_write_leaves_nothing_at_dest(fail_in, tmp_path, monkeypatch):
    manifest, tensors = _parts()
    if fail_in == "second-tensor-file":
        real = fmt.save_tensors
        calls = []

        def save(t, *a, **k):
            calls.append(1)
            if len(calls) == 2:
                raise OSError("disk full")
            return real(t, *a, **k)

        monkeypatch.setattr(fmt, "save_tensors", save)
    else:

        def fsync(path):
            raise OSError("I/O error")

        monkeypatch.setattr(_fs, "fsync_path", fsync)
    with pytest.raises(OSError):
        write_package(tmp_path / "pkg", manifest, tensors)
    assert list(tmp_path.iterdir()) == []  # neither the package nor its temporary folder


def test_write_refuses_a_non_finite_metric_and_a_path_as_file_name(tmp_path):
    manifest, tensors = _parts()
    with pytest.raises(ValueError):
        write_package(tmp_path / "pkg", {**manifest, "metrics": {"r2": float("nan")}}, tensors)
    with pytest.raises(ValueError, match="plain file name"):
        write_package(tmp_path / "pkg2", manifest, {"../w.safetensors": {"w": torch.ones(1)}})
    with pytest.raises(ValueError, match="plain file name"):
        write_package(tmp_path / "pkg3", manifest, {"model.sig": {"w": torch.ones(1)}})
    assert list(tmp_path.iterdir()) == []
