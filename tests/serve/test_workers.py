"""Model worker processes: a worker killed mid-batch loses no request, and the server stays ready."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import numpy as np
import pytest
from _serving import local_error, register
from sklearn.datasets import load_iris

from trustforge.serve import ModelService, RequestError, ServeConfig, ServeMetrics, create_app
from trustforge.serve._batching import Job
from trustforge.serve._service import Runtime, WorkerCrashed
from trustforge.serve._workers import WorkerDied


@pytest.mark.slow
def test_killing_a_worker_mid_batch_loses_no_request(packages, registry, tmp_path, live):
    uri = register(registry, packages["iris"], tmp_path)
    model = registry.load_model(uri)
    frame = load_iris(as_frame=True).frame.drop(columns="target")
    expected = model.predict(frame)["prediction"].tolist()
    # Each batch is held 0.3 s in its worker, so the kill lands while a batch is in flight.
    svc = ModelService(
        "models:/iris-serve@champion", ServeConfig(workers=2, auth="none", max_batch_size=4), registry=registry, debug_delay_s=0.3
    ).start()
    try:
        with live(create_app(svc)) as server:
            results: dict[int, tuple[int, str]] = {}

            def call(i: int) -> None:
                row = frame.iloc[[i]].to_dict(orient="records")
                r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": row}, timeout=120)
                results[i] = (r.status_code, r.json()["predictions"][0]["prediction"] if r.status_code == 200 else r.text)

            threads = [threading.Thread(target=call, args=(i,)) for i in range(0, 150, 5)]
            for t in threads:
                t.start()
            victim = _busy_worker(svc)
            old_pid = victim.pid
            os.kill(old_pid, signal.SIGKILL)
            time.sleep(0.2)
            assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200  # the other worker serves on
            for t in threads:
                t.join(180)

            assert sorted(results) == list(range(0, 150, 5))
            assert {status for status, _ in results.values()} == {200}
            assert [results[i][1] for i in sorted(results)] == expected[0:150:5]  # every answer is the right one
            metrics = httpx.get(f"{server.url}/metrics").text
            assert 'trustforge_worker_restarts_total{model="iris-serve"} 1.0' in metrics
            assert 'trustforge_batches_retried_total{model="iris-serve"} 1.0' in metrics

            deadline = time.monotonic() + 120  # the dead worker comes back
            while not (victim.ready and victim.pid != old_pid):
                assert time.monotonic() < deadline, "the killed worker was not restarted"
                time.sleep(0.2)
            r = httpx.post(f"{server.url}/invocations", json={"dataframe_records": frame.head(2).to_dict(orient="records")})
            assert [p["prediction"] for p in r.json()["predictions"]] == expected[:2]
    finally:
        svc.close()
    assert not victim.ready


def _busy_worker(svc: ModelService):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for ex in svc.current.executors:
            if ex.busy and ex.ready:
                return ex
        time.sleep(0.01)
    raise AssertionError("no worker picked up a batch")


class _FlakyExecutor:
    """Dies (as a killed worker would) on any batch holding the poison value; counts restarts."""

    def __init__(self, name: str, poison: float):
        self.name, self.poison, self.ready, self.starts = name, poison, True, 0

    def start(self) -> None:
        self.ready, self.starts = True, self.starts + 1

    def stop(self) -> None:
        self.ready = False

    def run(self, payload):
        x = payload["x"]
        if np.any(x == self.poison):
            self.ready = False
            raise WorkerDied(f"{self.name} died")
        return {"prediction": x * 2}


def test_a_request_that_kills_workers_is_isolated_and_only_it_fails(packages, registry, tmp_path):
    """Retries run the batch elsewhere; a batch that kills twice is split; a request that kills
    its worker alone twice gets an error; its batch-mates get their answers."""
    uri = register(registry, packages["iris"], tmp_path)
    model = registry.load_model(uri)
    config = ServeConfig(workers=0, max_batch_size=64, max_latency_ms=200)
    rt = Runtime(model=model, name="t", version="1", digest="d", uri=uri, config=config, load={}, metrics=ServeMetrics())
    rt.executors = [_FlakyExecutor("a", 666.0), _FlakyExecutor("b", 666.0)]
    jobs = [Job.of({"x": np.array([float(i)])}) for i in (1, 2, 666, 4, 5)]
    for job in jobs:  # queued before any driver runs: they go out as one batch
        rt.batcher.submit(job)
    rt.start()
    try:
        for job in jobs:
            if job.payload["x"][0] == 666:
                with pytest.raises(WorkerCrashed):
                    job.future.result(30)
            else:
                assert job.future.result(30)["prediction"].tolist() == [job.payload["x"][0] * 2]
        assert sum(ex.starts for ex in rt.executors) >= 3  # every death was followed by a restart
    finally:
        rt.close()


def test_a_batch_with_one_bad_request_answers_the_others(packages, registry, tmp_path):
    """The preprocessor refuses one value: only that request gets the 400."""
    uri = register(registry, packages["mixed"], tmp_path)
    model = registry.load_model(uri)
    config = ServeConfig(workers=0, max_batch_size=64, max_latency_ms=200)
    rt = Runtime(model=model, name="m", version="1", digest="d", uri=uri, config=config, load={}, metrics=ServeMetrics())
    rows = [
        {"age": np.array([40.0 + i]), "color": np.array(["red"], dtype=object), "smoker": np.array(["yes"], dtype=object)} for i in range(4)
    ]
    rows[2]["smoker"] = np.array(["maybe"], dtype=object)
    jobs = [Job.of(r) for r in rows]
    for job in jobs:
        rt.batcher.submit(job)
    rt.start()
    try:
        for i, job in enumerate(jobs):
            if i == 2:
                with pytest.raises(RequestError, match="smoker"):
                    job.future.result(30)
            else:
                assert job.future.result(30)["prediction"].shape == (1,)
    finally:
        rt.close()


def _payloads(key: str) -> dict:
    """A batch as the server hands it to an executor: the signature's columns as arrays, or the tensor."""
    from _serving import mixed_frame
    from sklearn.datasets import load_digits

    if key == "iris":
        frame = load_iris(as_frame=True).frame.drop(columns="target").head(9)
        return {c: frame[c].to_numpy() for c in frame.columns}
    if key == "mixed":
        frame = mixed_frame(9, seed=3).drop(columns="label")
        return {c: frame[c].to_numpy() if frame[c].dtype.kind == "f" else frame[c].to_numpy(dtype=object) for c in frame.columns}
    return (load_digits().images[:9] / 16.0).astype(np.float32)[:, None]


def _as_before(model, payload, signature) -> dict:
    """What the executors returned before the array core: predict on a DataFrame, back to columns."""
    from trustforge.serve._signature import frame_to_columns, to_model_input

    return frame_to_columns(model.predict(to_model_input(payload, signature)))


def _assert_same_columns(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for name in want:
        assert got[name].tolist() == want[name].tolist(), name


@pytest.mark.parametrize("key", ["iris", "mixed", "digits"])
def test_the_inline_executor_predicts_from_the_payload_columns_with_no_dataframe(packages, registry, tmp_path, monkeypatch, key):
    import pandas as pd

    from trustforge.serve._ood import detector_for, split_ood
    from trustforge.serve._signature import Signature
    from trustforge.serve._workers import InlineExecutor

    model = registry.load_model(register(registry, packages[key], tmp_path))
    signature = Signature.from_manifest(model.manifest)
    payload = _payloads(key)
    want = _as_before(model, payload, signature)
    executor = InlineExecutor(model, signature, detector_for(model, "flag"))  # with the out-of-distribution guard, as served

    def no_frames(*args, **kwargs):
        raise AssertionError("a DataFrame was built on the serving path")

    monkeypatch.setattr(pd.DataFrame, "__init__", no_frames)
    got, verdict = split_ood(executor.run(payload))
    monkeypatch.undo()
    _assert_same_columns(got, want)
    assert verdict is not None


def test_a_worker_process_predicts_from_the_payload_columns_as_before(packages, registry, tmp_path):
    from trustforge.serve._ood import split_ood
    from trustforge.serve._signature import Signature

    uri = register(registry, packages["mixed"], tmp_path)
    model = registry.load_model(uri)
    payload = _payloads("mixed")
    want = _as_before(model, payload, Signature.from_manifest(model.manifest))
    svc = ModelService(uri, ServeConfig(workers=1, auth="none"), registry=registry).start()
    try:
        columns, verdict = split_ood(svc.current.executors[0].run(payload))  # the guard's verdict rides along (serve._ood)
        _assert_same_columns(columns, want)
        assert verdict is not None and len(verdict.flagged) == len(want["prediction"])
        bad = {**payload, "smoker": np.array(["yes", "maybe"] + ["no"] * 7, dtype=object)}
        with pytest.raises(RequestError, match="smoker"):  # the model's refusal, as a 400
            svc.current.executors[0].run(bad)
    finally:
        svc.close()


def test_a_worker_that_fails_to_start_is_logged_without_a_local_path_or_a_cut_personal_value(packages, registry, tmp_path, caplog):
    class _Refuses(_FlakyExecutor):
        def start(self) -> None:
            raise local_error(tmp_path)

    uri = register(registry, packages["iris"], tmp_path)
    model = registry.load_model(uri)
    config = ServeConfig(workers=0, max_batch_size=64, max_latency_ms=200)
    rt = Runtime(model=model, name="t", version="1", digest="d", uri=uri, config=config, load={}, metrics=ServeMetrics())
    rt.executors = [_Refuses("a", 666.0), _FlakyExecutor("b", 666.0)]
    rt.start()
    rt.close()
    (error,) = [r.fields["error"] for r in caplog.records if getattr(r, "event", None) == "worker_start_failed"]
    assert error.startswith("IntegrityError: weights.safetensors.enc: failed authentication"), error
    assert str(tmp_path) not in error and "mary" not in error and len(error) <= 300, error
