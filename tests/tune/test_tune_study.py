"""A tiny study end to end: trials are run folders, pruning, resume, local workers, the best registered with its study."""

from __future__ import annotations

import json

import pytest

from trustforge.settings import Settings
from trustforge.tune import PruningCallback, tune

SPEC = {
    "name": "iris-tune",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [8]},
    "train": {"max_epochs": 4, "early_stopping": None},
    "tune": {
        "space": {
            "train.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True},
            "model.hidden": {"type": "categorical", "choices": [[8], [16, 8]]},
        },
        "trials": 3,
        "startup_trials": 2,
        "warmup_epochs": 1,
    },
}


def _runs(settings):
    out = {}
    for d in sorted(settings.runs_dir.iterdir()):
        out[d.name] = json.loads((d / "status.json").read_text())
    return out


def test_study_runs_trials_as_runs_and_registers_the_best(workspace):
    from trustforge.evaluate import compare_runs

    settings = Settings.from_env()
    r = tune(SPEC, settings=settings)
    s = r.summary
    assert sum(s["counts"].values()) == 3 and s["counts"].get("complete", 0) >= 2
    # every trial is a run folder (plus the retrained best), which compare reads
    runs = _runs(settings)
    trial_runs = {row["run"] for row in s["leaderboard"]}
    assert trial_runs <= set(runs) and len(trial_runs) == 3
    assert {st["state"] for st in runs.values()} <= {"completed", "pruned"}
    rows = compare_runs([settings.runs_dir / n for n in runs])
    assert sum(row["rank"] is not None for row in rows) == s["counts"]["complete"] + 1
    # the best is the best validation value, retrained to the same value (same seed, same spec)
    done = [row["value"] for row in s["leaderboard"] if row["value"] is not None]
    assert r.best_value == max(done)
    assert s["retrained"]["value"] == pytest.approx(r.best_value)
    # registered, with the study in its signed lineage
    assert r.model_uri == "models:/iris-tune/1"
    lineage = json.loads((r.run.run_dir / "package" / "manifest.json").read_text())["lineage"]["tune"]
    assert lineage["study"] == "iris-tune" and lineage["trial"] == r.best_trial and lineage["storage"]["kind"] == "journal"
    assert lineage["params"] == r.best_params
    # the report shows the study
    from trustforge.evaluate import write_report

    html = write_report(r.run.run_dir).read_text()
    assert 'id="tune-leaderboard"' in html and "Optimisation history" in html

    # resume: the same study asked for 4 runs only the missing trial
    r2 = tune(SPEC, settings=settings, trials=4, register=False)
    assert sum(r2.summary["counts"].values()) == 4
    assert [row["trial"] for row in r2.summary["history"]] == list(range(4))


def test_pruning_callback_raises_trial_pruned_from_the_epoch_metric():
    import optuna

    class Trial:
        def __init__(self, prune_at):
            self.reported, self.prune_at = [], prune_at

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return len(self.reported) >= self.prune_at

    cb = PruningCallback(Trial(2), "val_loss")
    cb.on_epoch_end(None, 0, {"val_loss": 0.9})
    cb.on_epoch_end(None, 1, {"train_loss": 0.5})  # no value logged: nothing reported
    with pytest.raises(optuna.TrialPruned):
        cb.on_epoch_end(None, 2, {"val_loss": 0.8})
    assert cb.trial.reported == [(0, 0.9), (2, 0.8)] and cb.pruned_at == 3


def test_two_local_workers_share_one_study(workspace, tmp_path, monkeypatch):
    from trustforge.tune import _study

    monkeypatch.setattr(_study, "usable_cores", lambda: 2)  # two workers, on a machine of one core too
    settings = Settings.from_env()
    spec = {**SPEC, "tune": {**SPEC["tune"], "pruner": "none"}}
    r = tune(spec, settings=settings, workers=2, trials=4, register=False, storage=f"sqlite:///{tmp_path / 'study.db'}")
    numbers = [row["trial"] for row in r.summary["history"]]
    assert sorted(numbers) == list(range(len(numbers))) and 4 <= len(numbers) <= 5  # at most one extra per extra worker
    runs = [row["run"] for row in r.summary["leaderboard"]]
    assert len(set(runs)) == len(runs) and all((settings.runs_dir / n).is_dir() for n in runs)
    assert r.storage == {"kind": "sqlite", "database": "study.db"}


def test_a_worker_that_lost_a_queued_trial_to_another_goes_on_without_its_run_folder(workspace, monkeypatch):
    """On SQLite two processes may both claim the queued first trial (Optuna #4621); the one that
    tells second got UpdateFinishedTrialError and the worker died, failing the command (seen in CI)."""
    import optuna

    from trustforge.tune import _study

    real = _study._objective
    calls = []

    def objective(trial, job, ts, outcome):
        calls.append(trial.number)
        if len(calls) == 1:  # as if another process had finished this trial first
            (job.settings.runs_dir / "iris-tune-duplicate").mkdir(parents=True)
            outcome["run"] = "iris-tune-duplicate"
            raise optuna.exceptions.UpdateFinishedTrialError(f"Trial#{trial.number} has already finished and can not be updated.")
        return real(trial, job, ts, outcome)

    monkeypatch.setattr(_study, "_objective", objective)
    settings = Settings.from_env()
    r = tune({**SPEC, "tune": {**SPEC["tune"], "pruner": "none"}}, settings=settings, trials=2, register=False)
    assert not (settings.runs_dir / "iris-tune-duplicate").exists()  # not the trial's run: removed
    assert r.summary["counts"].get("complete") == 2 and len(calls) == 3


def test_a_second_local_worker_waits_for_the_first_to_claim_the_queued_trial(workspace, monkeypatch, tmp_path):
    import optuna
    from optuna.trial import TrialState

    from trustforge.tune import _study

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(study_name="s", storage=url)
    study.enqueue_trial({"x": 1.0})
    monkeypatch.setattr(_study, "_CLAIM_WAIT", 0.5)
    seen = []
    monkeypatch.setattr(_study, "_trials", lambda st, job, ts, live: seen.append(len(st.get_trials(states=(TrialState.WAITING,)))))
    job = _study._Job(
        {"train": {"seed": 1}},
        {"space": {"train.optimizer.lr": {"type": "float", "low": 0.001, "high": 0.1}}},
        "val_loss",
        "s",
        url,
        2,
        None,
        Settings.from_env(),
    )
    import time

    t0 = time.time()
    _study._work(job, 1)
    assert seen == [1] and time.time() - t0 >= 0.5  # still waiting after the bound: it went on, having waited
    seen.clear()
    _study._work(job, 0)  # worker 0 never waits
    assert seen == [1]


def test_the_first_trial_is_the_specs_own_values_where_the_space_holds_them(workspace):
    from trustforge.spec import load_spec
    from trustforge.tune import spec_point
    from trustforge.tune._space import decode

    settings = Settings.from_env()
    r = tune(SPEC, settings=settings, trials=2, register=False)
    first = next(row for row in r.summary["leaderboard"] if row["trial"] == 0)
    lr = load_spec(SPEC).train.optimizer.lr
    assert first["params"] == {"train.optimizer.lr": pytest.approx(lr), "model.hidden": [8]}
    assert first["state"] in ("complete", "pruned")
    # a resumed study does not start again from the spec
    r2 = tune(SPEC, settings=settings, trials=3, register=False)
    assert [row["params"]["model.hidden"] for row in r2.summary["leaderboard"] if row["trial"] == 0] == [[8]]
    assert sum(r2.summary["counts"].values()) == 3

    space = load_spec(SPEC).tune.space
    spec = {"train": {"optimizer": {"lr": 0.5}}, "model": {"hidden": [16, 8]}}
    assert spec_point(spec, space) == {"model.hidden": "[16, 8]"}  # lr outside [1e-3, 0.1]: sampled instead
    assert decode(space, spec_point(spec, space)) == {"model.hidden": [16, 8]}
    off = {**SPEC, "tune": {**SPEC["tune"], "start_from_spec": False}}
    r3 = tune(off, settings=settings, trials=1, register=False, study="iris-tune-off")
    assert sum(r3.summary["counts"].values()) == 1


def test_a_study_of_one_trial_runs_the_specs_own_values(workspace):
    # The spec's own point is queued (waiting) before any trial runs: it must not count as the study's one trial.
    r = tune({**SPEC, "tune": {**SPEC["tune"], "trials": 1}}, settings=Settings.from_env(), register=False)
    assert r.summary["counts"] == {"complete": 1} and r.best_trial == 0


@pytest.mark.parametrize("home_as", ["absolute", "ws", "../ws"])
def test_tune_without_registering_says_where_the_best_run_is(tmp_path, workspace, home_as):
    """The run and package are named from the workspace as the user set it, as other messages
    name workspace files: an absolute workspace as set, a relative one relative (never resolved)."""
    import yaml
    from _cli import run_main

    cwd = tmp_path / "here"
    cwd.mkdir()
    home = {"absolute": cwd / "ws", "ws": "ws", "../ws": "../ws"}[home_as]  # an absolute one inside the current folder too
    spec = cwd / "iris-tune.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "tune": {**SPEC["tune"], "trials": 2, "pruner": "none"}}))
    code, out, err = run_main("tune", "--no-register", spec, home=home, cwd=cwd)
    assert code == 0, err
    lines = dict(line.split(":", 1) for line in out.splitlines() if line.startswith(("run:", "package:")))
    run_dir = lines["run"].strip()
    assert run_dir.startswith(f"{home}/runs/iris-tune-"), out
    assert (cwd / run_dir).is_dir() and (home_as == "absolute") == run_dir.startswith("/"), out
    best = json.loads((cwd / run_dir / "trial.json").read_text())
    assert f"best: trial {best['trial']}," in out
    assert lines["package"].strip() == f"{run_dir}/package" and (cwd / run_dir / "package").is_dir()


def _trials_in(settings, study):
    import optuna

    from trustforge.tune import open_storage, storage_url

    return len(optuna.load_study(study_name=study, storage=open_storage(storage_url(None, settings, study))).trials)


@pytest.mark.parametrize(
    "field, param, says",
    [
        ("train.optimizer.lr", {"type": "float", "low": 1e-3, "high": 0.5}, "float on a log scale in the study, float on a linear scale"),
        ("model.hidden", {"type": "categorical", "choices": [[4], [64]]}, "choices [[8], [16, 8]] in the study, choices [[4], [64]]"),
        ("train.optimizer.lr", {"type": "categorical", "choices": [0.01, 0.1]}, "float on a log scale in the study, choices [0.01, 0.1]"),
    ],
)
def test_resuming_over_a_changed_space_is_one_line_before_any_trial(tmp_path, workspace, field, param, says):
    """A field whose distribution Optuna cannot go on with (kind, log scale, categorical choices)
    is named before a trial starts: no traceback, no failed trial added to the study."""
    import yaml
    from _cli import run_main

    settings = Settings.from_env()
    small = {**SPEC, "train": {"max_epochs": 1, "early_stopping": None}, "tune": {**SPEC["tune"], "trials": 1}}
    tune(small, settings=settings, register=False)
    changed = {**small, "tune": {**small["tune"], "space": {**small["tune"]["space"], field: param}}}
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    code, out, err = run_main("tune", path, "--trials", "2", "--no-register", home=workspace, cwd=tmp_path)
    assert code == 12, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert f"study 'iris-tune' cannot go on with this tune.space (tune.space.{field}: {says}" in err, err
    assert "--study" in err
    assert _trials_in(settings, "iris-tune") == 1
    # a changed range alone is one Optuna goes on with
    widened = {
        **small,
        "tune": {
            **small["tune"],
            "space": {**small["tune"]["space"], "train.optimizer.lr": {**small["tune"]["space"]["train.optimizer.lr"], "high": 0.5}},
        },
    }
    assert sum(tune(widened, settings=settings, trials=2, register=False).summary["counts"].values()) == 2


def test_workers_are_bounded_by_the_cores_and_the_trials_still_to_run(tmp_path, workspace, monkeypatch):
    """--workers above the usable cores is a usage error (exit 2) before anything starts; a study
    that holds its trials starts no worker process."""
    import multiprocessing

    import yaml
    from _cli import run_main

    from trustforge.tune import _study

    path = tmp_path / "iris-tune.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "train": {"max_epochs": 1, "early_stopping": None}, "tune": {**SPEC["tune"], "trials": 1}}))
    started = []
    monkeypatch.setattr(multiprocessing.get_context("spawn"), "Process", lambda *a, **k: started.append(k) or pytest.fail("started"))
    monkeypatch.setattr(_study, "usable_cores", lambda: 4, raising=False)
    code, out, err = run_main("tune", path, "--workers", "5", "--no-register", home=workspace, cwd=tmp_path)
    assert code == 2 and err.strip() == "error: --workers must be 1 to 4 (the CPU cores this process may use); got 5", err
    assert not (workspace / "studies").exists() and not started  # refused before the study was opened
    assert run_main("tune", path, "--no-register", home=workspace, cwd=tmp_path).code == 0
    code, out, err = run_main("tune", path, "--workers", "4", "--no-register", home=workspace, cwd=tmp_path)
    assert code == 0 and not started, err
    assert "1 complete" in out
    monkeypatch.setattr(_study, "usable_cores", lambda: 1, raising=False)  # two processes may share one core
    assert (
        run_main("tune", path, "--workers", "3", "--no-register", home=workspace, cwd=tmp_path)
        .stderr.strip()
        .endswith("1 to 2 (the CPU cores this process may use); got 3")
    )
