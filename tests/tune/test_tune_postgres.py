"""One study on PostgreSQL, filled by two local worker processes and a third process that shares only the URL.

The third process has its own workspace (its own runs, keys and registry): it stands for a
second machine. Together they must finish the study with no trial lost or run twice: trial
numbers 0..n-1 once each, every trial one run folder in the workspace of the process that ran it.
Needs TRUSTFORGE_TEST_PG_URL (`eval "$(.ci/postgres.sh)"`); CI sets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

PG_ENV = "TRUSTFORGE_TEST_PG_URL"
PG_MISSING = (
    f"{PG_ENV} is not set: install PostgreSQL (Debian: apt-get install -y postgresql) and run "
    '`eval "$(.ci/postgres.sh)"` to start a throwaway server'
)
TRIALS = 10
SPEC = {
    "name": "iris-pg",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [8]},
    # About 2 s a trial (0.1 s at 3 epochs): longer than a process takes to start, so that the
    # processes that start later still find trials to run.
    "train": {"max_epochs": 600, "early_stopping": None},
    "tune": {
        "space": {"train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}},
        "trials": TRIALS,
        "pruner": "none",
        "startup_trials": 2,
    },
}


@pytest.fixture
def pg_url():
    import sqlalchemy as sa

    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_MISSING)
    url = sa.make_url(base.replace("postgresql://", "postgresql+psycopg://", 1) if base.startswith("postgresql://") else base)
    name = f"tf_tune_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _wait_for_a_trial(url: str, name: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import optuna

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False):
                return
        except KeyError:  # the study is not created yet
            pass
        time.sleep(0.2)
    raise AssertionError(f"no trial began within {timeout} s: {proc.communicate()[0] if proc.poll() is not None else 'still starting'}")


def _tune(home: Path, spec: Path, url: str, workers: int) -> subprocess.Popen:
    env = {**os.environ, "TRUSTFORGE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "trustforge", "tune", str(spec), "--storage", url, "--workers", str(workers), "--no-register"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_three_processes_on_two_workspaces_fill_one_postgres_study(tmp_path, pg_url):
    import optuna
    from optuna.trial import TrialState

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    machine_a, machine_b = tmp_path / "a", tmp_path / "b"
    # The second machine starts first and the two local workers join once its first trial runs:
    # started together, one process could take every trial before the others had imported torch.
    procs = [_tune(machine_b, spec, pg_url, workers=1)]
    _wait_for_a_trial(pg_url, "iris-pg", procs[0])
    procs.append(_tune(machine_a, spec, pg_url, workers=2))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
        assert "postgresql" in out and pg_url.split("@")[0] not in out  # the kind is said, the credentials never

    study = optuna.load_study(study_name="iris-pg", storage=pg_url)
    trials = study.get_trials()
    numbers = sorted(t.number for t in trials)
    # two concurrent starts can each begin one trial past the target: at most one extra per extra process
    assert TRIALS <= len(trials) <= TRIALS + 2
    assert numbers == list(range(len(trials)))
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    # every trial is exactly one run folder, in the workspace of the process that ran it
    folders = [d for ws in (machine_a, machine_b) for d in sorted((ws / "runs").iterdir())]
    ran = sorted(json.loads((d / "trial.json").read_text())["trial"] for d in folders)
    assert ran == numbers
    assert all(json.loads((d / "status.json").read_text())["state"] == "completed" for d in folders)
    assert len(list((machine_b / "runs").iterdir())) >= 1 and len(list((machine_a / "runs").iterdir())) >= 1
