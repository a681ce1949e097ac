"""`tune(spec)`: an Optuna study over a spec's `tune.space`, its best trial packaged and registered.

Each trial is one ordinary run (`pipeline.run`, a run folder under `runs/` that `runs list`
and `compare` read) of the spec with the trial's values, scored on the validation split by
`tune.metric` at the epoch whose weights the run keeps; with `tune.folds` K > 1, a trial that
is not pruned is then scored by K-fold cross-validation over the training and validation rows
instead (`automl.cross_validate`): on small tables the validation split is a few dozen rows,
and a search ranked on it chases their noise (bench/tune.py). The test split never ranks trials.
Poor trials are pruned from the Trainer's per-epoch validation metric (`PruningCallback`), or,
ranked out of fold, from the running score after each fold.
Workers are local processes or other machines that open the same storage: each runs trials
until the study holds `trials` finished or running ones, so a resumed study runs only the
missing trials and concurrent workers overshoot by at most one trial each.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from trustforge import pipeline
from trustforge._extras import require
from trustforge.errors import DataError, ModelError, SpecError, TrainingError, TuneError, UsageError
from trustforge.settings import Settings
from trustforge.spec import MEMBER_KINDS, MEMBER_TRAIN_FIELDS, TaskSpec, load_spec, spec_to_dict, tune_objective
from trustforge.train import atomic_write_text, usable_cores
from trustforge.tune._prune import PruningCallback
from trustforge.tune._space import apply_params, decode, space_change, spec_point, suggest
from trustforge.tune._storage import check_study_name, describe_storage, open_storage, storage_url

__all__ = ["tune", "TuneResult", "tune_metric", "study_summary", "TUNE_FILE"]

TUNE_FILE = "tune.json"  # in the best run's folder: the study as the report shows it
# A trial whose spec values do not work together (heads that do not divide the width, a
# diverging loss) fails alone; the study goes on.
_TRIAL_ERRORS = (SpecError, ModelError, TrainingError, DataError)


@dataclass
class TuneResult:
    """What a study produced.

    Attributes:
        study: the study's name; storage: its kind and database (no credentials).
        metric, direction: what ranked the trials (a validation metric).
        best_trial, best_value, best_params: the best finished trial.
        summary: the study as `tune.json` holds it (history, importances, leaderboard).
        run: the run of the retrained best model; None when the best trial's own package was
            registered, or `register` was false.
        run_dir: the run folder of the best model (the retrained run, else the best trial's own
            run, package inside); None when that trial ran on another machine.
    """

    study: str
    storage: dict[str, str]
    metric: str
    direction: str
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    summary: dict[str, Any]
    run: Any = None
    model_uri: str | None = None
    run_dir: Path | None = None
    total_epochs: int = 0
    trial_counts: dict[str, int] = field(default_factory=dict)


def tune_metric(spec: TaskSpec) -> tuple[str, str]:
    """(metric, direction) of the spec's study: `tune.metric` (default the task's validation monitor).

    The spec's own check (`trustforge.spec.tune_objective`), so `validate` refuses what `tune` refuses.

    Raises:
        SpecError: the metric is not one the trainer logs each epoch for this spec.
    """
    try:
        return tune_objective(spec)
    except ValueError as exc:  # the spec's SpecProblem, raised outside a load
        raise SpecError(str(exc)) from None


def tune(
    spec: TaskSpec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    settings: Settings | None = None,
    trials: int | None = None,
    timeout: float | None = None,
    workers: int = 1,
    storage: str | None = None,
    study: str | None = None,
    register: bool = True,
    progress: bool = False,
    ensemble: int | None = None,
) -> TuneResult:
    """Run (or resume) the study of `spec.tune`, then package and register its best trial.

    Args:
        spec: a spec with a `tune` section (TaskSpec, mapping or YAML path).
        trials: trials in the study in all (default `tune.trials`); a resumed study runs the rest.
        timeout: seconds after which no new trial starts (default `tune.timeout`).
        workers: local worker processes (each runs trials of the one study): at most the CPU cores
            this process may use; no more start than the study has trials still to run.
        storage: see `trustforge.tune._storage` (default: a journal file in the workspace).
        study: the study's name (default the spec's name): a plain name, as it names a file.
        register: package and register the best trial's model (retrained in full when trials
            were light or ran on another machine); False: stop once the study is done.
        progress: a progress bar for the final training.
        ensemble: package an ensemble of the best N trials (default `tune.ensemble`); a complete
            study runs no trial, so a second call with another N only builds that model.

    Raises:
        SpecError: no tune section, or a tune.metric that is not logged.
        UsageError: `workers` is not 1 to the usable CPU cores (at least 2), a study name that is not a plain name, or a
            `storage` that is none of its forms, a folder, or a file in a folder that does not exist.
        TuneError: the storage cannot be opened, a resumed study ranks by another metric or cannot go on over this tune.space, or no trial finished.
    """
    require("tune", "trustforge tune")
    spec = load_spec(spec)
    if spec.tune is None:
        raise SpecError("tune is required for `trustforge tune`: add tune: {space: {FIELD: {type: float, low: ..., high: ...}}}")
    # Each worker is a process that trains: more than the cores only slows every trial down (two
    # are allowed on one core, so that a study shared by processes can be tried anywhere).
    cores = max(2, usable_cores())
    if not 1 <= workers <= cores:
        raise UsageError(f"--workers must be 1 to {cores} (the CPU cores this process may use); got {workers}")
    settings = settings or Settings.from_env()
    if ensemble is not None:
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or not 1 <= ensemble <= 16:
            raise UsageError(f"--ensemble must be 1 to 16 (the best N trials packaged as one model); got {ensemble!r}")
        spec = spec.model_copy(deep=True)  # the caller's spec stays as it was
        spec.tune.ensemble = ensemble
    ts = spec.tune
    metric, direction = tune_metric(spec)
    name = check_study_name(study) if study is not None else check_study_name(spec.name, "name")
    url = storage_url(storage, settings, name)
    if not storage:  # the workspace's own studies/ folder; one named by --storage must exist (storage_url)
        Path(url[len("journal:") :]).parent.mkdir(parents=True, exist_ok=True)
    desc = describe_storage(url)
    target = trials or ts.trials
    timeout = timeout if timeout is not None else ts.timeout
    deadline = time.time() + timeout if timeout else None

    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    st = open_storage(url)
    try:  # creating a study is atomic in its storage: of processes starting together, one creates it
        created, new = optuna.create_study(study_name=name, storage=st, direction=direction), True
    except optuna.exceptions.DuplicatedStudyError:
        created, new = optuna.load_study(study_name=name, storage=st), False
    attrs = created.user_attrs
    if attrs.get("metric", metric) != metric or created.direction.name.lower() != direction:
        raise TuneError(
            f"study {name!r} ranks by {attrs.get('metric')} ({created.direction.name.lower()}); this spec by {metric} "
            f"({direction}): name another study (--study) or keep tune.metric"
        )
    if "metric" in attrs and int(attrs.get("folds", 1)) != ts.folds:  # a study from before tune.folds ranked on validation
        raise TuneError(
            f"study {name!r} ranks {_ranked_on(int(attrs.get('folds', 1)))}; this spec {_ranked_on(ts.folds)}: "
            "name another study (--study) or keep tune.folds"
        )
    changed = None if new else space_change(ts.space, created.get_trials(deepcopy=False))
    if changed is not None:
        raise TuneError(
            f"study {name!r} cannot go on with this tune.space ({changed}): name another study (--study) or keep the field as it was"
        )
    if "metric" not in attrs:
        created.set_user_attr("metric", metric)
        created.set_user_attr("folds", ts.folds)
        created.set_user_attr("spec", spec.name)

    base = spec_to_dict(spec)
    base.pop("tune", None)
    if ts.start_from_spec and new:
        # The user's own settings are the first trial (queued by the process that created the
        # study, so once): the study's best never scored below them on validation.
        point = spec_point(base, ts.space)
        if point:
            created.enqueue_trial(point)
    job = _Job(base, spec.model_dump(mode="json")["tune"], metric, name, url, target, deadline, settings)
    # No more workers than trials still to run (those _work counts): a complete study starts none.
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    workers = min(workers, max(0, target - len(created.get_trials(deepcopy=False, states=live))))
    if workers == 1:
        _work(job, 0)
    elif workers > 1:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter each: no forked torch threads
        procs = [ctx.Process(target=_work, args=(job, i), name=f"trustforge-tune-{i}") for i in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        bad = [f"{p.name} (exit code {p.exitcode})" for p in procs if p.exitcode != 0]
        if bad:
            raise TuneError(f"tune workers failed: {', '.join(bad)}; finished trials stay in the study, run again to resume")

    finished = optuna.load_study(study_name=name, storage=st)
    try:
        best = finished.best_trial
    except ValueError:
        raise TuneError(f"study {name!r}: no trial completed (see the failed runs with `trustforge runs list`)") from None
    best_params = decode(ts.space, best.params)
    summary = study_summary(finished, ts.space, metric, direction, desc)
    summary["folds"], summary["ranked_on"] = ts.folds, _ranked_on(ts.folds)
    members, why_alone = _ensemble_trials(finished, ts, base, best, direction)
    if ts.ensemble > 1 and register:  # the model tune builds (none without registering)
        summary["ensemble"] = {"asked": ts.ensemble, "trials": [t.number for t in members]}
        if why_alone:
            summary["ensemble"]["alone"] = why_alone
    lineage = {
        "tune": {
            "study": name,
            "trial": best.number,
            "params": best_params,
            "storage": desc,
            "metric": metric,
            "ranked_on": _ranked_on(ts.folds),
            "value": best.value,
        }
    }
    if len(members) > 1:
        lineage["tune"]["ensemble"] = [{"trial": t.number, "value": t.value, "params": decode(ts.space, t.params)} for t in members]
    result = TuneResult(
        study=name,
        storage=desc,
        metric=metric,
        direction=direction,
        best_trial=best.number,
        best_value=float(best.value),
        best_params=best_params,
        summary=summary,
        total_epochs=summary["total_epochs"],
        trial_counts=summary["counts"],
    )
    trial_run = settings.runs_dir / str(best.user_attrs.get("run", ""))
    reusable = (
        len(members) == 1
        and not ts.light_trials
        and best.user_attrs.get("host") == socket.gethostname()
        and (trial_run / "package").is_dir()
    )
    if reusable and register:
        from trustforge.registry import Registry

        with Registry(settings) as registry:
            result.model_uri = registry.register(trial_run / "package", run=trial_run.name).uri
        _set_status(trial_run, model_uri=result.model_uri)
        final_dir = trial_run
    elif register:
        final = apply_params(base, best_params)
        if len(members) > 1:  # the best N trials, each a member trained with its own values
            final["model"] = {"kind": "ensemble", "members": [_member(base, ts, t) for t in members]}
        run = pipeline.run(final, settings=settings, progress=progress, register=register, lineage=lineage)
        result.run, result.model_uri, final_dir = run, run.model_uri, run.run_dir
        summary["retrained"] = {"run": run.run_dir.name}
        if len(members) > 1:
            summary["retrained"]["ensemble"] = [t.number for t in members]  # no one epoch's value: members stop apart
        else:
            summary["retrained"]["value"] = _score(run.history, run.metrics, metric)
    else:
        final_dir = trial_run
    summary["final_run"] = final_dir.name
    if final_dir.is_dir():
        result.run_dir = final_dir
        atomic_write_text(final_dir / TUNE_FILE, json.dumps(summary, indent=1))
    return result


def _member_field(path: str) -> bool:
    """True when an ensemble's members may differ in the field (their model, their own training settings)."""
    parts = path.split(".")
    return parts[0] == "model" or (parts[0] == "train" and parts[1] in MEMBER_TRAIN_FIELDS)


def _ensemble_trials(study: Any, ts: Any, base: Mapping[str, Any], best: Any, direction: str) -> tuple[list[Any], str | None]:
    """The trials `tune.ensemble` puts together, the best first, and why the best stands alone (None
    when it does not, or when one trial was asked for).

    Members share the data and the run's settings (every field of the space that is not their model
    or their own training settings, `MEMBER_TRAIN_FIELDS`, equal to the best's), are of a kind an
    ensemble holds (`MEMBER_KINDS`), and completed (a pruned trial stopped before its best epoch)."""
    if ts.ensemble < 2:
        return [best], None
    run = base.get("train", {})
    if run.get("privacy") or run.get("adversarial"):
        return [best], "train.privacy and train.adversarial train one network (an ensemble's members would be trained plainly)"

    def kind(trial: Any) -> Any:
        return apply_params(base, decode(ts.space, trial.params)).get("model", {}).get("kind")

    if kind(best) not in MEMBER_KINDS:
        return [best], f"model.kind {kind(best)} cannot be an ensemble's member ({', '.join(MEMBER_KINDS)} can)"
    from optuna.trial import TrialState

    shared = [p for p in ts.space if not _member_field(p)]
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None and t.number != best.number]
    done.sort(key=lambda t: (-t.value if direction == "maximize" else t.value, t.number))
    fits = [t for t in done if kind(t) in MEMBER_KINDS and all(t.params.get(p) == best.params.get(p) for p in shared)]
    members = [best, *fits[: ts.ensemble - 1]]
    if len(members) < 2:
        return [best], "no other completed trial shares the best trial's data and run settings"
    return members, None


def _member(base: Mapping[str, Any], ts: Any, trial: Any) -> dict[str, Any]:
    """A trial as an ensemble's member: its model section and its own training settings."""
    spec = apply_params(base, decode(ts.space, trial.params))
    train = spec.get("train", {})
    return {"model": spec["model"], "train": {f: train[f] for f in MEMBER_TRAIN_FIELDS if f in train}}


# ---------------------------------------------------------------------------- workers


_CLAIM_WAIT = 60.0  # seconds a second local worker waits for worker 0 to claim the queued first trial


@dataclass
class _Job:
    base: dict[str, Any]
    tune: dict[str, Any]
    metric: str
    study: str
    url: str
    target: int
    deadline: float | None
    settings: Settings


def _work(job: _Job, index: int) -> None:
    """One worker: trials of the study until it holds `job.target` trials (or the deadline passes)."""
    import optuna
    from optuna.trial import TrialState

    from trustforge.spec import TuneSpec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ts = TuneSpec.model_validate(job.tune)
    storage = open_storage(job.url)
    seed = int(job.base.get("train", {}).get("seed", 0))
    trials = optuna.load_study(study_name=job.study, storage=storage).get_trials(deepcopy=False)
    if index > 0 or any(t.state != TrialState.WAITING for t in trials):
        # Another worker, or a study that others fill too: its own draws, not a copy of theirs.
        seed += 1 + zlib.crc32(f"{socket.gethostname()}:{os.getpid()}:{index}".encode()) % 1_000_000
    study = optuna.load_study(study_name=job.study, storage=storage, sampler=_sampler(ts, seed), pruner=_pruner(ts, job.base))
    if index > 0:
        # The queued first trial (the spec's own values) is worker 0's: on SQLite, which has no row
        # locks, two workers starting together could both claim it and run it twice (Optuna #4621).
        waited = time.time() + _CLAIM_WAIT
        while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) and time.time() < waited:
            time.sleep(0.2)
    # A waiting trial (the spec's own point, queued) is not counted: it runs in the next `optimize`,
    # and counted it ended a study of one trial before any trial ran.
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    try:
        _trials(study, job, ts, live)
    finally:
        _PREPARED.clear()  # data read for this study's folds is not kept for the next (its files may change)


def _trials(study: Any, job: _Job, ts: Any, live: tuple[Any, ...]) -> None:
    """Run trials one at a time until the study holds `job.target` live ones, the deadline passes, or every trial fails."""
    import optuna

    failures = 0
    while job.deadline is None or time.time() < job.deadline:
        if len(study.get_trials(deepcopy=False, states=live)) >= job.target:
            break
        outcome: dict[str, Any] = {}
        try:
            study.optimize(lambda t: _objective(t, job, ts, outcome), n_trials=1, catch=_TRIAL_ERRORS, gc_after_trial=False)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another process ran the same queued trial and finished it first (a study shared over
            # SQLite by separate commands): its result stands, and this run folder is not the trial's.
            _drop_duplicate(study, outcome.get("run"), job.settings)
            continue
        if outcome.get("failed"):
            failures += 1
            if failures >= max(3, job.target):  # every trial failing: the spec, not the values, is wrong
                break


def _drop_duplicate(study: Any, run: str | None, settings: Settings) -> None:
    """Remove the run folder of a trial another process finished first, unless the study names it as the trial's run."""
    if not run:
        return
    named = {t.user_attrs.get("run") for t in study.get_trials(deepcopy=False)}
    folder = settings.runs_dir / run
    if run not in named and folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


def _objective(trial: Any, job: _Job, ts: Any, outcome: dict[str, Any]) -> float:
    import optuna

    outcome["failed"] = True
    params = suggest(trial, ts.space)
    spec = apply_params(job.base, params)
    if ts.light_trials:
        spec = _light(spec)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    lineage = {"tune": {"study": job.study, "trial": trial.number, "params": params, "storage": describe_storage(job.url)}}
    prune = PruningCallback(trial, job.metric)
    data = _prepared(spec, job) if ts.folds > 1 else None  # once per worker while the data settings stay
    # Ranked out of fold, a trial is pruned from its folds (below), not from the run's epochs on the validation split.
    callbacks = [prune] if data is None else []
    try:
        run = pipeline.run(spec, settings=job.settings, callbacks=callbacks, progress=False, register=False, lineage=lineage, prepared=data)
    except optuna.TrialPruned:
        outcome["failed"] = False
        trial.set_user_attr("epochs", prune.epochs)
        if prune.run_dir is not None:
            outcome["run"] = prune.run_dir.name
            trial.set_user_attr("run", prune.run_dir.name)
            _mark_pruned(prune.run_dir, job.study, trial.number, prune.pruned_at, params)
        raise
    outcome["run"] = run.run_dir.name
    trial.set_user_attr("run", run.run_dir.name)
    trial.set_user_attr("epochs", len(run.history))
    value = _score(run.history, run.metrics, job.metric)
    record: dict[str, Any] = {"study": job.study, "trial": trial.number, "params": params, job.metric: value}
    if data is not None:  # ranked out of fold; the run's own validation figure stays beside it
        trial.set_user_attr("validation_value", value)
        folds_done: dict[str, int] = {}
        try:
            value = _cross_validated(trial, load_spec(spec), data, ts.folds, job.metric, job.settings, folds_done)
        except optuna.TrialPruned:
            # The run itself completed (its package stays); the trial stopped in its cross-validation.
            outcome["failed"] = False
            record["validation"] = record.pop(job.metric)
            record.update({"folds": ts.folds, "pruned_after_fold": folds_done["fold"]})
            atomic_write_text(run.run_dir / "trial.json", json.dumps(record))
            raise
        record.update({job.metric: value, "validation": record[job.metric], "folds": ts.folds})
    atomic_write_text(run.run_dir / "trial.json", json.dumps(record))
    outcome["failed"] = False
    return value


def _ranked_on(folds: int) -> str:
    return "on the validation split" if folds <= 1 else f"by {folds}-fold cross-validation over the training and validation rows"


_PREPARED: dict[str, Any] = {}  # this worker's data, by `data.prepare_key` (one entry: a new key replaces it)


def _prepared(spec: Mapping[str, Any], job: _Job) -> Any:
    """The trial's prepared data, read once per worker for as long as trials share a `prepare_key`
    (a space over data settings prepares again when they change)."""
    from trustforge.data import masking_key, needs_masking_key, prepare, prepare_key
    from trustforge.secure import Keyring

    loaded = load_spec(spec)
    key = prepare_key(loaded)
    if key not in _PREPARED:
        s = job.settings
        masking = masking_key(Keyring.load_or_init(s.keys_dir, kek_b64=s.kek)) if needs_masking_key(loaded.data.protect.pii) else None
        _PREPARED.clear()
        _PREPARED[key] = prepare(loaded, cache_dir=s.cache_dir, key=masking)
    return _PREPARED[key]


def _cross_validated(trial: Any, spec: TaskSpec, data: Any, folds: int, metric: str, settings: Settings, done: dict[str, int]) -> float:
    """`metric` over the out-of-fold outputs of `folds` models of the trial's spec (`automl.cross_validate`).

    After each fold the metric over the rows scored so far is reported to the trial (step = the
    fold, from 0), and the study's pruner may stop it there (`optuna.TrialPruned`); `done["fold"]`
    is the folds scored so far.
    """
    import optuna
    import torch

    from trustforge.automl import cross_validate
    from trustforge.evaluate import task_of
    from trustforge.train import apply_threads, restores_threads

    task = task_of(spec)
    loss = task.loss(spec, len(data.schema.classes or []), data.train.target) if metric == "val_loss" else None
    name = metric.removeprefix("val_")

    def score(out: Any, target: Any) -> float:
        if loss is not None:
            return float(loss(out, target))
        return float(task.validation_metrics(spec, data.preprocessor, (name,))(out, target)[name])

    def report(fold: int, out: Any, target: Any) -> None:
        if fold == folds - 1:  # the last fold: the trial's value, not a step to prune at
            return
        value = score(out, target)
        done["fold"] = fold + 1
        trial.report(value, fold)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {fold + 1} of {folds}: {metric} {value:.4g} so far")

    @restores_threads
    def fit() -> tuple[Any, Any]:
        apply_threads(spec.train.threads, torch.nn.Module(), from_env=settings.threads_from_env)  # as a run of this spec
        return cross_validate(spec, data, folds, after_fold=report)

    pool, out = fit()
    return score(out, pool.target)


def _light(spec: dict[str, Any]) -> dict[str, Any]:
    # A trial is ranked by its validation metric only: the evidence (speed, corruptions,
    # explanations, attacks, audits, monitors) is measured once, on the retrained best.
    spec = dict(spec)
    spec["evaluate"] = {
        **spec.get("evaluate", {}),
        "speed": False,
        "corruptions": False,
        "explain": False,
        "robustness": False,
        "privacy_audit": False,
    }
    spec["monitor"] = {**spec.get("monitor", {}), "reference": False, "ood": {"enabled": False}}
    return spec


def _score(history: list[dict[str, float]], metrics: Mapping[str, Any], metric: str) -> float:
    """The validation metric at the epoch whose weights the run kept (early stopping's best, else the last)."""
    if not history:
        raise TrainingError("the trial trained no epoch")
    best = metrics.get("best_epoch")
    row = history[int(best) - 1] if isinstance(best, int) and 1 <= best <= len(history) else history[-1]
    value = row.get(metric)
    if value is None:
        raise TuneError(f"tune.metric {metric} is not in the epoch logs ({', '.join(k for k in row if k.startswith('val_'))})")
    return float(value)


def _sampler(ts: Any, seed: int) -> Any:
    import optuna

    if ts.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: workers running at once are steered away from each other's pending points.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=ts.startup_trials, constant_liar=True)


def _pruner(ts: Any, base: Mapping[str, Any]) -> Any:
    import optuna

    if ts.pruner == "median":
        # Pruning starts after a few finished trials, not after TPE's random start-up: bench/tune.py
        # (30 trials) cut 51 % of the epochs this way at the same best, against 26 % waiting for 10.
        # With tune.folds > 1 the steps are folds, and warmup_epochs counts folds never pruned after.
        return optuna.pruners.MedianPruner(n_startup_trials=ts.prune_after_trials, n_warmup_steps=ts.warmup_epochs)
    if ts.pruner == "hyperband":
        if ts.folds > 1:  # a trial's steps are its folds (all but the last, whose score is the trial's value)
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, ts.folds - 1), reduction_factor=3)
        max_epochs = int(base.get("train", {}).get("max_epochs", 100))
        return optuna.pruners.HyperbandPruner(min_resource=max(1, ts.warmup_epochs), max_resource=max_epochs, reduction_factor=3)
    return optuna.pruners.NopPruner()


def _mark_pruned(run_dir: Path, study: str, number: int, epoch: int | None, params: Mapping[str, Any]) -> None:
    # The run ended by pruning, not by an interruption to resume: its checkpoint goes, its epochs stay.
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    _set_status(run_dir, state="pruned", note=f"pruned by study {study} (trial {number}) at epoch {epoch}")
    atomic_write_text(run_dir / "trial.json", json.dumps({"study": study, "trial": number, "params": dict(params), "pruned_at": epoch}))


def _set_status(run_dir: Path, **changes: Any) -> None:
    path = run_dir / "status.json"
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        status = {}
    status.update(changes)
    atomic_write_text(path, json.dumps(status, indent=1))


# ---------------------------------------------------------------------------- the study as the report shows it


def study_summary(study: Any, space: Mapping[str, Any], metric: str, direction: str, storage: Mapping[str, str]) -> dict[str, Any]:
    """The study as plain data: counts, optimisation history, parameter importances, leaderboard."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    maximize = direction == "maximize"
    rows, history, best_so_far = [], [], None
    for t in sorted(trials, key=lambda t: t.number):
        value = t.value if t.state == TrialState.COMPLETE else None
        if value is not None:
            best_so_far = value if best_so_far is None else (max if maximize else min)(best_so_far, value)
        last = None
        if t.state == TrialState.PRUNED and t.intermediate_values:
            last = t.intermediate_values[max(t.intermediate_values)]
        history.append({"trial": t.number, "state": t.state.name.lower(), "value": value, "best": best_so_far})
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "value": value,
                "last_value": last,
                "epochs": t.user_attrs.get("epochs"),
                "validation_value": t.user_attrs.get("validation_value"),  # tune.folds > 1: the run's own figure, beside the ranked one
                "run": t.user_attrs.get("run"),
                "params": decode(space, t.params),
            }
        )
    done = [r for r in rows if r["value"] is not None]
    done.sort(key=lambda r: -r["value"] if maximize else r["value"])
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    return {
        "study": study.study_name,
        "storage": dict(storage),
        "metric": metric,
        "direction": direction,
        "counts": counts,
        "total_epochs": sum(int(r["epochs"] or 0) for r in rows),
        "history": history,
        "importances": _importances(study),
        "leaderboard": done + [r for r in rows if r["value"] is None],
    }


def _importances(study: Any) -> dict[str, float] | None:
    """fANOVA importances of the parameters (seeded, so a study's report is reproducible); None with
    fewer than two finished trials. Named explicitly: Optuna 5's default evaluator is PED-ANOVA,
    which the report does not describe and which warns on small studies."""
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}
    except (ValueError, RuntimeError):  # e.g. every trial took the same values
        return None
