"""The lean server process: drift off the request path, one token lookup per expired entry, threads in --workers 0."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pandas as pd
import pytest
from _serving import register

from trustforge.serve import ModelService, ServeConfig, create_app
from trustforge.serve._drift import DriftFeed


class _SlowMonitor:
    """A monitor whose every `observe` takes `delay` seconds; records the rows it was given."""

    def __init__(self, delay: float):
        self.delay = delay
        self.rows: list[int] = []
        self.predicted: list[int] = []

    def observe(self, raw, predictions=None):
        time.sleep(self.delay)
        self.rows.append(len(raw))
        self.predicted.append(0 if predictions is None else len(predictions))
        return []

    def status(self) -> dict:
        return {"rows_seen": sum(self.rows)}


def _row(rt, value: float = 5.0) -> dict[str, np.ndarray]:
    return {s.name: np.array([value], dtype=np.float64) for s in rt.signature.inputs}


@pytest.fixture
def iris_service(packages, registry, tmp_path):
    register(registry, packages["iris"], tmp_path)
    svc = ModelService("models:/iris-serve@champion", ServeConfig(workers=0), registry=registry).start()
    yield svc
    svc.close()


def _swap_monitor(rt, monitor, **options) -> DriftFeed:
    rt.drift.close()
    rt.monitor = monitor
    rt.drift = DriftFeed(monitor, rt.model.read_input, rt.signature, name=rt.name, **options)
    return rt.drift


def test_a_monitor_that_takes_half_a_second_does_not_slow_a_request(iris_service):
    rt = iris_service.current
    assert rt.drift is not None  # the iris package has reference statistics: monitoring is on
    monitor = _SlowMonitor(0.5)
    counter = rt.metrics.drift_dropped.labels(model=rt.name)
    feed = _swap_monitor(rt, monitor, max_batches=1, linger_s=0.0, on_drop=counter.inc)

    async def requests() -> list[float]:
        took = []
        for _ in range(6):
            start = time.perf_counter()
            columns = await rt.predict(_row(rt))
            took.append(time.perf_counter() - start)
            assert set(columns) >= {"prediction"}
        return took

    took = asyncio.run(requests())
    assert max(took) < 0.25, took  # each observe sleeps 0.5 s: none of it is in a request
    assert sum(took) < 0.5, took
    assert feed.dropped >= 1  # the queue of one was full: the batch was dropped, not waited for
    assert feed.drain(5.0)
    assert feed.observed + feed.dropped == 6
    assert sum(monitor.rows) == feed.observed
    text = iris_service.metrics.render().decode()
    assert f'trustforge_drift_dropped_batches_total{{model="iris-serve"}} {float(feed.dropped)}' in text


def test_batches_are_observed_together_in_one_call(iris_service):
    rt = iris_service.current
    monitor = _SlowMonitor(0.3)
    feed = _swap_monitor(rt, monitor, linger_s=0.0)
    prediction = {"prediction": np.array(["setosa"], dtype=object)}
    feed.offer(_row(rt), prediction)  # the thread takes this one at once and sleeps in observe
    time.sleep(0.05)
    for i in range(10):  # these queue meanwhile, then go in one observe call
        assert feed.offer(_row(rt, float(i)), prediction)
    assert feed.drain(5.0)
    assert monitor.rows == [1, 10] and monitor.predicted == [1, 10]
    assert feed.observed == 11 and feed.dropped == 0

    monitor = _SlowMonitor(0.0)
    feed = _swap_monitor(rt, monitor, linger_s=5.0)  # batches that come within linger_s of the first join it
    for i in range(7):
        assert feed.offer(_row(rt, float(i)), prediction)
        time.sleep(0.01)
    started = time.monotonic()
    assert feed.drain(5.0) and time.monotonic() - started < 1.0  # a reader cuts the wait short
    assert monitor.rows == [7]


def test_a_failing_monitor_is_switched_off_and_requests_go_on(iris_service):
    rt = iris_service.current

    class Broken(_SlowMonitor):
        def observe(self, raw, predictions=None):
            raise RuntimeError("boom")

    feed = _swap_monitor(rt, Broken(0))
    assert feed.offer(_row(rt), {"prediction": np.array(["setosa"], dtype=object)})
    assert feed.drain(5.0)
    assert not feed.offer(_row(rt), {"prediction": np.array(["setosa"], dtype=object)})  # off after the failure
    assert asyncio.run(rt.predict(_row(rt)))["prediction"].shape == (1,)


def test_drift_status_waits_for_what_was_queued(iris_service):
    rt = iris_service.current
    real = rt.monitor
    feed = rt.drift
    for i in range(25):  # window of 20 rows (the iris spec): one window to test
        feed.offer(_row(rt, 5.0 + i % 3), {"prediction": np.array(["setosa"], dtype=object)})
    status = feed.status(timeout=10.0)
    assert status["rows_seen"] == 25 and status["windows_tested"] == 1
    assert {k: status["feed"][k] for k in ("observed_batches", "dropped_batches", "queued_batches")} == {
        "observed_batches": 25,
        "dropped_batches": 0,
        "queued_batches": 0,
    }
    assert status["feed"]["in_process"] and status["feed"]["thread_cpu_s"] > 0  # --workers 0: observed in this process
    assert real.status()["rows_seen"] == 25


def test_closing_the_feed_observes_what_is_queued_then_stops_its_thread(iris_service):
    rt = iris_service.current
    monitor = _SlowMonitor(0.05)
    feed = _swap_monitor(rt, monitor)
    for _ in range(3):
        feed.offer(_row(rt), {"prediction": np.array(["setosa"], dtype=object)})
    feed.close()
    assert sum(monitor.rows) == 3
    assert not feed._thread.is_alive()
    assert not any(t.name == feed._thread.name and t.is_alive() for t in threading.enumerate())


def test_concurrent_requests_on_an_expired_token_entry_share_one_database_lookup(packages, registry, tmp_path, live):
    import httpx

    register(registry, packages["iris"], tmp_path)
    svc = ModelService("models:/iris-serve@champion", ServeConfig(workers=0, auth_cache_s=60.0), registry=registry).start()
    registry.access.add_user("app", "viewer")
    token = registry.access.issue_token("app")
    try:
        app = create_app(svc)
        auth = app.state.auth
        slow_reads = []
        real = auth._quiet.authenticate

        def slow(t):  # a database that takes 0.3 s: every request of the burst arrives during the lookup
            slow_reads.append(1)
            time.sleep(0.3)
            return real(t)

        auth._quiet.authenticate = slow
        body = {"inputs": [{"name": s.name, "shape": [1], "datatype": "FP64", "data": [5.0]} for s in svc.current.signature.inputs]}
        with live(app) as server:

            async def burst(n: int) -> list[int]:
                async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
                    rs = await asyncio.gather(*(client.post("/v2/models/iris-serve/infer", json=body) for _ in range(n)))
                return [r.status_code for r in rs]

            assert asyncio.run(burst(16)) == [200] * 16
            assert auth.lookups == 1 and len(slow_reads) == 1  # 16 requests on a cold entry: one lookup
            # The entry expires (moved into the past rather than waited out: on a loaded machine a
            # burst can outlast a short cache window, and the test would count a second lookup).
            auth._cache.update({k: (who, time.monotonic() - 1.0) for k, (who, _) in auth._cache.items()})
            assert asyncio.run(burst(16)) == [200] * 16
            assert auth.lookups == 2  # again one for the whole burst
            assert asyncio.run(burst(8)) == [200] * 8
            assert auth.lookups == 2  # cached: no lookup

            # A refused token: one lookup for the burst, each request refused and counted.
            bad = "tfk_0123456789abcdef_" + "A" * 43
            counted = []
            count = auth.limiter.refused
            auth.limiter.refused = lambda *a, **k: (counted.append(a[2]), count(*a, **k))

            async def refused(n: int) -> list[int]:
                async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {bad}"}, timeout=30) as client:
                    rs = await asyncio.gather(*(client.post("/invocations", json={"inputs": [[5.0] * 4]}) for _ in range(n)))
                return [r.status_code for r in rs]

            assert asyncio.run(refused(6)) == [401] * 6
            assert auth.lookups == 3 and len(counted) == 6
    finally:
        svc.close()


def test_workers_0_applies_threads_to_torch_in_the_server_process(packages, registry, tmp_path):
    import torch

    register(registry, packages["iris"], tmp_path)
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            svc = ModelService("models:/iris-serve@champion", ServeConfig(workers=0, threads=threads), registry=registry).start()
            try:
                assert torch.get_num_threads() == threads
                assert asyncio.run(svc.current.predict(_row(svc.current)))["prediction"].shape == (1,)
            finally:
                svc.close()
    finally:
        torch.set_num_threads(before)


def test_log_records_are_written_by_a_thread_not_the_caller(monkeypatch):
    import io
    import json
    import logging

    from trustforge.serve import _logging

    class SlowStream(io.StringIO):
        def write(self, text):
            time.sleep(0.2)  # a stalled terminal or pipe
            return super().write(text)

    _logging.flush_logs(10.0)  # what earlier tests queued goes to the old stderr, not to this stream
    stream = SlowStream()
    monkeypatch.setattr(_logging.sys, "stderr", stream)
    logger = logging.getLogger("trustforge.serve")
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level) for name in _logging._LOGGERS}
    access = logging.getLogger("uvicorn.access").disabled
    try:
        _logging.configure_logging()
        _logging.configure_logging()  # idempotent: one queue handler per logger
        assert sum(isinstance(h, _logging._Enqueue) for h in logger.handlers) == 1
        started = time.perf_counter()
        for i in range(5):
            _logging.log_event(logging.INFO, "request", request_id=f"r{i}", status=200, ms=1.5)
        assert time.perf_counter() - started < 0.5  # five writes of 0.2 s each (1 s) did not happen here
        _logging.flush_logs(10.0)
        # records still queued by earlier tests (a server thread's access log) may land here too
        lines = [e for e in map(json.loads, stream.getvalue().splitlines()) if e.get("request_id", "").startswith("r")]
        assert [e["request_id"] for e in lines] == [f"r{i}" for i in range(5)]
        assert lines[0]["event"] == "request" and lines[0]["status"] == 200 and lines[0]["level"] == "info"
    finally:
        for name, (handlers, level) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).setLevel(level)
        logging.getLogger("uvicorn.access").disabled = access


def test_the_plain_inference_routes_keep_their_documented_contract(iris_service, registry):
    from fastapi.testclient import TestClient

    app = create_app(iris_service)
    doc = app.openapi()
    op = doc["paths"]["/v2/models/{model_name}/infer"]["post"]
    name = next(p for p in op["parameters"] if p["name"] == "model_name")
    assert name["schema"]["maxLength"] == 256 and op.get("security")  # documented as before: bounded name, bearer token
    assert "/invocations" in doc["paths"] and doc["paths"]["/invocations"]["post"].get("security")

    registry.access.add_user("reader", "viewer")
    token = registry.access.issue_token("reader")
    client = TestClient(app)
    body = {"inputs": [{"name": s.name, "shape": [1], "datatype": "FP64", "data": [5.0]} for s in iris_service.current.signature.inputs]}
    r = client.post("/v2/models/iris-serve/infer", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")  # checked by the handler itself
    headers = {"Authorization": f"Bearer {token}"}
    r = client.post(f"/v2/models/{'x' * 300}/infer", json=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"].startswith("path.model_name")
    r = client.post(f"/v2/models/iris-serve/versions/{'9' * 70}/infer", json=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"].startswith("path.model_version")
    r = client.post("/v2/models/iris-serve/versions/1/infer", json=body, headers=headers)
    assert r.status_code == 200 and r.json()["model_name"] == "iris-serve"
    r = client.post("/invocations", content=b"a,b", headers={**headers, "Content-Type": "text/plain"})
    assert r.status_code == 415 and r.json()["error_code"] == "BAD_REQUEST"


def test_the_monitor_prepares_its_first_window_before_serving(iris_service):
    from trustforge.monitor import DriftMonitor

    rt = iris_service.current
    fresh = DriftMonitor.for_model(rt.model)
    assert not fresh._levels
    fresh.prepare()
    levels = dict(fresh._levels)
    assert levels and fresh.status()["windows_tested"] == 0 and fresh.status()["rows_seen"] == 0  # nothing recorded
    assert rt.monitor._levels.keys() == levels.keys()  # the server's monitor was prepared at start
    frame = rt.model.read_input(pd.DataFrame({s.name: np.linspace(4.5, 6.5, 20) for s in rt.signature.inputs}))
    assert len(fresh.observe(frame)) == 1  # a full window (20 rows) ...
    assert fresh._levels == levels  # ... needed no new simulation


def test_log_lines_that_come_together_are_written_at_once_and_flushed(monkeypatch):
    import io
    import json
    import logging

    from trustforge.serve import _logging

    class Counting(io.StringIO):
        writes = 0

        def write(self, text):
            Counting.writes += 1
            return super().write(text)

    _logging.flush_logs(10.0)
    stream = Counting()
    monkeypatch.setattr(_logging.sys, "stderr", stream)
    saved = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).level) for name in _logging._LOGGERS}
    access = logging.getLogger("uvicorn.access").disabled
    try:
        _logging.configure_logging()
        for i in range(200):  # far faster than the writer wakes (every 20 ms)
            _logging.log_event(logging.INFO, "request", request_id=f"w{i}", status=200)
        _logging.flush_logs(10.0)  # returns once they are written, not only taken
        lines = [e for e in map(json.loads, stream.getvalue().splitlines()) if e.get("request_id", "").startswith("w")]
        assert [e["request_id"] for e in lines] == [f"w{i}" for i in range(200)]
        assert Counting.writes < 50  # one write per wake-up of the writer, not one per line
        _logging.log_event(logging.INFO, "request", request_id="last", status=200)
        _logging.stop_logging()  # what is queued when the writer stops is written
        assert json.loads(stream.getvalue().splitlines()[-1])["request_id"] == "last"
    finally:
        for name, (handlers, level) in saved.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).setLevel(level)
        logging.getLogger("uvicorn.access").disabled = access


def test_a_prediction_is_awaited_on_the_loop_and_times_out_as_wait_for_did():
    from types import SimpleNamespace

    from trustforge.serve._service import Runtime

    class Queue:
        def __init__(self):
            self.jobs = []

        def submit(self, job):
            self.jobs.append(job)
            return job.future

    def runtime(timeout):
        return SimpleNamespace(
            batcher=Queue(), config=SimpleNamespace(request_timeout_s=timeout), signature=SimpleNamespace(batchable=True)
        )

    payload = {"x": np.zeros(1)}
    late = runtime(0.05)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(Runtime.predict(late, payload))
    assert late.batcher.jobs[0].future.cancelled()  # its batch drops the answer

    async def answered(rt, settle):
        task = asyncio.ensure_future(Runtime.predict(rt, payload))
        await asyncio.sleep(0.02)
        threading.Thread(target=settle, args=(rt.batcher.jobs[0].future,)).start()  # as a driver thread does
        return await task

    rt = runtime(10)
    assert asyncio.run(answered(rt, lambda f: f.set_result({"y": 1}))) == {"y": 1}
    rt = runtime(10)
    with pytest.raises(ValueError, match="bad row"):
        asyncio.run(answered(rt, lambda f: f.set_exception(ValueError("bad row"))))


def test_scoring_responses_are_written_as_each_value_read_back_to_python():
    """`encode_scoring` hands float columns to orjson as float64 (no finiteness pass): the bytes
    are those of the values as Python reads them (`tolist`), NaN and infinities as null."""
    import orjson

    from trustforge.serve._protocol import encode_scoring

    rng = np.random.default_rng(3)
    columns = {
        "prediction": np.array(["benign", None, "x"], dtype=object),
        "p32": np.array([0.9, np.nan, -np.inf], dtype=np.float32),
        "p64": np.array([1e-7, -1e300, np.inf]),
        "p16": rng.random(3).astype(np.float16),
        "n": np.arange(3),
        "flag": np.array([True, False, True]),
        "mixed": np.array([np.float32(0.1), float("nan"), np.int64(2)], dtype=object),
    }

    def python(arr: np.ndarray) -> list:
        out = arr.tolist()
        return [v.item() if isinstance(v, np.generic) else v for v in out]

    records = [dict(zip(columns, row)) for row in zip(*(python(a) for a in columns.values()))]
    for record in records:
        for k, v in record.items():
            if isinstance(v, float) and not np.isfinite(v):
                record[k] = None
    assert encode_scoring(columns) == orjson.dumps({"predictions": records})
    assert b"0.8999999761581421" in encode_scoring(columns)  # FP32 0.9, as a Python float, not "0.9"
    ood = {"policy": "flag", "flagged": [False] * 3}
    assert orjson.loads(encode_scoring(columns, ood=ood))["ood"] == ood
