"""The keyring: file modes, the KEK from a file or the environment, signing, wrapping, rotation.

Secrets must never appear in an error message or a repr; a rotation must leave every old
signature verifiable and every old wrapped key recoverable until the rotation completes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from pathlib import Path

import pytest

from trustforge.errors import SecurityError
from trustforge.secure._keys import Keyring


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def keys(tmp_path) -> Path:
    return tmp_path / "keys"


def test_init_writes_private_files_in_a_private_folder(keys):
    kr = Keyring.init(keys)
    assert mode(keys) == 0o700
    assert sorted(p.name for p in keys.iterdir()) == ["kek.key", "signing.key", "signing.pub"]
    for p in keys.iterdir():
        assert mode(p) == 0o600, p
    assert b"PRIVATE KEY" in (keys / "signing.key").read_bytes()
    assert len(base64.b64decode((keys / "kek.key").read_bytes())) == 32
    # The key id is derived from the public key (the same value model-signing calls the key hint).
    assert kr.key_id == hashlib.sha256((keys / "signing.pub").read_bytes()).hexdigest()
    assert kr.public_key_pem() == (keys / "signing.pub").read_bytes()
    assert "PRIVATE" not in repr(kr) and kr.key_id[:16] in repr(kr)


def test_init_refuses_to_replace_keys_unless_forced(keys):
    first = Keyring.init(keys)
    with pytest.raises(SecurityError, match="exist already"):
        Keyring.init(keys)
    assert Keyring.load(keys).key_id == first.key_id
    second = Keyring.init(keys, force=True)
    assert second.key_id != first.key_id
    assert Keyring.load(keys).key_id == second.key_id


def test_load_and_load_or_init(keys):
    with pytest.raises(SecurityError, match="no signing key") as info:
        Keyring.load(keys)
    assert str(info.value).startswith("keys/signing.key: ") and str(keys) not in str(info.value)  # no local path (logs, the API)
    made = Keyring.load_or_init(keys)
    again = Keyring.load_or_init(keys)
    assert made.key_id == again.key_id
    dek = os.urandom(32)
    assert again.unwrap_key(made.wrap_key(dek, b"ctx"), b"ctx") == dek


def test_a_key_file_others_can_read_is_refused(keys):
    Keyring.init(keys)
    os.chmod(keys / "signing.key", 0o644)
    with pytest.raises(SecurityError, match="chmod 600") as info:
        Keyring.load(keys)
    assert str(info.value).startswith("keys/signing.key: ") and str(keys) not in str(info.value)


def test_the_kek_can_come_from_the_environment(keys):
    env = base64.b64encode(os.urandom(32)).decode()
    kr = Keyring.init(keys, kek_b64=env)
    assert not (keys / "kek.key").exists()
    wrapped = kr.wrap_key(b"k" * 32, b"a")
    assert Keyring.load(keys, kek_b64=env).unwrap_key(wrapped, b"a") == b"k" * 32
    # Without the variable the keyring still signs and verifies, but cannot unwrap.
    bare = Keyring.load(keys)
    key_id, sig = bare.sign(b"x")
    assert key_id == kr.key_id and kr.verify(key_id, b"x", sig)
    with pytest.raises(SecurityError, match="TRUSTFORGE_KEK"):
        bare.unwrap_key(wrapped, b"a")


@pytest.mark.parametrize("bad", ["not base64!!", base64.b64encode(b"short").decode(), base64.b64encode(bytes(range(33))).decode()])
def test_a_malformed_kek_is_refused_without_echoing_it(bad, keys):
    with pytest.raises(SecurityError, match="32 random bytes") as info:
        Keyring.init(keys, kek_b64=bad)
    assert bad not in str(info.value)
    assert not (keys / "signing.key").exists()


def test_init_keeps_a_kek_file_put_back_on_its_own(keys):
    kr = Keyring.init(keys)
    wrapped = kr.wrap_key(b"d" * 32, b"pkg")
    (keys / "signing.key").unlink()
    (keys / "signing.pub").unlink()
    again = Keyring.init(keys)  # e.g. a KEK restored from a safe before restoring a backup
    assert again.unwrap_key(wrapped, b"pkg") == b"d" * 32


def test_sign_and_verify(keys):
    kr = Keyring.init(keys)
    key_id, sig = kr.sign(b"data")
    assert key_id == kr.key_id
    assert kr.verify(key_id, b"data", sig)
    assert not kr.verify(key_id, b"datA", sig)
    assert not kr.verify(key_id, b"data", sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not kr.verify("0" * 64, b"data", sig)
    assert not kr.verify("../../etc/passwd", b"data", sig)
    other = Keyring.init(keys.parent / "other")
    assert not other.verify(key_id, b"data", sig)


def test_wrap_and_unwrap(keys):
    kr = Keyring.init(keys)
    dek = os.urandom(32)
    wrapped = kr.wrap_key(dek, b"package-1")
    assert dek not in wrapped
    assert kr.wrap_key(dek, b"package-1") != wrapped  # a fresh nonce every time
    assert kr.unwrap_key(wrapped, b"package-1") == dek
    with pytest.raises(SecurityError, match="failed authentication"):
        kr.unwrap_key(wrapped, b"package-2")  # bound to its package
    flipped = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(SecurityError, match="failed authentication"):
        kr.unwrap_key(flipped, b"package-1")
    with pytest.raises(SecurityError, match="another key-encryption key"):
        Keyring.init(keys.parent / "other").unwrap_key(wrapped, b"package-1")
    with pytest.raises(SecurityError, match="malformed"):
        kr.unwrap_key(b"junk", b"package-1")


def test_rotate_keeps_old_signatures_verifiable_and_old_keys_unwrappable(keys):
    old = Keyring.init(keys)
    key_id, sig = old.sign(b"signed before")
    wrapped = old.wrap_key(b"w" * 32, b"p")
    new = old.rotate()
    assert new.key_id != old.key_id
    assert (keys / "kek.key").read_bytes() != base64.b64encode(old._kek) + b"\n"
    retired = keys / "retired"
    assert mode(retired) == 0o700
    assert (retired / f"{old.key_id}.pub").read_bytes() == old.public_key_pem()
    for p in retired.iterdir():
        assert mode(p) == 0o600, p
    for kr in (new, Keyring.load(keys)):  # in memory and as loaded from disk
        assert kr.key_id == new.key_id
        assert kr.verify(key_id, b"signed before", sig)
        assert kr.public_key_pem(key_id) == old.public_key_pem()
        assert kr.unwrap_key(wrapped, b"p") == b"w" * 32  # until the rotation is finished
        assert kr.holds_kek_for(wrapped) and not kr.holds_kek_for(wrapped, current_only=True)
    assert new.public_key_ids() == [new.key_id, old.key_id]
    assert new.purge_retired_keks() == 1
    with pytest.raises(SecurityError, match="another key-encryption key"):
        Keyring.load(keys).unwrap_key(wrapped, b"p")
    assert Keyring.load(keys).verify(key_id, b"signed before", sig)  # public keys stay for good


def test_rotate_with_the_kek_in_the_environment_needs_the_new_one(keys):
    env = base64.b64encode(os.urandom(32)).decode()
    kr = Keyring.init(keys, kek_b64=env)
    with pytest.raises(SecurityError, match="TRUSTFORGE_NEW_KEK"):
        kr.rotate()
    new_env = base64.b64encode(os.urandom(32)).decode()
    new = kr.rotate(new_kek_b64=new_env)
    assert not (keys / "kek.key").exists()
    assert not list((keys / "retired").glob("kek-*"))  # an environment secret is never written to disk
    wrapped = new.wrap_key(b"x" * 32, b"a")
    assert Keyring.load(keys, kek_b64=new_env).unwrap_key(wrapped, b"a") == b"x" * 32


# ---------------------------------------------------------------------------- the commands


def test_keys_init_and_rotate_commands(tmp_path, workspace):
    """`keys init` makes the keys; `keys rotate` re-wraps every sealed package in the store."""
    import torch
    from typer.testing import CliRunner

    from trustforge.commands.keys import app
    from trustforge.package import write_package
    from trustforge.secure._envelope import open_sealed, seal_package

    runner = CliRunner()
    done = runner.invoke(app, ["init"])
    assert done.exit_code == 0, done.output
    keys = workspace / "keys"
    kr = Keyring.load(keys)
    assert kr.key_id[:16] in done.output and mode(keys / "signing.key") == 0o600
    done = runner.invoke(app, ["init"])
    assert isinstance(done.exception, SecurityError)  # the main command prints it as one line

    store = workspace / "artifacts"
    payloads = {}
    for i in range(2):
        pkg = write_package(tmp_path / f"p{i}", {"name": f"m{i}"}, {"weights.safetensors": {"w": torch.randn(8)}}, keyring=kr)
        seal_package(pkg, store / f"m{i}" / "1", kr)
        payloads[i] = (store / f"m{i}" / "1" / "weights.safetensors.enc").read_bytes()
    elsewhere = tmp_path / "mine" / "pkg.sealed"  # as `package encrypt` writes one, outside the store
    seal_package(pkg, elsewhere, kr)
    done = runner.invoke(app, ["rotate", "--include", str(tmp_path / "mine")])
    assert done.exit_code == 0, done.output
    assert "3 sealed package(s) re-wrapped" in done.output
    new = Keyring.load(keys)
    assert new.key_id != kr.key_id and not list((keys / "retired").glob("kek-*"))
    for i in range(2):
        assert (store / f"m{i}" / "1" / "weights.safetensors.enc").read_bytes() == payloads[i]
        assert open_sealed(store / f"m{i}" / "1", new)["manifest.json"]
    assert open_sealed(elsewhere, new)["manifest.json"]


def test_keys_export_dash_prints_the_public_key(tmp_path, workspace):
    # a probe: `keys export -` said "written to -" and made a file named `-`
    from _cli import run_main

    assert run_main("keys", "init", home=workspace).code == 0
    code, out, err = run_main("keys", "export", "-", home=workspace, cwd=tmp_path)
    assert code == 0 and err == "" and out == (workspace / "keys" / "signing.pub").read_text(), (out, err)
    assert out.startswith("-----BEGIN PUBLIC KEY-----") and not (tmp_path / "-").exists()
    assert run_main("keys", "export", "./-", home=workspace, cwd=tmp_path).code == 0  # a file named `-`, asked for so
    assert (tmp_path / "-").read_text() == out
