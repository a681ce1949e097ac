"""Prometheus metrics of one server, on a registry of its own (so tests can build many apps).

| metric                                   | type      | labels            |
|------------------------------------------|-----------|-------------------|
| trustforge_request_duration_seconds      | histogram | route, method     |
| trustforge_requests_in_flight            | gauge     |                   |
| trustforge_responses_total               | counter   | route, status     |
| trustforge_batch_size                    | histogram | model             |
| trustforge_batch_duration_seconds        | histogram | model             |
| trustforge_queue_depth                   | gauge     | model             |
| trustforge_worker_restarts_total         | counter   | model             |
| trustforge_batches_retried_total         | counter   | model             |
| trustforge_fallback_batches_total        | counter   | model             |
| trustforge_model_reloads_total           | counter   | outcome           |
| trustforge_model_info                    | gauge     | model, version, backend |
| trustforge_drift_score                   | gauge     | model, feature    |
| trustforge_drift_dropped_batches_total   | counter   | model             |
| trustforge_rate_limited_total            | counter   | reason (rate, quota) |
| trustforge_probe_alerts_total            | counter   | kind (near_duplicate, ood) |
| trustforge_expect_violations_total       | counter   | model, column, action (flagged, refused) |

`route` is the route's template (`/v2/models/{model_name}/infer`), never the raw path, so
the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from trustforge.serve._expect import expect_counter
from trustforge.serve._quota import probe_alerts_counter, rate_limited_counter

__all__ = ["ServeMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class _DriftCollector(Collector):
    """Reads the drift scores at scrape time, so they are never stale and cost nothing between scrapes."""

    def __init__(self, source: Callable[[], tuple[str, dict[str, float]] | None]):
        self._source = source

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "trustforge_drift_score", "Latest drift score per input feature (monitor's statistic)", labels=["model", "feature"]
        )
        try:
            found = self._source()
        except Exception:  # noqa: BLE001 - a broken monitor must not break the scrape
            found = None
        if found:
            model, scores = found
            for feature, score in scores.items():
                try:
                    family.add_metric([model, str(feature)], float(score))
                except (TypeError, ValueError):
                    continue
        yield family


class ServeMetrics:
    """The server's collectors; `render()` is the `/metrics` body."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "trustforge_request_duration_seconds", "HTTP request duration", ["route", "method"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge("trustforge_requests_in_flight", "HTTP requests being handled", registry=r)
        self.responses = Counter("trustforge_responses", "HTTP responses by route and status", ["route", "status"], registry=r)
        self.batch_size = Histogram(
            "trustforge_batch_size", "Rows per batch run by the model", ["model"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "trustforge_batch_duration_seconds", "Time to run one batch", ["model"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("trustforge_queue_depth", "Requests waiting for a batch", ["model"], registry=r)
        self.worker_restarts = Counter("trustforge_worker_restarts", "Model worker processes restarted after dying", ["model"], registry=r)
        self.batches_retried = Counter("trustforge_batches_retried", "Batches run again after their worker died", ["model"], registry=r)
        self.fallback_batches = Counter(
            "trustforge_fallback_batches", "Batches the server ran itself while no worker process was running", ["model"], registry=r
        )
        self.drift_dropped = Counter(
            "trustforge_drift_dropped_batches",
            "Served batches the drift monitor skipped because its queue was full",
            ["model"],
            registry=r,
        )
        self.imputed = Counter(
            "trustforge_imputed_values",
            "Missing input values the model filled in from what training learned, by column",
            ["model", "column"],
            registry=r,
        )
        self.ood = Counter(
            "trustforge_ood_inputs",
            "Served rows the out-of-distribution detector flagged, by what was done (flagged: predicted and said; refused: 422)",
            ["model", "action"],
            registry=r,
        )
        self.reloads = Counter("trustforge_model_reloads", "Model version swaps by outcome", ["outcome"], registry=r)
        self.model_info = Gauge(
            "trustforge_model_info", "The model version being served (value 1)", ["model", "version", "backend"], registry=r
        )
        # per-caller limits and probing alerts (serve/_quota.py): no caller in the labels
        self.rate_limited = rate_limited_counter(r)
        self.probe_alerts = probe_alerts_counter(r)
        self.expect = expect_counter(r)  # data.expect violations (serve/_expect.py)
        self._drift_source: Callable[[], tuple[str, dict[str, float]] | None] = lambda: None
        r.register(_DriftCollector(lambda: self._drift_source()))

    def drift_from(self, source: Callable[[], tuple[str, dict[str, float]] | None]) -> None:
        """Where the drift gauge reads its scores: `() -> (model name, {feature: score})` or None."""
        self._drift_source = source

    def render(self) -> bytes:
        return generate_latest(self.registry)
