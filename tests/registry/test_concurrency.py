"""Concurrent registration and crash safety, on SQLite and PostgreSQL.

- 4 processes register versions of ONE model at once: versions are exactly 1..N, none lost,
  none duplicated, every one complete on disk (while gc runs alongside).
- A process killed with SIGKILL at each point of registering leaves no visible partial
  version, and `gc()` removes every file it left.

Children are started with multiprocessing's spawn method and import only the registry (no
torch), so each costs well under a second to start.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest
from _helpers import backend, secure, signed_copy, train_tiny  # noqa: F401 - `backend` is a fixture

from trustforge.errors import RegistryError
from trustforge.registry import Registry
from trustforge.settings import Settings

NAME = "iris-tiny"
PROCS = 4
EACH = 5


# ---------------------------------------------------------------------------- child processes


def _child_env(home: str, db_url: str) -> Settings:
    os.environ["TRUSTFORGE_HOME"] = home
    os.environ["TRUSTFORGE_DB_URL"] = db_url
    os.environ.pop("TRUSTFORGE_TOKEN", None)
    return Settings.from_env()


def _register_many(home: str, db_url: str, package: str, n: int, barrier, out: str) -> None:
    """Register `package` n times once every sibling is ready; write the versions it got to `out`."""
    with Registry(_child_env(home, db_url)) as reg:
        barrier.wait(timeout=60)
        got = [reg.register(Path(package)).version for _ in range(n)]
    Path(out).write_text(json.dumps(got))


def _register_and_hang(home: str, db_url: str, package: str, stage: str, marker: str) -> None:
    """Register once, but stop for good at `stage` (after writing `marker`), to be killed there."""
    import trustforge.registry._registry as impl

    def stop_at(point: str) -> None:
        if point == stage:
            Path(marker).write_text(str(os.getpid()))
            time.sleep(600)

    impl._crash_point = stop_at
    with Registry(_child_env(home, db_url)) as reg:
        reg.register(Path(package))


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def setup(backend, tiny, workspace, tmp_path):
    """(settings, signed package, registry) with keys and tables created before any child starts."""
    settings = Settings.from_env()
    reg = Registry(settings)
    pkg = signed_copy(tiny, settings, tmp_path / "signed")
    yield settings, pkg, reg
    reg.close()


def _stored_versions(reg: Registry) -> list[str]:
    root = reg.artifacts / NAME
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


# ---------------------------------------------------------------------------- concurrency


def test_four_processes_register_one_model_without_lost_or_duplicate_versions(setup, tmp_path):
    settings, pkg, reg = setup
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(PROCS)
    outs = [tmp_path / f"out-{i}.json" for i in range(PROCS)]
    procs = [ctx.Process(target=_register_many, args=(str(settings.home), settings.db_url, str(pkg), EACH, barrier, str(o))) for o in outs]
    for p in procs:
        p.start()
    # gc alongside: it must never take a folder that a live registration is about to commit.
    gc_runs = 0
    while any(p.is_alive() for p in procs):
        reg.gc()
        gc_runs += 1
        time.sleep(0.05)
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"a registering process failed (exit code {p.exitcode})"

    got = [json.loads(o.read_text()) for o in outs]
    everyone = sorted(v for g in got for v in g)
    n = PROCS * EACH
    assert everyone == list(range(1, n + 1)), "versions lost or duplicated"
    assert all(g == sorted(g) for g in got), "a process saw its versions go backwards"
    assert [mv.version for mv in reg.list_versions(NAME)] == list(range(1, n + 1))
    assert _stored_versions(reg) == sorted(str(v) for v in range(1, n + 1))
    for mv in reg.list_versions(NAME):
        secure.open_sealed(mv.path, reg.keyring)  # every committed version is complete and verifies
    registered = [e for e in reg.audit.entries(limit=1000) if e["action"] == "register" and e["outcome"] == "ok"]
    assert sorted(e["object"] for e in registered) == sorted(f"models:/{NAME}/{v}" for v in range(1, n + 1))
    assert reg.audit.verify().ok
    assert gc_runs > 0
    assert reg.gc(grace_s=0) == {"staging": [], "orphans": [], "missing": [], "unknown": []}


# ---------------------------------------------------------------------------- SIGKILL


def _kill_at(stage: str, settings: Settings, pkg: Path, marker: Path) -> None:
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_register_and_hang, args=(str(settings.home), settings.db_url, str(pkg), stage, str(marker)))
    p.start()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert p.is_alive(), f"the child died before reaching {stage!r} (exit code {p.exitcode})"
        assert time.monotonic() < deadline, f"the child never reached {stage!r}"
        time.sleep(0.02)
    os.kill(p.pid, signal.SIGKILL)
    p.join(timeout=30)
    assert p.exitcode == -signal.SIGKILL


CASES = [
    # stage, staging entries left, a final folder left without a row, the version committed
    ("staged", 2, False, False),  # the sealed copy and its lock file
    ("renamed", 1, True, False),  # the lock file, and ARTIFACTS/NAME/2 whose row never committed
    ("before_commit", 1, True, False),  # the same, with the audit entry appended (and rolled back)
    ("committed", 1, False, True),  # the version is complete; only the lock file is left
]


@pytest.mark.parametrize(("stage", "staging_left", "orphan", "committed"), CASES, ids=[c[0] for c in CASES])
def test_sigkill_while_registering_leaves_no_partial_version_and_gc_cleans_up(setup, tmp_path, stage, staging_left, orphan, committed):
    settings, pkg, reg = setup
    assert reg.register(pkg).version == 1
    _kill_at(stage, settings, pkg, tmp_path / "marker")

    # What other processes see: version 2 only if it committed, and then complete.
    assert [mv.version for mv in reg.list_versions(NAME)] == ([1, 2] if committed else [1])
    if committed:
        secure.open_sealed(reg.get(f"models:/{NAME}/2").path, reg.keyring)
    else:
        with pytest.raises(RegistryError, match="no such version"):
            reg.get(f"models:/{NAME}/2")
        assert reg.get(f"models:/{NAME}").version == 1
    assert len(list((reg.artifacts / ".staging").iterdir())) == staging_left
    assert _stored_versions(reg) == (["1", "2"] if committed or orphan else ["1"])

    report = reg.gc(grace_s=0)
    assert len(report["staging"]) == staging_left
    assert report["orphans"] == ([f"{NAME}/2"] if orphan else [])
    assert list((reg.artifacts / ".staging").iterdir()) == []
    assert _stored_versions(reg) == (["1", "2"] if committed else ["1"])
    assert reg.gc(grace_s=0) == {"staging": [], "orphans": [], "missing": [], "unknown": []}
    assert reg.audit.verify().ok
    # Registering goes on: the killed attempt's number is reused only if it never committed.
    assert reg.register(pkg).version == (3 if committed else 2)


def test_a_registration_after_a_crash_replaces_the_orphan_folder_without_gc(setup, tmp_path):
    settings, pkg, reg = setup
    _kill_at("renamed", settings, pkg, tmp_path / "marker")
    assert _stored_versions(reg) == ["1"] and reg.list_versions(NAME) == []
    mv = reg.register(pkg)  # allocates 1 again and replaces the dead attempt's folder
    assert mv.version == 1
    secure.open_sealed(mv.path, reg.keyring)
    assert reg.gc(grace_s=0)["orphans"] == []
