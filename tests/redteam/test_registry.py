"""Red team, registry: a version folder holding another package, and a backup forged with the KEK alone.

Issue 11, findings 1 and 3. Attack-style: each test does what an attacker with the stated
access did by hand (`cp -a` inside `artifacts/`; a backup signed by a new key and sealed under
a stolen KEK) and asserts that TrustForge refuses it, says so, and serves or restores nothing.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trustforge.errors import IntegrityError, SecurityError
from trustforge.package import encode_manifest
from trustforge.registry import Registry, create_backup, restore_backup
from trustforge.secure import Keyring, sign_package
from trustforge.settings import Settings

KEK = base64.b64encode(bytes(range(32))).decode()  # the stolen key-encryption key
TINY = {"name": "iris-tiny", "data": {"source": "builtin:iris"}, "model": {"kind": "mlp", "hidden": [8]}, "train": {"max_epochs": 2}}


def settings_for(home: Path, kek: str | None = KEK) -> Settings:
    return Settings(home=home, db_url=f"sqlite:///{home / 'registry.db'}", artifacts=home / "artifacts", kek=kek)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny trained package (unregistered), shared by the tests of this module."""
    from trustforge.pipeline import run

    root = tmp_path_factory.mktemp("redteam-registry")
    result = run(TINY, settings=Settings.from_env(root / "train-ws"), progress=False, register=False)
    return Path(shutil.copytree(result.package, root / "package"))


def signed(package: Path, keyring: Keyring, dest: Path, *, package_id: str | None = None) -> Path:
    """A copy of `package` signed by `keyring`; with `package_id`, a different package (new id)."""
    out = Path(shutil.copytree(package, dest))
    if package_id is not None:
        manifest = json.loads((out / "manifest.json").read_bytes())
        manifest["package_id"] = package_id
        (out / "manifest.json").write_bytes(encode_manifest(manifest))
    sign_package(out, keyring)
    return out


def swap(reg: Registry, src_uri: str, dest_uri: str) -> None:
    """`cp -a artifacts/SRC artifacts/DEST`: no keys, only write access to the artifact store."""
    src, dest = reg.get(src_uri).path, reg.get(dest_uri).path
    shutil.rmtree(dest)
    shutil.copytree(src, dest, symlinks=True)


def refusals(reg: Registry, uri: str) -> list[dict]:
    return [e for e in reg.audit.entries(limit=1000) if e["object"] == uri and e["outcome"] == "error"]


@pytest.fixture
def swapped(trained, tmp_path, request):
    """victim/1 and victim/2 hold the real package, other/1 another one; then other/1 is copied over victim/2."""
    settings = settings_for(tmp_path / "ws")
    with Registry(settings, encrypt=getattr(request, "param", True)) as reg:
        real = signed(trained, reg.keyring, tmp_path / "real")
        reg.register(real, name="victim")
        reg.register(real, name="victim")
        reg.register(signed(trained, reg.keyring, tmp_path / "other", package_id="f" * 32), name="other")
        yield reg


@pytest.mark.parametrize("swapped", [True, False], ids=["sealed", "plain"], indirect=True)
def test_a_version_folder_holding_another_package_is_refused(swapped):
    reg = swapped
    swap(reg, "models:/other/1", "models:/victim/2")
    reg.set_alias("victim", "champion", 2)
    for uri in ("models:/victim/2", "models:/victim@champion", "models:/victim"):
        with pytest.raises(IntegrityError, match="models:/victim/2") as info:
            reg.load_model(uri)
        assert "another package" in str(info.value)
        assert str(reg.artifacts) not in str(info.value)  # no local paths in the message
    entries = refusals(reg, "models:/victim/2")
    assert entries and entries[0]["action"] == "load"
    found = entries[0]["details"]["found"]
    assert found == ({"package_id": "f" * 32} if reg.encrypt else {"package_digest": reg.get("models:/other/1").package_digest})
    assert reg.audit.verify().ok
    assert reg.load_model("models:/victim/1").predict is not None  # the untouched version still loads


@pytest.mark.parametrize("swapped", [True, False], ids=["sealed", "plain"], indirect=True)
def test_backup_refuses_a_swapped_version(swapped, tmp_path):
    reg = swapped
    swap(reg, "models:/other/1", "models:/victim/2")
    with pytest.raises(IntegrityError, match="models:/victim/2"):
        create_backup(reg.settings, tmp_path / "ws.tfbackup", reg.keyring)
    assert not (tmp_path / "ws.tfbackup").exists()


def test_a_hot_reload_onto_a_swapped_folder_keeps_serving_the_old_version(swapped):
    from trustforge.serve import ModelService, ServeConfig

    reg = swapped
    reg.set_alias("victim", "champion", 1)
    svc = ModelService("models:/victim@champion", ServeConfig(workers=0, auth="none", poll_s=3600), registry=reg).start()
    try:
        assert svc.current.version == "1"
        swap(reg, "models:/other/1", "models:/victim/2")
        reg.set_alias("victim", "champion", 2)
        assert svc.check_for_update() is False
        assert svc.current.version == "1"  # still the old, bound version
        assert svc.metrics.reloads.labels(outcome="failed")._value.get() == 1
        assert refusals(reg, "models:/victim/2")
    finally:
        svc.close()


# ---------------------------------------------------------------------------- forged backups


@pytest.fixture
def forged(trained, tmp_path):
    """The forger's backup: their own new signing key, an `evil` admin, a package they signed; sealed under the stolen KEK."""
    forger = settings_for(tmp_path / "forger")
    with Registry(forger) as reg:
        reg.access.add_user("evil", "admin")
        reg.register(signed(trained, reg.keyring, tmp_path / "evil-pkg", package_id="e" * 32), name="backdoor")
        pem = reg.keyring.public_key_pem()
        key_id = reg.keyring.key_id
    archive = tmp_path / "forged.tfbackup"
    create_backup(forger, archive, Keyring.load(forger.keys_dir, kek_b64=KEK))
    (tmp_path / "forger.pem").write_bytes(pem)
    target = settings_for(tmp_path / "target")
    keyring = Keyring.init(target.keys_dir, kek_b64=KEK)  # the victim's (new, empty) workspace: same KEK
    return archive, tmp_path / "forger.pem", key_id, target, keyring


def test_a_backup_forged_with_the_kek_alone_is_refused(forged):
    archive, _, key_id, target, keyring = forged
    with pytest.raises(SecurityError, match="not trust") as info:
        restore_backup(target, archive, keyring)
    assert key_id[:16] in str(info.value)
    assert not (target.home / "registry.db").exists() and not target.artifacts.exists()
    assert not keyring.knows(key_id)


def test_a_trusted_backup_still_needs_consent_for_new_keys_and_admins(forged):
    archive, pem, key_id, target, keyring = forged
    with pytest.raises(SecurityError) as info:
        restore_backup(target, archive, keyring, trusted_key=pem.read_bytes())
    message = str(info.value)
    assert "--accept-new-keys" in message and "--accept-admins" in message
    assert key_id[:16] in message and "evil" in message
    assert not (target.home / "registry.db").exists() and not keyring.knows(key_id)

    done = restore_backup(target, archive, keyring, trusted_key=pem.read_bytes(), accept_new_keys=True, accept_admins=True)
    assert done["new_keys"] == [key_id] and done["new_admins"] == ["evil"]
    assert keyring.knows(key_id)


def test_the_cli_refuses_a_forged_backup_and_restores_with_explicit_consent(forged, monkeypatch):
    from trustforge.commands.backup import app

    archive, pem, key_id, target, _ = forged
    monkeypatch.setenv("TRUSTFORGE_HOME", str(target.home))
    monkeypatch.setenv("TRUSTFORGE_KEK", KEK)
    runner = CliRunner()
    refused = runner.invoke(app, ["restore", str(archive)])
    assert refused.exit_code != 0 and isinstance(refused.exception, SecurityError)
    refused = runner.invoke(app, ["restore", str(archive), "--trusted-key", str(pem)])
    assert refused.exit_code != 0 and "--accept-admins" in str(refused.exception)
    done = runner.invoke(app, ["restore", str(archive), "--trusted-key", str(pem), "--accept-new-keys", "--accept-admins"])
    assert done.exit_code == 0, done.output
    assert key_id[:16] in done.output and "evil" in done.output
    with Registry(Settings.from_env()) as reg:
        assert reg.audit.verify().ok
        restore = reg.audit.entries(limit=1)[0]
        assert restore["action"] == "restore" and restore["details"]["new_admins"] == ["evil"]
