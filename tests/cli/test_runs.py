"""Runs you can manage: `runs list|show|rm`, `compare` over complete and incomplete runs,
model URIs for predict/evaluate/report, `predict --id-column`, SIGTERM, `--version`, usage errors.

One module-scoped workspace holds real runs made by the pipeline: a completed iris run
(registered as models:/iris-mlp/1), an interrupted one (Ctrl-C after its second epoch), a
failed one (its resume raised a training error) and a completed wine run (another data set).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from _cli import run_main

import trustforge
from trustforge.errors import RunError, TrainingError
from trustforge.settings import Settings
from trustforge.train import Callback

IRIS = {
    "name": "iris-mlp",
    "task": "classification",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [16], "dropout": 0.0},
    "train": {"max_epochs": 5, "batch_size": 8, "optimizer": {"name": "adam", "lr": 0.05}, "early_stopping": None, "seed": 7},
}


class _StopAfter(Callback):
    """Raise `exc` at the end of epoch `epoch` (0-based)."""

    def __init__(self, exc: BaseException, epoch: int = 1):
        self.exc, self.epoch = exc, epoch

    def on_epoch_end(self, trainer, epoch, logs):
        if epoch >= self.epoch:
            raise self.exc


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs-ws") / "ws"
    settings = Settings.from_env(home=root)
    trustforge.run(IRIS, settings=settings, progress=False)
    time.sleep(1.1)  # run folders are named to the second
    with pytest.raises(KeyboardInterrupt):
        trustforge.run(IRIS, settings=settings, progress=False, register=False, callbacks=[_StopAfter(KeyboardInterrupt())])
    time.sleep(1.1)
    with pytest.raises(KeyboardInterrupt):
        trustforge.run(IRIS, settings=settings, progress=False, register=False, callbacks=[_StopAfter(KeyboardInterrupt())])
    with pytest.raises(TrainingError):  # the newest interrupted run, resumed, fails: it is kept as "failed"
        trustforge.run(IRIS, settings=settings, progress=False, register=False, resume=True, callbacks=[_StopAfter(TrainingError("x"), 2)])
    wine = {**IRIS, "name": "wine-mlp", "data": {"source": "builtin:wine"}}
    trustforge.run(wine, settings=settings, progress=False, register=False)
    return root


def _states(home: Path) -> dict[str, str]:
    return {p.name: json.loads((p / "status.json").read_text())["state"] for p in (home / "runs").iterdir()}


def _named(home: Path, state: str, prefix: str = "iris-mlp") -> str:
    return next(name for name, s in sorted(_states(home).items()) if s == state and name.startswith(prefix))


# ---------------------------------------------------------------------------- compare


def test_compare_ranks_the_completed_run_and_marks_the_others(home, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert sorted(_states(home).values()) == ["completed", "completed", "failed", "interrupted"]
    code, out, err = run_main("compare", *sorted((home / "runs").iterdir()), home=home)
    assert code == 0, err
    assert "not a run folder" not in out + err
    completed, interrupted, failed = (_named(home, s) for s in ("completed", "interrupted", "failed"))
    lines = out.splitlines()
    ranked = [line for line in lines if re.match(r"^1\s", line)]
    assert any(completed in line for line in ranked), out
    assert not any(interrupted in line or failed in line for line in ranked), out
    assert any(f"{interrupted}: not ranked, interrupted after 2 of 5 epochs" in line for line in lines), out
    assert any(f"{failed}: not ranked, failed after 3 of 5 epochs" in line for line in lines), out
    # Two data sources, two leaderboards: wine is never ranked against iris.
    assert "classification on builtin:iris, by accuracy (higher is better)" in out
    assert "classification on builtin:wine, by accuracy (higher is better)" in out
    assert sum(1 for line in ranked) == 2


_LISTING = """
import json, sys
from trustforge.cli import main
sys.argv = ["trustforge", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in ("torch", "pandas", "sklearn") if m in sys.modules)), file=sys.stderr)
"""


def _listing(home: Path, *args: str) -> tuple[str, list[str]]:
    """stdout of `trustforge ARGS` in a fresh interpreter, and which heavy modules it imported."""
    env = {**os.environ, "TRUSTFORGE_HOME": str(home), "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", _LISTING, *args], env=env, capture_output=True, text=True, timeout=120)
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


def test_the_listings_read_what_runs_recorded_without_torch_and_as_the_task_would(home, tmp_path):
    """`runs list`, `runs show` and `compare` read the data source and the figure the task ranks
    by from status.json (recorded by the run), so they import neither torch nor pandas (seconds
    each); an older run without those records lists the same, through the task itself."""
    completed = _named(home, "completed")
    commands = [("runs", "list"), ("runs", "show", completed), ("compare", "--json", *map(str, sorted((home / "runs").iterdir())))]
    new = [_listing(home, *args) for args in commands]
    assert [heavy for _, heavy in new] == [[], [], []]
    old = Path(shutil.copytree(home, tmp_path / "ws"))
    for status_file in (old / "runs").glob("*/status.json"):
        status = json.loads(status_file.read_text())
        assert {"dataset", "leaderboard_metric"} <= set(status), status
        status_file.write_text(json.dumps({k: v for k, v in status.items() if k not in ("dataset", "leaderboard_metric")}))
    older = [_listing(old, *[a.replace(str(home), str(old)) for a in args]) for args in commands]
    assert "torch" in older[0][1]  # the task was asked
    assert older[0][0] == new[0][0]
    assert older[1][0].replace(str(old), str(home)) == new[1][0]
    assert json.loads(older[2][0].replace(str(old), str(home))) == json.loads(new[2][0])


def test_compare_fits_the_terminal(home, monkeypatch):
    runs = sorted((home / "runs").iterdir())
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_main("compare", *runs, home=home)
    assert code == 0
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert "#  run" in out and "accuracy" in out and "p50 ms" in out  # headers whole
    assert all(p.name in out for p in runs)  # names whole at 80 columns
    monkeypatch.setenv("COLUMNS", "40")
    code, out, _ = run_main("compare", *runs, home=home)
    table = [line for line in out.splitlines() if re.match(r"^(#|1)\s", line)]
    assert table and all(len(line) <= 40 for line in table), out
    assert "…" in out and "#  run" in out  # a name shortened in the middle, the header kept


def test_compare_json_and_metric(home):
    code, out, _ = run_main("compare", "--json", "--metric", "log_loss", *sorted((home / "runs").iterdir()), home=home)
    assert code == 0
    rows = json.loads(out)
    assert {r["state"] for r in rows} == {"completed", "interrupted", "failed"}
    ranked = [r for r in rows if r["rank"] is not None]
    assert len(ranked) == 2 and all(r["metric"] == "log_loss" and r["lower_is_better"] for r in ranked)
    metrics = json.loads((Path(ranked[0]["path"]) / "metrics.json").read_text())
    assert ranked[0]["value"] == pytest.approx(metrics["log_loss"])


@pytest.mark.parametrize("as_json", [False, True])
def test_compare_by_a_metric_no_run_has_is_a_usage_error(home, as_json):
    args = ["compare", *(["--json"] if as_json else []), "--metric", "nosuch", *sorted((home / "runs").iterdir())]
    code, out, err = run_main(*args, home=home)
    assert code == 2 and out == "", (code, out, err)
    (line,) = err.splitlines()
    assert line.startswith("error: --metric 'nosuch' is in no run's metrics.json; the runs have ")
    have = line.split("the runs have ", 1)[1].split(", ")
    # fit_seconds is listed, as `--metric fit_seconds` ranks by it; a count of rows is not a figure to rank by
    assert {"accuracy", "log_loss", "f1_macro", "fit_seconds"} <= set(have) and "n" not in have and "epochs_trained" not in have


@pytest.mark.parametrize("metric", ["fit_seconds", "privacy_epsilon"])
def test_compare_by_time_or_epsilon_ranks_the_smallest_first(home, tmp_path, metric):
    # Probe: `--metric fit_seconds` said "(higher is better)" and ranked the slowest run first; a
    # larger privacy epsilon is a weaker guarantee, not a better one.
    copies = []
    for name, value in (("slow", 9.0), ("fast", 1.5)):
        dest = tmp_path / f"iris-{name}"
        shutil.copytree(home / "runs" / _named(home, "completed"), dest)
        metrics = json.loads((dest / "metrics.json").read_text())
        (dest / "metrics.json").write_text(json.dumps({**metrics, metric: value}))
        copies.append(dest)
    code, out, err = run_main("compare", "--metric", metric, *copies, home=home)
    assert code == 0, err
    assert "(lower is better)" in out and "higher is better" not in out
    code, out, err = run_main("compare", "--json", "--metric", metric, *copies, home=home)
    rows = json.loads(out)
    assert [(r["rank"], r["run"], r["lower_is_better"]) for r in rows] == [(1, "iris-fast", True), (2, "iris-slow", True)]


def _binary_copy(home: Path, dest: Path, positive: str, threshold: float, recall: float) -> Path:
    """A copy of the completed iris run dressed as a breast-cancer run with a positive class and a threshold."""
    shutil.copytree(home / "runs" / _named(home, "completed"), dest)
    spec = yaml.safe_load((dest / "spec.yaml").read_text())
    spec["data"]["source"] = "builtin:breast_cancer"
    (dest / "spec.yaml").write_text(yaml.safe_dump(spec))
    status = json.loads((dest / "status.json").read_text())
    (dest / "status.json").write_text(json.dumps({**status, "dataset": "builtin:breast_cancer"}))  # as such a run records it
    metrics = json.loads((dest / "metrics.json").read_text())
    metrics.update(
        positive_class=positive, recall=recall, threshold={"value": threshold, "rule": "f1", "chosen_on": "validation", "note": None}
    )
    (dest / "metrics.json").write_text(json.dumps(metrics))
    return dest


def test_compare_groups_by_positive_class_and_shows_thresholds_that_differ(home, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    a = _binary_copy(home, tmp_path / "bc-a", "malignant", 0.5, 0.90)
    b = _binary_copy(home, tmp_path / "bc-b", "malignant", 0.3125, 0.95)
    c = _binary_copy(home, tmp_path / "bc-c", "benign", 0.5, 0.99)
    d = _binary_copy(home, tmp_path / "bc-d", "benign", 0.5, 0.97)
    code, out, err = run_main("compare", "--metric", "recall", a, b, c, d, home=home)
    assert code == 0, err
    blocks = out.split("\n\n")
    malignant = next(x for x in blocks if "positive class malignant, by recall" in x)
    benign = next(x for x in blocks if "positive class benign, by recall" in x)
    # Malignant recall and benign recall are never ranked together.
    assert "bc-c" not in malignant and "bc-d" not in malignant and "bc-a" not in benign
    assert re.search(r"^1\s+bc-b\s+0\.9500\s+0\.312\s", malignant, re.MULTILINE), malignant
    assert re.search(r"^2\s+bc-a\s+0\.9000\s+0\.5\s", malignant, re.MULTILINE), malignant
    assert "threshold" in next(x for x in malignant.splitlines() if x.startswith("#"))  # the header of the group whose thresholds differ
    assert "threshold" not in benign  # the same threshold throughout: no column
    assert "threshold: the probability of the positive class" in " ".join(out.split())
    rows = json.loads(run_main("compare", "--json", "--metric", "recall", a, b, c, d, home=home).stdout)
    assert {r["run"]: (r["positive_class"], r["threshold"]) for r in rows} == {
        "bc-a": ("malignant", 0.5),
        "bc-b": ("malignant", 0.3125),
        "bc-c": ("benign", 0.5),
        "bc-d": ("benign", 0.5),
    }


def test_compare_fits_50_columns_headers_included(home, tmp_path, monkeypatch):
    runs = sorted((home / "runs").iterdir())
    a = _binary_copy(home, tmp_path / "bc-a", "malignant", 0.5, 0.90)
    b = _binary_copy(home, tmp_path / "bc-b", "malignant", 0.3125, 0.95)
    monkeypatch.setenv("COLUMNS", "50")
    code, out, _ = run_main("compare", "--metric", "accuracy", *runs, a, b, home=home)
    assert code == 0
    assert all(len(line) <= 50 for line in out.splitlines()), "\n".join(line for line in out.splitlines() if len(line) > 50)
    assert "classification on builtin:iris, by" in out  # the group header, wrapped, not cut
    words = " ".join(out.split())
    assert "classification on builtin:iris, by accuracy (higher is better)" in words
    assert "classification on builtin:breast_cancer, positive class malignant, by accuracy (higher is better)" in words


def test_compare_refuses_a_folder_that_is_not_a_run(home, tmp_path):
    code, _, err = run_main("compare", tmp_path, home=home)
    assert code == RunError.exit_code and err.startswith("error: ") and "not a run folder" in err


def test_compare_speed_column_prefers_the_predict_latency(tmp_path, home):
    run = tmp_path / "runs" / "copy"
    shutil.copytree(home / "runs" / _named(home, "completed"), run)
    evidence = json.loads((run / "evidence.json").read_text())
    evidence.setdefault("speed", {})["predict"] = {"p50_ms": 1.25, "p95_ms": 2.0, "calls": 60, "batch": 1}
    (run / "evidence.json").write_text(json.dumps(evidence))
    (row,) = trustforge.evaluate.compare_runs([run])
    assert row["latency_p50_ms"] == 1.25 and row["latency_source"] == "speed.predict.p50_ms"


def test_compare_shows_the_attack_budget_that_flips_a_prediction(tmp_path, home, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    runs = []
    for name, median in (("sturdy", 0.42), ("fragile", 0.05), ("unattacked", None), ("resisted", "beyond")):
        run = tmp_path / "runs" / name
        shutil.copytree(home / "runs" / _named(home, "completed"), run)
        evidence = json.loads((run / "evidence.json").read_text())
        evidence.pop("robustness", None)
        if median == "beyond":  # most right rows resisted the largest budget: no median, but attacked
            evidence["robustness"] = {"norm": "inf", "smallest_flip": {"attack": "pgd", "median": None, "beyond": 1.0, "rows": 40}}
        elif median is not None:
            evidence["robustness"] = {"norm": "inf", "smallest_flip": {"attack": "pgd", "median": median}}
        (run / "evidence.json").write_text(json.dumps(evidence))
        runs.append(run)
    rows = {r["run"]: r for r in trustforge.evaluate.compare_runs(runs)}
    assert rows["sturdy"]["robust_median_flip"] == 0.42 and rows["sturdy"]["robust_norm"] == "inf"
    assert rows["unattacked"]["robust_median_flip"] is None
    code, out, err = run_main("compare", *runs, home=home)
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("#"))
    assert header.split()[-2:] == ["ε", "(L∞)"], header
    assert re.search(r"\bsturdy\b.*\s0\.42$", out, re.MULTILINE) and re.search(r"\bfragile\b.*\s0\.05$", out, re.MULTILINE), out
    assert re.search(r"\bunattacked\b.*\s-$", out, re.MULTILINE), out
    assert re.search(r"\bresisted\b.*\s> 1$", out, re.MULTILINE) and rows["resisted"]["robust_beyond"] == 1.0, out
    assert "flip ε: the median smallest attack budget" in " ".join(out.split())


# ---------------------------------------------------------------------------- runs list, show, rm


def test_runs_list_and_show(home, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    code, out, _ = run_main("runs", "list", home=home)
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["RUN", "STATE", "TASK", "METRIC", "STARTED"]
    assert len(rows) == 4
    states = _states(home)
    for line in rows:
        name, state = line.split()[:2]
        assert states[name] == state
        assert ("accuracy 1.0000" in line or "accuracy 0." in line) == (state == "completed")
    interrupted = _named(home, "interrupted")
    code, out, _ = run_main("runs", "show", interrupted, home=home)
    assert code == 0
    assert "interrupted: interrupted after 2 of 5 epochs" in out and "classification on builtin:iris" in out
    code, out, _ = run_main("runs", "show", "--json", _named(home, "completed"), home=home)
    shown = json.loads(out)
    assert shown["state"] == "completed" and shown["model_uri"] == "models:/iris-mlp/1" and shown["metrics"]["accuracy"] >= 0.9


def test_a_running_status_whose_process_is_gone_is_killed(tmp_path, home):
    ws = tmp_path / "ws2"
    shutil.copytree(home, ws)
    name = _named(ws, "interrupted")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer exists
    status = ws / "runs" / name / "status.json"
    status.write_text(json.dumps({**json.loads(status.read_text()), "state": "running", "pid": proc.pid}))
    (row,) = [r for r in json.loads(run_main("runs", "list", "--json", home=ws).stdout) if r["run"] == name]
    assert row["state"] == "killed" and row["resumable"]
    assert f"its process ({proc.pid}) is gone" in row["note"]


@pytest.mark.parametrize(
    ("name", "text", "says"), [("metrics.json", "[1, 2]", "not a JSON object"), ("status.json", "{torn", "not valid JSON")]
)
def test_one_corrupt_run_folder_is_named_and_hides_no_other_run(tmp_path, home, name, text, says):
    ws = tmp_path / "ws2"
    shutil.copytree(home, ws)
    bad = ws / "runs" / "zz-x-20261207-000000"
    shutil.copytree(ws / "runs" / _named(ws, "completed"), bad)
    (bad / name).write_text(text)
    code, out, err = run_main("runs", "list", "--json", home=ws)
    assert code == 0, err
    rows = {r["run"]: r for r in json.loads(out)}
    assert len(rows) == 5 and rows[bad.name]["state"] == "unreadable"
    assert f"{bad.name}/{name}: {says}" in rows[bad.name]["note"]
    code, out, err = run_main("runs", "list", home=ws)
    assert code == 0 and bad.name in out and "internal error" not in err
    for args in (("runs", "show", bad.name), ("report", bad, "-o", tmp_path / "r.html")):
        code, out, err = run_main(*args, home=ws, cwd=tmp_path)
        assert code == RunError.exit_code and f"{bad.name}/{name}: {says}" in err and "internal error" not in err
        assert len(err.strip().splitlines()) == 1, err
    runs = sorted((ws / "runs").iterdir())
    code, out, err = run_main("compare", *runs, home=ws)  # the others ranked, the corrupt one listed apart
    assert code == 0, err
    assert "unreadable runs" in out and f"{bad.name}: not ranked, unreadable, {name}: {says}" in " ".join(out.split())
    rows = json.loads(run_main("compare", "--json", *runs, home=ws).stdout)
    assert [(r["state"], r["group"]) for r in rows if r["run"] == bad.name] == [("unreadable", "unreadable runs")]
    assert sum(r["rank"] == 1 for r in rows) == 2  # iris and wine still ranked
    code, _, err = run_main("compare", bad, home=ws)  # alone, it is the error
    assert code == RunError.exit_code and f"{bad.name}/{name}: {says}" in err


def test_runs_rm(tmp_path, home):
    ws = tmp_path / "ws2"
    shutil.copytree(home, ws)
    failed = _named(ws, "failed")
    outside = tmp_path / "elsewhere"
    shutil.copytree(ws / "runs" / failed, outside)
    code, _, err = run_main("runs", "rm", "--yes", outside, home=ws)
    assert code == RunError.exit_code and "not a run folder of this workspace" in err and outside.is_dir()
    code, _, err = run_main("runs", "rm", "--yes", "../keys", home=ws)
    assert code == RunError.exit_code and (ws / "keys").is_dir()
    code, _, err = run_main("runs", "rm", failed, home=ws)  # no --yes, no terminal
    assert code == RunError.exit_code and "add --yes" in err and (ws / "runs" / failed).is_dir()
    completed = _named(ws, "completed")
    code, out, err = run_main("runs", "rm", "--yes", failed, ws / "runs" / completed, home=ws)
    assert code == 0, err
    assert f"deleted {failed}" in out and "models:/iris-mlp/1 stays in the registry" in out
    assert failed not in _states(ws) and completed not in _states(ws)
    audit = [json.loads(line) for line in run_main("audit", "show", "--json", home=ws).stdout.splitlines()]
    assert {(e["action"], e["object"], e["outcome"]) for e in audit} >= {
        ("delete", f"runs/{failed}", "ok"),
        ("delete", f"runs/{completed}", "ok"),
    }


# ---------------------------------------------------------------------------- model URIs and predict


def _rows(path: Path) -> pd.DataFrame:
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame.drop(columns=["target"]).sample(8, random_state=0).reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    frame.insert(0, "customer", [f"c{i}" for i in range(8)])
    frame["note"] = "extra"
    frame.loc[1, "petal width (cm)"] = np.nan
    frame.loc[[2, 5], "sepal length (cm)"] = np.nan
    frame.to_csv(path, index=False)
    return frame


def test_predict_by_uri_with_an_id_column_extra_columns_and_missing_values(home, tmp_path):
    frame = _rows(tmp_path / "rows.csv")
    code, out, err = run_main(
        "predict", "models:/iris-mlp/1", "rows.csv", "--id-column", "customer", "-o", "p.csv", home=home, cwd=tmp_path
    )
    assert code == 0, err
    preds = pd.read_csv(tmp_path / "p.csv")
    assert list(preds.columns[:2]) == ["customer", "prediction"] and preds["customer"].tolist() == frame["customer"].tolist()
    assert "note: ignored 1 column the model does not take: note" in err
    assert "note: 3 missing values filled in from what training learned: sepal length (cm) (2), petal width (cm) (1)" in err
    # The same predictions as the package folder gives for the same rows without the extra columns.
    plain = frame.drop(columns=["customer", "note"])
    plain.to_csv(tmp_path / "plain.csv", index=False)
    package = home / "runs" / _named(home, "completed") / "package"
    code, _, err = run_main("predict", package, "plain.csv", "-o", "q.csv", home=home, cwd=tmp_path)
    assert code == 0, err
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "q.csv"), preds.drop(columns=["customer"]))


def test_predict_id_column_errors(home, tmp_path):
    _rows(tmp_path / "rows.csv")
    code, _, err = run_main("predict", "models:/iris-mlp/1", "rows.csv", "--id-column", "nope", home=home, cwd=tmp_path)
    assert code != 0 and err.startswith("error: ") and "'nope'" in err and len(err.splitlines()) == 1
    code, _, err = run_main("predict", "models:/iris-mlp@nope", "rows.csv", home=home, cwd=tmp_path)
    assert code != 0 and "models:/iris-mlp@nope: no such alias" in err
    assert not list(tmp_path.glob("*.predictions.csv"))


def test_evaluate_and_report_take_model_uris(home, tmp_path):
    spec = tmp_path / "iris.yaml"
    spec.write_text(yaml.safe_dump(IRIS))
    code, out, err = run_main("evaluate", "models:/iris-mlp/1", spec, home=home, cwd=tmp_path)
    assert code == 0, err
    stored = json.loads((home / "runs" / _named(home, "completed") / "metrics.json").read_text())
    assert json.loads(out.splitlines()[-1])["accuracy"] == pytest.approx(stored["accuracy"])
    code, out, err = run_main("report", "models:/iris-mlp", "-o", tmp_path / "r.html", home=home, cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "r.html").is_file() and _named(home, "completed") in (tmp_path / "r.html").read_text()
    code, _, err = run_main("report", home / "runs" / _named(home, "interrupted"), home=home, cwd=tmp_path)
    assert code == RunError.exit_code and "no test metrics to report (interrupted after 2 of 5 epochs" in err


def test_bad_option_values_are_usage_errors(home, tmp_path):
    # a probe: --top-k 0 exited 3 while --top-k abc exited 2; report -o FOLDER exited 74
    (tmp_path / "rows.csv").write_text("a\n1\n")
    for k in ("0", "abc"):
        code, _, err = run_main("predict", "models:/iris-mlp/1", "rows.csv", "--top-k", k, home=home, cwd=tmp_path)
        assert code == 2 and "--top-k" in err and len(err.strip().splitlines()) == 1, err
    (tmp_path / "folder").mkdir()
    for args in (("report", "models:/iris-mlp/1"), ("predict", "models:/iris-mlp/1", "rows.csv")):
        code, _, err = run_main(*args, "-o", "folder", home=home, cwd=tmp_path)
        assert code == 2 and err.strip() == "error: --out folder: is a folder; give a file path", err
    assert list((tmp_path / "folder").iterdir()) == []
    # report -o made a folder that was not there; predict exited 3 naming only the folder
    for args in (("report", "models:/iris-mlp/1"), ("predict", "models:/iris-mlp/1", "rows.csv")):
        code, _, err = run_main(*args, "-o", "nowhere/out.html", home=home, cwd=tmp_path)
        assert code == 2 and err.strip() == "error: --out nowhere/out.html: folder nowhere not found", err
    assert not (tmp_path / "nowhere").exists()


def test_models_show_names_the_stored_version_from_the_workspace_as_set(home):
    # a probe: with TRUSTFORGE_HOME=ws, `models show` printed the store's absolute path
    code, out, err = run_main("models", "show", "models:/iris-mlp/1", home=Path(home.name), cwd=home.parent)
    assert code == 0, err
    (stored,) = [line for line in out.splitlines() if "stored:" in line]
    assert stored.split()[1] == f"{home.name}/artifacts/iris-mlp/1" and str(home.parent) not in out, stored
    code, out, err = run_main("models", "show", "models:/iris-mlp/1", "--json", home=Path(home.name), cwd=home.parent)
    assert code == 0 and json.loads(out)[0]["path"] == f"{home.name}/artifacts/iris-mlp/1", out


def test_report_of_a_version_whose_run_was_removed_says_so(home, tmp_path):
    ws = tmp_path / "ws2"
    shutil.copytree(home, ws)
    completed = _named(ws, "completed")
    assert run_main("runs", "rm", "--yes", completed, home=ws).code == 0
    for uri, named in (("models:/iris-mlp/1", "models:/iris-mlp/1 was"), ("models:/iris-mlp", "models:/iris-mlp (models:/iris-mlp/1) was")):
        code, out, err = run_main("report", uri, home=ws, cwd=tmp_path)
        assert code == RunError.exit_code and out == "", err
        (line,) = err.splitlines()
        assert line.startswith(f"error: {named} trained in run {completed}, whose folder was removed from "), line
        assert line.count("models:/iris-mlp/1") == 1, line
        assert "the version stays in the registry" in line and "`trustforge report` needs the run folder" in line


# ---------------------------------------------------------------------------- the command itself


def test_version_prints_and_imports_nothing_heavy(tmp_path):
    code, out, _ = run_main("--version", home=tmp_path / "ws")
    assert code == 0 and out.strip() == f"trustforge {trustforge.__version__}"
    probe = "import sys; sys.argv = ['trustforge', '--version']\nfrom trustforge.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\nprint(sorted(m for m in ('torch', 'pandas', 'sklearn') if m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert done.stdout.splitlines()[-1] == "[]", done.stdout
    module = subprocess.run([sys.executable, "-m", "trustforge", "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert module.returncode == 0 and module.stdout.strip() == f"trustforge {trustforge.__version__}", module  # python -m trustforge


@pytest.mark.parametrize(
    "args, names",
    [
        (("train",), ("error: trustforge train: Missing argument",)),
        (("train", "--bogus", "x.yaml"), ("No such option: --bogus",)),
        (("monitor", "models:/x/1", "--data", "d.csv", "--window", "abc"), ("monitor: Invalid value for '--window'",)),
        (("nosuch",), ("No such command 'nosuch'",)),
        (("runs", "rm"), ("runs rm", "Missing argument")),
        # a probe: a version number out of range exited 9 (a registry error), -1 and abc 2
        (("models", "alias", "iris-mlp", "champion", "0"), ("models alias", "'version'", "greater than or equal to 1")),
        (("models", "tag", "iris-mlp", "0", "a=b"), ("models tag", "'version'")),
        (("models", "delete", "iris-mlp", "0"), ("models delete", "'version'")),
        (("models", "register", "pkg", "--parent", "0"), ("models register", "'--parent'")),
    ],
    ids=["missing-argument", "unknown-option", "bad-value", "unknown-command", "subcommand", "alias-0", "tag-0", "delete-0", "parent-0"],
)
def test_usage_errors_are_one_line(tmp_path, args, names):
    code, out, err = run_main(*args, home=tmp_path / "ws")
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "╭" not in err + out and "Usage:" not in err
    for name in names:
        assert name in err, err


# ---------------------------------------------------------------------------- SIGTERM


def test_sigterm_marks_the_run_interrupted_and_train_resume_completes_it(tmp_path):
    spec = tmp_path / "long.yaml"
    spec.write_text(yaml.safe_dump({**IRIS, "name": "iris-long", "train": {**IRIS["train"], "max_epochs": 300}}))
    home = tmp_path / "ws"
    script = Path(sys.executable).with_name("trustforge")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-m", "trustforge.cli"]
    env = {**os.environ, "TRUSTFORGE_HOME": str(home), "NO_COLOR": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [*cmd, "train", "-q", "--no-register", str(spec)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 240
    epochs = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = list(home.glob("runs/iris-long-*/epochs.csv"))
        if found and len(found[0].read_text().splitlines()) >= 3:  # the header and two epochs
            epochs = found[0]
            break
        time.sleep(0.02)
    assert epochs is not None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    run = epochs.parent
    status = json.loads((run / "status.json").read_text())
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert status["state"] == "interrupted", status
    assert (run / "checkpoints" / "last.safetensors").is_file()
    said = [
        line for line in err.splitlines() if not line.startswith("data: ")
    ]  # iris has a duplicate row, which the data stage notes first
    assert said[0].startswith("interrupted (SIGTERM)") and f"run {run.name} kept as interrupted" in err
    done_before = len(epochs.read_text().splitlines()) - 1
    assert 2 <= done_before < 300
    resumed = subprocess.run(
        [*cmd, "train", "-q", "--no-register", "--resume", str(spec)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    assert len(epochs.read_text().splitlines()) - 1 == 300  # every epoch once: resumed after the last saved one
    assert (run / "metrics.json").is_file() and list(home.glob("runs/*")) == [run]


def test_compare_by_a_figure_of_unknown_direction_says_so(home, tmp_path):
    # Probe: `--metric privacy_noise_multiplier` said "(higher is better)", a claim nothing backs.
    copies = []
    for name, value in (("a", 0.8), ("b", 1.2)):
        dest = tmp_path / f"iris-{name}"
        shutil.copytree(home / "runs" / _named(home, "completed"), dest)
        metrics = json.loads((dest / "metrics.json").read_text())
        (dest / "metrics.json").write_text(json.dumps({**metrics, "privacy_noise_multiplier": value}))
        copies.append(dest)
    code, out, err = run_main("compare", "--metric", "privacy_noise_multiplier", *copies, home=home)
    words = " ".join(out.split())
    assert code == 0 and "(direction unknown; ranked highest first)" in words and "is better" not in words, out


def test_compare_never_ranks_runs_scored_on_different_test_rows(home, tmp_path, monkeypatch):
    """A run tested on 3 % of the rows (a handful) with a perfect score is not ranked above one
    tested on another split: each split is its own leaderboard, and every figure shows its n."""
    monkeypatch.setenv("COLUMNS", "160")
    completed = home / "runs" / _named(home, "completed")
    small = Path(shutil.copytree(completed, tmp_path / "small-split"))
    spec = yaml.safe_load((small / "spec.yaml").read_text())
    spec["data"]["split"]["test"] = 0.03
    (small / "spec.yaml").write_text(yaml.safe_dump(spec))
    metrics = json.loads((small / "metrics.json").read_text())
    metrics.update(accuracy=1.0, n=5)
    (small / "metrics.json").write_text(json.dumps(metrics))
    reseeded = Path(shutil.copytree(completed, tmp_path / "reseeded"))
    spec = yaml.safe_load((reseeded / "spec.yaml").read_text())
    spec["train"]["seed"] += 1  # the seed draws the split: other test rows
    (reseeded / "spec.yaml").write_text(yaml.safe_dump(spec))
    rows = json.loads(run_main("compare", "--json", completed, small, reseeded, home=home).stdout)
    assert len({r["group"] for r in rows}) == 3 and all(r["rank"] == 1 for r in rows), rows
    n = json.loads((completed / "metrics.json").read_text())["n"]
    assert {r["run"]: r["n"] for r in rows} == {completed.name: n, "small-split": 5, "reseeded": n}
    assert "test split 0.03" in {r["run"]: r["group"] for r in rows}["small-split"]
    code, out, err = run_main("compare", completed, small, reseeded, home=home)
    assert code == 0, err
    small_block = next(b for b in out.split("\n\n") if "small-split" in b)
    assert "test split 0.03" in small_block and completed.name not in small_block
    assert re.search(r"^1\s+small-split\s+1\.0000\s+5\s", small_block, re.MULTILINE), small_block


def test_compare_lists_a_run_given_twice_once_and_says_so(home, tmp_path):
    """`compare RUN RUN` (or RUN and its package) ranked the run 1 and 2 against itself."""
    completed = home / "runs" / _named(home, "completed")
    package = next(p.parent for p in completed.glob("*/manifest.json"))
    rows = json.loads(run_main("compare", "--json", completed, completed, home=home).stdout)
    assert [(r["run"], r["rank"]) for r in rows] == [(completed.name, 1)], rows
    code, out, err = run_main("compare", completed, package, completed, home=home)
    assert code == 0 and err.strip() == f"note: run {completed.name} was given 3 times; it is compared once", err
    assert out.count(completed.name) == 1 and re.search(rf"^1\s+{completed.name}\s", out, re.MULTILINE), out


def test_compare_never_ranks_runs_whose_duplicates_policy_drops_other_rows(home, tmp_path):
    """`data.duplicates: {exact: drop}` removes rows before the split, `across_splits: warn` keeps
    held-out rows the default drops: other test rows, so other leaderboards; `fail` drops nothing."""
    completed = home / "runs" / _named(home, "completed")
    copies = {}
    for name, policy in (("exact-drop", {"exact": "drop"}), ("kept", {"across_splits": "warn"}), ("fail", {"exact": "fail"})):
        dest = Path(shutil.copytree(completed, tmp_path / name))
        spec = yaml.safe_load((dest / "spec.yaml").read_text())
        spec["data"]["duplicates"] = {**spec["data"].get("duplicates", {}), **policy}
        (dest / "spec.yaml").write_text(yaml.safe_dump(spec))
        copies[name] = dest
    rows = json.loads(run_main("compare", "--json", completed, *copies.values(), home=home).stdout)
    group = {r["run"]: r["group"] for r in rows}
    assert group["fail"] == group[completed.name] and len(set(group.values())) == 3, group
    assert group["exact-drop"].endswith("duplicates dropped: exact, across splits)") and group["kept"].endswith("duplicates dropped: none)")


def test_train_and_report_name_the_run_from_the_workspace_as_set(tmp_path):
    # a probe: with TRUSTFORGE_HOME=ws, `train` printed its run and package folders as absolute paths
    (tmp_path / "iris.yaml").write_text(yaml.safe_dump({**IRIS, "train": {**IRIS.get("train", {}), "max_epochs": 1}}))
    code, out, err = run_main("train", "-q", "--no-register", "iris.yaml", home=Path("ws"), cwd=tmp_path)
    assert code == 0, err
    run_line, package_line = (line.split()[1] for line in out.splitlines() if line.startswith(("run:", "package:")))
    assert run_line.startswith("ws/runs/iris-mlp-") and package_line == f"{run_line}/package", out
    assert str(tmp_path) not in out + err
    code, out, err = run_main("report", run_line, home=Path("ws"), cwd=tmp_path)
    assert code == 0 and str(tmp_path) not in out + err, out + err
    assert f"model card: {run_line}/model_card.md" in out, out


def test_compare_never_ranks_runs_that_predict_another_target(home, tmp_path):
    """Two runs on one file predicting different columns answer different questions."""
    completed = home / "runs" / _named(home, "completed")
    other = Path(shutil.copytree(completed, tmp_path / "other-target"))
    spec = yaml.safe_load((other / "spec.yaml").read_text())
    spec["data"]["target"] = "another_column"
    (other / "spec.yaml").write_text(yaml.safe_dump(spec))
    rows = json.loads(run_main("compare", "--json", completed, other, home=home).stdout)
    assert len({r["group"] for r in rows}) == 2 and all(r["rank"] == 1 for r in rows), rows
    assert "of another_column on" in {r["run"]: r["group"] for r in rows}["other-target"]
