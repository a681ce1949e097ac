"""Refused requests: counted per source, audited once per source per window, limited per address.

A server on a network is called by strangers. Writing one signed audit entry for every
request without a valid token lets anyone grow the audit log (and load the database) as fast
as they can send requests. So refusals (no token, a malformed, unknown, expired or revoked
token, a role that lacks the action) are *counted* in memory, per source (the client's
address) and refusal kind, and each source gets one audit entry per window (`window_s`, 60 s
by default) that carries the count, the reasons and the routes. Entries are written when the
window ends (by a background thread) and when the server stops.

Each source also has a token bucket of refusals (`burst` at once, refilled at `rate_per_s`).
A source that has spent it is answered 429 with `Retry-After` in front of the app, before any
route, database read or audit write, for every request that does not carry a token this
server has accepted before (so a valid caller behind the same address is never locked out;
its token is still checked against the database as usual). 429s are counted in the source's
entry too, and each is held `hold_s` (0.2 s) before it is sent: a client that floods over
keep-alive connections, waiting for each answer, is slowed to a few requests per second per
connection instead of keeping the event loop busy (at most `max_held` answers are held at
once; beyond that they go out at once).

Memory is bounded: at most `max_sources` sources are tracked per window; refusals from
further sources are counted under the source `"(other)"`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from trustforge._shown import recorded
from trustforge.serve._logging import log_event

__all__ = ["SourceLimiter", "WindowedAudit", "OTHER_SOURCE", "DENIALS_ACTION"]

OTHER_SOURCE = "(other)"
DENIALS_ACTION = "serve_denials"  # the audit action of the per-source summaries
_MAX_KEYS = 20  # distinct reasons / routes kept per entry


@dataclass
class _Window:
    """What one source did in the current window."""

    started: float  # wall clock (epoch seconds) of its first refusal
    refused: int = 0
    limited: int = 0
    actors: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)  # ids of genuine tokens refused (revoked, expired)
    reasons: dict[str, int] = field(default_factory=dict)
    routes: dict[str, int] = field(default_factory=dict)


@dataclass
class _Bucket:
    tokens: float
    updated: float  # monotonic


def _bump(counts: dict[str, int], key: str) -> None:
    if key in counts or len(counts) < _MAX_KEYS:
        counts[key] = counts.get(key, 0) + 1
    else:
        counts["(other)"] = counts.get("(other)", 0) + 1


class WindowedAudit:
    """What the per-window summarisers share (`SourceLimiter` here, `_quota.QuotaLimiter`): a
    daemon thread that flushes ended windows, a final flush on `close`, and writing a window's
    entries to the audit log without ever raising (a failure is counted and logged)."""

    thread_name = "trustforge-windows"
    audit_failed_event = "window_audit_failed"
    window_s: float
    audit: Any

    def _init_windowed(self) -> None:
        self._written = 0
        self._failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def flush(self, *, force: bool = True) -> int:
        raise NotImplementedError

    def _write(self, records: list[dict[str, Any]]) -> int:
        """Append `records` to the audit log; the number written (0 when it failed or there is none)."""
        if not records or self.audit is None:
            return 0
        try:
            self.audit.append_many(records)
        except Exception as exc:  # noqa: BLE001 - what the records count is still counted and logged
            self._failed += len(records)
            log_event(logging.ERROR, self.audit_failed_event, entries=len(records), error=recorded(exc, limit=200))
            return 0
        self._written += len(records)
        return len(records)

    @property
    def stats(self) -> dict[str, int]:
        """Entries written and entries that could not be written, so far."""
        return {"written": self._written, "failed": self._failed}

    def start(self):
        """Flush ended windows from a daemon thread until `close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(min(5.0, self.window_s / 4)):
            self.flush(force=False)

    def close(self) -> None:
        """Stop the thread and write what the current window holds."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.flush(force=True)


class SourceLimiter(WindowedAudit):
    """Counts refused requests per source, audits them per window, and limits each address.

    Thread-safe. Args:
        audit: the audit log that gets one `serve_denials` entry per source per window (None:
            counted and logged only).
        obj: what the entries name (the served model's URI).
        window_s: how long one entry summarises.
        burst: refusals a source may get at once before it is answered 429.
        rate_per_s: refusals per second a source earns back.
        max_sources: sources tracked per window; others share one entry.
        hold_s: how long a 429 is held before it is sent.
        max_held: most 429s held at once.
        clock: monotonic seconds (tests pass a fake clock).
    """

    thread_name = "trustforge-denials"
    audit_failed_event = "denials_audit_failed"

    def __init__(
        self,
        audit: Any,
        obj: str,
        *,
        window_s: float = 60.0,
        burst: int = 30,
        rate_per_s: float = 1.0,
        max_sources: int = 10_000,
        hold_s: float = 0.2,
        max_held: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ):
        if window_s <= 0 or burst < 1 or rate_per_s <= 0 or max_sources < 1 or hold_s < 0 or max_held < 0:
            raise ValueError("window_s and rate_per_s must be > 0, burst and max_sources >= 1, hold_s and max_held >= 0")
        self.hold_s = hold_s
        self.max_held = max_held
        self.held = 0  # 429s being held now (the event loop's count: only touched there)
        self.audit = audit
        self.obj = obj
        self.window_s = window_s
        self.burst = burst
        self.rate_per_s = rate_per_s
        self.max_sources = max_sources
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._window_start = clock()
        self._buckets: dict[str, _Bucket] = {}
        self._init_windowed()

    # ------------------------------------------------------------------ the request path

    def retry_after(self, source: str) -> int | None:
        """Seconds `source` must wait if it has spent its refusals (counted as limited), else None."""
        with self._lock:
            bucket = self._refill(source)
            if bucket is None or bucket.tokens >= 1.0:
                return None
            self._entry(source).limited += 1
            return max(1, math.ceil((1.0 - bucket.tokens) / self.rate_per_s))

    def refused(self, source: str, actor: str, reason: str, route: str, token: str | None = None) -> None:
        """Count one refusal of `source` (no database access: microseconds); `token`: the id
        of the genuine token refused (never its secret), if any."""
        with self._lock:
            entry = self._entry(source)
            entry.refused += 1
            _bump(entry.actors, actor)
            if token is not None:
                _bump(entry.tokens, token)
            _bump(entry.reasons, reason)
            _bump(entry.routes, route)
            bucket = self._refill(source)
            if bucket is None:
                if len(self._buckets) >= self.max_sources:
                    self._prune()
                bucket = self._buckets[source] = _Bucket(float(self.burst), self._clock())
            bucket.tokens = max(0.0, bucket.tokens - 1.0)

    def _refill(self, source: str) -> _Bucket | None:
        bucket = self._buckets.get(source)
        if bucket is not None:
            now = self._clock()
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate_per_s)
            bucket.updated = now
        return bucket

    def _prune(self) -> None:
        """Forget sources whose buckets are full again (they are not limited)."""
        now = self._clock()
        full = [s for s, b in self._buckets.items() if b.tokens + (now - b.updated) * self.rate_per_s >= self.burst]
        for s in full:
            del self._buckets[s]
        if len(self._buckets) >= self.max_sources:  # a spray of addresses: they share one bucket
            self._buckets.clear()

    def _entry(self, source: str) -> _Window:
        entry = self._windows.get(source)
        if entry is None:
            if len(self._windows) >= self.max_sources:
                source = OTHER_SOURCE
                entry = self._windows.get(source)
            if entry is None:
                entry = self._windows[source] = _Window(started=time.time())
        return entry

    # ------------------------------------------------------------------ audit entries

    def flush(self, *, force: bool = True) -> int:
        """Write one audit entry per source of the current window (only once it has ended,
        unless `force`); returns the number written. Never raises."""
        with self._lock:
            if not force and self._clock() - self._window_start < self.window_s:
                return 0
            windows, self._windows = self._windows, {}
            self._window_start = self._clock()
        ended = time.time()
        records = [self._record(source, w, ended) for source, w in windows.items()]
        if not records:
            return 0
        for record in records:
            log_event(logging.WARNING, "requests_refused", **record["details"])
        return self._write(records)

    def _record(self, source: str, w: _Window, ended: float) -> dict[str, Any]:
        actors = sorted(w.actors, key=w.actors.get, reverse=True)
        return {
            "actor": actors[0] if len(actors) == 1 else "anonymous",
            "action": DENIALS_ACTION,
            "object": self.obj,
            "outcome": "denied",
            "details": {
                "source": source,
                "refused": w.refused,
                "limited": w.limited,
                "reasons": dict(w.reasons),
                "routes": dict(w.routes),
                "actors": dict(w.actors),
                "tokens": dict(w.tokens),
                "from": _iso(w.started),
                "to": _iso(ended),
                "window_s": self.window_s,
            },
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
