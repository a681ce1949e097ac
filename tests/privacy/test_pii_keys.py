"""The masking key recipe: HKDF of the workspace masking secret, per purpose (`Keyring.derive_key`).

The secret is 256 random bits made on first need, kept only wrapped by the key-encryption key
in keys/masking.key (mode 0600), re-wrapped (never changed) by a rotation and carried by backups,
so keyed hashes join and fakes unmask across rotations and restores.
"""

from __future__ import annotations

import base64
import os
import stat

import pandas as pd
import pytest
import torch
from _cli import run_main

from trustforge.errors import SecurityError
from trustforge.secure import Keyring

KEK = base64.b64encode(bytes(range(32))).decode()
ROWS = [
    {"name": "John Smith", "email": "john.smith@example.com", "phone": "13812345678", "note": "身份证11010519491231002X"},
    {"name": "王秀英", "email": "wang.xy@163.com", "phone": "13987654321", "note": "card 4111 1111 1111 1111"},
]


def _secret(ring: Keyring) -> bytes:
    return ring._masking_secret(create=False)  # noqa: SLF001


def _assert_sealed(path, secret: bytes) -> None:
    blob = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for form in (secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
        assert form not in blob  # only the wrapped form is on disk
    assert not list(path.parent.glob(".masking.key.tmp-*"))  # written atomically, nothing left over


def test_derived_keys_are_stable_per_purpose_and_need_a_kek(tmp_path):
    ring = Keyring.init(tmp_path / "keys", kek_b64=KEK)
    assert not (tmp_path / "keys" / "masking.key").exists()  # made on first need
    key = ring.derive_key("pii-mask")
    assert len(key) == 32 and key == Keyring.load(tmp_path / "keys", kek_b64=KEK).derive_key("pii-mask")
    assert key != ring.derive_key("other") and bytes(range(32)) not in (key,)
    _assert_sealed(tmp_path / "keys" / "masking.key", _secret(ring))
    other = Keyring.init(tmp_path / "keys2", kek_b64=KEK)  # the same KEK, another workspace: another secret
    assert other.derive_key("pii-mask") != key
    no_kek = Keyring(ring.keys_dir, ring._signing, None, kek_from_env=False)
    with pytest.raises(SecurityError, match="no key-encryption key; set TRUSTFORGE_KEK or run `trustforge keys init`"):
        no_kek.derive_key("pii-mask")


def test_rotation_rewraps_the_secret_and_never_changes_it(tmp_path):
    ring = Keyring.init(tmp_path / "keys")
    key, secret = ring.derive_key("pii-mask"), _secret(ring)
    wrapped = (tmp_path / "keys" / "masking.key").read_bytes()
    new = ring.rotate()
    assert new.derive_key("pii-mask") == key
    assert (tmp_path / "keys" / "masking.key").read_bytes() != wrapped  # under the new KEK now
    assert new.holds_kek_for((tmp_path / "keys" / "masking.key").read_bytes(), current_only=True)
    new.purge_retired_keks()
    loaded = Keyring.load(tmp_path / "keys")
    assert loaded.derive_key("pii-mask") == key
    _assert_sealed(tmp_path / "keys" / "masking.key", secret)
    # The KEK in the environment: the new one comes in TRUSTFORGE_NEW_KEK
    env_ring = Keyring.init(tmp_path / "env", kek_b64=KEK)
    env_key = env_ring.derive_key("pii-mask")
    new_kek = base64.b64encode(os.urandom(32)).decode()
    env_ring.rotate(new_kek_b64=new_kek).purge_retired_keks()
    assert Keyring.load(tmp_path / "env", kek_b64=new_kek).derive_key("pii-mask") == env_key
    with pytest.raises(SecurityError, match=r"masking.key: the masking secret is wrapped under another key-encryption key") as info:
        Keyring.load(tmp_path / "env", kek_b64=KEK).derive_key("pii-mask")  # the old KEK no longer opens it
    # named in the keys folder, never by its local path: logs and the Python API do not go through the CLI's rewriting
    assert str(info.value).startswith("env/masking.key: ") and str(tmp_path) not in str(info.value), info.value


def test_an_interrupted_rotation_never_orphans_the_secret(tmp_path):
    ring = Keyring.init(tmp_path / "keys")
    key = ring.derive_key("pii-mask")
    wrapped = (tmp_path / "keys" / "masking.key").read_bytes()
    ring.rotate()
    (tmp_path / "keys" / "masking.key").write_bytes(wrapped)  # as if the rotation died before re-wrapping it
    resumed = Keyring.load(tmp_path / "keys")
    assert resumed.derive_key("pii-mask") == key  # the retired KEK still opens it
    fresh = Keyring.load(tmp_path / "keys")
    assert fresh.purge_retired_keks() == 1  # re-wraps it under the current KEK before forgetting the old one
    assert Keyring.load(tmp_path / "keys").derive_key("pii-mask") == key


def test_a_changed_secret_file_and_a_fresh_start_are_clear(tmp_path):
    ring = Keyring.init(tmp_path / "keys")
    key = ring.derive_key("pii-mask")
    path = tmp_path / "keys" / "masking.key"
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(SecurityError, match="masking.key: the masking secret failed authentication") as info:
        Keyring.load(tmp_path / "keys").derive_key("pii-mask")
    assert str(info.value).startswith("keys/masking.key: ") and str(tmp_path) not in str(info.value), info.value
    with pytest.raises(SecurityError, match="masking.key"):
        Keyring.load(tmp_path / "keys").rotate()  # refused before anything changes
    restarted = Keyring.init(tmp_path / "keys", force=True)  # starting over: a new KEK, so a new secret
    assert not path.exists() and restarted.derive_key("pii-mask") != key


def test_mask_joins_and_unmask_works_across_keys_rotate(tmp_path, workspace):
    """The CLI: `mask` of one file gives the same hashes and fakes after `keys rotate`; old fakes unmask."""
    src = tmp_path / "people.csv"
    pd.DataFrame(ROWS).to_csv(src, index=False)
    code, _, err = run_main("unmask", src, "-o", tmp_path / "x.csv", home=workspace)
    assert (
        code == 7 and err.count("\n") == 1 and "has no keys: run it in the workspace that masked the file" in err and "Traceback" not in err
    )
    # `mask` makes the keys on first use, as `trustforge train` does.
    args = ("--policy", "fake", "--entity-policy", "EMAIL=hash")
    assert run_main("mask", src, "-o", tmp_path / "before.csv", *args, home=workspace).code == 0
    before = pd.read_csv(tmp_path / "before.csv", dtype=str)
    assert before["email"].str.match(r"<EMAIL:[0-9a-f]{16}>$").all() and before["phone"][0] != ROWS[0]["phone"]
    code, out, err = run_main("keys", "rotate", home=workspace)
    assert code == 0, (out, err)
    assert run_main("mask", src, "-o", tmp_path / "after.csv", *args, home=workspace).code == 0
    assert pd.read_csv(tmp_path / "after.csv", dtype=str).equals(before)  # same hashes, same fakes: they join
    code, out, err = run_main("unmask", tmp_path / "before.csv", "-o", tmp_path / "back.csv", home=workspace)
    assert code == 0, (out, err)
    back = pd.read_csv(tmp_path / "back.csv", dtype=str)
    assert list(back["phone"]) == [r["phone"] for r in ROWS] and list(back["name"]) == [r["name"] for r in ROWS]
    _assert_sealed(workspace / "keys" / "masking.key", _secret(Keyring.load(workspace / "keys")))


def test_backups_carry_the_wrapped_secret(tmp_path):
    from trustforge.package import write_package
    from trustforge.registry import Registry
    from trustforge.registry._backup import _members, create_backup, restore_backup
    from trustforge.secure._archive import open_sealed_archive
    from trustforge.settings import Settings

    def settings(home):
        return Settings(home=home, db_url=f"sqlite:///{home / 'registry.db'}", artifacts=home / "artifacts", kek=KEK)

    source = settings(tmp_path / "src")
    with Registry(source) as reg:
        pkg = write_package(tmp_path / "pkg", {"name": "m"}, {"weights.safetensors": {"w": torch.ones(3)}}, keyring=reg.keyring)
        reg.register(pkg, name="m")
        key, secret = reg.keyring.derive_key("pii-mask"), _secret(reg.keyring)
        create_backup(source, tmp_path / "ws.tfb", reg.keyring)
        pem = reg.keyring.public_key_pem()
    _, tar = open_sealed_archive(tmp_path / "ws.tfb", Keyring.load(source.keys_dir, kek_b64=KEK))
    members = _members(tmp_path / "ws.tfb", tar)
    assert (
        "keys/masking.key" in members
        and secret not in members["keys/masking.key"]
        and secret not in tar.replace(members["keys/masking.key"], b"")
    )
    target = settings(tmp_path / "dst")
    ring = Keyring.init(target.keys_dir, kek_b64=KEK)
    restore_backup(target, tmp_path / "ws.tfb", ring, trusted_key=pem, accept_new_keys=True)
    assert Keyring.load(target.keys_dir, kek_b64=KEK).derive_key("pii-mask") == key
    _assert_sealed(target.keys_dir / "masking.key", secret)
    # A workspace that holds another masking secret is refused, nothing written.
    other = settings(tmp_path / "other")
    other_ring = Keyring.init(other.keys_dir, kek_b64=KEK)
    mine = other_ring.derive_key("pii-mask")
    with pytest.raises(SecurityError, match="masking secret differs"):
        restore_backup(other, tmp_path / "ws.tfb", other_ring, trusted_key=pem, accept_new_keys=True)
    assert not (other.home / "artifacts").exists() and Keyring.load(other.keys_dir, kek_b64=KEK).derive_key("pii-mask") == mine
