"""Dynamic batching: a bounded queue of requests, taken in batches by the model's executors.

Names follow BentoML: `max_batch_size` (rows per batch) and `max_latency_ms`. A batch is
released to the model when the first of these holds:

1. it is full (`max_batch_size` rows; a request larger than that runs alone, never split);
2. waiting longer would keep its oldest request past `max_latency_ms`, counting the time a
   batch is expected to take (a moving average of recent batch times);
3. waiting is not worth it: requests arrive more slowly than a batch is processed (a moving
   average of the gaps between arrivals), so one client alone is never held back.

Rule 3 is what makes the batcher adaptive: one client at a time gets no added latency, while
under load requests that arrive during a batch are collected into the next one. The queue
holds at most `max_queue` requests; beyond that `submit` raises `QueueFull` (HTTP 503 with
`Retry-After`), so overload is shed at the door instead of growing memory and latency.

Requests only batch with requests whose payloads concatenate (`payload_key`: tensors need
equal trailing shapes) and never with a request marked `solo` (a retry that isolates a
request that crashed its worker).
"""

from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from trustforge.serve._signature import Payload, payload_key, payload_rows

__all__ = ["Job", "Batcher", "QueueFull", "BatcherClosed"]

_EWMA = 0.2  # weight of the newest observation in the moving averages


class QueueFull(Exception):
    """The request queue is at `max_queue`; retry after `retry_after_s`."""

    def __init__(self, depth: int, retry_after_s: int):
        super().__init__(f"the server is at capacity ({depth} requests queued); retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class BatcherClosed(Exception):
    """The model version this request was queued for is no longer served."""


@dataclass
class Job:
    """One request's payload on its way to the model; `future` receives its predictions."""

    payload: Payload
    rows: int
    key: tuple
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)
    attempts: int = 0  # workers that died running it
    unreached: int = 0  # workers it was sent to that had died before reading it (`_workers.WorkerDiedBeforeBatch`)
    solo: bool = False

    @classmethod
    def of(cls, payload: Payload) -> "Job":
        return cls(payload, payload_rows(payload), payload_key(payload))


class Batcher:
    """The request queue and its batching policy, shared by every executor of one model version.

    Thread-safe: the server's event loop submits, executor threads `take`.
    """

    def __init__(self, max_batch_size: int, max_latency_ms: float, max_queue: int):
        if max_batch_size < 1 or max_latency_ms < 0 or max_queue < 1:
            raise ValueError("max_batch_size and max_queue must be >= 1, max_latency_ms >= 0")
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_ms / 1000.0
        self.max_queue = max_queue
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._failed: BaseException | None = None  # set by fail_all: nothing will run any more
        self._last_arrival: float | None = None
        self._gap_s: float | None = None  # moving average of the time between arrivals (None: one arrival yet)
        self._batch_s = 0.0  # moving average of the time one batch takes

    # ------------------------------------------------------------------ producer side

    def submit(self, job: Job) -> Future:
        """Queue a job; its future resolves to the predictions for its rows.

        Raises:
            QueueFull: `max_queue` requests are waiting already.
            BatcherClosed: this batcher no longer accepts work.
        """
        with self._cond:
            if self._closed:
                raise BatcherClosed("this model version is no longer served")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(len(self._queue), self.retry_after_s())
            now = time.monotonic()
            if self._last_arrival is not None:
                gap = min(now - self._last_arrival, 1.0)
                self._gap_s = gap if self._gap_s is None else self._gap_s + _EWMA * (gap - self._gap_s)
            self._last_arrival = now
            job.enqueued = now
            self._queue.append(job)
            self._cond.notify()
        return job.future

    def retry_after_s(self) -> int:
        """Seconds a refused client should wait: about the time to drain a full queue (1-30 s)."""
        per_request = self._batch_s / max(1, self.max_batch_size)
        return int(min(30, max(1, round(per_request * self.max_queue + 0.5))))

    @property
    def depth(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------------ consumer side

    def take(self, timeout: float) -> list[Job] | None:
        """The next batch, or None if none started within `timeout` seconds or the batcher closed
        with nothing left to run."""
        with self._cond:
            if not self._queue:
                self._cond.wait_for(lambda: self._queue or self._closed, timeout)
                if not self._queue:
                    return None
            first = self._queue.popleft()
            batch = [first]
            if first.solo or first.rows >= self.max_batch_size:
                return batch
            rows = first.rows
            while True:
                rows = self._gather(batch, rows)
                if rows >= self.max_batch_size or self._closed:
                    return batch
                now = time.monotonic()
                deadline = first.enqueued + self.max_latency_s - self._batch_s
                gap = self._gap_s
                if now >= deadline or gap is None or gap >= max(self._batch_s, 1e-4):
                    return batch
                # More requests are likely before the window closes: wait for the next one, as
                # long as it would take to run it in a batch of its own, at most.
                patience = min(deadline - now, max(2 * gap, 0.5 * self._batch_s))
                if not self._cond.wait_for(lambda: bool(self._queue) or self._closed, patience):
                    return batch

    def take_fresh(self, timeout: float) -> list[Job] | None:
        """Queued jobs never sent to a worker that died (`attempts == 0`, `unreached == 0`), oldest
        first, as one batch of up to `max_batch_size` rows sharing the first one's key; None if
        there are none within `timeout`. The others stay queued, in order: even a worker that died
        before reading its batch may have started to (a huge one), so none runs in the server."""
        with self._cond:
            fresh = lambda: any(not (j.attempts or j.unreached) for j in self._queue)  # noqa: E731
            if not fresh():
                self._cond.wait_for(lambda: fresh() or self._closed, timeout)
            batch: list[Job] = []
            rows = 0
            for job in list(self._queue):
                if job.attempts or job.unreached:
                    continue
                if batch and (job.solo or batch[0].solo or job.key != batch[0].key or rows + job.rows > self.max_batch_size):
                    break
                batch.append(job)
                rows += job.rows
                self._queue.remove(job)
            return batch or None

    def _gather(self, batch: list[Job], rows: int) -> int:
        """Move queued jobs that fit after `batch`'s first job into it; returns the new row count."""
        key = batch[0].key
        while self._queue:
            nxt = self._queue[0]
            if nxt.solo or nxt.key != key or rows + nxt.rows > self.max_batch_size:
                break
            batch.append(self._queue.popleft())
            rows += nxt.rows
        return rows

    def record_batch(self, seconds: float) -> None:
        """Tell the batcher how long a batch took (for rules 2 and 3)."""
        with self._cond:
            self._batch_s += _EWMA * (seconds - self._batch_s)

    def requeue(self, jobs: list[Job]) -> None:
        """Put jobs back at the front (a worker died running them), oldest first; after
        `fail_all` they fail at once instead, since no executor will take them."""
        with self._cond:
            failed = self._failed
            if failed is None:
                for job in reversed(jobs):
                    self._queue.appendleft(job)
                self._cond.notify_all()
                return
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(failed)

    def close(self) -> None:
        """Accept no new jobs; queued ones are still taken until the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def fail_all(self, exc: BaseException) -> None:
        """Fail every queued job with `exc` (the server is stopping)."""
        with self._cond:
            jobs = list(self._queue)
            self._queue.clear()
            self._closed = True
            self._failed = exc
            self._cond.notify_all()
        for job in jobs:
            if not job.future.done():
                job.future.set_exception(exc)
