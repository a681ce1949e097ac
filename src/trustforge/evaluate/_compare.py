"""What a run folder says about itself, and leaderboards of runs (`trustforge runs`, `trustforge compare`).

A run folder (see pipeline.py) holds spec.yaml, status.json and, once its test metrics exist,
metrics.json and evidence.json. A run that was interrupted, failed or is still running has no
figures to rank, so `read_run` never refuses one for a missing metrics.json: it reports the
run's state and why it cannot be compared, in words that are true of that run.

Runs are ranked only against runs that answer the same question: the same task on the same
data source, for the same positive class (binary classification: malignant recall and benign
recall are different figures), scored on the same test rows (the same `data.split`, `train.seed`,
which draws the split, and `data.duplicates` policy, which drops rows), by the same metric.
Digits and breast cancer are never on one leaderboard. A `--metric` that no run has is a usage error naming the metrics they have.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import yaml

from trustforge.errors import RunError
from trustforge.evaluate._report_summary import flatten, num

__all__ = ["read_run", "compare_runs", "comparable_groups", "metric_direction", "run_folder", "STATES", "UnknownMetric"]

STATES = ("completed", "interrupted", "failed", "running", "killed", "pruned")
# Numbers in metrics.json that describe the run, not the model's quality: not in the dashboard's
# table of test metrics (its fit time has a row of its own), nor offered as a metric to rank by,
# but for the training time: `--metric fit_seconds` ranks by it, so the unknown-metric error lists it.
_BOOKKEEPING = {"n", "epochs_trained", "best_epoch", "fit_seconds"}
_RANKABLE = {"fit_seconds"}
# libyaml's safe loader when PyYAML was built with it: the same documents, ~20x faster than the
# pure-Python one (a run's spec.yaml is 2-3 KB; a dashboard lists thousands of them).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Figures where a smaller number is better, beyond those evaluate.METRICS knows (it says for its
# own): error metrics it lacks (or older runs' names), the cost of training and of a defence, and
# privacy loss (a larger epsilon or delta is a weaker guarantee). With any figure of time, latency
# or size (a name ending in a unit below), the one table `compare`, the dashboard and the
# baselines read (`metric_direction`); a figure in neither has no known direction.
_LOWER_IS_BETTER = frozenset(
    {
        *("rmse", "mae", "mse", "log_loss", "ece", "mape", "smape"),
        *("parameters", "adversarial_passes_per_sample", "adversarial_cost_ratio", "dp_sgd_cost_ratio"),
        *("privacy_epsilon", "privacy_delta", "privacy_target_epsilon"),
    }
)
_LOWER_IS_BETTER_UNITS = ("_seconds", "_ms", "_bytes")  # fit_seconds, latency_p50_ms, package_bytes, ...


class UnknownMetric(RunError):
    """`compare --metric NAME` where no run's metrics.json has NAME: a usage error (exit code 2)."""

    exit_code = 2


def run_folder(path: Path) -> Path:
    """The run folder of `path`: the folder itself, or the run a package folder sits in.

    Raises:
        RunError: `path` is neither a run folder (spec.yaml or status.json) nor a run's package.
    """
    given = Path(path)  # messages name it as given, not resolved
    path = given.resolve()
    package = (path / "manifest.json").is_file() or (path / "sealed.json").is_file()
    if package:
        path = path.parent
    if not path.is_dir():
        raise RunError(f"{given}: no such run folder")
    if not ((path / "status.json").is_file() or (path / "spec.yaml").is_file()):
        what = (
            "a package, but not in a run folder (no status.json or spec.yaml beside it"
            if package
            else "not a run folder (no status.json or spec.yaml"
        )
        raise RunError(f"{given}: {what}; runs live in the workspace's runs folder)")
    return path


def read_run(run_dir: Path, metric: str | None = None) -> dict[str, Any]:
    """One run's state and figures as plain data; never raises for an incomplete run.

    Returns a dict with: run (folder name), path, name (the spec's), state (one of `STATES`:
    "killed" is a status.json still saying "running" whose process is gone), started, updated,
    task, dataset (the data source, local paths cut to the file name), positive_class (binary
    classification: the class precision, recall and F1 are of; else None), test_split (the
    settings that pick the test rows, in words), n (the test rows scored; None without metrics),
    threshold and
    threshold_rule (the decision threshold on its probability, and the rule that chose it),
    metric, lower_is_better,
    value (None when the run has no such figure), epochs (rows of epochs.csv), max_epochs,
    resumable (an interrupted or killed run with a checkpoint), model_uri, fit_seconds,
    latency_p50_ms and latency_source ("speed.predict.p50_ms", Model.predict on one row, or
    the older forward-pass key), package_bytes, parameters, robust_median_flip and robust_norm
    (the median smallest attack budget that flips a correct prediction, and the attack's norm;
    None when the run was not attacked), robust_beyond (the largest budget swept, when more than
    half the right rows resisted it, so the median lies beyond it; else None), baseline,
    baseline_name, baseline_metric and baseline_verdict (the simple model the run was measured
    against in evidence.json: its figure on `baseline_metric`, its name, and whether the model
    beats it; None when the run has none), and note: why the run is not ranked (None when it is).

    Raises:
        RunError: `run_dir` is not a run folder; a file of it is not valid JSON or YAML, or its
            status.json, metrics.json or evidence.json is not a JSON object.
    """
    run_dir = run_folder(run_dir)
    status = json_object(run_dir / "status.json") or {}
    spec = _yaml(run_dir / "spec.yaml") or {}
    metrics = json_object(run_dir / "metrics.json")
    evidence = json_object(run_dir / "evidence.json") or {}
    epochs = _epoch_rows(run_dir / "epochs.csv")
    task = str(spec.get("task") or "classification")
    data = spec.get("data") if isinstance(spec.get("data"), dict) else {}
    train = spec.get("train") if isinstance(spec.get("train"), dict) else {}
    state = _state(status)
    chosen = metric or _recorded_metric(status, metrics) or _headline(task, metrics or {})
    value = num((metrics or {}).get(chosen)) if chosen else None
    latency, latency_source = _latency(evidence.get("speed"))
    threshold = (metrics or {}).get("threshold") if isinstance((metrics or {}).get("threshold"), dict) else {}
    positive = (metrics or {}).get("positive_class")
    if positive is None and metrics is None:  # an unfinished run: the class its spec names, if it names one
        ev = spec.get("evaluate") if isinstance(spec.get("evaluate"), dict) else {}
        positive = ev.get("positive_class")
    row = {
        "run": run_dir.name,
        "path": str(run_dir),
        "name": str(spec.get("name") or run_dir.name),
        "state": state,
        "started": status.get("started"),
        "updated": status.get("updated"),
        "task": task,
        "dataset": status["dataset"] if isinstance(status.get("dataset"), str) else _dataset(data.get("source")),
        "target": None if data.get("target") is None else str(data["target"]),  # None: the data's default
        "positive_class": None if positive is None else str(positive),
        "test_split": _test_split(task, data, train),
        "n": None if (n := num((metrics or {}).get("n"))) is None else int(n),
        "threshold": num(threshold.get("value")),
        "threshold_rule": threshold.get("rule"),
        "metric": chosen,
        "lower_is_better": _lower_is_better(chosen),
        "direction": metric_direction(chosen),  # None: not known to this version (ranked highest first)
        "value": value,
        "epochs": len(epochs),
        "max_epochs": train.get("max_epochs"),
        "resumable": state in ("interrupted", "killed") and (run_dir / "checkpoints" / "last.safetensors").is_file(),
        "model_uri": status.get("model_uri"),
        "fit_seconds": fit_seconds(metrics or {}, evidence, epochs),
        "latency_p50_ms": latency,
        "latency_source": latency_source,
        "package_bytes": _package_bytes(run_dir, evidence),
        "parameters": _parameters(run_dir, evidence),
        **_robustness(evidence),
        **_baseline(evidence),
    }
    row["note"] = _note(row, status, metrics)
    return row


def compare_runs(run_dirs: list[Path], metric: str | None = None) -> list[dict[str, Any]]:
    """Leaderboard rows (see `read_run`), one per run, grouped and ranked.

    A group is one task on one data source and target (`data.target`, where the spec names one),
    for one positive class (binary classification),
    scored on one test split (`data.split`, `train.seed`, `data.duplicates`), measured by one metric (`metric`, or each task's leaderboard metric: accuracy, rmse,
    ndcg@10): `group` names it and `rank` is 1 for the best run of its group. Runs that cannot
    be ranked (not completed, or without the metric) keep `rank` None and say why in `note`;
    an unfinished run whose positive class is unknown joins the group of its task and data
    when there is only one. Groups come in order of task, data source and positive class; in
    each, ranked runs best first, then the others. A run given more than once (twice, or as its
    folder and its package) is one row: a run is never ranked against itself.

    Raises:
        RunError: a path is not a run folder (or a run's package); one of its files is corrupt.
        UnknownMetric: `metric` is in no run's metrics.json (the message lists those there are).
    """
    rows, unreadable = [], []
    folders = [run_folder(Path(d)) for d in run_dirs]  # a path that is no run at all stays an error
    for folder in dict.fromkeys(folders):  # each run once, in the order given
        try:
            rows.append(read_run(folder, metric))
        except RunError as exc:  # one corrupt folder never hides the others: listed apart, unranked
            unreadable.append((folder, exc))
    if unreadable and not rows:
        raise unreadable[0][1]
    if metric is not None and not any(r["value"] is not None for r in rows):
        _unknown_metric(metric, run_dirs)
    targets = _shown_targets(rows)
    for row, positive in zip(rows, _positive_classes(rows)):
        row["positive_class"] = positive
        row["group"] = f"{_question({**row, 'test_split': None}, targets)}, by {row['metric']}" + (
            f"; {row['test_split']}" if row["test_split"] else ""
        )
    groups: dict[str, list[dict[str, Any]]] = {}
    order = lambda r: (r["task"], r["dataset"], r["target"] or "", r["positive_class"] or "", r["test_split"], r["metric"] or "")  # noqa: E731
    for row in sorted(rows, key=order):
        groups.setdefault(row["group"], []).append(row)
    out = []
    for members in groups.values():
        ranked = sorted((r for r in members if r["note"] is None), key=lambda r: r["value"] if r["lower_is_better"] else -r["value"])
        for i, r in enumerate(ranked, 1):
            r["rank"] = i
        rest = [r for r in members if r["note"] is not None]
        for r in rest:
            r["rank"] = None
        out.extend(ranked + rest)
    for folder, exc in unreadable:
        out.append(_unreadable_row(folder, exc))
    return out


def _unreadable_row(folder: Path, exc: RunError) -> dict[str, Any]:
    """The `compare_runs` row of a run whose files are corrupt: in group "unreadable runs",
    unranked, its note the error naming the file (`compare` of several runs lists it there and
    ranks the others; `compare` of that run alone is the error)."""
    row: dict[str, Any] = dict.fromkeys(
        (
            *("started", "updated", "dataset", "target", "positive_class", "threshold", "threshold_rule", "metric"),
            *("direction", "value", "max_epochs", "model_uri", "fit_seconds", "latency_p50_ms", "latency_source"),
            *("package_bytes", "parameters", "rank"),
        )
    )
    row.update(_robustness({}), **_baseline({}))
    row.update(
        run=folder.name,
        path=str(folder),
        name=folder.name,
        state="unreadable",
        task="-",
        lower_is_better=False,
        epochs=0,
        resumable=False,
        group="unreadable runs",
        note="unreadable, " + str(exc).replace(f"{folder}{os.sep}", ""),  # the file named in its run folder
    )
    return row


def comparable_groups(rows: list[dict[str, Any]]) -> list[str]:
    """For each row of `read_run`, the question its figures answer: "TASK on DATA" and, for binary
    classification, ", positive class C". Only runs with the same one may be compared figure for
    figure (`compare` ranks within it; the dashboard marks a best figure within it). An unfinished
    run whose positive class is unknown takes its task and data's, where the rows have just one."""
    targets = _shown_targets(rows)
    return [_question({**row, "positive_class": positive}, targets) for row, positive in zip(rows, _positive_classes(rows))]


def _shown_targets(rows: list[dict[str, Any]]) -> bool:
    """Whether questions name the target: only where the runs of one task and data name more
    than one (`data.target`), the common case reading as before ("classification on ...")."""
    named: dict[tuple[Any, Any], set[Any]] = {}
    for row in rows:
        named.setdefault((row.get("task"), row.get("dataset")), set()).add(row.get("target"))
    return any(len(targets) > 1 for targets in named.values())


def _positive_classes(rows: list[dict[str, Any]]) -> list[str | None]:
    """Each row's positive class; an unfinished run's unknown one filled in from the runs of its
    task, data and metric when they have exactly one."""
    classes: dict[tuple[Any, Any, Any, str], set[str]] = {}
    for row in rows:
        if row.get("positive_class") is not None:
            key = (row.get("task"), row.get("dataset"), row.get("target"), row.get("metric") or "")
            classes.setdefault(key, set()).add(row["positive_class"])
    out = []
    for row in rows:
        positive = row.get("positive_class")
        known = classes.get((row.get("task"), row.get("dataset"), row.get("target"), row.get("metric") or ""), set())
        if positive is None and row.get("note") is not None and len(known) == 1:
            positive = next(iter(known))
        out.append(positive)
    return out


def _question(row: dict[str, Any], targets: bool = True) -> str:
    positive = f", positive class {row['positive_class']}" if row.get("positive_class") is not None else ""
    split = f", {row['test_split']}" if row.get("test_split") else ""
    target = f" of {row['target']}" if targets and row.get("target") is not None else ""
    return f"{row.get('task') or 'unknown task'}{target} on {row.get('dataset') or 'unknown data'}{positive}{split}"


def _test_split(task: str, data: dict[str, Any], train: dict[str, Any]) -> str:
    """The settings that pick a run's test rows, in words: `data.split` (fractions, stratification),
    the seed it is drawn with (`train.seed`) and, where it is not the default, which repeated rows
    `data.duplicates` drops (`_dropped_duplicates`). Runs that differ in any are scored on different
    rows, so `compare` never ranks them against each other. Missing settings take the spec's defaults.
    Grouped splits (whole speakers of builtin:spoken_digits in one split) come with the data source,
    which every group already names."""
    from trustforge.spec import SplitSpec, TrainSpec  # the defaults, from where they are declared

    defaults = SplitSpec.model_fields
    split = data.get("split") if isinstance(data.get("split"), dict) else {}
    test, validation = split.get("test", defaults["test"].default), split.get("validation", defaults["validation"].default)
    stratify = split.get("stratify")
    if stratify is None:
        stratify = task == "classification"
    seed = train.get("seed", TrainSpec.model_fields["seed"].default)
    # Forecasts split by time and recommenders hold out per user; neither reads data.duplicates.
    dropped = "" if task in ("forecasting", "recommendation") else _dropped_duplicates(data)
    return (
        f"test split {test:g} (validation {validation:g}{', stratified' if stratify else ''}, seed {seed}{dropped})"
        if isinstance(test, (int, float)) and isinstance(validation, (int, float))
        else f"test split {test} (validation {validation}, seed {seed}{dropped})"
    )


def _dropped_duplicates(data: dict[str, Any]) -> str:
    """Which repeated rows `data.duplicates` drops, in words (", duplicates dropped: exact, across
    splits"), or "" for the default (only test and validation rows whose inputs sit in training).

    Dropping rows before the split, or held-out rows after it, changes the test rows; `warn` and
    `fail` keep them alike (a run that failed has no figure), so only `drop` counts.
    """
    from trustforge.spec import DataSpec  # the defaults, from where they are declared

    default = DataSpec.model_fields["duplicates"].default_factory().model_dump()
    given = data.get("duplicates") if isinstance(data.get("duplicates"), dict) else {}
    policy = {**default, **given}
    dropped = [kind for kind in default if policy[kind] == "drop"]
    if dropped == [kind for kind in default if default[kind] == "drop"]:
        return ""
    return ", duplicates dropped: " + (", ".join(kind.replace("_", " ") for kind in dropped) or "none")


def _unknown_metric(metric: str, run_dirs: list[Path]) -> None:
    names: set[str] = set()
    for d in run_dirs:
        try:
            metrics = _json(run_folder(Path(d)) / "metrics.json")
        except RunError:  # an unreadable run is listed apart; it has no metric to offer
            continue
        if isinstance(metrics, dict):
            names.update(k for k, v in metrics.items() if (k not in _BOOKKEEPING or k in _RANKABLE) and num(v) is not None)
    have = f"the runs have {', '.join(sorted(names))}" if names else "no run has test metrics yet"
    raise UnknownMetric(f"--metric {metric!r} is in no run's metrics.json; {have}")


# ---------------------------------------------------------------------------- reading


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid JSON ({e})") from None


def json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when there is no such file.

    Raises:
        RunError: naming the file, when it is not valid JSON or holds something else than an
            object (a well-formed `[1, 2]` is as unusable to the readers as a torn file).
    """
    found = _json(path)
    if found is not None and not isinstance(found, dict):
        raise RunError(f"{path}: not a JSON object (holds a {type(found).__name__}); the file is corrupt")
    return found


def _yaml(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        found = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    return found if isinstance(found, dict) else None


def _epoch_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _state(status: dict[str, Any]) -> str:
    state = status.get("state")
    if state == "running" and not _alive(status.get("pid")):
        return "killed"  # the process that wrote "running" ended without saying how (SIGKILL, power loss)
    return str(state) if state else "unknown"  # no status.json yet (or an older run)


def _alive(pid: Any) -> bool:
    """Whether process `pid` still exists on this machine (True when the run recorded none)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


def _recorded_metric(status: dict[str, Any], metrics: dict[str, Any] | None) -> str | None:
    """The figure the run's task ranks it by, as the run recorded it in status.json: at its start
    (no metrics yet) and at its end, with its metrics. None where that record does not answer for
    these metrics (an older run; metrics written but the run not completed): the task is asked."""
    recorded = status.get("leaderboard_metric")
    if isinstance(recorded, str) and (metrics is None or status.get("state") == "completed"):
        return recorded
    return None


def _headline(task: str, metrics: dict[str, Any]) -> str | None:
    from trustforge.evaluate._tasks import TASKS

    t = TASKS.get(task)
    return t.leaderboard_metric(metrics) if t is not None else None


def metric_direction(metric: str | None) -> str | None:
    """ "higher" or "lower" (which figure of `metric` is better), or None for a figure this
    version does not know the direction of (then the dashboard marks no run best on it)."""
    from trustforge.evaluate._metrics import METRICS

    if metric is None:
        return None
    if metric in METRICS:
        return "higher" if METRICS[metric].higher_is_better else "lower"
    if metric in _LOWER_IS_BETTER or metric.endswith(_LOWER_IS_BETTER_UNITS):
        return "lower"
    return None


def _lower_is_better(metric: str | None) -> bool:
    return metric_direction(metric) == "lower"


def _dataset(source: Any) -> str:
    if not source:
        return "unknown data"
    from trustforge.data import redact_source

    return redact_source(str(source))


def _latency(speed: Any) -> tuple[float | None, str | None]:
    """Batch-1 predict latency: Model.predict end to end when measured, else the older forward-pass figure."""
    predict = (speed or {}).get("predict") if isinstance(speed, dict) else None
    if isinstance(predict, dict) and num(predict.get("p50_ms")) is not None:
        return num(predict["p50_ms"]), "speed.predict.p50_ms"
    for key, value in flatten(speed or {}):
        if "p50" in key.lower() and "latency" in key.lower() and num(value) is not None:
            return num(value), f"speed.{key}"
    return None, None


def fit_seconds(metrics: dict[str, Any], evidence: dict[str, Any], epochs: list[dict[str, Any]]) -> float | None:
    """A run's training time: metrics.json's `fit_seconds` (every leg of a resumed run), else the
    speed evidence's, else, for a run without metrics (interrupted, running), its epochs' seconds
    in epochs.csv so far; None when none says. `compare`, `runs`, the dashboard and the report
    all read this one figure."""
    for source in (metrics, evidence.get("speed") or {}):
        for key, value in flatten(source):
            if key.split(".")[-1] == "fit_seconds" and num(value) is not None:
                return num(value)
    try:
        return sum(float(r["seconds"]) for r in epochs) if epochs else None
    except (KeyError, TypeError, ValueError):
        return None


def _package_bytes(run_dir: Path, evidence: dict[str, Any]) -> int | None:
    for key, value in flatten(evidence.get("speed") or {}):
        if key.split(".")[-1] in ("package_bytes", "package_size_bytes") and num(value) is not None:
            return int(value)
    package = run_dir / "package"
    return sum(p.stat().st_size for p in package.rglob("*") if p.is_file()) if package.is_dir() else None


def _parameters(run_dir: Path, evidence: dict[str, Any]) -> int | None:
    for key, value in flatten(evidence.get("speed") or {}):
        if key.split(".")[-1] == "parameters" and num(value) is not None:
            return int(value)
    manifest = json_object(run_dir / "package" / "manifest.json")
    value = ((manifest or {}).get("model") or {}).get("parameters")
    return int(value) if num(value) is not None else None


def _robustness(evidence: dict[str, Any]) -> dict[str, Any]:
    """The attack figure a leaderboard shows: the median smallest budget that flips a row the
    model predicted right (`robustness.smallest_flip.median`), with its norm; a run attacked
    with another norm, or not attacked, has no comparable figure (None)."""
    rob = evidence.get("robustness") if isinstance(evidence.get("robustness"), dict) else {}
    flip = rob.get("smallest_flip") if isinstance(rob.get("smallest_flip"), dict) else {}
    norm = rob.get("norm")
    median = num(flip.get("median"))
    # More than half the right rows resisted the largest budget swept: the median lies beyond it.
    beyond = num(flip.get("beyond")) if median is None and (flip.get("rows") or 0) > 0 else None
    return {"robust_norm": None if norm is None else str(norm), "robust_median_flip": median, "robust_beyond": beyond}


def _baseline(evidence: dict[str, Any]) -> dict[str, Any]:
    """The baseline figure of evidence.json (`baseline.baseline` on `baseline.metric`), its name and verdict."""
    base = evidence.get("baseline") if isinstance(evidence.get("baseline"), dict) else {}
    value = num(base.get("baseline"))
    return {
        "baseline": value,
        "baseline_name": str(base["name"]) if value is not None and base.get("name") else None,
        "baseline_metric": str(base["metric"]) if value is not None and base.get("metric") else None,
        "baseline_verdict": str(base["verdict"]) if value is not None and base.get("verdict") else None,
    }


def _note(row: dict[str, Any], status: dict[str, Any], metrics: Any) -> str | None:
    """Why the run is not ranked, in words true of it; None when it is ranked."""
    done = f"after {row['epochs']} of {row['max_epochs']} epochs" if row["max_epochs"] else f"after {row['epochs']} epochs"
    resume = "; `trustforge train SPEC --resume` (the same spec) continues it" if row["resumable"] else ""
    state = row["state"]
    if state == "interrupted":
        return f"interrupted {done}{resume}"
    if state == "killed":
        return f"status.json says running, but its process ({status.get('pid')}) is gone: killed {done}{resume}"
    if state == "running":
        return f"still running ({row['epochs']} epochs so far)"
    if state == "failed":
        return f"failed {done}; nothing to compare"
    if state == "pruned":  # a tuning trial stopped by the pruner (trustforge tune): no test figures
        return f"{status.get('note') or 'pruned by the tuner'}; {row['epochs']} epochs, no test metrics"
    if state != "completed":
        return f"state {state!r}; nothing to compare"
    if metrics is None:
        return "completed, but metrics.json is missing"
    if row["metric"] is None:
        return f"task {row['task']!r} is not one this version ranks"
    if row["value"] is None:
        return f"no {row['metric']} in metrics.json"
    return None
