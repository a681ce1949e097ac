"""What per-caller limits and the probing detector cost a served request.

Two figures, each measured in one process:

- `ProbeDetector.observe` alone, in microseconds per request, for one-row iris requests (a
  {column: values} payload, as the server hands it over) and one-row 8x8 digit images;
- the server's own throughput, in process (raw ASGI calls to the FastAPI app, no sockets, one
  model thread): one-row `/v2/.../infer` requests with a valid token, through an app with the
  detector and limits on (`--rate-limit 1000000/s --daily-quota 1000000000`, so none is
  refused), with only one of them on, and through two apps with both off (`--no-probe-alert`; the second one's ratio to
  the first is this machine's noise), alternating rounds; the ratios of their medians, and
  the process's CPU time per request (model thread included), which other processes' load
  disturbs less than the wall clock. Sequential requests: every request pays the model's whole batch
  latency, so this is the worst case for relative overhead (nothing hides it).

    .venv/bin/python bench/quota_overhead.py                 # ~1 minute
    .venv/bin/python bench/quota_overhead.py --requests 300  # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SPEC = {
    "name": "quota-bench",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [16]},
    "train": {"max_epochs": 2, "seed": 1},
    "evaluate": {"speed": False, "corruptions": False, "explain": False},
}


def observe_us(rows: int = 20_000) -> dict[str, float]:
    """Microseconds per `observe` call after a warm-up, for iris rows and digit images."""
    from sklearn.datasets import load_digits, load_iris

    from trustforge.serve import ProbeDetector

    out = {}
    iris = load_iris()
    cols = [str(c) for c in iris.feature_names]
    tables = [{c: iris.data[i : i + 1, j] for j, c in enumerate(cols)} for i in range(150)]
    images = [(load_digits().images[i : i + 1, None] / 16).astype(np.float32) for i in range(500)]
    for name, payloads in (("iris_row", tables), ("digits_image", images)):
        det = ProbeDetector()
        for i in range(500):
            det.observe(f"warm-{i % 5}", payloads[i % len(payloads)])
        started = time.perf_counter()
        for i in range(rows):
            det.observe("caller", payloads[i % len(payloads)])
        out[f"observe_us_{name}"] = round((time.perf_counter() - started) / rows * 1e6, 2)
    return out


async def _post(app, path: str, body: bytes, headers: list) -> int:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    status, done = [], [False]

    async def receive():
        if done[0]:
            return {"type": "http.disconnect"}
        done[0] = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(scope, receive, send)
    return status[0]


def throughput(requests: int, rounds: int) -> dict[str, float]:
    """Requests/s in process with the limits and detector on and off (twice), alternating rounds."""
    from trustforge.pipeline import run
    from trustforge.registry import Registry
    from trustforge.serve import ModelService, ServeConfig, create_app
    from trustforge.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(Path(tmp) / "ws")
        uri = run(SPEC, settings=settings, progress=False).model_uri
        with Registry(settings) as registry:
            registry.access.add_user("bench", "viewer")
            token = registry.access.issue_token("bench")
        headers = [(b"authorization", f"Bearer {token}".encode())]
        options = {"workers": 0, "max_latency_ms": 0}
        configs = {
            "on": ServeConfig(**options, rate_limit=1e6, daily_quota=1_000_000_000, probe_alert=True),
            "limits_only": ServeConfig(**options, rate_limit=1e6, daily_quota=1_000_000_000, probe_alert=False),
            "probe_only": ServeConfig(**options, probe_alert=True),
            "off": ServeConfig(**options, probe_alert=False),
            "off_again": ServeConfig(**options, probe_alert=False),  # an A/A twin: the noise of this machine
        }
        services = {k: ModelService(uri, c, settings=settings).start() for k, c in configs.items()}
        try:
            apps = {k: create_app(s) for k, s in services.items()}
            rng = np.random.default_rng(0)
            bodies = []
            for _ in range(200):
                x = rng.normal([5.8, 3.0, 3.7, 1.2], [0.8, 0.4, 1.7, 0.7])
                names = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
                inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [float(v)]} for n, v in zip(names, x)]
                bodies.append(json.dumps({"inputs": inputs}).encode())
            path = "/v2/models/quota-bench/infer"

            async def drive(app, n):
                started, cpu = time.perf_counter(), time.process_time()
                for i in range(n):
                    assert await _post(app, path, bodies[i % len(bodies)], headers) == 200
                return n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6

            async def main():
                for app in apps.values():
                    await drive(app, 50)  # warm-up
                rates, cpus = {k: [] for k in apps}, {k: [] for k in apps}
                for _ in range(rounds):
                    for k, app in apps.items():
                        rate, cpu = await drive(app, requests)
                        rates[k].append(rate)
                        cpus[k].append(cpu)
                return rates, cpus

            rates, cpus = asyncio.run(main())
        finally:
            for s in services.values():
                s.close()
    on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
    again = statistics.median(rates["off_again"])
    cpu = {k: statistics.median(v) for k, v in cpus.items()}
    return {
        "cpu_us_per_request_limits_on": round(cpu["on"], 1),
        "cpu_us_per_request_limits_only": round(cpu["limits_only"], 1),
        "cpu_us_per_request_probe_only": round(cpu["probe_only"], 1),
        "cpu_us_per_request_limits_off": round(cpu["off"], 1),
        "cpu_us_per_request_off_again": round(cpu["off_again"], 1),
        "requests_per_s_limits_on": round(on, 1),
        "requests_per_s_limits_off": round(off, 1),
        "ratio_on_over_off": round(on / off, 3),
        "ratio_off_again_over_off": round(again / off, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per round")
    parser.add_argument("--rounds", type=int, default=11, help="rounds per app, alternating")
    args = parser.parse_args(argv)
    figures = {**observe_us(), **throughput(args.requests, args.rounds)}
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
