"""`trustforge monitor MODEL_URI --data FILE`: tables and a summary, exit 10 on drift, one-line errors."""

from __future__ import annotations

import json
import re

import pytest
from _cli import run_main
from _drift_data import make_table
from sklearn.datasets import load_iris

import trustforge
from trustforge.registry import Registry


def _drift_entries() -> list[dict]:
    """The workspace's drift alerts (TRUSTFORGE_HOME), newest first."""
    with Registry() as reg:
        return [e for e in reg.audit.entries(limit=1000) if e["action"] == "drift_alert"]


def _one_line_error(code: int, stderr: str, want_code: int, *names: str) -> None:
    assert code == want_code, (code, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "internal error" not in lines[0], stderr
    for name in names:
        assert name in lines[0], lines[0]


def test_no_drift_exits_0_and_a_shift_exits_10_with_one_audit_entry_per_window(trained, tmp_path, monkeypatch):
    result, home = trained
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    make_table(450, seed=21).to_csv(tmp_path / "ok.csv", index=False)
    make_table(450, seed=22, shift="x5").to_csv(tmp_path / "shifted.csv", index=False)
    before = len(_drift_entries())

    code, out, err = run_main("monitor", result.model_uri, "--data", tmp_path / "ok.csv", home=home)
    assert code == 0, err
    assert "no drift in 5 windows of 100 rows (the last one 50 rows)" in out and "400-449 (partial)" in out and err == ""
    # Which test decides, at which corrected level; PSI and Wasserstein labelled descriptive with their 100-row thresholds.
    flat = " ".join(out.split())
    assert "decided by: KS (numeric features); chi-square (categorical features, the prediction)" in flat, out
    assert "0.05 / 9 tests (Bonferroni" in flat
    assert "PSI and Wasserstein are descriptive (they decide nothing); their thresholds at 100 rows" in flat
    # No bare "largest PSI" beside "no": only as "none (largest PSI x of its threshold, ...)".
    assert out.count("largest PSI") == out.count("none (largest PSI"), out

    code, out, err = run_main("monitor", result.model_uri, "--data", tmp_path / "shifted.csv", home=home)
    assert code == 10, err
    assert re.search(r"drift in [45] of 5 windows of 100 rows \(the last one 50 rows\): x5 \([45]\)", out), out
    assert "ks p=" in out and err == ""
    entries = _drift_entries()
    entries = entries[: len(entries) - before]  # the new ones
    n_drifted = int(re.search(r"drift in (\d) of", out).group(1))
    assert len(entries) == n_drifted
    assert {e["object"] for e in entries} == {result.model_uri}

    code, out, _ = run_main("monitor", result.model_uri, "-d", tmp_path / "shifted.csv", "--window", "200", "--json", home=home)
    windows = [json.loads(line) for line in out.splitlines()]
    assert code == 10 and [w["rows"] for w in windows] == [200, 200, 50]
    assert all("x5" in w["drifted"] for w in windows)
    assert windows[0]["features"]["x5"]["threshold"] == pytest.approx(0.05 / 9)
    x5 = windows[0]["features"]["x5"]
    assert x5["decided_by"] == "ks" and x5["level"] == 0.05
    for fig in ("psi", "wasserstein"):  # descriptive, with the threshold of a 200-row window; the shift is over it
        assert x5[fig]["role"] == "descriptive" and x5[fig]["window"] == 200 and x5[fig]["exceeds"]
        assert x5[fig]["threshold"] == max(x5[fig]["limit"], x5[fig]["no_drift"]) and x5[fig]["value"] >= x5[fig]["threshold"]
    assert windows[0]["prediction"]["decided_by"] == "chi2" and windows[0]["prediction"]["psi"]["window"] == 200


def test_a_file_shorter_than_the_window_is_one_window_of_its_own_rows(trained, tmp_path, monkeypatch):
    # Probe: 150 rows with --window 1000 printed "no drift in 1 windows of 1000 rows".
    result, home = trained
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    make_table(150, seed=25).to_csv(tmp_path / "short.csv", index=False)
    code, out, err = run_main("monitor", result.model_uri, "--data", tmp_path / "short.csv", "--window", "1000", home=home)
    assert code == 0, err
    flat = " ".join(out.split())
    assert "no drift in 1 window of 150 rows (fewer than --window 1000)" in flat, out
    assert "1000 rows" not in flat and "1 windows" not in flat
    make_table(300, seed=26).to_csv(tmp_path / "even.csv", index=False)
    code, out, err = run_main("monitor", result.model_uri, "--data", tmp_path / "even.csv", "--window", "100", home=home)
    assert code == 0 and "no drift in 3 windows of 100 rows [" in " ".join(out.split()), out


def test_columns_the_model_does_not_take_are_ignored_with_a_note_as_predict_does(trained, tmp_path, monkeypatch):
    # a probe: predict and the server ignored an extra column; monitor refused the file (exit 3)
    result, home = trained
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    frame = make_table(300, seed=27)
    frame.assign(request_id=range(300), logged_at="2026-01-01").to_csv(tmp_path / "log.csv", index=False)
    code, out, err = run_main("monitor", result.model_uri, "--data", tmp_path / "log.csv", "--window", "100", home=home)
    assert code == 0, err
    assert err.strip() == "note: ignored 2 columns the model does not take: request_id, logged_at", err
    assert "no drift in 3 windows of 100 rows [" in " ".join(out.split()), out


def test_last_rows_too_few_for_a_window_are_named_as_not_tested(trained, tmp_path, monkeypatch):
    # a probe: 150 rows, --window 20: "7 windows of 20 rows", and nothing said of the last 10 rows
    result, home = trained
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    make_table(150, seed=28).to_csv(tmp_path / "batch.csv", index=False)
    code, out, err = run_main("monitor", result.model_uri, "--data", tmp_path / "batch.csv", "--window", "20", "--json", home=home)
    assert code in (0, 10), err
    assert [w["rows"] for w in map(json.loads, out.splitlines())] == [20] * 7
    assert err.strip() == "note: the last 10 rows (140-149) not tested: fewer than the 20 a drift window needs", err


def test_a_package_folder_signed_elsewhere_is_checked_with_its_public_key(trained, tmp_path, workspace):
    result, home = trained
    make_table(300, seed=23).to_csv(tmp_path / "ok.csv", index=False)
    code, out, err = run_main(
        "monitor", result.package, "--data", tmp_path / "ok.csv", "--public-key", home / "keys" / "signing.pub", home=workspace
    )
    assert code == 0, err
    assert "no drift in 3 windows" in out


def test_bad_data_files_get_one_line_naming_the_file(trained, tmp_path, monkeypatch):
    result, home = trained
    monkeypatch.setenv("TRUSTFORGE_HOME", str(home))
    frame = make_table(100, seed=24)
    frame.drop(columns=["x3"]).to_csv(tmp_path / "no_x3.csv", index=False)
    (tmp_path / "garbage.csv").write_bytes(b"\x00\xff\x00\xfe" * 50)
    frame.iloc[:10].to_csv(tmp_path / "short.csv", index=False)

    code, _, err = run_main("monitor", result.model_uri, "--data", tmp_path / "no_x3.csv", home=home)
    _one_line_error(code, err, 3, "no_x3.csv", "x3")
    code, _, err = run_main("monitor", result.model_uri, "--data", tmp_path / "missing.csv", home=home)
    _one_line_error(code, err, 3, "missing.csv", "not found")
    code, _, err = run_main("monitor", result.model_uri, "--data", tmp_path / "garbage.csv", home=home)
    _one_line_error(code, err, 3, "garbage.csv")
    code, _, err = run_main("monitor", result.model_uri, "--data", tmp_path / "short.csv", home=home)
    _one_line_error(code, err, 3, "short.csv", "10 rows", "at least 20")
    code, _, err = run_main("monitor", "models:/no-such-model/1", "--data", tmp_path / "no_x3.csv", home=home)
    assert code == 9 and err.startswith("error: ") and "no-such-model" in err


def test_a_package_without_reference_statistics_is_a_clear_error(tmp_path, workspace):
    r = trustforge.run(
        {
            "name": "iris-no-ref",
            "data": {"source": "builtin:iris"},
            "model": {"kind": "mlp", "hidden": [8]},
            "train": {"max_epochs": 2},
            "evaluate": {"speed": False, "corruptions": False, "explain": False},
            "monitor": {"reference": False},
        },
        progress=False,
        register=False,
    )
    load_iris(as_frame=True).frame.drop(columns=["target"]).to_csv(tmp_path / "iris.csv", index=False)
    code, _, err = run_main("monitor", r.package, "--data", tmp_path / "iris.csv", home=workspace)
    _one_line_error(code, err, 2, "no drift reference statistics", "retrain")


def test_a_forecaster_says_drift_is_not_monitored_for_series_inputs_not_to_retrain(tmp_path, workspace):
    r = trustforge.run(
        {
            "name": "air-no-drift",
            "task": "forecasting",
            "data": {"source": "builtin:air_passengers"},
            "model": {"kind": "mlp", "hidden": [8]},
            "train": {"max_epochs": 1},
            "evaluate": {"speed": False, "corruptions": False, "explain": False},
        },
        progress=False,
        register=False,
    )
    (tmp_path / "air.csv").write_text("passengers\n" + "\n".join(str(100 + i) for i in range(60)))
    code, _, err = run_main("monitor", r.package, "--data", tmp_path / "air.csv", home=workspace)
    _one_line_error(code, err, 2, "not monitored for series inputs", "retraining will not add")
    assert "retrain it to add" not in err
    from trustforge.evaluate import write_report  # the report says the same, not "compared with 0 training rows on 0 features"

    html = " ".join(write_report(r.run_dir).read_text(encoding="utf-8").split())
    assert "Drift: not monitored for series inputs" in html and "retraining will not change that" in html
    assert "0 training rows on 0 features" not in html
