"""The batcher's policy: full batches, a bounded wait, no wait for a lone client, a bounded queue."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from trustforge.serve._batching import Batcher, BatcherClosed, Job, QueueFull


def job(rows: int = 1, width: int = 3) -> Job:
    return Job.of({"x": np.zeros(rows)} if width == 3 else np.zeros((rows, width)))


def test_queued_requests_leave_in_full_batches_in_order():
    b = Batcher(max_batch_size=4, max_latency_ms=50, max_queue=100)
    jobs = [job() for _ in range(10)]
    for j in jobs:
        b.submit(j)
    batches = [b.take(0.1) for _ in range(2)]
    assert [len(x) for x in batches] == [4, 4]
    assert [j for x in batches for j in x] == jobs[:8]
    big = job(rows=9)
    b.submit(big)
    assert len(b.take(0.1)) == 2  # the rest, released once the window closes
    assert b.take(0.1) == [big]  # larger than a batch: alone, never split


def test_a_lone_client_is_not_held_back_but_a_busy_stream_is_collected():
    b = Batcher(max_batch_size=8, max_latency_ms=200, max_queue=100)
    b.record_batch(0.002)
    for _ in range(3):  # arrivals far apart: the batcher learns that waiting does not pay
        b.submit(job())
        start = time.monotonic()
        assert len(b.take(1)) == 1
        assert time.monotonic() - start < 0.1  # not held for the 200 ms it may wait
        time.sleep(0.05)

    b = Batcher(max_batch_size=8, max_latency_ms=200, max_queue=100)
    b.record_batch(0.02)  # a batch takes 20 ms

    def stream():
        for _ in range(8):
            b.submit(job())
            time.sleep(0.002)  # arrivals every 2 ms: more will come while one batch runs

    for _ in range(3):
        b.submit(job())
        time.sleep(0.002)
    producer = threading.Thread(target=stream)
    producer.start()
    batch = b.take(1)
    producer.join()
    assert len(batch) == 8  # waited for later arrivals instead of running the first ones alone


def test_the_wait_is_bounded_by_max_latency():
    b = Batcher(max_batch_size=1000, max_latency_ms=30, max_queue=100)
    b.record_batch(0.001)
    b._gap_s = 0.0001  # requests seem to pour in, but none more arrives
    b.submit(job())
    start = time.monotonic()
    assert len(b.take(1)) == 1
    assert time.monotonic() - start < 0.2


def test_a_full_queue_refuses_with_a_retry_hint_and_a_closed_one_drains():
    b = Batcher(max_batch_size=2, max_latency_ms=0, max_queue=3)
    for _ in range(3):
        b.submit(job())
    with pytest.raises(QueueFull) as exc:
        b.submit(job())
    assert 1 <= exc.value.retry_after_s <= 30
    b.close()
    with pytest.raises(BatcherClosed):
        b.submit(job())
    assert len(b.take(0.1)) == 2 and len(b.take(0.1)) == 1
    assert b.take(0.1) is None


def test_retried_and_solo_jobs_and_shapes_are_kept_apart():
    b = Batcher(max_batch_size=10, max_latency_ms=0, max_queue=100)
    first, second = job(), job()
    b.submit(second)
    b.requeue([first])  # a retry goes ahead of what is waiting
    assert b.take(0.1) == [first, second]
    lone = job()
    lone.solo = True
    b.submit(job())
    b.submit(lone)
    b.submit(job())
    assert [len(b.take(0.1)) for _ in range(3)] == [1, 1, 1]
    b.submit(job(2, width=8))
    b.submit(job(2, width=9))  # tensors of another shape cannot share a batch
    assert len(b.take(0.1)) == 1 and len(b.take(0.1)) == 1


def test_failing_all_fails_every_waiting_future():
    b = Batcher(max_batch_size=2, max_latency_ms=0, max_queue=10)
    jobs = [job() for _ in range(3)]
    for j in jobs:
        b.submit(j)
    b.fail_all(BatcherClosed("stopping"))
    for j in jobs:
        with pytest.raises(BatcherClosed):
            j.future.result(0)
