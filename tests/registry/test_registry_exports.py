"""Deleting a version removes its `package export` artefacts too; gc removes those a crash left.

An export writes `NAME/V.onnx`, `V.onnx-int8`, `V.torchscript`, `V.torchscript-int8` beside the
version folder `NAME/V` (and `.V.onnx.plain-TAG`, ... while it writes): a deleted model must not
leave its weights on disk in any of them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from _helpers import signed_copy, train_tiny
from typer.testing import CliRunner

from trustforge.commands.package import app as package_app
from trustforge.package import export_path
from trustforge.registry import Registry
from trustforge.settings import Settings

NAME = "iris-tiny"
VARIANTS = [("onnx", None), ("onnx", "int8"), ("torchscript", None), ("torchscript", "int8")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def reg(tiny, workspace, tmp_path):
    settings = Settings.from_env()
    pkg = signed_copy(tiny, settings, tmp_path / "signed")
    with Registry(settings) as r:
        r.register(pkg)
        r.register(pkg)
        yield r


def _fake_exports(folder: Path) -> list[Path]:
    """Artefact folders beside a version folder, as `package export` names them, each with "weights"."""
    out = []
    for fmt, q in VARIANTS:
        p = export_path(folder, fmt, q)
        p.mkdir()
        (p / "model.bin").write_bytes(b"weights")
        out.append(p)
    temp = folder.with_name(f".{folder.name}.onnx.plain-0123abcd")  # an export being written (or crashed)
    temp.mkdir()
    (temp / "model.onnx").write_bytes(b"plaintext weights")
    return [*out, temp]


def _stored(reg: Registry) -> list[str]:
    return sorted(p.name for p in (reg.artifacts / NAME).iterdir())


def _delete_entries(reg: Registry, version: int) -> list[dict]:
    return [e for e in reg.audit.entries(limit=1000) if e["action"] == "delete" and e["object"] == f"models:/{NAME}/{version}"]


def test_delete_removes_the_versions_export_artefacts_and_audits_them(reg):
    one = _fake_exports(reg.artifacts / NAME / "1")
    two = _fake_exports(reg.artifacts / NAME / "2")
    reg.delete(NAME, 1)
    assert not any(p.exists() for p in one), "a deleted version left export artefacts on disk"
    assert all(p.is_dir() for p in two)  # the other version's are untouched
    assert _stored(reg) == sorted(["2", *(p.name for p in two)])
    (entry,) = _delete_entries(reg, 1)
    assert entry["outcome"] == "ok" and entry["details"]["exports_removed"] == sorted(p.name for p in one)
    assert reg.audit.verify().ok


def test_a_crash_after_the_delete_commits_leaves_files_that_gc_removes(reg, monkeypatch):
    import trustforge.registry._registry as impl

    one = _fake_exports(reg.artifacts / NAME / "1")

    class Crash(BaseException):
        pass

    def crash(stage: str) -> None:
        if stage == "deleted":
            raise Crash  # the process dies here: the row is gone, the files are still there

    monkeypatch.setattr(impl, "_crash_point", crash)
    with pytest.raises(Crash):
        reg.delete(NAME, 1)
    monkeypatch.undo()
    assert all(p.exists() for p in one) and (reg.artifacts / NAME / "1").is_dir()
    report = reg.gc(grace_s=0)
    assert sorted(report["orphans"]) == sorted([f"{NAME}/1", *(f"{NAME}/{p.name}" for p in one)])
    assert report["unknown"] == []
    assert _stored(reg) == ["2"]
    assert [e["details"]["exports_removed"] for e in _delete_entries(reg, 1)] == [sorted(p.name for p in one)]


def test_gc_keeps_a_live_versions_artefacts_and_removes_a_stale_temporary(reg):
    from trustforge.registry._store import EXPORT_TEMP_GRACE_S

    two = _fake_exports(reg.artifacts / NAME / "2")
    finals, temp = two[:-1], two[-1]
    report = reg.gc(grace_s=0)
    assert report["orphans"] == [] and report["unknown"] == []  # known names, not "unknown"
    assert all(p.is_dir() for p in two)  # a young temporary may be an export in progress
    old = time.time() - EXPORT_TEMP_GRACE_S - 60
    os.utime(temp, (old, old))
    assert reg.gc(grace_s=0)["orphans"] == [f"{NAME}/{temp.name}"]  # a crashed export's plaintext copy
    assert all(p.is_dir() for p in finals) and not temp.exists()
    stray = reg.artifacts / NAME / "7.onnx"  # an export that finished after its version was deleted
    stray.mkdir()
    (reg.artifacts / NAME / "2.onnx.txt").write_text("not ours")
    report = reg.gc(grace_s=0)
    assert report["orphans"] == [f"{NAME}/7.onnx"] and report["unknown"] == [f"{NAME}/2.onnx.txt"]
    assert not stray.exists()


def test_a_real_export_is_deleted_with_its_version(reg, monkeypatch):
    """The names `package export` writes are the names delete removes (a TorchScript export, sealed)."""
    done = CliRunner().invoke(package_app, ["export", f"models:/{NAME}/1", "--format", "torchscript", "--no-speed"])
    assert done.exit_code == 0, done.output
    artefact = export_path(reg.get(f"models:/{NAME}/1").path, "torchscript")
    assert artefact.is_dir()
    reg.delete(NAME, 1)
    assert not artefact.exists() and _stored(reg) == ["2"]
    assert _delete_entries(reg, 1)[0]["details"]["exports_removed"] == [artefact.name]
