"""Drift monitoring in a process of its own (`serve/_drift.py`): with worker processes the server
process only sends the served batches on, and the monitor process tests the same windows with the
same results as a `DriftMonitor` observing the same rows in one process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
from _serving import register, signed_copy
from sklearn.datasets import load_iris

from trustforge.monitor import DriftMonitor, history_dir, read_drift_history
from trustforge.serve import ModelService, ServeConfig
from trustforge.serve._drift import MonitorProcess


def _rows(frame: pd.DataFrame, start: int, n: int) -> list[dict[str, np.ndarray]]:
    """One request per row: {column: array of one float}."""
    part = frame.iloc[start : start + n]
    return [{c: np.array([float(part[c].iloc[i])]) for c in frame.columns} for i in range(n)]


def _comparable(window: dict) -> dict:
    """A window's results without its wall-clock time."""
    return {k: v for k, v in window.items() if k != "time"}


@pytest.fixture
def served(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    svc = ModelService("models:/iris-serve@champion", ServeConfig(workers=1, auth="none"), registry=registry).start()
    yield svc
    svc.close()


def test_the_monitor_process_tests_the_same_windows_as_an_in_process_monitor(served, registry, caplog):
    rt = served.current
    assert isinstance(rt.monitor, MonitorProcess) and rt.monitor.pid not in (None, os.getpid())
    # it gives way to serving: niced by 10 below the server (the most is 19)
    assert os.getpriority(os.PRIO_PROCESS, rt.monitor.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)
    iris = load_iris(as_frame=True).frame.drop(columns="target")
    frame = iris.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shifted = frame.iloc[:20] + 3.0  # one window far from the training data: it drifts
    rows = _rows(frame, 0, 45) + _rows(shifted, 0, 20) + _rows(frame, 45, 17)  # 82 rows: 4 windows of 20, 2 pending

    async def one_by_one() -> list[dict[str, np.ndarray]]:
        return [await rt.predict(r) for r in rows]  # in order: the monitor sees the rows in this order

    with caplog.at_level(logging.WARNING, logger="trustforge.monitor"):
        predictions = asyncio.run(one_by_one())
        remote = rt.drift.status(timeout=20.0)

    # The same rows, in the same order, through a DriftMonitor in this process.
    local = DriftMonitor.for_model(rt.model, uri=rt.uri, actor="serve", alert_interval_s=60.0)
    inputs = pd.concat([pd.DataFrame(r) for r in rows], ignore_index=True)
    served_predictions = pd.DataFrame({k: np.concatenate([p[k] for p in predictions]) for k in predictions[0]})
    local.observe(rt.model.read_input(inputs), served_predictions)
    expected = local.status()

    assert remote["feed"]["observed_batches"] == 82 and remote["feed"]["dropped_batches"] == 0
    assert remote["feed"]["in_process"] is False
    assert remote["rows_seen"] == expected["rows_seen"] == 82 and remote["pending_rows"] == 2
    assert remote["windows_tested"] == expected["windows_tested"] == 4
    assert remote["windows_with_drift"] == expected["windows_with_drift"] >= 1  # the shifted window drifts
    assert _comparable(remote["last_window"]) == _comparable(expected["last_window"])  # every p-value, figure and decision
    assert rt.monitor.scores() == pytest.approx(local.scores(), rel=1e-12)
    assert served.metrics.render().decode().count("trustforge_drift_score{") == len(local.scores())

    # The alert was written by the server process: its log line and its audit entry.
    assert any(r.name == "trustforge.monitor" and "drift in models:/iris-serve" in r.getMessage() for r in caplog.records)
    alerts = [e for e in registry.audit.entries(limit=20) if e["action"] == "drift_alert"]
    assert len(alerts) == 1 and alerts[0]["actor"] == "serve" and alerts[0]["details"]["window"] == 3
    assert remote["alerts"]["count"] == 1 and remote["alerts"]["failed_audit_entries"] == 0

    # Every tested window, drifted or not, is in the model's drift history (the dashboard's drift page).
    history = read_drift_history(history_dir(registry.settings.home), "iris-serve")["windows"]
    assert [w["drift"] for w in history] == [w.drift for w in local.windows]
    assert {(w["source"], w["model"]) for w in history} == {("serve", rt.uri)}
    assert "petal length (cm)" in history[0]["features"] and "prediction" in history[0]["features"]


def test_a_killed_monitor_process_switches_monitoring_off_and_requests_go_on(served):
    rt = served.current
    feed = rt.drift
    row = _rows(load_iris(as_frame=True).frame.drop(columns="target"), 0, 1)[0]
    assert asyncio.run(rt.predict(row))["prediction"].shape == (1,)
    assert feed.status(timeout=20.0)["rows_seen"] == 1
    os.kill(rt.monitor.pid, signal.SIGKILL)
    time.sleep(0.2)
    for _ in range(3):
        assert asyncio.run(rt.predict(row))["prediction"].shape == (1,)
    assert feed.drain(10.0)
    status = feed.status(timeout=5.0)
    assert "monitor process ended" in status["failed"] and status["rows_seen"] == 1  # the last status it gave
    assert not feed.offer(row, {"prediction": np.array(["setosa"], dtype=object)})  # switched off


def test_without_a_monitor_process_the_server_observes_in_a_thread(packages, registry, tmp_path, monkeypatch):
    def refuse(self):
        raise RuntimeError("no process for you")

    monkeypatch.setattr(MonitorProcess, "start", refuse)
    register(registry, packages["iris"], tmp_path)
    svc = ModelService("models:/iris-serve@champion", ServeConfig(workers=1, auth="none"), registry=registry).start()
    try:
        rt = svc.current
        assert isinstance(rt.monitor, DriftMonitor) and rt.monitor_process is None
        rows = _rows(load_iris(as_frame=True).frame.drop(columns="target"), 0, 21)

        async def requests() -> None:
            for r in rows:
                await rt.predict(r)

        asyncio.run(requests())
        assert rt.drift.status(timeout=10.0)["windows_tested"] == 1
        recorded = read_drift_history(history_dir(registry.settings.home), "iris-serve")["windows"]
        assert len(recorded) == 1 and recorded[0]["rows"] == 20 and recorded[0]["source"] == "serve"
    finally:
        svc.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_a_served_package_folder_is_named_by_its_name_never_its_local_path(packages, registry, tmp_path, caplog, workers):
    # The audit log is append-only and the drift API answers every role: the folder's absolute path
    # (which can hold a user's home folder name) goes into neither, nor into the log line.
    folder = str(signed_copy(packages["iris"], registry.settings, tmp_path / "iris-package"))
    svc = ModelService(folder, ServeConfig(workers=workers, auth="none"), registry=registry).start()
    try:
        rt = svc.current
        shifted = load_iris(as_frame=True).frame.drop(columns="target").iloc[:21] + 3.0
        rows = _rows(shifted, 0, 21)

        async def requests() -> None:
            for r in rows:
                await rt.predict(r)

        with caplog.at_level(logging.WARNING, logger="trustforge.monitor"):
            asyncio.run(requests())
            status = rt.drift.status(timeout=20.0)
            svc.current.drift.monitor.flush_alerts()
            rt.drift.status(timeout=20.0)
        assert status["windows_with_drift"] == 1
        assert status["model"] == "package:iris-package"
        alerts = [e for e in registry.audit.entries(limit=20) if e["action"] == "drift_alert"]
        assert [e["object"] for e in alerts] == ["package:iris-package"]
        lines = [r.getMessage() for r in caplog.records if r.name == "trustforge.monitor"]
        assert any("drift in package:iris-package" in line for line in lines)
        assert not any(folder in line for line in lines)
    finally:
        svc.close()
