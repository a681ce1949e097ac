"""How a model server runs: address, workers, backend, batching, limits and authentication."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from trustforge.errors import SecurityError, SpecError

__all__ = ["ServeConfig", "is_loopback"]

# Options that are `trustforge serve` flags of the same name (`max_latency_ms` is `--max-latency-ms`).
_FLAGS = {"workers", "threads", "max_batch_size", "max_latency_ms", "max_queue", "poll_s", "port", "auth_cache_s"}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, `localhost`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class ServeConfig:
    """Options of `trustforge serve` (and of `create_app` / `ModelService` in Python).

    Attributes:
        host, port: where to listen.
        workers: model worker processes; 0 runs the model in a thread of the server process.
            With workers, a worker that dies mid-batch loses no request: its batch runs
            again on another worker and the worker is restarted.
        threads: torch / ONNX Runtime threads per worker.
        backend: "torch" (eager PyTorch) or "onnx" (ONNX Runtime; exported on first serve).
        max_batch_size: most rows run in one batch.
        max_latency_ms: longest a request waits for others to share its batch.
        max_queue: most requests waiting; more are refused with 503 and `Retry-After`.
        max_request_bytes: request bodies above this are refused (413) before they are parsed.
        request_timeout_s: a request still waiting for its prediction after this fails (504).
        poll_s: how often the registry is asked where a followed alias points.
        auth: "token" (bearer tokens, the default), "none" (loopback only: no tokens) or
            "insecure" (no tokens on any address; logs a warning at start and on every request).
        auth_cache_s: how long a valid token is remembered; revocation and expiry take effect
            within this time (0: the database is read on every request).
        public_metadata: metadata and readiness routes (`/v2`, `/v2/models/...` metadata,
            `/ready` and `/config`, `/health`, `/version`) answer without a token, for probes;
            inference, drift and metrics still need one.
        rate_limit: prediction requests per second each caller (token's user; without
            authentication, address) earns; None: no limit (`--rate-limit N/s`).
        burst: prediction requests a caller may send at once (default: one second's worth).
        daily_quota: prediction requests per caller per UTC day; None: no quota.
        probe_alert: watch each caller's inputs for a burst of near-duplicate or
            out-of-distribution queries and alert (audit entry, metric, log line).
        ood: what to do with rows the package's out-of-distribution detector flags: "flag"
            (predict, and say so in the response), "refuse" (422 naming the rows) or "off"
            (not run). A package without a detector is served as it is, whatever this says.
        pii_in_logs: "never" (personal data the detector finds in a log field is replaced by its
            type tag before the line is written; see `serve._pii`) or "allow".
    """

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    threads: int = 1
    backend: Literal["torch", "onnx"] = "torch"
    max_batch_size: int = 32
    max_latency_ms: float = 10.0
    max_queue: int = 1024
    max_request_bytes: int = 16 * 1024 * 1024
    request_timeout_s: float = 60.0
    poll_s: float = 5.0
    auth: Literal["token", "none", "insecure"] = "token"
    auth_cache_s: float = 1.0
    public_metadata: bool = False
    # --- per-caller limits (serve/_quota.py) ---
    rate_limit: float | None = None
    burst: int | None = None
    daily_quota: int | None = None
    probe_alert: bool = True
    ood: Literal["flag", "refuse", "off"] = "flag"
    pii_in_logs: Literal["never", "allow"] = "never"

    def __post_init__(self) -> None:
        checks = [
            ("workers", self.workers, 0, 64),
            ("threads", self.threads, 1, 256),
            ("max_batch_size", self.max_batch_size, 1, 65536),
            ("max_latency_ms", self.max_latency_ms, 0, 60_000),
            ("max_queue", self.max_queue, 1, 1_000_000),
            ("max_request_bytes", self.max_request_bytes, 1024, 1 << 31),  # `--max-request-mb` is checked in MB first
            ("request_timeout_s", self.request_timeout_s, 0.001, 3600),
            ("poll_s", self.poll_s, 0.05, 3600),
            ("port", self.port, 0, 65535),
            ("auth_cache_s", self.auth_cache_s, 0, 60),
        ]
        for name, value, lo, hi in checks:
            # NaN fails every comparison, so it is refused here too.
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                what = f"--{name.replace('_', '-')} (serve option {name})" if name in _FLAGS else f"serve option {name}"
                raise SpecError(f"{what} must be in [{lo}, {hi}]; got {value!r}")
        if self.backend not in ("torch", "onnx"):
            raise SpecError(f"serve option backend must be torch or onnx; got {self.backend!r}")
        if self.auth not in ("token", "none", "insecure"):
            raise SpecError(f"serve option auth must be token, none or insecure; got {self.auth!r}")
        self._check_limits()

    def _check_limits(self) -> None:
        """Per-caller limits: each bad value is one error naming its flag."""
        rate, burst, daily = self.rate_limit, self.burst, self.daily_quota
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1e6):
            raise SpecError(f"serve option rate_limit (--rate-limit) must be > 0 and at most 1e6 requests/s; got {rate!r}")
        if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or not 1 <= burst <= 1_000_000):
            raise SpecError(f"serve option burst (--burst) must be a whole number in [1, 1000000]; got {burst!r}")
        if burst is not None and rate is None:
            raise SpecError("serve option burst (--burst) needs rate_limit (--rate-limit): the rate at which the burst is earned back")
        if daily is not None and (isinstance(daily, bool) or not isinstance(daily, int) or not 1 <= daily <= 1_000_000_000):
            raise SpecError(f"serve option daily_quota (--daily-quota) must be a whole number in [1, 1e9]; got {daily!r}")
        if self.ood not in ("flag", "refuse", "off"):
            raise SpecError(f"--ood (serve option ood) must be flag, refuse or off; got {self.ood!r}")
        if self.pii_in_logs not in ("never", "allow"):
            raise SpecError(f"--pii-in-logs (serve option pii_in_logs) must be never or allow; got {self.pii_in_logs!r}")

    def check_binding(self) -> None:
        """Refuse to listen beyond this machine without authentication, unless insecure on purpose.

        Raises:
            SecurityError: `auth="none"` on an address that is not loopback.
        """
        if self.auth == "none" and not is_loopback(self.host):
            raise SecurityError(
                f"refusing to serve without authentication on {self.host}, which other machines can reach; "
                "drop --no-auth to require tokens, or pass --insecure-no-auth if you really mean it"
            )
