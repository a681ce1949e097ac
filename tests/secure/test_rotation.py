"""`rotate_keys`: the library recipe behind `trustforge keys rotate`.

A rotation needs the `keys` action, re-wraps every sealed package under the folders it is
given without touching a payload, forgets the old key-encryption key only when all of them
were re-wrapped, and is audited whatever its outcome.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from trustforge.errors import AccessDenied, IntegrityError, SecurityError
from trustforge.package import write_package
from trustforge.secure import AuditLog, Keyring, KeyRotation, Principal, open_sealed, rotate_keys, seal_package

ADMIN = Principal("root", "admin", "user")


@pytest.fixture
def keyring(tmp_path) -> Keyring:
    return Keyring.init(tmp_path / "keys")


@pytest.fixture
def audit(tmp_path, keyring) -> AuditLog:
    return AuditLog(sa.create_engine(f"sqlite:///{tmp_path / 'audit.db'}"), keyring.sign, keyring.verify)


def _sealed(tmp_path: Path, keyring: Keyring, dest: Path, name: str) -> Path:
    pkg = write_package(tmp_path / "plain" / name, {"name": name}, {"weights.safetensors": {"w": torch.randn(8)}}, keyring=keyring)
    seal_package(pkg, dest, keyring)
    return dest


def _last(audit: AuditLog) -> dict:
    return audit.entries(limit=1)[0]


def test_rotation_rewraps_every_sealed_package_under_the_roots_and_is_audited(tmp_path, keyring, audit):
    store, mine = tmp_path / "store", tmp_path / "mine"
    sealed = [
        _sealed(tmp_path, keyring, store / "a" / "1", "a"),
        _sealed(tmp_path, keyring, store / "b" / "1", "b"),
        _sealed(tmp_path, keyring, mine / "c.sealed", "c"),
    ]
    payloads = [(p / "weights.safetensors.enc").read_bytes() for p in sealed]

    done = rotate_keys(keyring, [store, mine, tmp_path / "no-such-folder"], principal=ADMIN, audit=audit)

    assert isinstance(done, KeyRotation) and done.rewrapped == 3 and not done.kek_from_env
    assert done.keyring.key_id != keyring.key_id
    assert Keyring.load(tmp_path / "keys").key_id == done.keyring.key_id
    assert not list((tmp_path / "keys" / "retired").glob("kek-*"))  # the old KEK is forgotten
    for path, payload in zip(sealed, payloads):
        assert (path / "weights.safetensors.enc").read_bytes() == payload  # no payload re-encrypted
        assert open_sealed(path, Keyring.load(tmp_path / "keys"))["manifest.json"]
    entry = _last(audit)
    assert (entry["actor"], entry["action"], entry["outcome"]) == ("root", "keys", "ok")
    assert entry["details"]["rewrapped"] == 3 and entry["details"]["key_id"] == done.keyring.key_id


def test_rotation_needs_the_keys_action(tmp_path, keyring, audit):
    with pytest.raises(AccessDenied):
        rotate_keys(keyring, [], principal=Principal("ann", "deployer", "user"), audit=audit)
    assert Keyring.load(tmp_path / "keys").key_id == keyring.key_id  # nothing rotated
    assert _last(audit)["outcome"] == "denied"


def test_a_package_that_cannot_be_rewrapped_keeps_the_old_kek_and_is_audited(tmp_path, keyring, audit):
    store = tmp_path / "store"
    _sealed(tmp_path, keyring, store / "a" / "1", "a")
    stranger = Keyring.init(tmp_path / "other-keys")
    _sealed(tmp_path, stranger, store / "b" / "1", "b")  # sealed under a KEK this workspace never held

    with pytest.raises(SecurityError, match="1 sealed package") as info:
        rotate_keys(keyring, [store], principal=ADMIN, audit=audit)
    assert "keys rotate" in str(info.value)
    assert list((tmp_path / "keys" / "retired").glob("kek-*"))  # kept, so a second rotation can finish
    entry = _last(audit)
    assert entry["outcome"] == "error" and entry["details"] == {"rotate": True, "rewrapped": 1, "failed": 1}


def test_a_kek_from_the_environment_needs_the_new_one(tmp_path, audit):
    kek = base64.b64encode(os.urandom(32)).decode()
    ring = Keyring.init(tmp_path / "env-keys", kek_b64=kek)
    with pytest.raises(SecurityError):
        rotate_keys(ring, [], principal=ADMIN, audit=audit)
    new_kek = base64.b64encode(os.urandom(32)).decode()
    done = rotate_keys(ring, [], principal=ADMIN, audit=audit, new_kek_b64=new_kek)
    assert done.kek_from_env and done.rewrapped == 0
    assert Keyring.load(tmp_path / "env-keys", kek_b64=new_kek).key_id == done.keyring.key_id


def test_a_rotation_killed_after_the_key_changed_has_the_new_key_on_record(tmp_path, keyring, audit, monkeypatch):
    """SIGKILL during `keys rotate --reencrypt` (here: an interrupt in the re-encryption) leaves the
    new signing key in use; the audit log names it, in an entry signed by the old key before any
    key file changed, and a rerun records its own new key the same way."""
    from trustforge.secure import _rotation

    store = tmp_path / "store"
    pkg = _sealed(tmp_path, keyring, store / "a" / "1", "a")

    def killed(*args):
        raise KeyboardInterrupt  # what the kill looks like from here: nothing after it runs

    monkeypatch.setattr(_rotation, "reencrypt_all", killed)
    with pytest.raises(KeyboardInterrupt):
        rotate_keys(keyring, [store], principal=ADMIN, audit=audit, reencrypt=True)
    monkeypatch.undo()
    in_use = Keyring.load(tmp_path / "keys")
    assert in_use.key_id != keyring.key_id  # the key changed before the kill
    entry = _last(audit)
    assert (entry["actor"], entry["action"], entry["outcome"]) == ("root", "keys", "ok")
    assert entry["details"] == {"rotate": "started", "key_id": in_use.key_id, "previous_key_id": keyring.key_id, "reencrypt": True}
    with audit.engine.connect() as conn:
        head = conn.execute(sa.text("SELECT key_id FROM audit_head")).scalar()
    assert head == keyring.key_id  # recorded under the old key, which vouches for the new one

    later = AuditLog(audit.engine, in_use.sign, in_use.verify)  # the workspace stays usable
    done = rotate_keys(in_use, [store], principal=ADMIN, audit=later, reencrypt=True)
    assert open_sealed(pkg, done.keyring)["manifest.json"]
    started = [e["details"]["key_id"] for e in later.entries(limit=20) if e["details"].get("rotate") == "started"]
    assert started == [done.keyring.key_id, in_use.key_id]  # newest first: both keys on record
    assert later.verify().ok


# ---------------------------------------------------------------------------- re-encryption


def _old_copy(keys: Path, dest: Path) -> Keyring:
    import shutil

    shutil.copytree(keys, dest)
    return Keyring.load(dest)


def test_reencrypt_seals_every_file_again_so_the_old_kek_and_old_header_open_nothing(tmp_path, keyring, audit):
    store = tmp_path / "store"
    pkg = _sealed(tmp_path, keyring, store / "a" / "1", "a")
    old_ring = _old_copy(tmp_path / "keys", tmp_path / "stolen-keys")
    old_header = (pkg / "sealed.json").read_bytes()
    before = {p.name: p.read_bytes() for p in pkg.glob("*.enc")}

    done = rotate_keys(keyring, [store], principal=ADMIN, audit=audit, reencrypt=True)

    assert done.reencrypted and done.rewrapped == 1
    assert all((pkg / name).read_bytes() != blob for name, blob in before.items())  # every payload changed
    new_ring = Keyring.load(tmp_path / "keys")
    assert open_sealed(pkg, new_ring)["manifest.json"]
    assert "previous_wrapped_keys" not in json.loads((pkg / "sealed.json").read_text())
    (pkg / "sealed.json").write_bytes(old_header)  # what an attacker kept from before the rotation
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_sealed(pkg, old_ring)
    assert _last(audit)["details"]["reencrypted"] == 1


def test_a_reencryption_killed_half_way_leaves_every_file_readable_and_finishes_when_rerun(tmp_path, keyring, monkeypatch):
    from trustforge.secure import _envelope

    pkg = _sealed(tmp_path, keyring, tmp_path / "store" / "a" / "1", "a")
    expected = open_sealed(pkg, keyring)
    old_ring = _old_copy(tmp_path / "keys", tmp_path / "stolen-keys")
    old_header = (pkg / "sealed.json").read_bytes()
    new = keyring.rotate()
    real_replace, calls = os.replace, []

    def dies_after_one_file(src, dst):
        if str(dst).endswith(".enc"):
            calls.append(dst)
            if len(calls) == 2:
                Path(src).touch()  # the kill leaves its temporary file behind
                raise KeyboardInterrupt  # killed between two files
        real_replace(src, dst)

    monkeypatch.setattr(_envelope.os, "replace", dies_after_one_file)
    with pytest.raises(KeyboardInterrupt):
        _envelope.reencrypt_sealed(pkg, keyring, new)
    monkeypatch.setattr(_envelope.os, "replace", real_replace)
    # Half the files under the new data key, half under the old one: all readable.
    assert "previous_wrapped_keys" in json.loads((pkg / "sealed.json").read_text())
    assert open_sealed(pkg, new) == expected

    _envelope.reencrypt_sealed(pkg, keyring, new)  # rerun: finishes
    assert open_sealed(pkg, new) == expected
    assert "previous_wrapped_keys" not in json.loads((pkg / "sealed.json").read_text())
    assert sorted(p.name for p in pkg.iterdir()) == sorted(["sealed.json", *(n + ".enc" for n in expected)])
    (pkg / "sealed.json").write_bytes(old_header)
    with pytest.raises((IntegrityError, SecurityError)):
        open_sealed(pkg, old_ring)


def test_a_changed_previous_key_list_is_refused(tmp_path, keyring):
    from trustforge.secure import _envelope

    pkg = _sealed(tmp_path, keyring, tmp_path / "store" / "a" / "1", "a")
    header = json.loads((pkg / "sealed.json").read_text())
    header["previous_wrapped_keys"] = [header["wrapped_key"]]  # the current key offered as a previous one
    (pkg / "sealed.json").write_text(json.dumps(header))
    with pytest.raises(IntegrityError, match="previous data key"):
        open_sealed(pkg, keyring)
    header["previous_wrapped_keys"] = "x"
    (pkg / "sealed.json").write_text(json.dumps(header))
    with pytest.raises(IntegrityError, match="sealed.json"):
        _envelope.open_sealed(pkg, keyring)
