"""RunIndex re-reads a run folder only when it changed, and sees every change that matters;
named_run resolves only plain folder names directly inside the runs folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from trustforge.errors import RunError
from trustforge.evaluate import RunIndex, epoch_columns, named_run, run_metrics, run_settings


def _run(runs: Path, name: str, state: str = "completed", pid: int | None = None, **metrics) -> Path:
    folder = runs / name
    folder.mkdir(parents=True)
    status = {"state": state, "started": "2026-01-01T00:00:00+00:00"}
    if pid is not None:
        status["pid"] = pid
    (folder / "status.json").write_text(json.dumps(status))
    (folder / "spec.yaml").write_text("name: demo\ntrain: {max_epochs: 4, optimizer: {lr: 0.1}}\n")
    if metrics:
        (folder / "metrics.json").write_text(json.dumps({**metrics, "n": 10}))
    (folder / "epochs.csv").write_text("epoch,val_loss\n1,0.9\n")
    _age(folder)
    return folder


def _age(folder: Path) -> None:
    """Date the folder and its files a minute back (out of the index's "just changed" window)."""
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (time.time() - 60, time.time() - 60))


def test_unchanged_folders_are_not_read_again(tmp_path):
    for i in range(5):
        _run(tmp_path, f"r{i}", accuracy=i / 10)
    index = RunIndex(tmp_path)
    assert sorted(r["value"] for r in index.rows()) == [0.0, 0.1, 0.2, 0.3, 0.4]
    assert index.reads == 5
    index.rows()
    assert index.reads == 5


def test_changes_are_seen(tmp_path):
    done = _run(tmp_path, "done", accuracy=0.5)
    running = _run(tmp_path, "live", state="running", pid=os.getpid())
    index = RunIndex(tmp_path)
    index.rows()
    generation = index.generation
    index.rows()
    assert index.generation == generation  # nothing changed
    # a status.json renamed in, as every writer of a run does (atomic_write_text)
    (done / "status.new").write_text(json.dumps({"state": "failed"}))
    os.replace(done / "status.new", done / "status.json")
    rows = {r["run"]: r for r in index.rows()}
    assert rows["done"]["state"] == "failed" and index.generation == generation + 1
    # an epoch appended to a running run's epochs.csv
    with (running / "epochs.csv").open("a") as f:
        f.write("2,0.5\n")
    assert {r["run"]: r for r in index.rows()}["live"]["epochs"] == 2
    # a run renamed in (new folder) and one removed
    _run(tmp_path, "new", accuracy=0.9)
    (tmp_path / "done").rename(tmp_path / ".rm-done")
    assert sorted(r["run"] for r in index.rows()) == ["live", "new"]


def test_a_running_run_whose_process_is_gone_turns_killed_without_a_file_change(tmp_path):
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        _run(tmp_path, "r", state="running", pid=child.pid)
        index = RunIndex(tmp_path)
        assert index.rows()[0]["state"] == "running"
    finally:
        child.kill()
        child.wait()
    assert index.rows()[0]["state"] == "killed"


def test_links_dot_folders_files_and_corrupt_runs(tmp_path):
    outside = _run(tmp_path / "elsewhere", "secret", accuracy=1.0)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "linked").symlink_to(outside, target_is_directory=True)
    (runs / "stray.txt").write_text("x")
    _run(runs, ".rm-old", accuracy=0.1)
    bad = _run(runs, "bad")
    (bad / "metrics.json").write_text("{not json")
    rows = RunIndex(runs).rows()
    assert [(r["run"], r["state"]) for r in rows] == [("bad", "unreadable")]
    assert "not valid JSON" in rows[0]["note"]


@pytest.mark.parametrize("name", ["..", ".", "../x", "a/b", "/etc", "a\x00b", ".hidden", "", "linked", "missing", "x" * 300])
def test_named_run_refuses_everything_but_a_real_child_folder(tmp_path, name):
    runs = tmp_path / "runs"
    _run(runs, "ok")
    (runs / "linked").symlink_to(runs / "ok", target_is_directory=True)
    with pytest.raises(RunError):
        named_run(runs, name)
    assert named_run(runs, "ok") == (runs / "ok").resolve()


def test_a_run_with_a_linked_file_is_refused(tmp_path):
    runs = tmp_path / "runs"
    folder = _run(runs, "r", accuracy=0.5)
    (tmp_path / "secret.json").write_text('{"state": "completed"}')
    (folder / "status.json").unlink()
    (folder / "status.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(RunError, match="r/status.json: a symbolic link"):
        named_run(runs, "r")
    row = RunIndex(runs).rows()[0]
    assert row["state"] == "unreadable" and "symbolic link" in row["note"]


def test_readers_of_one_run(tmp_path):
    folder = _run(tmp_path, "r", accuracy=0.75, log_loss=0.4)
    assert run_metrics(folder) == {"accuracy": 0.75, "log_loss": 0.4}  # n is bookkeeping
    assert run_settings(folder)["train.optimizer.lr"] == 0.1
    assert epoch_columns(folder) == {"epoch": [1.0], "val_loss": [0.9]}
