"""The registry: register, versions, lineage, aliases, tags, delete, URIs, load, gc, CLI.

Runs on SQLite and, where `backend` is used, on PostgreSQL too (TRUSTFORGE_TEST_PG_URL).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from _helpers import backend, signed_copy, train_tiny  # noqa: F401 - `backend` is a fixture
from sklearn.datasets import load_iris
from typer.testing import CliRunner

from trustforge.commands.models import app as models_app
from trustforge.errors import IntegrityError, ModelUriError, RegistryError, UsageError
from trustforge.package import Model
from trustforge.registry import Registry
from trustforge.settings import Settings

NAME = "iris-tiny"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def settings(workspace) -> Settings:
    return Settings.from_env()


@pytest.fixture
def pkg(tiny, settings, tmp_path) -> Path:
    """The tiny package, signed with this workspace's key."""
    return signed_copy(tiny, settings, tmp_path / "signed")


@pytest.fixture
def reg(settings):
    with Registry(settings) as r:
        yield r


def iris_frame() -> pd.DataFrame:
    return load_iris(as_frame=True).frame.drop(columns=["target"]).head(20)


def audit_actions(reg: Registry) -> list[tuple[str, str, str]]:
    return [(e["action"], e["object"], e["outcome"]) for e in reversed(reg.audit.entries(limit=1000))]


def stored_tree(reg: Registry) -> list[str]:
    root = reg.artifacts
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ---------------------------------------------------------------------------- register and lineage


def test_register_numbers_versions_and_records_lineage(backend, pkg, reg):
    manifest_bytes = (pkg / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    v1 = reg.register(pkg)
    v2 = reg.register(pkg, parent_version=1, run="run-override", tags={"stage": "candidate"})
    assert (v1.name, v1.version, v2.version) == (NAME, 1, 2)
    assert v1.uri == f"models:/{NAME}/1"
    lin = manifest["lineage"]
    assert (v1.run, v1.dataset_digest, v1.spec_digest) == (lin["run"], lin["dataset_digest"], lin["spec_digest"])
    assert v1.parent_version is None and v2.parent_version == 1 and v2.run == "run-override"
    assert v2.tags == {"stage": "candidate"}
    assert v1.package_id == manifest["package_id"]
    assert v1.package_digest == hashlib.sha256(manifest_bytes).hexdigest()
    assert v1.created_by == reg.principal.name and v1.task == "classification"
    assert v1.metrics["accuracy"] == manifest["metrics"]["accuracy"]
    assert [mv.version for mv in reg.list_versions(NAME)] == [1, 2]
    listed = reg.list_models()
    assert listed == [
        {"name": NAME, "versions": 2, "latest": 2, "aliases": {}, "created_at": listed[0]["created_at"], "updated_at": v2.created_at}
    ]
    assert [a for a in audit_actions(reg) if a[0] == "register"] == [
        ("register", f"models:/{NAME}/1", "ok"),
        ("register", f"models:/{NAME}/2", "ok"),
    ]
    # Stored as ARTIFACTS/NAME/VERSION, and nothing left in staging.
    assert v2.path == reg.artifacts / NAME / "2" and v2.path.is_dir()
    assert list((reg.artifacts / ".staging").iterdir()) == []


def test_the_registry_stores_packages_encrypted_and_loads_them_in_memory(pkg, reg):
    mv = reg.register(pkg, name="enc")
    assert mv.encrypted
    plain = {p.name: p.read_bytes() for p in pkg.iterdir()}
    stored = b"".join(p.read_bytes() for p in mv.path.rglob("*") if p.is_file())
    # No plaintext file, nor a 64-byte window of the weights, appears in the store.
    weights = plain["weights.safetensors"]
    for name, blob in plain.items():
        assert blob not in stored, f"{name} is stored in plaintext"
    assert all(weights[i : i + 64] not in stored for i in range(0, len(weights) - 64, 997))
    model = reg.load_model("models:/enc/1")
    expected = Model.load(pkg).predict(iris_frame())
    pd.testing.assert_frame_equal(model.predict(iris_frame()), expected)


def test_verify_version_checks_a_stored_version_without_building_it(pkg, reg):
    mv = reg.register(pkg, name="ver")
    report = reg.verify_version("ver", 1)
    assert report["binding"] and report["signature"] and report["digests"] and report["files"] >= 3 and report["encrypted"]
    reg.set_alias("ver", "champion", 1)
    assert reg.list_models()[0]["updated_at"] >= mv.created_at
    target = sorted(p for p in mv.path.iterdir() if p.name != "sealed.json")[0]
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="models:/ver/1") as failed:
        reg.verify_version("ver", 1)
    assert str(mv.path) not in str(failed.value)  # the version, never the local folder
    assert [a for a in audit_actions(reg) if a[0] == "load"] == [("load", "models:/ver/1", "error")]
    # Loading it (what a server does) names the version too, in the error and the audit entry:
    # a probe found the store's local path in a server's reload_failed log line.
    with pytest.raises(IntegrityError, match=f"models:/ver/1/{target.name}") as failed:
        reg.load_model("models:/ver/1")
    assert str(mv.path) not in str(failed.value)
    assert not any(str(mv.path) in str(e["details"]) for e in reg.audit.entries())


def test_plain_storage_when_encryption_is_off(pkg, settings):
    with Registry(settings, encrypt=False) as reg:
        mv = reg.register(pkg)
        assert not mv.encrypted
        assert (mv.path / "weights.safetensors").read_bytes() == (pkg / "weights.safetensors").read_bytes()
        pd.testing.assert_frame_equal(reg.load_model(mv.uri).predict(iris_frame()), Model.load(pkg).predict(iris_frame()))


def test_a_tampered_package_is_refused_and_leaves_nothing(pkg, reg):
    blob = bytearray((pkg / "weights.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0x01
    (pkg / "weights.safetensors").write_bytes(bytes(blob))
    with pytest.raises(IntegrityError, match="weights.safetensors"):
        reg.register(pkg)
    assert reg.list_models() == []
    assert [p for p in stored_tree(reg) if p != ".staging"] == []
    refused = reg.audit.entries(limit=1)[0]
    # no name was read from a refused package: the object is its folder (an empty models:/ named nothing)
    assert (refused["action"], refused["object"], refused["outcome"]) == ("register", f"package:{pkg.name}", "error")
    assert "weights.safetensors" in refused["details"]["error"]


def test_a_refused_package_folder_named_after_a_person_is_audited_tagged(pkg, reg, tmp_path):
    named = Path(shutil.copytree(pkg, tmp_path / "mary.smith@example.com"))
    (named / "model.sig").write_bytes(b"not a signature")
    with pytest.raises(IntegrityError):
        reg.register(named)
    refused = reg.audit.entries(limit=1)[0]
    assert refused["object"] == "package:<EMAIL>" and "mary" not in json.dumps(refused), refused


def test_an_unsigned_package_is_refused(tiny, reg, tmp_path):
    unsigned = Path(shutil.copytree(tiny, tmp_path / "unsigned"))
    (unsigned / "model.sig").unlink(missing_ok=True)
    with pytest.raises(IntegrityError, match="model.sig|sign"):
        reg.register(unsigned)
    assert reg.list_models() == []


def test_names_are_checked_before_anything_is_written(pkg, reg):
    for bad in ("../escape", "/abs", "%2e%2e", "a\\b", "ａｂｃ"):
        with pytest.raises(RegistryError, match="model name"):
            reg.register(pkg, name=bad)
    assert stored_tree(reg) == []
    assert not (reg.artifacts.parent / "escape").exists()


def test_names_differing_only_in_case_are_refused(pkg, reg):
    reg.register(pkg, name="Iris")
    with pytest.raises(RegistryError, match="differs only in case"):
        reg.register(pkg, name="iris")
    assert [m["name"] for m in reg.list_models()] == ["Iris"]


def test_parent_version_must_be_earlier(pkg, reg):
    with pytest.raises(RegistryError, match="parent_version"):
        reg.register(pkg, parent_version=1)
    assert reg.list_versions(NAME) == []
    assert stored_tree(reg) == [".staging"]


# ---------------------------------------------------------------------------- URIs, aliases, tags


def test_uris_aliases_and_latest(backend, pkg, reg):
    for _ in range(3):
        reg.register(pkg)
    reg.set_alias(NAME, "champion", 2)
    assert reg.get(f"models:/{NAME}@champion").version == 2
    assert reg.get(f"models:/{NAME}").version == 3
    assert reg.get(NAME, 1).version == 1
    assert reg.get(f"models:/{NAME}/3").aliases == ()
    assert reg.get(f"models:/{NAME}/2").aliases == ("champion",)
    reg.set_alias(NAME, "champion", 3)  # moving an alias
    assert reg.get(f"models:/{NAME}@champion").version == 3
    assert reg.list_models()[0]["aliases"] == {"champion": 3}
    reg.delete_alias(NAME, "champion")
    with pytest.raises(RegistryError, match="no such alias"):
        reg.get(f"models:/{NAME}@champion")
    with pytest.raises(RegistryError, match="no such version"):
        reg.set_alias(NAME, "champion", 9)
    with pytest.raises(RegistryError, match="no such model"):
        reg.get("models:/unknown")
    with pytest.raises(RegistryError, match="no such version"):
        reg.get(f"models:/{NAME}/7")
    with pytest.raises(RegistryError, match="alias"):
        reg.set_alias(NAME, "../x", 1)
    pd.testing.assert_frame_equal(reg.load_model(f"models:/{NAME}/1").predict(iris_frame()), Model.load(pkg).predict(iris_frame()))


def test_a_wrong_type_of_argument_is_one_registry_error_naming_it(pkg, reg, settings):
    """A probe's `Registry(5)` (an AttributeError from inside) and `register(5)` (a TypeError from
    pathlib): each wrong type is one RegistryError naming the argument, before any work."""
    refused = {
        r"Registry\(settings\): must be a trustforge\.Settings or None; got int 5": lambda: Registry(5),
        r"Registry\(principal\): must be a trustforge\.secure\.Principal or None; got str 'root'": lambda: Registry(
            settings, principal="root"
        ),
        r"Registry\(encrypt\): must be True or False; got str 'no'": lambda: Registry(settings, encrypt="no"),
        r"Registry\.register\(package\): must be a package folder \(a str or os\.PathLike\); got int 5": lambda: reg.register(5),
        r"Registry\.register\(package\): .*; got NoneType None": lambda: reg.register(None),
        r"Registry\.register\(tags\): must be a mapping of tag key to value, or None; got list \['a'\]": lambda: reg.register(
            pkg, tags=["a"]
        ),
        r"Registry\.register\(run\): must be the name of a run \(a str\) or None; got int 5": lambda: reg.register(pkg, run=5),
        r"Registry\.acting_as\(principal\): must be a trustforge\.secure\.Principal; got int 5": lambda: reg.acting_as(5),
        r"Registry\.gc\(grace_s\): must be a number of seconds >= 0; got str '1'": lambda: reg.gc(grace_s="1"),
        r"Registry\.gc\(grace_s\): must be a number of seconds >= 0; got float nan": lambda: reg.gc(grace_s=float("nan")),
    }
    for message, call in refused.items():
        with pytest.raises(RegistryError, match=f"^{message}$"):
            call()
    assert reg.list_models() == []  # nothing registered


def test_a_uri_and_a_folder_given_to_each_others_loader_name_the_right_one(pkg, reg):
    """`Model.load("models:/NAME")` said "not a package folder" (also for a malformed URI), and
    `Registry.load_model(FOLDER)` "model name must not be empty": each names the other loader."""
    reg.register(pkg)
    for uri in (f"models:/{NAME}", f"models:/{NAME}/0"):
        with pytest.raises(
            UsageError, match=rf"^Model\.load\(path\): '{uri}' is a model URI, not a package folder; .*Registry\(\)\.load_model\("
        ):
            Model.load(uri)
    with pytest.raises(
        ModelUriError, match=r"^Registry\.load_model\(uri\): '.*' is a folder, not a model URI .*trustforge\.Model\.load\(path\)$"
    ):
        reg.load_model(str(pkg))
    assert reg.load_model(f"models:/{NAME}").name == NAME


def test_tags_set_overwrite_and_validate(pkg, reg):
    reg.register(pkg)
    reg.set_tag(NAME, 1, "stage", "staging")
    reg.set_tag(NAME, 1, "owner", "fraud-team")
    reg.set_tag(NAME, 1, "stage", "production")
    assert reg.get(f"models:/{NAME}/1").tags == {"owner": "fraud-team", "stage": "production"}
    with pytest.raises(RegistryError, match="tag key"):
        reg.set_tag(NAME, 1, "../k", "v")
    with pytest.raises(RegistryError, match="tag value"):
        reg.set_tag(NAME, 1, "k", "line\nbreak")
    with pytest.raises(RegistryError, match="no such version"):
        reg.set_tag(NAME, 2, "k", "v")
    assert ("tag", f"models:/{NAME}/1", "ok") in audit_actions(reg)


def test_the_audit_log_keeps_a_tag_key_and_a_keyed_fingerprint_never_the_value(pkg, reg):
    # The audit log is never erased; a tag value is free text, so personal data typed into it
    # must stay in the tags, which can be overwritten.
    reg.register(pkg, tags={"approved-by": "Ann Smith"})
    reg.set_tag(NAME, 1, "owner", "ann.smith@example.com")
    reg.set_tag(NAME, 1, "reviewer", "ann.smith@example.com")
    reg.set_tag(NAME, 1, "stage", "yes")
    entries = [e for e in reg.audit.entries(limit=100) if e["action"] in ("register", "tag")]
    assert "Ann Smith" not in json.dumps(entries) and "ann.smith" not in json.dumps(entries)
    tagged = {e["details"]["key"]: e["details"] for e in entries if e["action"] == "tag"}
    assert set(tagged["owner"]) == {"key", "value_length", "value_hmac"} and tagged["owner"]["value_length"] == 21
    assert tagged["owner"]["value_hmac"] == tagged["reviewer"]["value_hmac"] != tagged["stage"]["value_hmac"]
    # Keyed: a plain hash of a short value is found by hashing guesses; this one is not.
    assert tagged["stage"]["value_hmac"] not in hashlib.sha256(b"yes").hexdigest()
    registered = next(e for e in entries if e["action"] == "register")
    assert set(registered["details"]["tags"]) == {"approved-by"} and registered["details"]["tags"]["approved-by"]["value_length"] == 9
    assert reg.get(f"models:/{NAME}/1").tags["owner"] == "ann.smith@example.com"  # the tag itself keeps the value


# ---------------------------------------------------------------------------- delete and gc


def test_delete_removes_row_files_and_aliases_and_never_reuses_the_number(backend, pkg, reg):
    for _ in range(2):
        reg.register(pkg)
    reg.set_alias(NAME, "champion", 2)
    reg.set_tag(NAME, 2, "k", "v")
    reg.delete(NAME, 2)
    assert not (reg.artifacts / NAME / "2").exists()
    assert (reg.artifacts / NAME / "1").is_dir()
    with pytest.raises(RegistryError, match="no such version"):
        reg.get(f"models:/{NAME}/2")
    with pytest.raises(RegistryError, match="no such alias"):
        reg.get(f"models:/{NAME}@champion")
    assert reg.register(pkg).version == 3
    with pytest.raises(RegistryError, match="no such version"):
        reg.delete(NAME, 2)
    assert ("delete", f"models:/{NAME}/2", "ok") in audit_actions(reg)


def test_gc_removes_orphans_and_reports_missing_folders(pkg, reg):
    reg.register(pkg)
    reg.register(pkg)
    orphan = reg.artifacts / NAME / "9"
    shutil.copytree(reg.artifacts / NAME / "1", orphan)  # a final folder whose row never committed
    stale = reg.artifacts / ".staging" / ("ab" * 16)
    stale.mkdir()
    (reg.artifacts / ".staging" / f"{'ab' * 16}.lock").touch()  # its owner died (nobody holds the lock)
    shutil.rmtree(reg.artifacts / NAME / "2")  # damage: a registered version lost its files
    (reg.artifacts / "README.txt").write_text("not ours")
    report = reg.gc(grace_s=0)
    assert report["orphans"] == [f"{NAME}/9"]
    assert sorted(report["staging"]) == [f".staging/{'ab' * 16}", f".staging/{'ab' * 16}.lock"]
    assert report["missing"] == [f"{NAME}/2"]
    assert report["unknown"] == ["README.txt"]
    assert not orphan.exists() and not stale.exists()
    assert (reg.artifacts / NAME / "1").is_dir() and (reg.artifacts / "README.txt").exists()
    assert ("gc", "artifacts", "ok") in audit_actions(reg)


def test_gc_leaves_young_or_locked_staging_alone(pkg, reg):
    from trustforge.registry._store import StagingLock

    staging = reg.artifacts / ".staging"
    staging.mkdir(parents=True)
    young = staging / ("cd" * 16)
    young.mkdir()
    with StagingLock(staging / f"{'ef' * 16}.lock"):
        (staging / ("ef" * 16)).mkdir()
        report = reg.gc(grace_s=0)  # the locked one survives even with no grace
        assert (staging / ("ef" * 16)).is_dir()
    assert report["staging"] == [f".staging/{'cd' * 16}"]
    (staging / ("12" * 16)).mkdir()
    assert reg.gc(grace_s=3600)["staging"] == []  # younger than the grace


def test_gc_removes_what_a_killed_restore_left_beside_the_store_unless_a_restore_holds_it(reg):
    from trustforge.registry._store import StagingLock

    home = reg.artifacts.parent
    dead = home / f".{reg.artifacts.name}.restore-0badc0de"  # a restore killed mid-write (SIGKILL: no cleanup)
    (dead / NAME / "1").mkdir(parents=True)
    (dead / NAME / "1" / "weights.safetensors.enc").write_bytes(b"sealed bytes")
    (home / f"{dead.name}.lock").touch()  # its lock file, nobody holding it
    live = home / f".{reg.artifacts.name}.restore-1234abcd"
    foreign = home / f".{reg.artifacts.name}.restore-notours"
    foreign.mkdir()
    with StagingLock(home / f"{live.name}.lock"):
        live.mkdir()
        report = reg.gc(grace_s=0)
        assert live.is_dir()  # a running restore's folder is never taken
    assert sorted(report["staging"]) == [dead.name, f"{dead.name}.lock"]
    assert not dead.exists() and not (home / f"{dead.name}.lock").exists()
    assert foreign.is_dir()  # not a name a restore makes: left alone
    assert reg.gc(grace_s=0)["staging"] == [live.name]  # its restore ended without removing it (killed)


# ---------------------------------------------------------------------------- the command line


def test_cli_models_commands(pkg, workspace):
    runner = CliRunner()

    def ok(*args: str) -> str:
        result = runner.invoke(models_app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    assert ok("list") == "no models registered\n"
    assert ok("register", str(pkg), "--tag", "team=risk").strip() == f"models:/{NAME}/1"
    assert ok("register", str(pkg)).strip() == f"models:/{NAME}/2"
    assert ok("alias", NAME, "champion", "1").strip() == f"models:/{NAME}@champion -> 1"
    assert ok("tag", NAME, "2", "stage=prod").strip() == f"models:/{NAME}/2 stage=prod"
    listing = ok("list")
    assert NAME in listing and "champion→1" in listing
    shown = ok("show", f"models:/{NAME}@champion")
    assert f"models:/{NAME}/1" in shown and "team=risk" in shown and "spec digest:" in shown
    assert json.loads(ok("show", f"models:/{NAME}/2", "--json"))[0]["tags"] == {"stage": "prod"}
    assert [d["version"] for d in json.loads(ok("show", NAME, "--json"))] == [1, 2]
    assert ok("delete", NAME, "1").strip() == f"deleted models:/{NAME}/1"
    assert "removed 0 staging entries and 0 orphan version folders" in ok("gc")
    result = runner.invoke(models_app, ["show", "models:/../etc/1"])
    assert isinstance(result.exception, RegistryError) and "'..'" in str(result.exception)
    result = runner.invoke(models_app, ["tag", NAME, "2", "novalue"])
    assert isinstance(result.exception, RegistryError) and "KEY=VALUE" in str(result.exception)


# ---------------------------------------------------------------------------- the database


def test_sqlite_engine_settings(settings):
    import sqlalchemy as sa

    from trustforge.registry import make_engine, readonly

    engine = make_engine(settings.db_url)
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    with engine.begin() as conn:
        conn.exec_driver_sql("SELECT 1")
    with readonly(engine).connect() as conn:
        conn.exec_driver_sql("SELECT 2")
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE", "BEGIN IMMEDIATE", "BEGIN"]
    engine.dispose()


def test_unreachable_or_unsupported_databases_are_one_line_errors_without_the_password(settings, monkeypatch):
    import dataclasses

    from trustforge.registry import make_engine

    with pytest.raises(RegistryError) as info:
        Registry(dataclasses.replace(settings, db_url="postgresql+psycopg://alice:s3cretpw@127.0.0.1:1/nodb"))
    message = str(info.value)
    assert "s3cretpw" not in message and "127.0.0.1" in message and "\n" not in message
    for url, why in [
        ("mysql://bob:pw123456@db/x", "unsupported database"),
        ("postgresql+pg8000://bob:pw123456@db/x", "psycopg"),
        ("not a url", "malformed"),
    ]:
        with pytest.raises(RegistryError, match=why) as info:
            make_engine(url)
        assert "pw123456" not in str(info.value)
