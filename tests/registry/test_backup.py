"""Backup and restore: one encrypted, signed archive; verified before anything is written.

Backup → restore into an empty workspace must give identical package digests, the same rows
and an audit log that verifies; a changed archive, one made under another key-encryption key
and one with entries that escape the workspace (zip-slip) must be refused with nothing
written; so must a workspace that is not empty.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from trustforge.errors import AccessDenied, IntegrityError, RegistryError, SecurityError
from trustforge.package import write_package
from trustforge.registry import Registry
from trustforge.registry._backup import _tar, _write_archive, create_backup, restore_backup
from trustforge.secure._archive import public_key_id
from trustforge.secure._audit import AuditLog
from trustforge.secure._keys import Keyring
from trustforge.settings import Settings

KEK = base64.b64encode(bytes(range(32))).decode()  # a test KEK, shared by source and target


def settings_for(home: Path, kek: str | None = KEK) -> Settings:
    return Settings(home=home, db_url=f"sqlite:///{home / 'registry.db'}", artifacts=home / "artifacts", kek=kek)


def tree_digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def nothing_written(home: Path) -> bool:
    """The target holds no database, no artifact store and no temporary folder."""
    left = [p.name for p in home.iterdir()] if home.exists() else []
    return not [n for n in left if n != "keys"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A workspace with two models, versions, an alias, a tag, a user with a token, and its backup."""
    home = tmp_path_factory.mktemp("source")
    settings = settings_for(home)
    with Registry(settings) as reg:
        for i, name in enumerate(["iris", "iris", "digits"]):
            pkg = write_package(
                home / f"pkg{i}",
                {"name": name, "lineage": {"run": f"r{i}"}},
                {"weights.safetensors": {"w": torch.randn(32, 32, generator=torch.Generator().manual_seed(i))}},
                keyring=reg.keyring,
            )
            reg.register(pkg, name=name)
        reg.set_alias("iris", "champion", 2)
        reg.set_tag("iris", 1, "stage", "retired")
        access = reg.access
        access.add_user("alice", "deployer")
        token = access.issue_token("alice")
        versions = {(mv.name, mv.version): mv.package_digest for n in ("iris", "digits") for mv in reg.list_versions(n)}
        keyring = reg.keyring
    archive = home.parent / f"{home.name}.tfbackup"
    summary = create_backup(settings, archive, keyring)
    return settings, archive, summary, versions, token


def source_key(source) -> bytes:
    """The source workspace's public key, as `trustforge keys export` gives it to the operator."""
    return Keyring.load(source[0].keys_dir, kek_b64=KEK).public_key_pem()


def test_the_archive_is_one_encrypted_file(source):
    settings, archive, summary, _, _ = source
    assert summary["tables"]["registry_versions"] == 3 and summary["tables"]["audit_entries"] > 0
    assert os.stat(archive).st_mode & 0o777 == 0o600
    blob = archive.read_bytes()
    assert blob.startswith(b"TFBACKUP1\n")
    for secret in (b"alice", b"champion", b"retired", b"registry_versions", b"manifest.json"):
        assert secret not in blob  # names, rows and file lists are all encrypted


def test_backup_then_restore_into_an_empty_workspace(source, tmp_path):
    settings, archive, summary, versions, token = source
    target = settings_for(tmp_path / "target")
    keyring = Keyring.init(target.keys_dir, kek_b64=KEK)  # a new signing key; the KEK kept apart
    done = restore_backup(target, archive, keyring, trusted_key=source_key(source), accept_new_keys=True)
    assert done["tables"] == summary["tables"]
    assert done["new_keys"] == [public_key_id(source_key(source))] and done["new_admins"] == []
    assert tree_digests(target.artifacts) == tree_digests(settings.artifacts)  # identical package digests
    loose = [p for p in [target.artifacts, *target.artifacts.rglob("*")] if p.stat().st_mode & 0o077]
    assert not loose, f"restored files readable by others: {loose[:3]}"  # 0600 files in 0700 folders, as the store writes them

    with Registry(target) as reg:
        restored = {(mv.name, mv.version): mv.package_digest for n in ("iris", "digits") for mv in reg.list_versions(n)}
        assert restored == versions
        assert reg.get("models:/iris@champion").version == 2
        model_files = reg.get("iris", 1)
        assert model_files.tags == {"stage": "retired"}
        report = AuditLog(reg.engine, reg.keyring.sign, reg.keyring.verify).verify()
        assert report.ok, report
        assert report.entries == summary["tables"]["audit_entries"] + 1  # the restore's own entry, in its transaction
        last = reg.audit.entries(limit=1)[0]
        assert (last["action"], last["object"], last["outcome"]) == ("restore", archive.name, "ok")
        assert reg.access.authenticate(token).name == "alice"  # tokens survive (as hashes)
        # A sealed package of the old workspace opens here: same KEK, old signature via the retired key.
        from trustforge.secure._envelope import open_sealed

        blobs = open_sealed(reg.get("digits", 1).path, reg.keyring)
        assert hashlib.sha256(blobs["manifest.json"]).hexdigest() == versions[("digits", 1)]


def test_a_non_empty_workspace_is_refused(source, tmp_path):
    _, archive, _, _, _ = source
    target = settings_for(tmp_path / "target")
    keyring = Keyring.init(target.keys_dir, kek_b64=KEK)
    (target.artifacts / "something").mkdir(parents=True)
    with pytest.raises(RegistryError, match="not empty") as info:
        restore_backup(target, archive, keyring)
    assert str(target.artifacts) in str(info.value)
    (target.artifacts / "something").rmdir()
    with Registry(target) as reg:
        reg.access.add_user("bob", "viewer")
    with pytest.raises(RegistryError, match="not empty"):
        restore_backup(target, archive, keyring)


def test_a_workspace_only_opened_by_a_read_command_counts_as_empty(source, tmp_path):
    """`models list` (any command that opens the workspace) writes the genesis audit head, its
    head file and witness, and keys: none of that is content, so a restore still goes in. An
    audit entry is history, though: refused, with the way out in the message."""
    settings, archive, summary, versions, _ = source
    target = settings_for(tmp_path / "target")
    with Registry(target) as reg:
        assert reg.list_models() == [] and reg.audit.verify().entries == 0  # what `models list` does
    keyring = Keyring.load(target.keys_dir, kek_b64=KEK)
    done = restore_backup(target, archive, keyring, trusted_key=source_key(source), accept_new_keys=True)
    assert done["tables"] == summary["tables"] and done["audit"]["workspace"] == 0
    with Registry(target) as reg:
        assert {(mv.name, mv.version): mv.package_digest for n in ("iris", "digits") for mv in reg.list_versions(n)} == versions
        report = reg.audit.verify()
        assert report.ok and report.entries == summary["tables"]["audit_entries"] + 1, report  # and the restore entry
        reg.set_tag("iris", 1, "after", "restore")  # the restored log takes new entries
        assert reg.audit.verify().ok

    used = settings_for(tmp_path / "used")
    with Registry(used) as reg:
        reg.audit.append("someone", "gc", "artifacts", "ok")  # one entry of history
    with pytest.raises(RegistryError, match=r"audit_entries .* is not empty \(1 row") as info:
        restore_backup(used, archive, Keyring.load(used.keys_dir, kek_b64=KEK), trusted_key=source_key(source), accept_new_keys=True)
    assert "TRUSTFORGE_HOME at a new folder" in str(info.value)


def test_a_restore_removes_what_a_killed_restore_left(source, tmp_path):
    """SIGKILL in the middle of writing leaves `.artifacts.restore-XXXXXXXX/` beside the store; the
    next restore (which then succeeds) removes it, but never the folder of a restore still running."""
    from trustforge.registry._store import StagingLock

    _, archive, _, _, _ = source
    target = settings_for(tmp_path / "target")
    keyring = Keyring.init(target.keys_dir, kek_b64=KEK)
    dead = target.home / ".artifacts.restore-0badc0de"
    (dead / "iris" / "1").mkdir(parents=True)
    (dead / "iris" / "1" / "weights.safetensors.enc").write_bytes(b"half written")
    live = target.home / ".artifacts.restore-1234abcd"
    live.mkdir()
    for path in (dead, live):
        os.utime(path, (0, 0))  # long past any grace
    with StagingLock(target.home / f"{live.name}.lock"):
        restore_backup(target, archive, keyring, trusted_key=source_key(source), accept_new_keys=True)
        assert not dead.exists() and live.is_dir()
    assert sorted(p.name for p in target.home.iterdir() if "restore" in p.name) == [live.name]  # no lock file of its own left


@pytest.mark.parametrize("where", ["magic", "header", "signature", "early", "middle", "last"])
def test_a_changed_archive_is_refused_with_nothing_written(where, source, tmp_path):
    _, archive, _, _, _ = source
    blob = bytearray(archive.read_bytes())
    header_end = blob.index(b"\n", 10)
    header = blob[10:header_end]
    offset = {
        "magic": 2,
        "header": 10 + header.index(b'"created"') + 14,
        "signature": 10 + header.index(b'"signature": "') + 20,
        "early": header_end + 30,
        "middle": header_end + (len(blob) - header_end) // 2,
        "last": len(blob) - 1,
    }[where]
    blob[offset] ^= 0x01
    bad = tmp_path / "bad.tfbackup"
    bad.write_bytes(bytes(blob))
    target = settings_for(tmp_path / "target")
    keyring = Keyring.init(target.keys_dir, kek_b64=KEK)
    with pytest.raises(IntegrityError) as info:
        restore_backup(target, bad, keyring, trusted_key=source_key(source), accept_new_keys=True)
    assert str(bad) in str(info.value)
    assert nothing_written(target.home)
    assert sorted(p.name for p in target.keys_dir.iterdir()) == ["signing.key", "signing.pub"]


def test_a_truncated_archive_is_refused(source, tmp_path):
    _, archive, _, _, _ = source
    bad = tmp_path / "cut.tfbackup"
    bad.write_bytes(archive.read_bytes()[:-100])
    target = settings_for(tmp_path / "target")
    with pytest.raises(IntegrityError, match="do not match the signed header"):
        restore_backup(target, bad, Keyring.init(target.keys_dir, kek_b64=KEK), trusted_key=source_key(source))
    assert nothing_written(target.home)


def test_another_kek_is_a_security_error_with_nothing_written(source, tmp_path):
    _, archive, _, _, _ = source
    target = settings_for(tmp_path / "target", kek=None)
    keyring = Keyring.init(target.keys_dir)  # a fresh KEK: the archive cannot be opened
    with pytest.raises(SecurityError, match="another key-encryption key") as info:
        restore_backup(target, archive, keyring, trusted_key=source_key(source), accept_new_keys=True)
    assert str(archive) in str(info.value)
    assert nothing_written(target.home)


def _crafted(tmp_path: Path, keyring: Keyring, extra: tarfile.TarInfo, data: bytes = b"evil") -> Path:
    """A genuinely signed and sealed archive (made with the workspace keys) holding `extra`."""
    buf = io.BytesIO()
    files = {"db/registry_models.json": b"[]"}
    contents = {
        "format": "trustforge.backup.contents",
        "format_version": 1,
        "tables": {},
        "files": {**{n: hashlib.sha256(b).hexdigest() for n, b in files.items()}, extra.name: hashlib.sha256(data).hexdigest()},
    }
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        inner = _tar({"backup.json": json.dumps(contents).encode(), **files})
        with tarfile.open(fileobj=io.BytesIO(inner)) as src:
            for info in src:
                tar.addfile(info, src.extractfile(info))
        extra.size = len(data) if extra.isreg() else 0
        tar.addfile(extra, io.BytesIO(data) if extra.isreg() else None)
    path = tmp_path / "crafted.tfbackup"
    _write_archive(path, buf.getvalue(), keyring)
    return path


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    "entry",
    [
        _entry("../evil"),
        _entry("artifacts/../../evil"),
        _entry("artifacts/m/1/../../../../evil"),
        _entry("/tmp/evil"),
        _entry("artifacts\\..\\evil"),
        _entry("artifacts/m/1/%2e%2e/evil"),
        _entry("artifacts/m/1/link", tarfile.SYMTYPE, "/etc/passwd"),
        _entry("artifacts/m/1/hard", tarfile.LNKTYPE, "backup.json"),
        _entry("artifacts/m/1/dir", tarfile.DIRTYPE),
        _entry("elsewhere/evil"),
    ],
    ids=["dotdot", "nested-dotdot", "deep-dotdot", "absolute", "backslash", "url-encoded", "symlink", "hardlink", "dir", "unknown-top"],
)
def test_entries_escaping_the_workspace_are_refused(entry, tmp_path):
    source_keys = Keyring.init(tmp_path / "src-keys", kek_b64=KEK)
    crafted = _crafted(tmp_path, source_keys, entry)
    target = settings_for(tmp_path / "deep" / "target")
    keyring = Keyring.init(target.keys_dir, kek_b64=KEK)
    with pytest.raises(IntegrityError, match="archive entry") as info:
        restore_backup(target, crafted, keyring, trusted_key=source_keys.public_key_pem(), accept_new_keys=True)
    assert str(crafted) in str(info.value)
    assert nothing_written(target.home)
    assert not list(tmp_path.rglob("evil"))


def test_backup_commands(tmp_path, workspace, monkeypatch):
    """`backup create` then `backup restore` in another (empty) workspace, both audited."""
    from typer.testing import CliRunner

    from trustforge.commands.backup import app
    from trustforge.commands.keys import app as keys_app

    monkeypatch.setenv("TRUSTFORGE_KEK", KEK)
    with Registry() as reg:
        pkg = write_package(tmp_path / "pkg", {"name": "m"}, {"weights.safetensors": {"w": torch.ones(3)}}, keyring=reg.keyring)
        reg.register(pkg, name="m")
    runner = CliRunner()
    archive = tmp_path / "ws.tfbackup"
    done = runner.invoke(app, ["create", str(archive)])
    assert done.exit_code == 0, done.output
    assert "1 version(s)" in done.output
    exported = runner.invoke(keys_app, ["export", str(tmp_path / "source.pem")])
    assert exported.exit_code == 0, exported.output
    monkeypatch.setenv("TRUSTFORGE_HOME", str(tmp_path / "restored"))
    done = runner.invoke(app, ["restore", str(archive)])  # a new workspace trusts no key yet
    assert isinstance(done.exception, SecurityError) and "--trusted-key" in str(done.exception)
    done = runner.invoke(app, ["restore", str(archive), "--trusted-key", str(tmp_path / "source.pem"), "--accept-new-keys"])
    assert done.exit_code == 0, done.output
    assert "added signing key" in done.output
    with Registry() as reg:
        assert reg.get("models:/m/1").version == 1
        entries = reg.audit.entries(limit=5)
        assert entries[0]["action"] == "restore" and entries[0]["outcome"] == "ok"
        assert any(e["action"] == "backup" for e in reg.audit.entries(limit=50)) is False  # appended after the snapshot
        assert reg.audit.verify().ok
    done = runner.invoke(app, ["restore", str(archive)])
    assert isinstance(done.exception, RegistryError) and "not empty" in str(done.exception)


def test_backup_and_restore_on_postgresql(source, tmp_path):
    """A SQLite workspace restored onto PostgreSQL, backed up there, and restored again."""
    from _helpers import new_pg_database  # tests/registry is on the path (rootdir-relative imports)

    settings, archive, summary, versions, _ = source
    url, drop = new_pg_database()
    try:
        target = Settings(home=tmp_path / "pg", db_url=url, artifacts=tmp_path / "pg" / "artifacts", kek=KEK)
        keyring = Keyring.init(target.keys_dir, kek_b64=KEK)
        restore_backup(target, archive, keyring, trusted_key=source_key(source), accept_new_keys=True)
        with Registry(target) as reg:
            assert {(mv.name, mv.version): mv.package_digest for n in ("iris", "digits") for mv in reg.list_versions(n)} == versions
            assert reg.audit.verify().ok
        again = tmp_path / "pg.tfbackup"
        # The same tables, the restore's own audit entry, written in its transaction, and the target's
        # own log of access heads (its first head, over the rows it re-sealed).
        expected = {**summary["tables"], "audit_entries": summary["tables"]["audit_entries"] + 1}
        expected["access_head_log"] = min(1, summary["tables"]["access_head_log"])
        assert create_backup(target, again, keyring)["tables"] == expected
        with pytest.raises(RegistryError, match="not empty"):
            restore_backup(target, again, keyring)
    finally:
        drop()
    final = settings_for(tmp_path / "back")
    restore_backup(final, again, Keyring.init(final.keys_dir, kek_b64=KEK), trusted_key=keyring.public_key_pem(), accept_new_keys=True)
    assert tree_digests(final.artifacts) == tree_digests(settings.artifacts)


# ---------------------------------------------------------------------------- trust and consent


def _lost_database(home: Path) -> None:
    """What a disaster leaves: the keys and the audit head file, no database, no packages."""
    for p in home.iterdir():
        if p.name.startswith("registry.db") and not p.name.endswith(".audit-head.json"):
            p.unlink()
    shutil.rmtree(home / "artifacts")


@pytest.fixture
def small(tmp_path):
    """A workspace with one version, its backup, and its keyring."""
    settings = settings_for(tmp_path / "ws")
    with Registry(settings) as reg:
        pkg = write_package(tmp_path / "pkg", {"name": "m"}, {"weights.safetensors": {"w": torch.ones(3)}}, keyring=reg.keyring)
        reg.register(pkg, name="m")
        keyring = reg.keyring
    archive = tmp_path / "ws.tfbackup"
    create_backup(settings, archive, keyring)
    return settings, archive, keyring


def test_a_workspace_that_already_trusts_the_key_restores_without_flags(small):
    settings, archive, keyring = small
    _lost_database(settings.home)
    done = restore_backup(settings, archive, Keyring.load(settings.keys_dir, kek_b64=KEK))
    assert done["new_keys"] == [] and done["new_admins"] == [] and done["audit"]["archive"] == done["audit"]["workspace"] > 0
    with Registry(settings) as reg:
        assert reg.load_model is not None and reg.get("models:/m/1").version == 1
        assert reg.audit.verify().ok


def test_a_shorter_audit_history_needs_consent(small):
    settings, archive, keyring = small
    with Registry(settings) as reg:
        for i in range(5):
            reg.set_tag("m", 1, "k", str(i))  # entries the backup does not hold
        before = reg.audit.verify().entries
    _lost_database(settings.home)
    with pytest.raises(SecurityError, match="--accept-shorter-audit") as info:
        restore_backup(settings, archive, Keyring.load(settings.keys_dir, kek_b64=KEK))
    assert f"shorter than the {before}" in str(info.value)
    assert not (settings.home / "registry.db").exists()
    done = restore_backup(settings, archive, Keyring.load(settings.keys_dir, kek_b64=KEK), accept_shorter_audit=True)
    assert done["audit"] == {"archive": before - 5, "workspace": before}
    with Registry(settings) as reg:
        report = reg.audit.verify()
        assert report.ok and report.entries == before - 5 + 1, report  # and the restore entry


def test_the_trusted_key_must_be_the_signer(small, tmp_path):
    settings, archive, _ = small
    target = settings_for(tmp_path / "target")
    keyring = Keyring.init(target.keys_dir, kek_b64=KEK)
    other = Keyring.init(tmp_path / "other-keys", kek_b64=KEK).public_key_pem()
    with pytest.raises(SecurityError, match="not by the trusted key"):
        restore_backup(target, archive, keyring, trusted_key=other, accept_new_keys=True)
    with pytest.raises(SecurityError, match="not a PEM public key"):
        restore_backup(target, archive, keyring, trusted_key=b"-----BEGIN PUBLIC KEY-----\nAAAA\n", accept_new_keys=True)
    assert nothing_written(target.home)


def test_an_archived_version_holding_another_package_is_refused(small, tmp_path, monkeypatch):
    """A signed archive (e.g. made by a trusted key before this check existed) whose version folder was swapped."""
    from trustforge.registry import _backup

    settings, _, keyring = small
    with Registry(settings) as reg:
        pkg = write_package(tmp_path / "pkg2", {"name": "n"}, {"weights.safetensors": {"w": torch.zeros(3)}}, keyring=reg.keyring)
        reg.register(pkg, name="n")
    shutil.rmtree(settings.artifacts / "m" / "1")
    shutil.copytree(settings.artifacts / "n" / "1", settings.artifacts / "m" / "1")
    monkeypatch.setattr(_backup, "open_bound", lambda *a: None)  # the check create_backup now makes
    archive = tmp_path / "swapped.tfbackup"
    create_backup(settings, archive, keyring)
    monkeypatch.undo()
    _lost_database(settings.home)
    with pytest.raises(IntegrityError, match="models:/m/1: the version folder holds another package"):
        restore_backup(settings, archive, Keyring.load(settings.keys_dir, kek_b64=KEK), accept_shorter_audit=True)
    assert not (settings.home / "registry.db").exists()


def _workspace_with_a_user(home: Path) -> tuple[Settings, str]:
    settings = settings_for(home)
    with Registry(settings) as reg:
        reg.access.add_user("vera", "viewer")
        token = reg.access.issue_token("vera")
    return settings, token


def test_an_archive_from_before_seals_restores_working_tokens(tmp_path, monkeypatch):
    import trustforge.registry._backup as backup

    settings, token = _workspace_with_a_user(tmp_path / "old")
    real = backup._tables
    monkeypatch.setattr(backup, "_tables", lambda: [t for t in real() if t.name != "access_seals"])  # what the old version wrote
    archive = tmp_path / "old.tfbackup"
    create_backup(settings, archive, Keyring.load(settings.keys_dir, kek_b64=KEK))
    monkeypatch.setattr(backup, "_tables", real)
    target = settings_for(tmp_path / "target")
    with Registry(target) as reg:  # opened first (and so marked sealed), as `backup restore` may find it
        keyring = reg.keyring
    restore_backup(target, archive, keyring, trusted_key=(settings.keys_dir / "signing.pub").read_bytes(), accept_new_keys=True)
    with Registry(target) as reg:
        assert reg.access.authenticate(token).name == "vera"  # sealed by the restore, which the archive's signature vouches for
        assert reg.access.verify_seals() == (2, [])


def _backed_up_as_is(monkeypatch, settings, archive, keyring) -> None:
    """`create_backup` of a workspace whose users or tokens fail their seals, which it now refuses:
    an archive as an older version (or an attacker with the KEK and the signing key) made it."""
    from trustforge.registry import _backup

    monkeypatch.setattr(_backup.AccessStore, "verify_seals", lambda self: (0, []))
    create_backup(settings, archive, keyring)
    monkeypatch.undo()


def test_a_row_changed_before_the_backup_stays_refused_after_a_restore(tmp_path, monkeypatch):
    settings, token = _workspace_with_a_user(tmp_path / "src")
    engine = sa.create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE access_users SET role = 'admin' WHERE name = 'vera'"))
    engine.dispose()
    archive = tmp_path / "src.tfbackup"
    keyring = Keyring.load(settings.keys_dir, kek_b64=KEK)
    with pytest.raises(IntegrityError, match=r"the users and tokens do not verify \(1\): user 'vera' does not match its seal"):
        create_backup(settings, archive, keyring)
    _backed_up_as_is(monkeypatch, settings, archive, keyring)
    target = settings_for(tmp_path / "target")
    shutil.copytree(settings.keys_dir, target.keys_dir)  # the same workspace's keys, restored elsewhere
    summary = restore_backup(target, archive, Keyring.load(target.keys_dir, kek_b64=KEK), accept_admins=True)
    assert summary["unsealed"] == ["user 'vera'"]
    with Registry(target) as reg:
        with pytest.raises(AccessDenied, match="seal"):
            reg.access.authenticate(token)
        assert reg.access.verify_seals()[1] == ["user 'vera' has no seal"]


def test_rows_forged_without_a_seal_stay_refused_after_a_restore_into_a_new_workspace(tmp_path, monkeypatch):
    """The red team's restore: unsealed forged rows in the source, a target never opened before."""
    settings, token = _workspace_with_a_user(tmp_path / "src")
    engine = sa.create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE access_users SET role = 'admin' WHERE name = 'vera'"))
        conn.execute(sa.text("DELETE FROM access_seals WHERE key = 'vera'"))
    engine.dispose()
    archive = tmp_path / "src.tfbackup"
    keyring = Keyring.load(settings.keys_dir, kek_b64=KEK)
    _backed_up_as_is(monkeypatch, settings, archive, keyring)
    target = settings_for(tmp_path / "target")
    target_keys = Keyring.init(target.keys_dir, kek_b64=KEK)  # as `backup restore` makes them: nothing opened
    pem = keyring.public_key_pem()
    summary = restore_backup(target, archive, target_keys, trusted_key=pem, accept_new_keys=True, accept_admins=True)
    with Registry(target) as reg:  # the first open after the restore seals nothing more
        with pytest.raises(AccessDenied, match="seal"):
            reg.access.authenticate(token)
        assert reg.access.verify_seals()[1] == ["user 'vera' has no seal"]
    assert summary["unsealed"] == ["user 'vera'"]


def test_a_row_sealed_in_another_workspace_that_this_one_trusts_grants_nothing(tmp_path):
    """The red team's copy: workspace B restored from A trusts A's key; a user A adds later, copied
    row and seal into B's database, must not work in B."""
    source, _ = _workspace_with_a_user(tmp_path / "a")
    archive = tmp_path / "a.tfbackup"
    keyring = Keyring.load(source.keys_dir, kek_b64=KEK)
    create_backup(source, archive, keyring)
    target = settings_for(tmp_path / "b")
    restore_backup(target, archive, Keyring.init(target.keys_dir, kek_b64=KEK), trusted_key=keyring.public_key_pem(), accept_new_keys=True)
    with Registry(source) as reg:
        reg.access.add_user("zed", "admin")
        token = reg.access.issue_token("zed")
    a, b = sa.create_engine(source.db_url), sa.create_engine(target.db_url)
    with a.connect() as src, b.begin() as dst:
        for table, key, value in (("access_users", "name", "zed"), ("access_tokens", "user", "zed"), ("access_seals", "key", "zed")):
            for row in src.execute(sa.text(f"SELECT * FROM {table} WHERE {key} = :v"), {"v": value}).mappings():
                dst.execute(sa.text(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + c for c in row)})"), dict(row))
        token_id = token.split("_")[1]
        seal = src.execute(sa.text("SELECT * FROM access_seals WHERE key = :v"), {"v": token_id}).mappings().one()
        dst.execute(
            sa.text("INSERT INTO access_seals (kind, key, key_id, signature) VALUES (:kind, :key, :key_id, :signature)"), dict(seal)
        )
    a.dispose(), b.dispose()
    with Registry(target) as reg:
        assert reg.keyring.knows(keyring.key_id)  # B does trust A's key
        with pytest.raises(AccessDenied, match="seal"):
            reg.access.authenticate(token)
        assert sorted(reg.access.verify_seals()[1]) == [
            f"token {token_id} does not match its seal (user, hash, expiry or revocation changed?)",
            "user 'zed' does not match its seal (role or active changed?)",
        ]


# ---------------------------------------------------------------------------- the audit log, and undoing a failed restore


def _keys_state(settings: Settings) -> dict[str, bytes]:
    """Every file of the keys folder and the audit head file beside the database, with its bytes."""
    files = {p.relative_to(settings.home).as_posix(): p.read_bytes() for p in settings.keys_dir.rglob("*") if p.is_file()}
    head = settings.home / "registry.db.audit-head.json"
    return {**files, **({head.name: head.read_bytes()} if head.exists() else {})}


def _edit_audit_entry(settings: Settings) -> None:
    """What someone with write access to the database can do: change an entry's actor."""
    engine = sa.create_engine(settings.db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 1"))
    engine.dispose()


def test_a_workspace_whose_audit_log_was_edited_is_not_backed_up(small, tmp_path):
    settings, _, keyring = small
    _edit_audit_entry(settings)
    archive = tmp_path / "edited.tfbackup"
    with pytest.raises(IntegrityError, match=r"entry 1: entry 1 was edited .*not backed up.*trustforge audit verify"):
        create_backup(settings, archive, keyring)
    assert not archive.exists()


def test_backup_create_refuses_an_edited_or_truncated_log(tmp_path, workspace, monkeypatch):
    """The command also checks the copies of the head outside the database (a truncated log's rows verify alone)."""
    from typer.testing import CliRunner

    from trustforge.commands.backup import app

    with Registry() as reg:
        for i in range(3):
            reg.audit.append("alice", "tag", f"models:/m/{i}", "ok")
        settings = reg.settings
    engine = sa.create_engine(settings.db_url)
    with engine.begin() as conn:  # cut the last entry and move the head back: the rows alone verify, the witness does not
        last = conn.execute(sa.text("SELECT seq FROM audit_entries ORDER BY seq DESC LIMIT 1")).scalar()
        prev = conn.execute(sa.text("SELECT hash FROM audit_entries WHERE seq = :s"), {"s": last - 1}).scalar()
        conn.execute(sa.text("DELETE FROM audit_entries WHERE seq = :s"), {"s": last})
        conn.execute(sa.text("UPDATE audit_head SET seq = :s, hash = :h"), {"s": last - 1, "h": prev})
    engine.dispose()
    done = CliRunner().invoke(app, ["create", str(tmp_path / "cut.tfbackup")])
    assert isinstance(done.exception, IntegrityError) and done.exception.exit_code == 4, done.output
    assert "not backed up" in str(done.exception) and "trustforge audit verify" in str(done.exception)
    assert not (tmp_path / "cut.tfbackup").exists()


def test_an_archive_whose_audit_log_does_not_verify_is_refused_with_nothing_written(small, tmp_path, monkeypatch):
    """An archive signed over an edited log (made before `create_backup` checked it): refused before any write."""
    from trustforge.registry import _backup
    from trustforge.secure._audit import AuditReport

    settings, _, keyring = small
    _edit_audit_entry(settings)
    monkeypatch.setattr(
        _backup, "verify_audit_rows", lambda *a: AuditReport(True, 0), raising=False
    )  # what create_backup did not check before
    archive = tmp_path / "edited.tfbackup"
    create_backup(settings, archive, keyring)
    monkeypatch.undo()
    target = settings_for(tmp_path / "target")
    target_keys = Keyring.init(target.keys_dir, kek_b64=KEK)
    before = _keys_state(target)
    with pytest.raises(IntegrityError, match=r"audit log does not verify: entry 1: entry 1 was edited.*nothing was restored"):
        restore_backup(target, archive, target_keys, trusted_key=keyring.public_key_pem(), accept_new_keys=True)
    assert nothing_written(target.home) and _keys_state(target) == before  # no rows, no packages, no key trusted


def _set(column, value):
    def edit(rows):
        rows[0][column] = value

    return edit


@pytest.mark.parametrize(
    "table, edit, problem",
    [
        ("audit_entries", _set("seq", "x"), "row 1: column seq is of type str, expected int"),
        ("audit_entries", lambda rows: rows[0].pop("hash"), "row 1: column hash is missing"),
        ("audit_entries", lambda rows: rows.append(dict(rows[0])), r"row 2: a second row with key \(1,\)"),
        ("registry_versions", _set("encrypted", "yes"), "row 1: column encrypted is of type str, expected bool"),
        ("registry_versions", _set("run", 7), "row 1: column run is of type int, expected str or null"),
        # What the database refused inside the transaction, with its own message (the probe: name_key).
        ("registry_models", lambda rows: rows.append({**rows[0], "name": "other"}), "row 2: a second row with the same name_key"),
        # The model's row renamed: its version names a model the archive does not hold.
        (
            "registry_models",
            lambda rows: rows[0].update(name="other", name_key="other"),
            "row 1: names a row of registry_models the archive does not hold",
        ),
        ("registry_versions", _set("state", "x" * 17), "row 1: column state holds 17 characters, at most 16"),
    ],
    ids=["audit-seq-text", "audit-hash-missing", "audit-entry-twice", "bool-text", "text-int", "unique", "reference", "length"],
)
def test_an_archived_value_of_the_wrong_type_is_refused_with_nothing_written(table, edit, problem, small, tmp_path, monkeypatch):
    """A signed archive whose first audit entry has seq "x" (or another row a value of another type, none, or a twin):
    refused naming the row, never written (`audit verify` then crashed on the restored log)."""
    from trustforge.registry import _backup
    from trustforge.secure._audit import AuditReport

    settings, _, keyring = small
    real = _backup._dump

    def crafted(conn):
        tables = real(conn)
        edit(tables[table])
        return tables

    monkeypatch.setattr(_backup, "_dump", crafted)
    monkeypatch.setattr(_backup, "verify_audit_rows", lambda *a: AuditReport(True, 0), raising=False)  # as before create_backup checked it
    archive = tmp_path / "typed.tfbackup"
    create_backup(settings, archive, keyring)
    monkeypatch.undo()
    target = settings_for(tmp_path / "target")
    named = "registry_versions" if table == "registry_models" and "names a row" in problem else table
    with pytest.raises(IntegrityError, match=rf"'db/{named}.json', {problem}; nothing was restored"):
        restore_backup(
            target, archive, Keyring.init(target.keys_dir, kek_b64=KEK), trusted_key=keyring.public_key_pem(), accept_new_keys=True
        )
    assert nothing_written(target.home)


def test_a_restore_that_fails_after_writing_is_undone_and_can_be_retried(small, tmp_path):
    """The restored log disagrees with the witness the (lost) target workspace left: found only once the rows are
    in, so the rows, the packages, the added key, the masking secret and the head file are all taken back out."""
    _, archive, keyring = small
    target = settings_for(tmp_path / "target")
    with Registry(target) as reg:  # another workspace's history, as long as the archive's, whose database is then lost
        reg.audit.append("bob", "tag", "models:/x/1", "ok")
    (target.home / "registry.db").unlink()
    shutil.rmtree(target.artifacts, ignore_errors=True)
    before = _keys_state(target)
    target_keys = Keyring.load(target.keys_dir, kek_b64=KEK)
    for _ in range(2):  # a retry is refused for the same reason, never as "not empty"
        with pytest.raises(IntegrityError, match="head file .* signed a different entry 1.*restore was undone"):
            restore_backup(target, archive, target_keys, trusted_key=keyring.public_key_pem(), accept_new_keys=True)
        assert not (target.home / "registry.db").exists() and not target.artifacts.exists()
        assert _keys_state(target) == before
        assert not target_keys.knows(keyring.key_id)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_a_failure_in_the_last_step_leaves_an_empty_workspace_that_restores(db, small, tmp_path, monkeypatch):
    """The rows are committed, then taken out again and the genesis head of the opened workspace put back."""
    from trustforge.registry import _backup

    _, archive, keyring = small
    target, drop = settings_for(tmp_path / "target"), None
    if db == "postgresql":
        from _helpers import new_pg_database  # tests/registry is on the path (rootdir-relative imports)

        url, drop = new_pg_database()
        target = Settings(home=target.home, db_url=url, artifacts=target.artifacts, kek=KEK)
    try:
        with Registry(target) as reg:  # opened once (`models list`): the genesis head, its head file and witness
            target_keys = reg.keyring
        before = _keys_state(target)

        def fail(*a, **k):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(_backup, "_sync_audit_head", fail)
        with pytest.raises(OSError):
            restore_backup(target, archive, target_keys, trusted_key=keyring.public_key_pem(), accept_new_keys=True)
        assert _keys_state(target) == before and not target.artifacts.exists()
        with Registry(target) as reg:
            assert reg.list_models() == [] and reg.audit.verify().ok and reg.audit.verify().entries == 0
        monkeypatch.undo()
        done = restore_backup(target, archive, target_keys, trusted_key=keyring.public_key_pem(), accept_new_keys=True)
        assert done["tables"]["registry_versions"] == 1
        with Registry(target) as reg:
            assert reg.get("models:/m/1").version == 1 and reg.audit.verify().ok
    finally:
        if drop is not None:
            drop()


def test_backup_commands_name_a_missing_archive_and_a_wrong_trusted_key(tmp_path, workspace, monkeypatch):
    """`restore` of a file that is not there is "file not found" (exit 3); a --trusted-key that is no key is named;
    `create` and `restore` count the same files (the packages' ones)."""
    from typer.testing import CliRunner

    from trustforge.commands.backup import app
    from trustforge.commands.keys import app as keys_app
    from trustforge.errors import DataError

    monkeypatch.setenv("TRUSTFORGE_KEK", KEK)
    with Registry() as reg:
        pkg = write_package(tmp_path / "pkg", {"name": "m"}, {"weights.safetensors": {"w": torch.ones(3)}}, keyring=reg.keyring)
        reg.register(pkg, name="m")
        stored = sum(1 for p in (reg.settings.artifacts or reg.settings.home / "artifacts").rglob("*") if p.is_file())
    runner = CliRunner()
    archive, pem, not_a_key = tmp_path / "ws.tfbackup", tmp_path / "source.pem", tmp_path / "iris.yaml"
    made = runner.invoke(app, ["create", str(archive)])
    assert made.exit_code == 0, made.output
    assert runner.invoke(keys_app, ["export", str(pem)]).exit_code == 0
    not_a_key.write_text("name: iris\n")
    monkeypatch.setenv("TRUSTFORGE_HOME", str(tmp_path / "restored"))
    done = runner.invoke(app, ["restore", str(tmp_path / "nosuch.tfbackup"), "--trusted-key", str(pem)])
    assert isinstance(done.exception, DataError) and done.exception.exit_code == 3
    assert str(done.exception) == f"{tmp_path / 'nosuch.tfbackup'}: file not found"
    done = runner.invoke(app, ["restore", str(archive), "--trusted-key", str(not_a_key)])
    assert isinstance(done.exception, SecurityError) and f"--trusted-key {not_a_key}: not a PEM public key" in str(done.exception)
    done = runner.invoke(app, ["restore", str(archive), "--trusted-key", str(pem), "--accept-new-keys"])
    assert done.exit_code == 0, done.output
    assert f"1 version(s), {stored} package file(s)" in made.output and f"1 version(s), {stored} package file(s)" in done.output


def test_a_row_put_back_with_its_old_seal_before_the_backup_stays_refused_after_a_restore(tmp_path, monkeypatch):
    """The red team's replay through a backup: a revoked token's row and seal from before its
    revocation put back in the source (refused there) were sealed anew by the restore."""
    settings, token = _workspace_with_a_user(tmp_path / "src")
    token_id = token.split("_")[1]
    engine = sa.create_engine(settings.db_url)
    with engine.connect() as conn:
        old_seal = dict(conn.execute(sa.text("SELECT * FROM access_seals WHERE key = :id"), {"id": token_id}).one()._mapping)
    with Registry(settings) as reg:
        reg.access.revoke_token(token_id)
    with engine.begin() as conn:  # the row and its seal as they were before the revocation
        conn.execute(sa.text("UPDATE access_tokens SET revoked = NULL WHERE id = :id"), {"id": token_id})
        conn.execute(sa.text("UPDATE access_seals SET key_id = :key_id, signature = :signature WHERE key = :key"), old_seal)
    engine.dispose()
    archive = tmp_path / "src.tfbackup"
    keyring = Keyring.load(settings.keys_dir, kek_b64=KEK)
    with pytest.raises(IntegrityError, match=f"token {token_id} is not the one the access head names"):
        create_backup(settings, archive, keyring)
    _backed_up_as_is(monkeypatch, settings, archive, keyring)
    target = settings_for(tmp_path / "target")
    target_keys = Keyring.init(target.keys_dir, kek_b64=KEK)
    summary = restore_backup(target, archive, target_keys, trusted_key=keyring.public_key_pem(), accept_new_keys=True, accept_admins=True)
    assert summary["unsealed"] == [f"token {token_id!r}"]
    with Registry(target) as reg:
        with pytest.raises(AccessDenied, match="seal"):
            reg.access.authenticate(token)


_PAUSE_AT = """
import sys, time
import trustforge.secure as secure

cls, name = getattr(secure, sys.argv[1]), sys.argv[2]
original = getattr(cls, name)


def paused(*a, **k):
    print("PAUSED", flush=True)
    time.sleep(60)
    return original(*a, **k)


setattr(cls, name, paused)
sys.argv = ["trustforge", *sys.argv[3:]]
from trustforge.cli import main

main()
"""


@pytest.mark.parametrize(
    "where",
    [("AccessStore", "seal_head"), ("Keyring", "add_public_key")],
    ids=["inside-the-transaction", "after-the-commit"],
)
def test_sigterm_during_a_restore_is_undone_like_ctrl_c(where, small, tmp_path):
    """`docker stop` or `kill` during `backup restore`: SIGTERM is raised like Ctrl-C, the restore undone (rows,
    store, keys, head file), exit 143; a retry restores, and the restore has its audit entry."""
    import signal
    import subprocess
    import sys

    _, archive, keyring = small
    target = settings_for(tmp_path / "target")
    with Registry(target):  # opened once (`models list`)
        pass
    before = _keys_state(target)
    pem = tmp_path / "source.pem"
    pem.write_bytes(keyring.public_key_pem())
    script = tmp_path / "paused.py"
    script.write_text(_PAUSE_AT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTFORGE_")}
    env.update(TRUSTFORGE_HOME=str(target.home), TRUSTFORGE_KEK=KEK, PYTHONPATH=os.pathsep.join(sys.path))
    args = ["backup", "restore", str(archive), "--trusted-key", str(pem), "--accept-new-keys"]
    proc = subprocess.Popen(
        [sys.executable, str(script), *where, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "PAUSED"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert "interrupted (SIGTERM)" in stderr
    assert _keys_state(target) == before and not target.artifacts.exists()
    with Registry(target) as reg:
        assert reg.list_models() == [] and reg.audit.verify().ok and reg.audit.verify().entries == 0
    done = restore_backup(target, archive, Keyring.load(target.keys_dir, kek_b64=KEK), trusted_key=pem.read_bytes(), accept_new_keys=True)
    assert done["tables"]["registry_versions"] == 1
    with Registry(target) as reg:
        assert reg.get("models:/m/1").version == 1 and reg.audit.verify().ok
        assert reg.audit.entries(limit=1)[0]["action"] == "restore"


def test_a_full_disk_while_writing_package_files_names_the_file(small, tmp_path, monkeypatch):
    """ "No space left on device" says which package file (where the store keeps it, not the temporary folder); undone."""
    import errno

    _, archive, keyring = small
    target = settings_for(tmp_path / "target")
    real_fsync = os.fsync

    def full(fd):
        if ".artifacts.restore-" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as caught:
        restore_backup(
            target, archive, Keyring.init(target.keys_dir, kek_b64=KEK), trusted_key=keyring.public_key_pem(), accept_new_keys=True
        )
    assert caught.value.strerror == "No space left on device"
    named = Path(caught.value.filename)
    assert named.is_relative_to(target.artifacts) and named.relative_to(target.artifacts).parts[:2] == ("m", "1"), named
    assert not target.artifacts.exists() and not [p for p in target.home.iterdir() if p.name.startswith(".artifacts")]
