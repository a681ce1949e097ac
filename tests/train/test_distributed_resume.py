"""A data-parallel run whose rank dies mid-epoch ends with one clear error well within a minute,
keeps its last epoch, and `--resume` finishes it with the weights of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]

# 455 training rows, batch 16 per process: 15 steps (and 15 gradient all-reduces) per epoch.
SPEC = """\
name: bc-resume
task: classification
data: {source: "builtin:breast_cancer", target: target, split: {test: 0.2, validation: 0.0, stratify: true}}
model: {kind: mlp, hidden: [32], dropout: 0.1}
train: {max_epochs: 40, batch_size: 16, optimizer: {lr: 0.003}, scheduler: {name: cosine}, early_stopping: null, seed: 7}
evaluate: {metrics: [accuracy], speed: false, corruptions: false, explain: false, robustness: false, privacy_audit: false}
"""


def _train(cwd: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "trustforge", "train", "-q", "--no-register", "spec.yaml", "--nproc-per-node", "2", *extra]
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the launcher's worker process with RANK=`rank` (read from /proc), if it is up."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "package" / "weights.safetensors")


def test_killed_rank_ends_the_job_and_resume_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    env = {**os.environ, "TRUSTFORGE_HOME": str(tmp_path / "ws"), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    runs = tmp_path / "ws" / "runs"

    whole = _train(tmp_path, env)
    out, err = whole.communicate(timeout=180)
    assert whole.returncode == 0, err[-2000:]
    (reference,) = list(runs.iterdir())

    job = _train(tmp_path, env)
    deadline = time.monotonic() + 120
    victim = None
    while time.monotonic() < deadline and job.poll() is None:  # a few epochs in, rank 1 is killed
        logged = [p / "epochs.csv" for p in runs.iterdir() if p != reference]
        if logged and logged[0].is_file() and len(logged[0].read_text().splitlines()) >= 4:
            victim = _rank_pid(job.pid, 1)
            if victim is not None:
                break
        time.sleep(0.05)
    assert victim is not None, "the run ended before a rank could be killed"
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    _, err = job.communicate(timeout=90)
    assert time.monotonic() - killed_at < 60
    assert job.returncode != 0
    assert "error: data-parallel training failed: rank 1 (local rank 1 of 2 on node 0) was killed by SIGKILL" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    (broken,) = [p for p in runs.iterdir() if p != reference]
    assert '"state": "interrupted"' in (broken / "status.json").read_text()
    assert not (broken / "package").exists()

    resumed = _train(tmp_path, env, "--resume")
    out, err = resumed.communicate(timeout=180)
    assert resumed.returncode == 0, err[-2000:]
    assert len(list(runs.iterdir())) == 2  # the interrupted run was continued, not a new one started
    expected, got = _weights(reference), _weights(broken)
    assert expected.keys() == got.keys()
    for name in expected:  # same ranks, same order of operations: the same bits
        assert torch.equal(expected[name], got[name]), name
    assert len((broken / "epochs.csv").read_text().splitlines()) == 1 + 40
