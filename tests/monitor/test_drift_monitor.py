"""`DriftMonitor`: false alarms near the configured level, a one-std shift caught and named,
one alert per window (log line and audit entry), and a status the server can publish."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from _drift_data import FEATURES, make_table

from trustforge.data import RawData, infer_schema
from trustforge.monitor import AUDIT_ACTION, DriftMonitor, reference_statistics
from trustforge.secure import AuditLog
from trustforge.spec import MonitorSpec

WINDOW = 100


@pytest.fixture(scope="module")
def model(trained):
    return trained[0].load_model()


def _monitor(model, **config) -> DriftMonitor:
    """A monitor of `model` with its spec's `monitor:` section changed by `config`."""
    return DriftMonitor(model.manifest["monitor"]["reference"], model.schema, model.spec.monitor.model_copy(update=config), history=None)


def _feed(mon: DriftMonitor, model, frame: pd.DataFrame, batch: int | None = None) -> list:
    """Serve `frame` through `mon` in batches of `batch` rows (all at once by default)."""
    windows = []
    step = batch or len(frame)
    for i in range(0, len(frame), step):
        raw = model.read_input(frame.iloc[i : i + step].reset_index(drop=True))
        windows += mon.observe(raw, model.predict(raw))
    return windows


def test_false_alarms_over_200_windows_stay_near_the_level_and_need_the_correction(model):
    """200 windows of 100 fresh rows from the training distribution, 9 tests each (8 features
    and the prediction), at the default level 0.05. Measured: 0.065 of windows (13 of 200) raise
    an alarm with the Bonferroni correction and 0.33 without it (these rows, this model; 0.070
    and 0.365 with the format-1 reference, whose KS used the training values themselves)."""
    held = make_table(200 * WINDOW, seed=7)
    raw = model.read_input(held)
    pred = model.predict(raw)
    rates = {}
    for correction in ("bonferroni", "none"):
        mon = _monitor(model, correction=correction)
        windows = mon.observe(raw, pred)
        assert len(windows) == 200 and mon.monitored == [*FEATURES, "prediction"]
        rates[correction] = np.mean([w.drift for w in windows])
    # Binomial sd over 200 windows at 0.05 is 0.015: 0.10 is 3 sd above the level.
    assert rates["bonferroni"] <= 0.10, rates
    # Nine tests at 0.05 each, without correction: about 1 - 0.95**9 = 0.37 (less: ties, correlation).
    assert rates["none"] >= 0.15, rates


def test_false_alarm_rate_averaged_over_references_is_the_level():
    """One reference's false-alarm rate varies with how far its training sample happens to lie
    from the truth; over 5 training samples of 1,000 rows x 200 windows (1,000 windows) it is
    the level or below (the KS test against the reference's cuts is conservative): measured
    0.038 at level 0.05 (per reference 0.045, 0.045, 0.035, 0.045, 0.020; 0.049 with the
    format-1 reference of training values)."""
    rates = []
    for seed in range(5):
        raw = RawData("table", "y", "t", frame=make_table(1000, seed=100 + seed))
        schema, raw = infer_schema(raw, task="classification", features=None, drop=[], max_categories=50)
        mon = DriftMonitor(reference_statistics(schema, raw, None), schema, MonitorSpec(window=WINDOW))
        windows = mon.observe(RawData("table", "y", "t", frame=make_table(200 * WINDOW, seed=200 + seed)))
        rates.append(np.mean([w.drift for w in windows]))
    # Binomial sd over 1,000 windows is 0.007; the spread between references adds about as much.
    assert 0.02 <= np.mean(rates) <= 0.08, rates


def test_a_one_std_shift_in_one_feature_is_flagged_within_two_windows_naming_it(model):
    mon = DriftMonitor.for_model(model)
    windows = _feed(mon, model, make_table(20 * WINDOW, seed=8, shift="x5"))
    assert any("x5" in w.drifted for w in windows[:2]), [w.drifted for w in windows[:2]]
    assert np.mean(["x5" in w.drifted for w in windows]) >= 0.9
    # The other inputs did not move: at most the false-alarm share of windows names one.
    others = [n for w in windows for n in w.drifted if n not in ("x5", "prediction")]
    assert len(others) <= 2, others
    first = next(w for w in windows if "x5" in w.drifted)
    assert first.features["x5"]["test"] == "ks" and first.features["x5"]["p_value"] < first.features["x5"]["threshold"]


def test_new_categories_and_an_all_missing_column_are_drift(model):
    frame = make_table(WINDOW, seed=9)
    frame["color"] = np.where(np.arange(WINDOW) % 3 == 0, "purple", frame["color"])
    frame["x2"] = np.nan
    mon = DriftMonitor.for_model(model)
    (w,) = _feed(mon, model, frame)
    assert {"color", "x2"} <= set(w.drifted)
    assert w.features["color"]["test"] == "chi2"
    assert w.features["x2"]["test"] == "missing" and w.features["x2"]["p_value"] == 0.0  # no missing x2 in training


def test_a_window_mostly_missing_a_column_training_always_had_drifts_naming_it(model, caplog):
    # A broken upstream feed: 80 of 100 values of x1 missing (none in training). KS on the 20
    # values left sees nothing; the test of the missing share against training's does.
    frame = make_table(WINDOW, seed=9)
    frame.loc[10:89, "x1"] = np.nan
    audit = AuditLog(sa.create_engine("sqlite://"), head_path=None)
    mon = DriftMonitor.for_model(model, audit=audit, uri="models:/drift-table/1")
    with caplog.at_level(logging.WARNING, logger="trustforge.monitor"):
        (w,) = _feed(mon, model, frame)
    x1 = w.features["x1"]
    assert "x1" in w.drifted and x1["test"] == "ks" and x1["drift"]
    m = x1["missing_test"]
    assert m["test"] == "fisher" and m["drift"] and m["share"] == 0.8 and m["reference_share"] == 0.0
    assert m["threshold"] < m["level"]  # in the window's Bonferroni family
    assert "x1 (missing 80% vs 0% in training: fisher p=" in w.summary()
    (entry,) = [e for e in audit.entries(limit=10) if e["action"] == AUDIT_ACTION]
    details = json.loads(entry["details"]) if isinstance(entry["details"], str) else entry["details"]
    (named,) = [d for d in details["drifted"] if d["name"] == "x1"]
    assert named["missing_share"] == 0.8 and named["missing_p_value"] < 1e-10


def test_one_missing_value_in_a_window_is_not_drift(model):
    # Against none of the training rows missing, 1 of 100 is p = 100 / (training rows + 100) (Fisher's
    # exact test; a z-test would say 1e-18): 0.03 here, far above the corrected level.
    frame = make_table(WINDOW, seed=9)
    frame.loc[5, "x1"] = np.nan
    (w,) = _feed(DriftMonitor.for_model(model), model, frame)
    m = w.features["x1"]["missing_test"]
    assert m["p_value"] > 0.02 and m["p_value"] > m["threshold"] and not m["drift"] and "x1" not in w.drifted
    assert "missing_test" not in w.features["x3"]  # no missing value on either side: no test, the family unchanged


def test_one_log_line_and_one_audit_entry_per_window_with_drift_not_per_request(model, caplog):
    audit = AuditLog(sa.create_engine("sqlite://"), head_path=None)
    mon = DriftMonitor.for_model(model, audit=audit, uri="models:/drift-table/1")
    served = pd.concat([make_table(3 * WINDOW, seed=10, shift="x5"), make_table(2 * WINDOW, seed=11)], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="trustforge.monitor"):
        windows = _feed(mon, model, served, batch=5)  # 100 requests of 5 rows
    drifted = [w for w in windows if w.drift]
    assert len(windows) == 5 and [w.index for w in drifted][:3] == [1, 2, 3]
    lines = [r for r in caplog.records if r.name == "trustforge.monitor"]
    assert len(lines) == len(drifted)
    assert all("x5" in r.getMessage() and "models:/drift-table/1" in r.getMessage() for r in lines[:3])
    entries = [e for e in audit.entries(limit=100) if e["action"] == AUDIT_ACTION]
    assert len(entries) == len(drifted)
    details = [json.loads(e["details"]) if isinstance(e["details"], str) else e["details"] for e in entries]
    assert sorted(d["window"] for d in details) == [w.index for w in drifted]
    assert all(e["object"] == "models:/drift-table/1" and e["actor"] == "monitor" and e["outcome"] == "ok" for e in entries)
    assert any(d["drifted"][0]["name"] == "x5" and d["drifted"][0]["test"] == "ks" for d in details)
    assert audit.verify().ok
    assert mon.status()["alerts"]["count"] == len(drifted)


def test_an_audit_log_that_fails_does_not_fail_the_request(model, caplog):
    class Broken:
        def append(self, *args, **kwargs):
            raise RuntimeError("database is gone")

    mon = DriftMonitor.for_model(model, audit=Broken())
    with caplog.at_level(logging.ERROR, logger="trustforge.monitor"):
        (w,) = _feed(mon, model, make_table(WINDOW, seed=12, shift="x5"))
    assert w.drift
    assert mon.status()["alerts"] == {"count": 1, "failed_audit_entries": 1, "recent": mon.status()["alerts"]["recent"]}
    assert any("audit entry could not be written" in r.getMessage() for r in caplog.records)


def test_status_and_scores_are_what_a_server_publishes(model):
    mon = DriftMonitor.for_model(model)
    assert mon.scores() == {} and mon.status()["last_window"] is None
    _feed(mon, model, make_table(WINDOW + 30, seed=13), batch=7)
    status = mon.status()
    json.dumps(status, allow_nan=False)
    assert status["window"] == WINDOW and status["rows_seen"] == WINDOW + 30 and status["pending_rows"] == 30
    assert status["windows_tested"] == 1 and status["config"]["correction"] == "bonferroni"
    last = status["last_window"]
    assert last["rows"] == WINDOW and set(last["features"]) == set(FEATURES)
    x1 = last["features"]["x1"]
    assert {"test", "statistic", "p_value", "threshold", "psi", "wasserstein", "drift"} <= set(x1)
    assert x1["threshold"] == pytest.approx(0.05 / 9)  # Bonferroni over 8 features and the prediction
    assert last["prediction"]["test"] == "chi2"
    scores = mon.scores()
    assert set(scores) == {*FEATURES, "prediction"} and all(v >= 0 for v in scores.values())
    # The unfinished window is tested on request (offline runs).
    partial = mon.flush()
    assert partial.partial and partial.rows == 30 and mon.status()["pending_rows"] == 0
    assert mon.flush() is None


def test_observe_is_thread_safe(model):
    mon = DriftMonitor.for_model(model, window=50)
    frame = make_table(400, seed=14)
    raws = [model.read_input(frame.iloc[i : i + 10].reset_index(drop=True)) for i in range(0, 400, 10)]
    preds = [model.predict(r) for r in raws]
    errors = []

    def serve(part):
        try:
            for i in part:
                mon.observe(raws[i], preds[i])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=serve, args=(range(k, 40, 4),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    status = mon.status()
    assert status["rows_seen"] == 400 and status["windows_tested"] == 8 and status["pending_rows"] == 0
    assert [(w.start_row, w.end_row) for w in mon.windows] == [(i, i + 50) for i in range(0, 400, 50)]


def test_mismatched_predictions_and_other_decision_rules(model):
    mon = DriftMonitor.for_model(model)
    raw = model.read_input(make_table(10, seed=15))
    with pytest.raises(ValueError, match="5 rows for 10 inputs"):
        mon.observe(raw, model.predict(raw).iloc[:5])
    # Inputs served without their predictions: the prediction is not tested (nor an alarm).
    (w,) = _monitor(model).observe(model.read_input(make_table(WINDOW, seed=17)), None)
    assert w.prediction["test"] is None and "prediction" not in w.drifted
    assert w.features["x1"]["threshold"] == pytest.approx(0.05 / 8)  # 8 tests: the features only
    # PSI decides instead of KS: a large shift crosses 0.1 in a 500-row window; no p-value, no correction.
    psi_mon = _monitor(model, numeric_test="psi", window=500)
    (w,) = _feed(psi_mon, model, make_table(500, seed=16, shift="x1"))
    assert w.features["x1"]["test"] == "psi" and w.features["x1"]["p_value"] is None
    assert w.features["x1"]["threshold"] == 0.1 and "x1" in w.drifted
    assert "x3" not in w.drifted  # an unshifted continuous feature stays below 0.1 at 500 rows


@pytest.mark.parametrize("rows", [100, 455])
def test_a_one_std_shift_is_flagged_in_the_first_window_with_a_small_training_set(rows):
    """The reference of a small training set keeps only cuts between blocks of 20 rows (no
    training value), and the one-std shift is still caught in the first window of 100 rows in
    (nearly) every one of 20 training samples; without a shift, few first windows alarm.
    Measured over 100 samples (first windows caught, before -> after this reference): 40 rows
    95 -> 78, 60 rows 100 -> 95, 100 rows 100 -> 99, 200 and 455 rows 100 -> 100."""
    fired, quiet = 0, 0
    for seed in range(20):
        raw = RawData("table", "y", "t", frame=make_table(rows, seed=300 + seed))
        schema, raw = infer_schema(raw, task="classification", features=None, drop=[], max_categories=50)
        ref = reference_statistics(schema, raw, None)
        assert "quantiles" not in ref["features"]["x5"]
        (w,) = DriftMonitor(ref, schema, MonitorSpec(window=WINDOW)).observe(
            RawData("table", "y", "t", frame=make_table(WINDOW, seed=500 + seed, shift="x5"))
        )
        fired += "x5" in w.drifted
        (w,) = DriftMonitor(ref, schema, MonitorSpec(window=WINDOW)).observe(
            RawData("table", "y", "t", frame=make_table(WINDOW, seed=700 + seed))
        )
        quiet += not w.drift
    assert fired >= (19 if rows < 200 else 20), fired
    assert quiet >= 17, quiet
