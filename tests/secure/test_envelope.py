"""Sealed packages: AES-256-GCM envelope encryption, in-memory opening, re-wrapping.

A sealed file changed, moved from another package, renamed, truncated or reordered must be
one error naming the file; a wrong key-encryption key a SecurityError; plaintext weights must
never reach the disk when a sealed package is loaded; re-wrapping must leave every payload
byte as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest
import torch

import trustforge.secure._primitives as P
from trustforge.errors import IntegrityError, SecurityError
from trustforge.package import Model, read_package, write_package
from trustforge.pipeline import run
from trustforge.secure._envelope import is_sealed, open_sealed, rewrap_all, rewrap_sealed, seal_package, unseal_package
from trustforge.secure._keys import Keyring
from trustforge.settings import Settings

SPEC = {
    "name": "iris-sealed",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [8]},
    "train": {"max_epochs": 1, "batch_size": 32},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Keyring]:
    """A trained, signed iris package and the keyring of its workspace."""
    settings = Settings.from_env(tmp_path_factory.mktemp("ws"))
    result = run(SPEC, settings=settings, progress=False)
    return result.package, Keyring.load(settings.keys_dir)  # the keys the run signed with


@pytest.fixture
def keyring(trained, tmp_path) -> Keyring:
    """A private copy of the workspace keys (tests rotate them)."""
    return Keyring.load(shutil.copytree(trained[1].keys_dir, tmp_path / "keys"))


@pytest.fixture
def sealed(trained, keyring, tmp_path) -> Path:
    dest = tmp_path / "sealed"
    seal_package(trained[0], dest, keyring)
    return dest


def small_package(tmp_path: Path, keyring: Keyring, name: str, n: int = 64) -> Path:
    g = torch.Generator().manual_seed(hash(name) % 1000)
    return write_package(
        tmp_path / name,
        {"name": name},
        {"weights.safetensors": {"w": torch.randn(n, n, generator=g)}, "preprocess.safetensors": {"p": torch.randn(5, generator=g)}},
        keyring=keyring,
    )


def flip(path: Path, offset: int) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


# ---------------------------------------------------------------------------- round trip


def test_a_sealed_package_opens_to_the_signed_files(trained, keyring, sealed):
    plain = trained[0]
    assert is_sealed(sealed) and not is_sealed(plain)
    names = sorted(p.name for p in plain.iterdir())
    assert sorted(p.name for p in sealed.iterdir()) == sorted(["sealed.json", *(n + ".enc" for n in names)])
    header = json.loads((sealed / "sealed.json").read_text())
    assert header["package_id"] == json.loads((plain / "manifest.json").read_text())["package_id"]
    weights = (plain / "weights.safetensors").read_bytes()
    for f in sealed.iterdir():
        assert weights[100:164] not in f.read_bytes(), f  # ciphertext only
    blobs = open_sealed(sealed, keyring)
    assert {n: bytes(b) for n, b in blobs.items()} == {n: (plain / n).read_bytes() for n in names}


def test_model_load_opens_a_sealed_package_in_memory(trained, keyring, sealed):
    plain = Model.load(trained[0], keyring=keyring)
    model = Model.load(sealed, keyring=keyring)
    assert model.name == "iris-sealed"
    for a, b in zip(plain.module.state_dict().values(), model.module.state_dict().values()):
        assert torch.equal(a, b)


def test_plaintext_weights_never_touch_the_disk(trained, keyring, tmp_path):
    """Seal, drop the plain copy, load: no file anywhere we can see holds the weights' bytes."""
    started = time.time()
    plain = Path(shutil.copytree(trained[0], tmp_path / "plain"))
    weights = (plain / "weights.safetensors").read_bytes()
    probes = [weights[i : i + 48] for i in range(len(weights) // 4, len(weights) - 48, max(1, len(weights) // 5))]
    seal_package(plain, tmp_path / "store" / "sealed", keyring)
    shutil.rmtree(plain)
    model = Model.load(tmp_path / "store" / "sealed", keyring=keyring)
    assert model.name == "iris-sealed"
    candidates = [p for p in tmp_path.rglob("*") if p.is_file()]
    tmp = Path(tempfile.gettempdir())
    candidates += [
        p for p in tmp.iterdir() if p.is_file() and not p.is_symlink() and p.stat().st_mtime >= started and p.stat().st_size < 64 << 20
    ]
    for path in candidates:
        try:
            blob = path.read_bytes()
        except OSError:
            continue
        assert not any(probe in blob for probe in probes), f"plaintext weights found in {path}"


def test_unseal_writes_the_verified_plain_package(keyring, sealed, tmp_path):
    unseal_package(sealed, tmp_path / "plain", keyring)
    assert read_package(tmp_path / "plain", keyring=keyring).manifest["name"] == "iris-sealed"
    with pytest.raises(FileExistsError):
        unseal_package(sealed, tmp_path / "plain", keyring)


def test_only_signed_packages_of_this_workspace_are_sealed(keyring, tmp_path):
    unsigned = write_package(tmp_path / "unsigned", {"name": "u"}, {"weights.safetensors": {"w": torch.ones(2)}})
    with pytest.raises(IntegrityError, match="signature missing"):
        seal_package(unsigned, tmp_path / "s1", keyring)
    stranger = Keyring.init(tmp_path / "stranger")
    foreign = small_package(tmp_path, stranger, "foreign")
    with pytest.raises(IntegrityError, match="does not know"):
        seal_package(foreign, tmp_path / "s2", keyring)
    signed = small_package(tmp_path, keyring, "mine")
    (signed / "extra.bin").write_bytes(b"x")
    with pytest.raises(IntegrityError, match="not listed"):
        seal_package(signed, tmp_path / "s3", keyring)
    assert not (tmp_path / "s1").exists() and not (tmp_path / "s2").exists() and not (tmp_path / "s3").exists()


# ---------------------------------------------------------------------------- tampering


ENC = ["manifest.json.enc", "weights.safetensors.enc", "preprocess.safetensors.enc", "model.sig.enc"]


@pytest.mark.parametrize("name", ENC)
@pytest.mark.parametrize("where", ["nonce", "middle", "tag"])
def test_a_flipped_byte_in_a_sealed_file_is_one_error_naming_it(name, where, keyring, sealed):
    path = sealed / name
    size = path.stat().st_size
    flip(path, {"nonce": 3, "middle": size // 2, "tag": size - 1}[where])
    with pytest.raises(IntegrityError, match="failed authentication") as info:
        Model.load(sealed, keyring=keyring)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("field", ["package_id", "wrapped_key", "chunk_size", "files", "format"])
def test_a_changed_header_is_caught(field, keyring, sealed):
    path = sealed / "sealed.json"
    header = json.loads(path.read_text())
    value = header[field]
    if field == "package_id":
        header[field] = value[:-1] + ("0" if value[-1] != "0" else "1")
    elif field == "wrapped_key":
        raw = bytearray(base64.b64decode(value))
        raw[-5] ^= 1
        header[field] = base64.b64encode(bytes(raw)).decode()
    elif field == "chunk_size":
        header[field] = 4096
    elif field == "files":
        header[field] = [n for n in value if n != "preprocess.safetensors"]
    else:
        header[field] = "other"
    path.write_text(json.dumps(header))
    with pytest.raises(IntegrityError) as info:
        open_sealed(sealed, keyring)
    assert str(sealed / "sealed.json") in str(info.value)


def _meaning(raw: bytes) -> dict:
    header = json.loads(raw)
    header["wrapped_key"] = base64.b64decode(header["wrapped_key"])
    return header


def test_every_byte_of_the_header_is_covered(keyring, sealed):
    """A flipped byte anywhere in sealed.json is refused, unless it changes nothing it means
    (JSON whitespace, base64 padding bits)."""
    path = sealed / "sealed.json"
    original = path.read_bytes()
    for offset in range(len(original)):
        blob = bytearray(original)
        blob[offset] ^= 0x01
        path.write_bytes(bytes(blob))
        try:
            open_sealed(sealed, keyring)
        except (IntegrityError, SecurityError) as exc:
            assert str(path) in str(exc), exc
        else:
            assert _meaning(bytes(blob)) == _meaning(original), (offset, chr(original[offset]))
    path.write_bytes(original)
    open_sealed(sealed, keyring)


def test_a_sealed_file_from_another_package_is_caught(keyring, sealed, tmp_path):
    other = small_package(tmp_path, keyring, "other")
    seal_package(other, tmp_path / "other.sealed", keyring)
    shutil.copy(tmp_path / "other.sealed" / "weights.safetensors.enc", sealed / "weights.safetensors.enc")
    with pytest.raises(IntegrityError, match="failed authentication") as info:
        Model.load(sealed, keyring=keyring)
    assert str(sealed / "weights.safetensors.enc") in str(info.value)


def test_renamed_sealed_files_are_caught(keyring, sealed):
    a, b = sealed / "weights.safetensors.enc", sealed / "preprocess.safetensors.enc"
    a.rename(sealed / "tmp")
    b.rename(a)
    (sealed / "tmp").rename(b)
    with pytest.raises(IntegrityError, match="failed authentication") as info:
        open_sealed(sealed, keyring)
    assert ".safetensors.enc" in str(info.value)


@pytest.mark.parametrize("change", ["extra", "missing", "link"])
def test_the_folder_holds_exactly_the_listed_files(change, keyring, sealed):
    if change == "extra":
        (sealed / "evil.pkl").write_bytes(b"\x80\x04")
    elif change == "missing":
        (sealed / "preprocess.safetensors.enc").unlink()
    else:
        (sealed / "link.enc").symlink_to(sealed / "weights.safetensors.enc")
    with pytest.raises(IntegrityError) as info:
        open_sealed(sealed, keyring)
    name = {"extra": "evil.pkl", "missing": "preprocess.safetensors.enc", "link": "link.enc"}[change]
    assert str(sealed / name) in str(info.value)


def test_a_wrong_kek_is_a_security_error_naming_the_package(sealed, tmp_path):
    stranger = Keyring.init(tmp_path / "stranger")
    with pytest.raises(SecurityError, match="another key-encryption key") as info:
        Model.load(sealed, keyring=stranger)
    assert str(sealed / "sealed.json") in str(info.value)


def test_chunks_cannot_be_reordered_dropped_or_truncated(keyring, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "CHUNK", 1024)  # many chunks from a small file
    pkg = small_package(tmp_path, keyring, "chunky", n=48)  # ~9 KiB of weights
    seal_package(pkg, tmp_path / "s", keyring)
    path = tmp_path / "s" / "weights.safetensors.enc"
    original = path.read_bytes()
    full = 1024 + P.OVERHEAD
    assert len(original) > 3 * full
    assert open_sealed(tmp_path / "s", keyring)["weights.safetensors"] == (pkg / "weights.safetensors").read_bytes()
    variants = {
        "swap": original[full : 2 * full] + original[:full] + original[2 * full :],
        "drop-first": original[full:],
        "drop-last-whole": original[: (len(original) // full) * full] if len(original) % full else original[:-full],
        "cut-inside": original[:-5],
    }
    for what, blob in variants.items():
        path.write_bytes(blob)
        with pytest.raises(IntegrityError, match="failed authentication"):
            open_sealed(tmp_path / "s", keyring)
    path.write_bytes(original)


# ---------------------------------------------------------------------------- rotation


def test_rewrap_changes_only_the_wrapped_key(keyring, sealed, tmp_path):
    payload = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sealed.iterdir() if p.suffix == ".enc"}
    header = json.loads((sealed / "sealed.json").read_text())
    new = keyring.rotate()
    assert rewrap_sealed(sealed, keyring, new) is True
    assert rewrap_sealed(sealed, keyring, new) is False  # already done: a rerun is harmless
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sealed.iterdir() if p.suffix == ".enc"} == payload
    after = json.loads((sealed / "sealed.json").read_text())
    assert after["wrapped_key"] != header["wrapped_key"]
    assert {k: v for k, v in after.items() if k != "wrapped_key"} == {k: v for k, v in header.items() if k != "wrapped_key"}
    assert not [p for p in sealed.iterdir() if p.name.startswith(".")]  # no temporary file left
    new.purge_retired_keks()
    reloaded = Keyring.load(keyring.keys_dir)
    assert Model.load(sealed, keyring=reloaded).name == "iris-sealed"  # old signature, new KEK
    with pytest.raises(SecurityError, match="another key-encryption key"):
        open_sealed(sealed, keyring.__class__(keyring.keys_dir, keyring._signing, keyring._kek, kek_from_env=False))


def test_rewrap_all_reaches_every_sealed_package(keyring, tmp_path):
    store = tmp_path / "artifacts"
    for i in range(3):
        seal_package(small_package(tmp_path, keyring, f"m{i}"), store / f"m{i}" / str(i + 1), keyring)
    new = keyring.rotate()
    assert rewrap_all(store, keyring, new) == (3, [])
    assert rewrap_all(store, keyring, new) == (0, [])
    new.purge_retired_keks()
    for i in range(3):
        assert open_sealed(store / f"m{i}" / str(i + 1), Keyring.load(keyring.keys_dir))["manifest.json"]
