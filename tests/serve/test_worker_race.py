"""A worker that died before a request reached it is not that request's death.

The race the red-team test once hit under load: a worker is killed, and before the server has
noticed, a batch is sent to it (the send fails, or the batch sits unread in its socket until
the kernel closes it). That used to count as an attempt, so two such workers failed a request
with "died twice" although a healthy replacement was starting. Now the batch goes back to the
queue uncounted; a request that really kills workers still fails, after a bounded number of deaths.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from _serving import register
from sklearn.datasets import load_iris

from trustforge.serve import ModelService, ServeConfig, ServeMetrics
from trustforge.serve._batching import Job
from trustforge.serve._service import Runtime, WorkerCrashed
from trustforge.serve._workers import WorkerDied

# ---------------------------------------------------------------------------- the service's accounting (no processes)


class _Executor:
    """A stand-in worker: `deaths` lists what its next batches meet (an exception class to raise,
    or None to answer); it answers x * 2 once the list is used up."""

    def __init__(self, name: str, deaths: list):
        self.name, self.deaths, self.ready, self.starts, self.batches = name, list(deaths), True, 0, 0

    def start(self) -> None:
        self.ready, self.starts = True, self.starts + 1

    def stop(self) -> None:
        self.ready = False

    def run(self, payload):
        self.batches += 1
        death = self.deaths.pop(0) if self.deaths else None
        if death is not None:
            self.ready = False
            raise death(f"{self.name} died")
        return {"prediction": payload["x"] * 2}


def _runtime(model, uri, executors) -> Runtime:
    config = ServeConfig(workers=0, max_batch_size=64, max_latency_ms=50)
    rt = Runtime(model=model, name="t", version="1", digest="d", uri=uri, config=config, load={}, metrics=ServeMetrics())
    rt.executors = executors
    return rt


@pytest.fixture
def iris_model(packages, registry, tmp_path):
    uri = register(registry, packages["iris"], tmp_path)
    return registry.load_model(uri), uri


def test_workers_dead_before_the_batch_reached_them_cost_it_no_attempt(iris_model):
    from trustforge.serve._workers import WorkerDiedBeforeBatch

    model, uri = iris_model
    # Both workers were dead when the request reached them, twice each; then they answer.
    a = _Executor("a", [WorkerDiedBeforeBatch, WorkerDiedBeforeBatch])
    b = _Executor("b", [WorkerDiedBeforeBatch])
    rt = _runtime(model, uri, [a, b])
    job = Job.of({"x": np.array([3.0])})
    rt.batcher.submit(job)
    rt.start()
    try:
        assert job.future.result(30)["prediction"].tolist() == [6.0]
        met = 3 - len(a.deaths) - len(b.deaths)  # dead workers it met (which worker took it when varies)
        assert job.attempts == 0 and job.unreached == met >= 2
    finally:
        rt.close()


def test_a_request_that_kills_two_workers_still_fails(iris_model):
    from trustforge.serve._workers import WorkerDiedBeforeBatch

    model, uri = iris_model
    # One real death (it read the batch), one worker already dead, one more real death: two deaths of its own.
    a = _Executor("a", [WorkerDied, WorkerDied])
    b = _Executor("b", [WorkerDiedBeforeBatch])
    rt = _runtime(model, uri, [a, b])
    job = Job.of({"x": np.array([3.0])})
    rt.batcher.submit(job)
    rt.start()
    try:
        with pytest.raises(WorkerCrashed, match="died twice"):
            job.future.result(30)
        assert job.attempts == 2
    finally:
        rt.close()


def test_a_request_that_kills_every_worker_before_it_is_read_ends_with_an_error(iris_model):
    """No infinite retry: deaths before the batch was read stop being free after UNREACHED_RETRIES."""
    from trustforge.serve._workers import UNREACHED_RETRIES, WorkerDiedBeforeBatch

    model, uri = iris_model
    a = _Executor("a", [WorkerDiedBeforeBatch] * 50)
    b = _Executor("b", [WorkerDiedBeforeBatch] * 50)
    rt = _runtime(model, uri, [a, b])
    job = Job.of({"x": np.array([3.0])})
    rt.batcher.submit(job)
    rt.start()
    try:
        with pytest.raises(WorkerCrashed):
            job.future.result(30)
        assert a.batches + b.batches == UNREACHED_RETRIES + 2
    finally:
        rt.close()


# ---------------------------------------------------------------------------- real worker processes


def _wait(predicate, what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.01)


def _fallback_batches(svc) -> float:
    return svc.current.metrics.fallback_batches.labels(model=svc.current.name)._value.get()


def _all_restarted(executors, old_pids) -> bool:
    return all(ex.ready and ex.pid not in old_pids for ex in executors)


@pytest.mark.slow
def test_a_request_sent_to_killed_workers_runs_on_a_live_one(packages, registry, tmp_path):
    uri = register(registry, packages["iris"], tmp_path)
    model = registry.load_model(uri)
    frame = load_iris(as_frame=True).frame.drop(columns="target").head(3)
    payload = {c: frame[c].to_numpy() for c in frame.columns}
    expected = model.predict(frame)["prediction"].tolist()
    svc = ModelService(uri, ServeConfig(workers=2, auth="none", max_latency_ms=0), registry=registry).start()
    rt = svc.current
    stopped: list[int] = []
    try:
        # 1. Both workers killed and dead, but not yet noticed (`ready` still says yes, as in the
        #    instant before the kernel has ended a killed process): the batch cannot be sent.
        pids = [ex.pid for ex in rt.executors]
        for ex in rt.executors:
            ex.process.poll = lambda: None  # first, so no driver notices; this Popen object only (a restart replaces it)
            os.kill(ex.pid, signal.SIGKILL)
            os.waitid(os.P_PID, ex.pid, os.WEXITED | os.WNOWAIT)  # dead; left for the server to reap
        job = Job.of(payload)
        rt.batcher.submit(job)
        assert job.future.result(180)["prediction"].tolist() == expected
        assert job.attempts == 0 and job.unreached == 2

        # 2. Both workers alive but killed with the batch unread in their socket (stopped, so they
        #    cannot read it; killed while it waits there). On a loaded machine the batch has once
        #    been answered without any stopped worker seen holding it (CI on two xdist workers):
        #    the round is then tried again, up to three times, and must happen once.
        _wait(lambda: _all_restarted(rt.executors, pids), "both workers restarted")
        rounds = []
        for _ in range(3):
            _wait(lambda: all(ex.ready for ex in rt.executors), "both workers up")
            pids = [ex.pid for ex in rt.executors]
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            fallback_before = _fallback_batches(svc)
            job = Job.of(payload)
            rt.batcher.submit(job)
            killed = 0
            while stopped and not job.future.done():
                # the batch goes to the other stopped worker, or to the first one's replacement if that
                # is up first (then it simply runs): either way it never counts as an attempt
                _wait(
                    lambda: job.future.done() or any(ex.busy and ex.pid in stopped for ex in rt.executors),
                    "a stopped worker holds the batch",
                )
                victim = next((ex for ex in rt.executors if ex.busy and ex.pid in stopped), None)
                if victim is None:
                    break
                stopped.remove(victim.pid)
                os.kill(victim.pid, signal.SIGKILL)
                killed += 1
            assert job.future.result(180)["prediction"].tolist() == expected
            assert job.attempts == 0 and job.unreached == killed
            rounds.append({"killed": killed, "in_process": _fallback_batches(svc) - fallback_before})
            for pid in stopped:  # a worker still stopped held nothing: let it run again
                os.kill(pid, signal.SIGCONT)
            stopped.clear()
            if killed >= 1:
                break
        assert rounds[-1]["killed"] >= 1, rounds
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        svc.close()
