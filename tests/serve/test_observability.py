"""Prometheus metrics, JSON logs without payloads, and drift through the monitor."""

from __future__ import annotations

import io
import json
import logging

import httpx
import numpy as np
from _serving import register
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from trustforge.serve import ModelService, ServeConfig, create_app
from trustforge.serve._logging import JsonFormatter


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_drift_and_logs(packages, registry, tmp_path, live):
    register(registry, packages["iris"], tmp_path)
    registry.access.add_user("app", "viewer")
    token = registry.access.issue_token("app")
    auth = {"Authorization": f"Bearer {token}"}
    frame = load_iris(as_frame=True).frame.drop(columns="target")
    svc = ModelService("models:/iris-serve@champion", ServeConfig(workers=0), registry=registry).start()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("trustforge.serve")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with live(create_app(svc)) as server:
            url = server.url
            drift = httpx.get(f"{url}/v2/models/iris-serve/drift", headers=auth).json()
            assert drift["enabled"] and drift["drift"]["windows_tested"] == 0

            # 30 rows as trained, one request each; then a window of shifted inputs.
            for _, row in frame.sample(30, random_state=0).iterrows():
                record = {**row.to_dict(), "ssn": "078-05-1120"}  # an extra field: ignored, and never logged
                assert httpx.post(f"{url}/invocations", json={"dataframe_records": [record]}, headers=auth).status_code == 200
            shifted = frame.sample(30, random_state=1) + 4.0
            r = httpx.post(f"{url}/invocations", json={"dataframe_records": shifted.to_dict(orient="records")}, headers=auth)
            assert r.status_code == 200
            assert httpx.post(f"{url}/invocations", json={"dataframe_records": [{"x": 1}]}, headers=auth).status_code == 400

            drift = httpx.get(f"{url}/v2/models/iris-serve/drift", headers=auth).json()["drift"]
            assert drift["windows_tested"] >= 2 and drift["windows_with_drift"] >= 1  # the shifted window was caught

            text = httpx.get(f"{url}/metrics", headers=auth).text
            m = _samples(text)
            route = (("route", "/invocations"),)
            assert m[("trustforge_responses_total", (("route", "/invocations"), ("status", "200")))] == 31
            assert m[("trustforge_responses_total", (("route", "/invocations"), ("status", "400")))] == 1
            assert m[("trustforge_request_duration_seconds_count", (("method", "POST"), *route))] == 32
            assert m[("trustforge_requests_in_flight", ())] == 1  # this scrape
            assert m[("trustforge_batch_size_count", (("model", "iris-serve"),))] == 31
            assert m[("trustforge_batch_size_sum", (("model", "iris-serve"),))] == 60
            assert m[("trustforge_model_info", (("backend", "torch"), ("model", "iris-serve"), ("version", "1")))] == 1
            scores = {dict(k[1])["feature"]: v for k, v in m.items() if k[0] == "trustforge_drift_score"}
            assert set(scores) >= set(frame.columns) and max(scores.values()) > 0.25  # PSI of a large shift
            assert all(np.isfinite(list(scores.values())))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        svc.close()

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [e for e in lines if e.get("event") == "request"]
    assert len(requests) >= 35
    assert {"time", "level", "request_id", "method", "route", "status", "ms"} <= set(requests[0])
    assert {e["route"] for e in requests} >= {"/invocations", "/metrics", "/v2/models/{model_name}/drift"}
    assert {e["principal"] for e in requests if e["route"] == "/invocations"} == {"app"}
    log_text = stream.getvalue()
    assert (
        "078-05-1120" not in log_text and token.split("_", 2)[-1] not in log_text
    )  # no payloads, no secrets (the whole 43-character secret)
