"""The run's torch threads: what the spec, the command line and the environment choose, and
that a run leaves the caller's setting as it found it."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import trustforge
from trustforge.errors import SpecError
from trustforge.settings import Settings
from trustforge.spec import load_spec
from trustforge.train import choose_threads, restores_threads
from trustforge.train._threads import MAX_AUTO_THREADS, SMALL_MODEL_PARAMETERS


def test_small_models_train_on_one_thread_large_ones_on_a_few(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    small = nn.Linear(30, 2)
    large = nn.Linear(1000, 1000)  # 1,001,000 parameters
    assert sum(p.numel() for p in large.parameters()) >= SMALL_MODEL_PARAMETERS
    assert choose_threads(None, small) == 1
    assert choose_threads(None, large) == MAX_AUTO_THREADS == 4
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert choose_threads(None, large) == 2  # never more threads than usable cores


def test_an_explicit_count_wins_and_the_environment_is_respected(monkeypatch, tmp_path):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert Settings.from_env(home=tmp_path).threads_from_env  # the entry point reads the variable, the library is told
    assert choose_threads(None, nn.Linear(2, 2), from_env=True) is None  # torch already follows the variable
    assert choose_threads(2, nn.Linear(2, 2)) == 2
    with pytest.raises(ValueError, match="threads"):
        choose_threads(0, nn.Linear(2, 2))


def test_restores_threads_after_a_failure():
    before = torch.get_num_threads()

    @restores_threads
    def body():
        torch.set_num_threads(before + 1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        body()
    assert torch.get_num_threads() == before


def _blas_threads() -> dict[str, int]:
    from threadpoolctl import threadpool_info

    return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


def test_the_blas_libraries_follow_the_runs_count_and_are_restored():
    """numpy's and SciPy's BLAS (two libraries, each its own pool) run on the run's thread count,
    which the evidence's baselines use, and get the caller's counts back, however the call ends."""
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, as a run's evidence does)
    from threadpoolctl import threadpool_limits

    from trustforge.train import apply_threads

    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        assert len(before) >= 2 and set(before.values()) == {2}, before  # numpy's and SciPy's

        @restores_threads
        def body():
            apply_threads(1, nn.Linear(2, 2))
            assert set(_blas_threads().values()) == {1}
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            body()
        assert _blas_threads() == before

        @restores_threads
        def told_by_the_environment():
            apply_threads(None, nn.Linear(2, 2), from_env=True)  # OMP_NUM_THREADS chose: the libraries read it too
            assert _blas_threads() == before

        told_by_the_environment()


def test_spec_threads_is_validated():
    assert load_spec({"train": {"threads": 2}}).train.threads == 2
    assert load_spec({}).train.threads is None
    with pytest.raises(SpecError, match="threads"):
        load_spec({"train": {"threads": 0}})


def test_a_run_uses_the_threads_asked_for_and_restores_the_callers():
    before = torch.get_num_threads()
    spec = {
        "name": "threads",
        "data": {"source": "builtin:breast_cancer", "target": "target", "split": {"test": 0.2, "validation": 0.0}},
        "model": {"kind": "mlp", "hidden": [8]},
        "train": {"max_epochs": 1, "early_stopping": None, "threads": before + 1},
        "evaluate": {"corruptions": False, "explain": False},
    }
    result = trustforge.run(spec, progress=False, register=False)
    assert result.timings["threads"] == before + 1
    assert json.loads((result.run_dir / "evidence.json").read_text())["speed"]["threads"] == before + 1
    assert torch.get_num_threads() == before
    result = trustforge.run(spec, progress=False, register=False, threads=1)  # the argument (--threads) over the spec
    assert result.timings["threads"] == 1 and result.metrics["speed"]["threads"] == 1
    assert torch.get_num_threads() == before


def test_train_threads_option_reaches_the_run(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from trustforge.cli import app
    from trustforge.errors import RunError

    seen = {}

    def fake_run(spec, **kwargs):
        seen.update(kwargs)
        raise RunError("stop here")

    monkeypatch.setattr("trustforge.pipeline.run", fake_run)
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\n")
    done = CliRunner().invoke(app, ["train", str(spec), "--threads", "3"])
    assert seen["threads"] == 3 and "stop here" in done.output
    done = CliRunner().invoke(app, ["train", str(spec)])
    assert seen["threads"] is None
    done = CliRunner().invoke(app, ["train", str(spec), "--threads", "0"])
    assert done.exit_code != 0 and seen["threads"] is None
