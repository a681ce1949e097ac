"""Package signatures: the OpenSSF model-signing format, tamper evidence, trust and rotation.

Every file of a package (the signature included) is flipped, swapped and removed here; each
change must be one IntegrityError naming the file, raised before anything is parsed, so no
partial model is ever built. model-signing's own verifier must accept our signatures.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import trustforge.package._model as model_module
from trustforge.errors import IntegrityError, SecurityError
from trustforge.package import Model, UnsafeNoVerify, read_package, write_package
from trustforge.package._format import encode_manifest
from trustforge.pipeline import run
from trustforge.secure._keys import Keyring
from trustforge.secure._signing import sign_package, verify_package
from trustforge.settings import Settings

SPEC = {
    "name": "iris-signed",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [8]},
    "train": {"max_epochs": 1, "batch_size": 32},
}


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> tuple[Path, Keyring]:
    """A trained iris package signed by its workspace's key, and that keyring."""
    settings = Settings.from_env(tmp_path_factory.mktemp("ws"))
    result = run(SPEC, settings=settings, progress=False)
    return result.package, Keyring.load(settings.keys_dir)  # the keys the run signed with


@pytest.fixture
def package(signed, tmp_path) -> Path:
    return Path(shutil.copytree(signed[0], tmp_path / "package"))


@pytest.fixture
def keyring(signed) -> Keyring:
    return signed[1]


def flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


@pytest.fixture
def nothing_parsed(monkeypatch):
    """Records whether anything was built or parsed from tensors (it must not be, on failure)."""
    calls = []
    real_build = model_module.build_model
    monkeypatch.setattr(model_module, "build_model", lambda *a, **k: calls.append("build") or real_build(*a, **k))
    import trustforge.package._format as fmt

    real_load = fmt.load_tensors
    monkeypatch.setattr(fmt, "load_tensors", lambda *a, **k: calls.append("tensors") or real_load(*a, **k))
    return calls


# ---------------------------------------------------------------------------- the format


def test_the_signature_is_a_model_signing_bundle_over_every_file(package, keyring):
    bundle = json.loads((package / "model.sig").read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"]["publicKey"]["hint"] == keyring.key_id
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    import base64
    import hashlib

    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    resources = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    assert resources == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in package.iterdir() if p.name != "model.sig"}
    assert verify_package(package, keyring)["name"] == "iris-signed"


def test_model_signing_verifies_our_package_with_our_public_key(package, keyring, tmp_path):
    model_signing = pytest.importorskip("model_signing", reason="pip install model-signing pyopenssl")
    pub = tmp_path / "signing.pub"
    pub.write_bytes(keyring.public_key_pem())
    verifier = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub)
    verifier.verify(package, package / "model.sig")
    cli = [
        sys.executable,
        "-m",
        "model_signing",
        "verify",
        "key",
        str(package),
        "--signature",
        str(package / "model.sig"),
        "--public_key",
        str(pub),
    ]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Verification succeeded" in done.stdout

    flip(package / "weights.safetensors", 100)
    with pytest.raises(ValueError, match="weights.safetensors"):
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(package, package / "model.sig")
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "Verification failed" in done.stderr


# ---------------------------------------------------------------------------- tampering


FILES = ["manifest.json", "weights.safetensors", "preprocess.safetensors", "model.sig"]


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_in_any_file_is_one_error_naming_it(name, where, package, keyring, nothing_parsed):
    path = package / name
    size = path.stat().st_size
    flip(path, {"first": 0, "middle": size // 2, "last": size - 1}[where])
    with pytest.raises(IntegrityError) as info:
        Model.load(package, keyring=keyring)
    assert str(path) in str(info.value)
    assert nothing_parsed == []  # verified before parsed: no partial model


def test_a_flipped_byte_in_the_signature_value_is_caught(package, keyring):
    bundle = json.loads((package / "model.sig").read_text())
    import base64

    sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-3] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    (package / "model.sig").write_text(json.dumps(bundle))
    with pytest.raises(IntegrityError, match="signature does not verify") as info:
        verify_package(package, keyring)
    assert str(package / "model.sig") in str(info.value)


def test_a_rewritten_file_list_signed_by_nobody_is_caught(package, keyring):
    """Someone who changes weights and re-computes every digest still cannot sign."""
    import base64
    import hashlib

    flip(package / "weights.safetensors", 200)
    bundle = json.loads((package / "model.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    for r in statement["predicate"]["resources"]:
        r["digest"] = hashlib.sha256((package / r["name"]).read_bytes()).hexdigest()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (package / "model.sig").write_text(json.dumps(bundle))
    with pytest.raises(IntegrityError, match="signature does not verify") as info:
        Model.load(package, keyring=keyring)
    assert str(package / "model.sig") in str(info.value)


def _other_package(tmp_path: Path, keyring: Keyring, name: str = "other") -> Path:
    return write_package(
        tmp_path / name,
        {"name": "other"},
        {"weights.safetensors": {"w": torch.randn(4, 4)}, "preprocess.safetensors": {"p": torch.randn(3)}},
        keyring=keyring,
    )


@pytest.mark.parametrize("name", ["weights.safetensors", "preprocess.safetensors", "manifest.json"])
def test_a_file_swapped_in_from_another_package_is_caught(name, package, keyring, tmp_path):
    other = _other_package(tmp_path, keyring)
    shutil.copy(other / name, package / name)
    with pytest.raises(IntegrityError, match="SHA-256 does not match the signature") as info:
        Model.load(package, keyring=keyring)
    assert str(package / name) in str(info.value)


def test_a_signature_swapped_in_from_another_package_is_caught(package, keyring, tmp_path):
    other = _other_package(tmp_path, keyring)
    shutil.copy(other / "model.sig", package / "model.sig")
    # A file of this package is either not in the other's signature (ood.safetensors, when only
    # this one has a detector) or has another digest there: caught either way.
    with pytest.raises(IntegrityError, match="does not match the signature|not listed in the signature"):
        Model.load(package, keyring=keyring)


@pytest.mark.parametrize("name", FILES)
def test_a_deleted_file_is_caught(name, package, keyring):
    (package / name).unlink()
    with pytest.raises(IntegrityError, match="missing") as info:
        Model.load(package, keyring=keyring)
    assert str(package / name) in str(info.value)


@pytest.mark.parametrize("extra", ["model.sig.bak", "evil.pkl", "notes.json"])
def test_only_the_signature_file_is_accepted_beside_the_signed_files(extra, package, keyring):
    (package / extra).write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(IntegrityError, match="not listed") as info:
        Model.load(package, keyring=keyring)
    assert str(package / extra) in str(info.value)


def test_a_pickle_planted_as_a_signed_file_is_refused(package, keyring, nothing_parsed):
    """Even signed by the workspace key, weights that are a pickle are never unpickled."""
    payload = pickle.dumps({"weights": [1, 2, 3]})
    (package / "weights.safetensors").write_bytes(payload)
    manifest = json.loads((package / "manifest.json").read_text())
    import hashlib

    manifest["files"]["weights.safetensors"] = {"sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    (package / "manifest.json").write_bytes(encode_manifest(manifest))
    sign_package(package, keyring)
    with pytest.raises(IntegrityError, match="not a valid safetensors file") as info:
        Model.load(package, keyring=keyring)
    assert str(package / "weights.safetensors") in str(info.value)


def test_sign_package_refuses_files_that_do_not_match_the_manifest(package, keyring):
    flip(package / "preprocess.safetensors", -1)  # a table's preprocess file may be only a few bytes
    with pytest.raises(IntegrityError, match="refusing to sign") as info:
        sign_package(package, keyring)
    assert str(package / "preprocess.safetensors") in str(info.value)


# ---------------------------------------------------------------------------- trust


def test_a_package_signed_by_another_workspace_is_refused(package, tmp_path):
    stranger = Keyring.init(tmp_path / "stranger")
    with pytest.raises(IntegrityError, match="does not know") as info:
        Model.load(package, keyring=stranger)
    assert str(package / "model.sig") in str(info.value)


def test_a_package_from_elsewhere_loads_with_its_public_key(package, keyring, tmp_path):
    pub = tmp_path / "their.pub"
    pub.write_bytes(keyring.public_key_pem())
    assert Model.load(package, public_key=pub).name == "iris-signed"
    wrong = tmp_path / "wrong.pub"
    wrong.write_bytes(Keyring.init(tmp_path / "stranger").public_key_pem())
    with pytest.raises(IntegrityError, match="another key") as info:
        Model.load(package, public_key=wrong)
    assert str(package / "model.sig") in str(info.value)
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(SecurityError, match="junk.pub"):
        Model.load(package, public_key=tmp_path / "junk.pub")


def test_unsafe_no_verify_skips_only_the_signature(package, tmp_path, caplog):
    stranger = Keyring.init(tmp_path / "stranger")
    sign_package(package, stranger)  # a signature we cannot check
    with caplog.at_level("WARNING", logger="trustforge.secure"):
        model = Model.load(package, public_key=UnsafeNoVerify())
    assert model.name == "iris-signed"
    assert "UnsafeNoVerify" in caplog.text
    flip(package / "weights.safetensors", 300)
    with pytest.raises(IntegrityError, match="SHA-256 does not match the manifest") as info:
        Model.load(package, public_key=UnsafeNoVerify())
    assert str(package / "weights.safetensors") in str(info.value)


def test_the_default_keyring_is_the_workspace_in_the_environment(package, keyring, monkeypatch, tmp_path):
    monkeypatch.setenv("TRUSTFORGE_HOME", str(tmp_path / "empty"))
    with pytest.raises(SecurityError, match="--public-key, or public_key= in Python"):
        Model.load(package)
    monkeypatch.setenv("TRUSTFORGE_HOME", str(keyring.keys_dir.parent))
    assert Model.load(package).name == "iris-signed"


def test_old_signatures_verify_after_rotation(signed, tmp_path):
    src, keyring = signed
    keys = Path(shutil.copytree(keyring.keys_dir, tmp_path / "keys"))
    package = Path(shutil.copytree(src, tmp_path / "package"))
    old = Keyring.load(keys)
    new = old.rotate()
    new.purge_retired_keks()
    reloaded = Keyring.load(keys)
    assert reloaded.key_id == new.key_id != old.key_id
    assert verify_package(package, reloaded)["name"] == "iris-signed"
    assert Model.load(package, keyring=reloaded).name == "iris-signed"
    # A package signed after the rotation names the new key.
    fresh = _other_package(tmp_path, reloaded, "fresh")
    assert json.loads((fresh / "model.sig").read_text())["verificationMaterial"]["publicKey"]["hint"] == new.key_id
    assert read_package(fresh, keyring=reloaded).manifest["name"] == "other"
