"""Hot reload: moving the alias swaps the model without dropping requests; a bad version is not served."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import numpy as np
from _serving import local_error, register
from sklearn.datasets import load_iris

from trustforge.serve import ModelService, ServeConfig, create_app

ALIAS = "models:/iris-serve@champion"


def test_moving_the_alias_swaps_versions_under_load_without_a_failed_request(packages, registry, tmp_path, live):
    v1 = register(registry, packages["iris"], tmp_path)  # champion → 1
    v2 = register(registry, packages["iris_v2"], tmp_path, alias=None)  # 2, not promoted yet
    rows = load_iris(as_frame=True).frame.drop(columns="target").sample(8, random_state=1)
    body = {"dataframe_records": rows.to_dict(orient="records")}
    probas = [c for c in registry.load_model(v1).predict(rows.head(1)).columns if c.startswith("proba_")]
    answers = {v: registry.load_model(uri).predict(rows)[probas].to_numpy() for v, uri in (("1", v1), ("2", v2))}
    assert np.abs(answers["1"] - answers["2"]).max() > 1e-3  # the versions can be told apart by their answers

    def version_of(predictions: list[dict]) -> str:
        got = np.array([[p[c] for c in probas] for p in predictions])
        return next((v for v, a in answers.items() if np.abs(got - a).max() < 1e-6), "neither")

    svc = ModelService(ALIAS, ServeConfig(workers=0, auth="none", poll_s=0.1), registry=registry).start()
    try:
        with live(create_app(svc)) as server:
            seen: list[tuple[int, str | None]] = []
            stop = threading.Event()

            def hammer() -> None:
                with httpx.Client(base_url=server.url, timeout=60) as client:
                    while not stop.is_set():
                        r = client.post("/invocations", json=body)
                        if r.status_code != 200:
                            seen.append((r.status_code, None))
                            continue
                        seen.append((200, version_of(r.json()["predictions"])))

            clients = [threading.Thread(target=hammer) for _ in range(4)]
            for t in clients:
                t.start()
            time.sleep(1.0)
            registry.set_alias("iris-serve", "champion", 2)
            deadline = time.monotonic() + 30
            while httpx.get(f"{server.url}/version").json()["model_version"] != "2":
                assert time.monotonic() < deadline, "the server did not follow the alias"
                time.sleep(0.05)
            time.sleep(1.0)
            stop.set()
            for t in clients:
                t.join(30)

        assert seen and {status for status, _ in seen} == {200}  # not one request dropped or failed
        versions = [v for _, v in seen]
        assert "neither" not in versions  # every answer is wholly one version's
        assert versions[0] == "1" and versions[-1] == "2"
        first_v2 = versions.index("2")
        assert versions[first_v2:].count("1") <= 4  # after the swap, at most the requests already in flight
        assert svc.metrics.reloads.labels(outcome="ok")._value.get() == 1
    finally:
        svc.close()


def test_a_version_that_fails_verification_is_not_served(packages, registry, tmp_path, live, caplog):
    register(registry, packages["iris"], tmp_path)
    register(registry, packages["iris_v2"], tmp_path, alias=None)
    svc = ModelService(ALIAS, ServeConfig(workers=0, auth="none", poll_s=30), registry=registry).start()
    try:
        # Corrupt one stored file of version 2, then promote it.
        stored = registry.get("models:/iris-serve/2").path
        victim = sorted(p for p in stored.iterdir() if p.suffix == ".enc")[0]
        data = bytearray(victim.read_bytes())
        data[-5] ^= 0xFF
        victim.write_bytes(bytes(data))
        registry.set_alias("iris-serve", "champion", 2)
        assert svc.check_for_update() is False
        assert svc.current.version == "1" and svc.current.ready
        assert svc.metrics.reloads.labels(outcome="failed")._value.get() == 1
        assert any(getattr(r, "event", None) == "reload_failed" for r in caplog.records)
        with live(create_app(svc)) as server:
            r = httpx.post(
                f"{server.url}/invocations",
                json={
                    "inputs": {"sepal length (cm)": [5.0], "sepal width (cm)": [3.4], "petal length (cm)": [1.5], "petal width (cm)": [0.2]}
                },
            )
            assert r.status_code == 200 and httpx.get(f"{server.url}/version").json()["model_version"] == "1"
        registry.set_alias("iris-serve", "champion", 1)  # back to a good version: nothing to do
        assert svc.check_for_update() is False
    finally:
        svc.close()


def test_a_pinned_version_is_not_followed(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    register(registry, packages["iris_v2"], tmp_path)  # champion → 2 at once
    svc = ModelService("models:/iris-serve/1", ServeConfig(workers=0, auth="none", poll_s=0.05), registry=registry).start()
    try:
        time.sleep(0.3)
        assert svc.current.version == "1" and svc._poller is None
    finally:
        svc.close()


def test_a_failed_reload_is_logged_without_a_local_path_or_a_cut_personal_value(packages, registry, tmp_path, caplog, monkeypatch):
    register(registry, packages["iris"], tmp_path)
    register(registry, packages["iris_v2"], tmp_path, alias=None)
    svc = ModelService(ALIAS, ServeConfig(workers=0, auth="none", poll_s=30), registry=registry).start()
    try:

        def refuse(*args):
            raise local_error(tmp_path)

        monkeypatch.setattr(svc, "_build", refuse)
        registry.set_alias("iris-serve", "champion", 2)
        assert svc.check_for_update() is False
    finally:
        svc.close()
    (error,) = [r.fields["error"] for r in caplog.records if getattr(r, "event", None) == "reload_failed"]
    assert error.startswith("IntegrityError: weights.safetensors.enc: failed authentication"), error
    assert str(tmp_path) not in error and "mary" not in error and len(error) <= 300, error


def test_an_audit_write_that_fails_is_logged_without_a_local_path_or_a_cut_personal_value(tmp_path, caplog):
    """The server's other error log lines (denials_audit_failed here; request_failed, monitor_failed
    and the drift monitor's replies share `_shown.recorded`) keep no local path or personal value."""
    from trustforge.serve._limits import SourceLimiter

    class FailingAudit:
        def append_many(self, records):
            raise local_error(tmp_path)

    limiter = SourceLimiter(FailingAudit(), "models:/iris-serve/1", hold_s=0, max_sources=100)
    with caplog.at_level(logging.ERROR, logger="trustforge.serve"):
        assert limiter._write([{"actor": "anonymous"}]) == 0
    (error,) = [r.fields["error"] for r in caplog.records if getattr(r, "event", None) == limiter.audit_failed_event]
    assert error.startswith("IntegrityError: weights.safetensors.enc: failed authentication"), error
    assert str(tmp_path) not in error and "mary" not in error and len(error) <= 200, error
