"""Per-caller rate limits and daily quotas, and an alert when one caller's inputs look like probing.

A caller with a valid token could otherwise query the model as fast as the server answers:
enough to map its decision boundary, estimate gradients by finite differences or run a
black-box attack. `QuotaLimiter` gives every principal (the token's user; without
authentication, the client's address) two limits on the prediction routes (`/v2/.../infer`,
`/invocations`; metadata, readiness and `/metrics` are not counted):

- a token bucket of `burst` requests, refilled at `rate_per_s` (`--rate-limit N/s --burst B`);
- a quota of `daily` requests per UTC day (`--daily-quota Q`; the day rolls over at 00:00 UTC,
  not 24 h after the first request: one counter per caller, and a reset everyone can predict).

A request over either limit is answered 429 with `Retry-After` (seconds until the bucket holds
a request again, or until the next UTC midnight) and does not count against the quota. Limits
are kept in memory by each server process: every replica behind a load balancer enforces its
own (N replicas allow N times the limit), and a restart forgets the day's counts. Memory is
bounded (`max_principals` callers; beyond that, buckets that are full again are forgotten, and
as a last resort every bucket).

429s are counted in `trustforge_rate_limited_total{reason="rate"|"quota"}` (no caller in the
labels) and audited in aggregate like refusals (`_limits`): one `serve_rate_limited` entry per
caller per window (`window_s`, 60 s) with the counts, written by a background thread.

`ProbeDetector` watches each caller's recent inputs for a burst of near-duplicates (many rows
within a small distance of rows the same caller sent just before: finite-difference gradient
estimation, boundary search, repeated perturbation of one input) or of out-of-distribution rows
(counted by the request path: `observe(..., ood_count=...)`). On a burst it raises one alert per
caller per window: a `serve_probe_alert` audit entry (counts only, never input values), the
metric `trustforge_probe_alerts_total{kind="near_duplicate"|"ood"}` and one log line; at most
`max_alerts` alerts per window in all, so an alert cannot flood the log either.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np
from prometheus_client import Counter

from trustforge.errors import SpecError
from trustforge.serve._limits import WindowedAudit
from trustforge.serve._logging import log_event
from trustforge.serve._signature import ColumnBlock, join_blocks, payload_rows

__all__ = [
    "QuotaLimiter",
    "ProbeDetector",
    "RateLimited",
    "parse_rate",
    "rate_text",
    "feature_rows",
    "rate_limited_counter",
    "probe_alerts_counter",
    "RATE_LIMITED_ACTION",
    "PROBE_ALERT_ACTION",
]

RATE_LIMITED_ACTION = "serve_rate_limited"  # the audit action of the per-caller summaries
PROBE_ALERT_ACTION = "serve_probe_alert"
OTHER = "(other)"
_DAY_S = 86_400


def rate_limited_counter(registry: Any) -> Counter:
    """`trustforge_rate_limited_total{reason}` on `registry` (None: not registered anywhere)."""
    return Counter(
        "trustforge_rate_limited",
        "Prediction requests answered 429 by a caller's rate limit (rate) or daily quota (quota)",
        ["reason"],
        registry=registry,
    )


def probe_alerts_counter(registry: Any) -> Counter:
    """`trustforge_probe_alerts_total{kind}` on `registry` (None: not registered anywhere)."""
    return Counter("trustforge_probe_alerts", "Callers whose inputs looked like probing, by kind", ["kind"], registry=registry)


class RateLimited(Exception):
    """A request over its caller's rate limit (`reason` "rate") or daily quota ("quota")."""

    def __init__(self, reason: str, retry_after: int, message: str):
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


def parse_rate(text: str | float | None, flag: str = "--rate-limit") -> float | None:
    """Requests per second from `"N/s"`, `"N/min"`, `"N/h"` or a plain number (None: no limit).

    Raises:
        SpecError: naming `flag`, for anything else or a rate that is not > 0.
    """
    if text is None:
        return None
    per = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
    raw = str(text).strip()
    number, _, unit = raw.partition("/")
    try:
        value = float(number)
        seconds = per[unit.strip().lower() or "s"]
    except (ValueError, KeyError):
        raise SpecError(f"{flag} must look like 20/s, 600/min or 5000/h; got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"{flag} must be a number of requests > 0 per s, min or h; got {raw!r}")
    return value / seconds


def rate_text(rate_per_s: float) -> str:
    """A rate in the largest unit of s, min and h that keeps the count at least 1, as `--rate-limit`
    is written: 2/min reads "2 requests/min", not "0.0333333 requests/s"."""
    unit, count = "h", rate_per_s * 3600.0
    for unit, seconds in (("s", 1.0), ("min", 60.0), ("h", 3600.0)):
        count = rate_per_s * seconds
        if count >= 1 - 1e-9:  # 1/min is 0.016666... * 60: not quite 1
            break
    number = f"{count:.6g}"
    return f"{number} {'request' if number == '1' else 'requests'}/{unit}"


@dataclass
class _Bucket:
    tokens: float
    updated: float  # monotonic


@dataclass
class _Window:
    started: float  # wall clock of the first 429 in this window
    rate: int = 0
    quota: int = 0


@dataclass
class _Day:
    day: int  # days since the epoch (UTC)
    used: int = 0


class QuotaLimiter(WindowedAudit):
    """Per-caller token bucket and UTC-day quota, audited per window. Thread-safe.

    Args:
        rate_per_s: requests per second each caller earns (None: no rate limit).
        burst: requests a caller may send at once (default: one second's worth, at least 1).
        daily: requests per caller per UTC day (None: no quota).
        audit: the audit log of the `serve_rate_limited` summaries (None: counted and logged only).
        obj: what the entries name (the served model's URI).
        counter: `trustforge_rate_limited_total` of the server's metrics (None: a private one).
        detector: the probing detector whose alerts this limiter writes (None: none).
        window_s: how long one summary covers.
        max_principals: callers tracked at once.
        clock: monotonic seconds; wall: epoch seconds (tests pass fake clocks).
    """

    thread_name = "trustforge-quota"
    audit_failed_event = "rate_limit_audit_failed"

    def __init__(
        self,
        rate_per_s: float | None = None,
        burst: int | None = None,
        daily: int | None = None,
        *,
        audit: Any = None,
        obj: str = "models:/",
        counter: Counter | None = None,
        detector: "ProbeDetector | None" = None,
        window_s: float = 60.0,
        max_principals: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ):
        if rate_per_s is not None and not rate_per_s > 0:
            raise SpecError(f"--rate-limit must be > 0 requests per second; got {rate_per_s!r}")
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
            raise SpecError(f"--burst must be a whole number of requests >= 1; got {burst!r}")
        if burst is not None and rate_per_s is None:
            raise SpecError("--burst needs --rate-limit (the rate at which the burst is earned back)")
        if daily is not None and (isinstance(daily, bool) or not isinstance(daily, int) or daily < 1):
            raise SpecError(f"--daily-quota must be a whole number of requests >= 1; got {daily!r}")
        if window_s <= 0 or max_principals < 1:
            raise ValueError("window_s must be > 0 and max_principals >= 1")
        self.rate_per_s = rate_per_s
        self.burst = float(burst if burst is not None else max(1, math.ceil(rate_per_s or 1)))
        self.daily = daily
        self.audit = audit
        self.obj = obj
        self.detector = detector
        self.window_s = window_s
        self.max_principals = max_principals
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._days: dict[str, _Day] = {}
        self._windows: dict[str, _Window] = {}
        self._window_start = clock()
        self._init_windowed()
        self.limited = counter if counter is not None else rate_limited_counter(None)
        self.limited.labels("rate")
        self.limited.labels("quota")

    @property
    def enabled(self) -> bool:
        """Whether any limit applies (otherwise `admit` returns at once)."""
        return self.rate_per_s is not None or self.daily is not None

    # ------------------------------------------------------------------ the request path

    def admit(self, principal: str) -> None:
        """Count one prediction request of `principal`, or refuse it (no database access).

        Raises:
            RateLimited: over the rate limit or the day's quota; `retry_after` in whole seconds.
        """
        if self.rate_per_s is None and self.daily is None:
            return
        with self._lock:
            bucket = None
            if self.rate_per_s is not None:
                bucket = self._bucket(principal)
                if bucket.tokens < 1.0:
                    wait = max(1, math.ceil((1.0 - bucket.tokens) / self.rate_per_s))
                    self._refuse(principal, "rate")
                    raise RateLimited("rate", wait, f"rate limit of {rate_text(self.rate_per_s)} reached; retry in {wait} s")
            if self.daily is not None:
                now = self._wall()
                today = int(now // _DAY_S)
                day = self._days.get(principal)
                if day is None or day.day != today:
                    if day is None and len(self._days) >= self.max_principals:
                        self._days = {p: d for p, d in self._days.items() if d.day == today}
                        if len(self._days) >= self.max_principals:
                            principal = OTHER  # a spray of callers shares one quota rather than growing memory
                    day = self._days.get(principal)
                    if day is None or day.day != today:
                        day = self._days[principal] = _Day(today)
                if day.used >= self.daily:
                    wait = max(1, math.ceil((today + 1) * _DAY_S - now))
                    self._refuse(principal, "quota")
                    raise RateLimited("quota", wait, f"daily quota of {self.daily} requests used up; it renews at 00:00 UTC, in {wait} s")
                day.used += 1
            if bucket is not None:
                bucket.tokens -= 1.0

    def _bucket(self, principal: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(principal)
        if bucket is None:
            if len(self._buckets) >= self.max_principals:
                self._prune(now)
            bucket = self._buckets[principal] = _Bucket(self.burst, now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate_per_s)  # type: ignore[operator]
            bucket.updated = now
        return bucket

    def _prune(self, now: float) -> None:
        """Forget callers whose buckets are full again (forgetting them changes nothing)."""
        rate = self.rate_per_s or 0.0
        full = [p for p, b in self._buckets.items() if b.tokens + (now - b.updated) * rate >= self.burst]
        for p in full:
            del self._buckets[p]
        if len(self._buckets) >= self.max_principals:  # a spray of callers: start them all afresh
            self._buckets.clear()

    def _refuse(self, principal: str, reason: str) -> None:
        self.limited.labels(reason).inc()
        entry = self._windows.get(principal)
        if entry is None:
            if len(self._windows) >= self.max_principals:
                principal = OTHER
                entry = self._windows.get(principal)
            if entry is None:
                entry = self._windows[principal] = _Window(self._wall())
        if reason == "rate":
            entry.rate += 1
        else:
            entry.quota += 1

    def used_today(self, principal: str) -> int:
        """Requests `principal` was admitted today (UTC)."""
        day = self._days.get(principal)
        return day.used if day is not None and day.day == int(self._wall() // _DAY_S) else 0

    # ------------------------------------------------------------------ audit entries

    def flush(self, *, force: bool = True) -> int:
        """Write the window's per-caller summaries (once it has ended, unless `force`) and any
        pending probe alerts; returns the number of entries written. Never raises."""
        records = self.detector.take_alerts() if self.detector is not None else []
        with self._lock:
            if force or self._clock() - self._window_start >= self.window_s:
                windows, self._windows = self._windows, {}
                self._window_start = self._clock()
            else:
                windows = {}
        ended = self._wall()
        for principal, w in windows.items():
            details = {"principal": principal, "rate": w.rate, "quota": w.quota, "from": _iso(w.started), "to": _iso(ended)}
            details["window_s"] = self.window_s
            log_event(logging.WARNING, "requests_rate_limited", **details)
            records.append({"actor": principal, "action": RATE_LIMITED_ACTION, "object": self.obj, "outcome": "denied", "details": details})
        for record in records:
            record.setdefault("object", self.obj)
        return self._write(records)


# ---------------------------------------------------------------------------- probing


def feature_rows(payload: Any, max_rows: int = 64) -> np.ndarray:
    """A request's first `max_rows` rows as one float32 matrix (rows, features), for distances.

    Tensors are flattened per row; table columns side by side. A value that is not a number
    (a category, a text, a date) becomes `_SIGNS` features of +-1 from its hash (this
    process's), like a one-hot code folded: equal values are at distance 0, different ones
    differ in half of those features on average (in none with probability 2^-_SIGNS).
    Missing and non-finite numbers become 0.
    """
    if isinstance(payload, np.ndarray):
        x = payload[:max_rows]
        x = x.reshape(x.shape[0], -1)
        if x.dtype.kind not in "fiub":
            x = _hashed(x)
        return np.nan_to_num(x.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    block = payload.block if type(payload) is ColumnBlock else None
    if block is not None and block.dtype.kind in "fiub":  # the columns side by side are the block's transpose
        return np.nan_to_num(block[:, :max_rows].T.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    columns = []
    for value in payload.values():
        v = np.asarray(value)[:max_rows]
        v = v.reshape(v.shape[0], -1)
        columns.append(v.astype(np.float32) if v.dtype.kind in "fiub" else _hashed(v))
    if not columns:
        return np.zeros((0, 0), np.float32)
    x = np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]
    return np.nan_to_num(x.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)


_SIGNS = 8
_BITS = np.arange(_SIGNS, dtype=np.int64)


def _hashed(values: np.ndarray) -> np.ndarray:
    """(rows, k) values -> (rows, k * _SIGNS) features of +-1 taken from each value's hash bits."""
    hashes = np.fromiter((hash(str(v)) for v in values.ravel()), np.int64, values.size)
    signs = ((hashes[:, None] >> _BITS) & 1).astype(np.float32) * 2.0 - 1.0
    return signs.reshape(values.shape[0], -1)


@dataclass
class _Caller:
    history: np.ndarray  # (size, dims): the caller's last rows, standardised and projected
    filled: int = 0
    pos: int = 0
    window: float = 0.0  # monotonic start of the counting window
    rows: int = 0  # every row sent in the window: what `ood` counts among
    compared: int = 0  # the rows compared for near-duplicates (each request's first `max_rows`): what `near` counts among
    near: int = 0
    ood: int = 0
    alerted: bool = False
    last: float = 0.0
    pending: list = field(default_factory=list)  # payloads not compared yet
    pending_rows: int = 0


def _rows(payload: Any) -> int:
    if isinstance(payload, np.ndarray) and not payload.ndim:
        return 0
    return payload_rows(payload)


def _head(payload: Any, m: int) -> Any:
    return payload[:m] if isinstance(payload, np.ndarray) else {k: v[:m] for k, v in payload.items()}


def _joined(payloads: list) -> list:
    """The payloads as few as possible: concatenated when they have the same layout."""
    if len(payloads) == 1:
        return payloads
    try:
        if all(isinstance(p, np.ndarray) for p in payloads):
            return [np.concatenate(payloads)]
        joined = join_blocks(payloads)
        if joined is not None:
            return [joined]
        keys = list(payloads[0])
        if all(isinstance(p, dict) and list(p) == keys for p in payloads):
            return [{k: np.concatenate([np.asarray(p[k]) for p in payloads]) for k in keys}]
    except (TypeError, ValueError):  # dtypes numpy will not join: one at a time
        pass
    return payloads


class ProbeDetector:
    """Alerts when one caller sends a burst of near-duplicate or out-of-distribution inputs.

    Every row is standardised with running per-feature means and deviations of all callers'
    traffic (so distances are in units of the spread of ordinary inputs), projected onto
    `dims` random directions when it has more features (distances are preserved in
    expectation), and compared with the caller's last `history` rows and the rows before it.
    A row is a near-duplicate when its root-mean-square distance (per original feature) to one
    of them is at most `radius` (0.3 deviations per feature; a feature that barely varies
    counts as varying at least a quarter as much as the median feature). Within one
    window of `window_s` seconds, a caller raises an alert when at least `near_min` of its rows
    were near-duplicates and they were at least `near_share` of its rows compared (the first
    `max_rows` of each request; so a busy caller's occasional repeat is not a probe), or when
    at least `ood_min` of its rows (all of them) were out of distribution. Each caller alerts at most once per window; at most `max_alerts` alerts per
    window in all.

    Cost: `observe` only files the payload (a few microseconds); the rows are compared once
    a caller has `batch_rows` of them waiting (numpy's cost is per call, not per row), so
    near-duplicate alerts come up to `batch_rows` rows late. Nothing is compared until `warmup`
    rows have been seen (the deviations are not known before). Memory: `history * dims * 4`
    bytes per caller, at most `max_callers` callers (the least recently seen half is forgotten
    beyond that): 8 KiB each, 8 MiB in all by default, plus `batch_rows` pending rows each.

    Args:
        counter: `trustforge_probe_alerts_total` of the server's metrics (None: a private one).
    """

    def __init__(
        self,
        *,
        window_s: float = 60.0,
        radius: float = 0.3,
        history: int = 64,
        near_min: int = 50,
        near_share: float = 0.5,
        ood_min: int = 20,
        dims: int = 32,
        max_rows: int = 64,
        batch_rows: int = 32,
        warmup: int = 100,
        max_callers: int = 1000,
        max_alerts: int = 100,
        counter: Counter | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if window_s <= 0 or radius <= 0 or history < 1 or near_min < 1 or not 0 <= near_share <= 1 or ood_min < 1 or batch_rows < 1:
            raise ValueError("window_s and radius must be > 0, history, near_min, ood_min and batch_rows >= 1, near_share in [0, 1]")
        self.window_s = window_s
        self.r2 = radius * radius
        self.history = history
        self.near_min = near_min
        self.near_share = near_share
        self.ood_min = ood_min
        self.dims = dims
        self.max_rows = max_rows
        self.batch_rows = batch_rows
        self.warmup = warmup
        self.max_callers = max_callers
        self.max_alerts = max_alerts
        self._clock = clock
        self._rng = np.random.default_rng(seed)
        self._callers: dict[str, _Caller] = {}
        self._width = -1  # features per row; another layout starts the statistics afresh
        self._seen = 0
        self._mean = np.zeros(0)
        self._m2 = np.zeros(0)
        self._mean32 = np.zeros(0, np.float32)
        self._scale = np.ones(0, np.float32)
        self._project: np.ndarray | None = None
        self._alerts: list[dict[str, Any]] = []
        self._alerts_window = clock()
        self._alerts_in_window = 0
        self._lock = threading.Lock()
        self.skipped = 0  # payloads the detector could not compare (logged once)
        self.alerts = counter if counter is not None else probe_alerts_counter(None)
        self.alerts.labels("near_duplicate")
        self.alerts.labels("ood")

    def observe(self, principal: str, rows: Any, ood_count: int = 0) -> str | None:
        """File one request's rows (a payload: a tensor or {column: values}, or a (rows,
        features) matrix) and how many of them were out of distribution; returns the kind of
        alert raised now ("near_duplicate" or "ood"), else None."""
        sent = n = _rows(rows)
        if n > self.max_rows:
            rows, n = _head(rows, self.max_rows), self.max_rows
        now = self._clock()
        with self._lock:
            caller = self._callers.get(principal) or self._caller(principal)
            caller.last = now
            if now - caller.window >= self.window_s:
                if caller.pending:
                    self._process(caller)  # the rows of the window that ended count in it
                caller.window, caller.rows, caller.compared, caller.near, caller.ood, caller.alerted = now, 0, 0, 0, 0, False
            caller.rows += sent
            caller.compared += n
            caller.ood += ood_count
            if n:
                caller.pending.append(rows)
                caller.pending_rows += n
                if caller.pending_rows >= self.batch_rows:
                    self._process(caller)
            if caller.alerted:
                return None
            if caller.near >= self.near_min and caller.near >= self.near_share * caller.compared:
                kind = "near_duplicate"
            elif caller.ood >= self.ood_min:
                kind = "ood"
            else:
                return None
            caller.alerted = True
            return self._alert(principal, caller, kind, now)

    def _caller(self, principal: str) -> _Caller:
        if len(self._callers) >= self.max_callers:  # forget the least recently seen half
            keep = sorted(self._callers.items(), key=lambda kv: kv[1].last)[len(self._callers) // 2 :]
            self._callers = dict(keep)
        caller = self._callers[principal] = _Caller(np.zeros((self.history, max(0, min(self._width, self.dims))), np.float32))
        caller.window = self._clock()
        return caller

    def _process(self, caller: _Caller) -> None:
        """Compare the caller's pending rows and fold them into the statistics."""
        payloads, caller.pending, caller.pending_rows = caller.pending, [], 0
        for payload in _joined(payloads):
            try:
                x = feature_rows(payload, len(payload) if isinstance(payload, np.ndarray) else 1 << 30)
                if x.shape[1] == 0 or x.shape[0] == 0:
                    continue
                if x.shape[1] != self._width:
                    self._reset(x.shape[1])
                if caller.history.shape[1] != self._project_width():
                    caller.history, caller.filled, caller.pos = np.zeros((self.history, self._project_width()), np.float32), 0, 0
                self._learn(x)
                if self._seen >= self.warmup:
                    caller.near += self._near(caller, x)
            except Exception as exc:  # noqa: BLE001 - watching must never fail a request that was served
                self.skipped += 1
                if self.skipped == 1:
                    log_event(logging.WARNING, "probe_detector_skipped", error=f"{exc.__class__.__name__}: {str(exc)[:200]}")

    def _project_width(self) -> int:
        return min(self._width, self.dims)

    def _reset(self, width: int) -> None:
        self._width = width
        self._seen = 0
        self._mean = np.zeros(width)
        self._m2 = np.zeros(width)
        k = self._project_width()
        self._project = None if width <= self.dims else (self._rng.standard_normal((width, k)) / math.sqrt(k)).astype(np.float32)

    def _learn(self, x: np.ndarray) -> None:
        """Fold the rows into the running means and deviations (Chan et al.'s parallel update)."""
        n = x.shape[0]
        batch_mean = x.mean(axis=0, dtype=np.float64)
        delta = batch_mean - self._mean
        total = self._seen + n
        self._m2 += ((x - batch_mean) ** 2).sum(axis=0, dtype=np.float64) + delta**2 * (self._seen * n / total)
        self._mean += delta * (n / total)
        self._seen = total
        std = np.sqrt(self._m2 / max(1, total - 1))
        # A feature (a blank pixel) that barely varies must not turn a tiny change into a large
        # distance: its deviation counts as at least a quarter of the median feature's.
        floor = 1e-6 + 1e-3 * np.abs(self._mean) + 0.25 * float(np.median(std))
        self._scale = (1.0 / np.maximum(std, floor)).astype(np.float32)
        self._mean32 = self._mean.astype(np.float32)

    def _near(self, caller: _Caller, x: np.ndarray) -> int:
        """Rows of `x` within the radius of a recent row of this caller or an earlier row of `x`; remembers `x`."""
        z = (x - self._mean32) * self._scale
        if self._project is not None:
            z = z @ self._project
        n = z.shape[0]
        filled = caller.filled
        pool = np.concatenate([caller.history[:filled], z]) if filled else z
        # squared distances through the dot products: (n, pool) without an (n, pool, dims) array
        sq = (pool * pool).sum(axis=1)
        d2 = (sq[filled:, None] + sq[None, :] - 2.0 * (z @ pool.T)) / self._width
        # each row is compared with the history and the rows before it, not itself or later ones
        d2[np.arange(n)[:, None] <= np.arange(pool.shape[0])[None, :] - filled] = np.inf
        near = int((d2.min(axis=1) <= self.r2).sum())
        take = z[-self.history :]
        m = take.shape[0]
        idx = (caller.pos + np.arange(m)) % self.history
        caller.history[idx] = take
        caller.pos = int((caller.pos + m) % self.history)
        caller.filled = min(self.history, filled + m)
        return near

    def _alert(self, principal: str, caller: _Caller, kind: str, now: float) -> str | None:
        if now - self._alerts_window >= self.window_s:
            self._alerts_window, self._alerts_in_window = now, 0
        if self._alerts_in_window >= self.max_alerts:
            return None  # the log and the audit log stay bounded whatever the number of callers
        self._alerts_in_window += 1
        self.alerts.labels(kind).inc()
        details = {
            "principal": principal,
            "kind": kind,
            "rows": caller.rows,
            "compared_rows": caller.compared,
            "near_duplicates": caller.near,
            "ood": caller.ood,
            "window_s": self.window_s,
            "radius": round(math.sqrt(self.r2), 6),
        }
        log_event(logging.WARNING, "probe_alert", **details)
        self._alerts.append({"actor": principal, "action": PROBE_ALERT_ACTION, "outcome": "ok", "details": details})
        return kind

    def take_alerts(self) -> list[dict[str, Any]]:
        """The alerts not yet written (audit records without `object`), emptying the list."""
        with self._lock:
            alerts, self._alerts = self._alerts, []
        return alerts


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
