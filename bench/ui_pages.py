"""Benchmark: the dashboard's runs and models pages on a workspace with 5,000 runs and 200 model versions.

What it measures
    Wall time of GET requests (time.perf_counter around each HTTP request, from the client's
    send to the last byte) against `trustforge ui`'s app served by uvicorn on 127.0.0.1 in this
    process (a server thread, an httpx client in the main thread), signed in as an admin:

    * /runs (first page, default sort), /runs?page=37, /runs?sort=value&order=asc,
      /runs?sort=latency_p50_ms&per=200, /runs?q=fraud&state=completed (a filter),
      /runs?task=regression&sort=fit_seconds;
    * /models (and /models?page=2) as the models page answers on this branch;
    * /runs/RUN (one run page) and /runs/compare of two runs, for reference.

    Each request kind runs `--requests` times (default 200), interleaved round-robin so machine
    load hits all alike; p50 and p95 are printed per kind and for all /runs and all /models
    requests together, with the verdict against the issue's target (p95 under 300 ms).

    The baseline, measured in the same run: one list built the naive way, `read_run` of every
    folder (what a page would cost without the index), and the first /runs request, which
    builds the index from nothing (past 300 unread folders it is read in the background while
    the page says how far it got; the script prints when the list was ready).

The workspace
    One small iris model is trained once (about 10 s) for real files: its spec.yaml,
    metrics.json, evidence.json (about 18 KB) and epochs.csv are the templates of 5,000
    synthetic run folders, written with varied names (20 spec names), tasks, figures, epoch
    counts and states (about 86 % completed; the rest running, interrupted, failed, killed,
    and a few unreadable). Its package is registered 200 times: 20 model names x 10 versions
    (one real, signed package, registered as each version; a real workspace's versions differ
    in content, not in what the pages read), with an alias per model.

How to run
    .venv/bin/python bench/ui_pages.py [--runs 5000] [--versions 200] [--requests 200]
    Takes about 5 to 8 minutes on two busy cores (writing the runs, registering the versions
    and the naive baseline included).
    The exit status is 0 whatever the result: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

TARGET_P95_MS = 300.0
SPEC = {
    "name": "iris-bench",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [16]},
    "train": {"max_epochs": 8, "batch_size": 16, "optimizer": {"name": "adamw", "lr": 0.02}},
    "evaluate": {"corruptions": False, "explain": False, "robustness": False},
}
NAMES = [
    "fraud",
    "credit-risk",
    "churn",
    "digits-cnn",
    "sentiment",
    "speech-cmd",
    "xray",
    "recsys",
    "iris",
    "wine",
    "housing",
    "demand",
    "ticket-router",
    "loan-default",
    "claims",
    "spam",
    "intent",
    "energy",
    "retention",
    "pricing",
]


def _write_runs(runs_dir: Path, template: Path, n: int, seed: int = 0) -> dict[str, int]:
    """`n` run folders modelled on the real run `template` (see the module docstring)."""
    rng = random.Random(seed)
    spec_text = (template / "spec.yaml").read_text()
    metrics = json.loads((template / "metrics.json").read_text())
    evidence = json.loads((template / "evidence.json").read_text())
    epochs_lines = (template / "epochs.csv").read_text().splitlines()
    header, rows = epochs_lines[0], epochs_lines[1:]
    counts: dict[str, int] = {}
    for i in range(n):
        name = NAMES[i % len(NAMES)]
        task = "regression" if name in ("housing", "demand", "energy", "pricing") else "classification"
        r = rng.random()
        state = "completed" if r < 0.86 else "running" if r < 0.89 else "interrupted" if r < 0.94 else "failed" if r < 0.98 else "killed"
        if i % 997 == 0:
            state = "unreadable"
        day, sec = divmod(i * 37, 86400)
        folder = (
            runs_dir / f"{name}-2026{1 + day // 28 % 12:02d}{1 + day % 28:02d}-{sec // 3600:02d}{sec // 60 % 60:02d}{sec % 60:02d}-{i:05d}"
        )
        folder.mkdir(parents=True)
        status = {"state": state, "spec_digest": "0" * 64, "pid": os.getpid()}
        status["started"] = f"2026-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:{sec % 60:02d}+00:00"
        if state == "killed":
            status.update(state="running", pid=2**22 + 4321)  # its process is gone
        if state == "completed" and i % 3 == 0:
            status["model_uri"] = f"models:/{name}/{1 + i % 10}"
        (folder / "status.json").write_text(json.dumps(status, indent=1))
        spec = spec_text.replace("name: iris-ui", f"name: {name}").replace("name: iris-bench", f"name: {name}")
        spec = spec.replace("task: classification", f"task: {task}").replace("seed: 7", f"seed: {i}")
        (folder / "spec.yaml").write_text(spec)
        done = len(rows) if state == "completed" else rng.randint(0, len(rows))
        (folder / "epochs.csv").write_text("\n".join([header, *rows[:done]]) + "\n")
        if state == "unreadable":
            (folder / "metrics.json").write_text("{not json")
        elif state == "completed":
            quality = rng.uniform(0.6, 0.99)
            m = dict(metrics)
            if task == "regression":
                m = {"rmse": 1 - quality, "mae": (1 - quality) / 2, "r2": quality, "n": 200, "epochs_trained": done}
            else:
                m.update(accuracy=quality, f1_macro=quality - 0.01)
            (folder / "metrics.json").write_text(json.dumps(m, indent=1))
            ev = json.loads(json.dumps(evidence))
            ev["speed"]["predict"]["p50_ms"] = rng.uniform(0.2, 30)
            ev["baseline"]["baseline"] = quality - rng.uniform(-0.05, 0.2)
            ev["baseline"]["metric"] = "rmse" if task == "regression" else "accuracy"
            (folder / "evidence.json").write_text(json.dumps(ev, indent=1))
        counts[state] = counts.get(state, 0) + 1
    return counts


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _loopback_socket() -> socket.socket:
    """A listening socket on 127.0.0.1 at a free port, handed to uvicorn (no race for the port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--versions", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    import httpx
    import uvicorn

    from trustforge.evaluate import read_run_or_note
    from trustforge.pipeline import run
    from trustforge.registry import Registry
    from trustforge.settings import Settings
    from trustforge.ui import create_app

    root = Path(tempfile.mkdtemp(prefix="tf-ui-bench-"))
    try:
        os.environ["TRUSTFORGE_HOME"] = str(root / "ws")
        settings = Settings.from_env(root / "ws")
        t0 = time.perf_counter()
        trained = run(SPEC, settings=settings, progress=False, register=False)
        template = root / "template"
        shutil.copytree(trained.run_dir, template)
        shutil.rmtree(trained.run_dir)
        print(f"trained the template run in {time.perf_counter() - t0:.1f} s")

        t0 = time.perf_counter()
        counts = _write_runs(settings.runs_dir, template, args.runs)
        print(
            f"wrote {args.runs} run folders in {time.perf_counter() - t0:.1f} s: "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        )

        registry = Registry(settings)
        t0 = time.perf_counter()
        per_name = max(1, args.versions // len(NAMES))
        registered = 0
        for name in NAMES:
            for _ in range(per_name):
                if registered >= args.versions:
                    break
                registry.register(template / "package", name=name, run=template.name)
                registered += 1
            registry.set_alias(name, "champion", 1)
        print(f"registered {registered} model versions ({len(NAMES)} names) in {time.perf_counter() - t0:.1f} s")
        registry.access.add_user("bench-admin", "admin")
        token = registry.access.issue_token("bench-admin")

        # Baseline: the list built without the index, read_run of every folder.
        folders = [p for p in settings.runs_dir.iterdir() if p.is_dir()]
        t0 = time.perf_counter()
        for p in folders:
            read_run_or_note(p)
        naive_ms = (time.perf_counter() - t0) * 1000

        app = create_app(settings, registry=registry)
        sock = _loopback_socket()
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, follow_redirects=False, timeout=60) as client:
            page = client.get("/signin")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
            answer = client.post("/signin", data={"csrf": csrf, "token": token, "next": "/runs"})
            assert answer.status_code == 303, answer.text[:300]

            t0 = time.perf_counter()
            first = client.get("/runs")
            first_ms = (time.perf_counter() - t0) * 1000
            warming = "runs-indexing" in first.text
            while "runs-table" not in first.text:  # the first listing is read in the background
                if first.status_code != 200 or time.perf_counter() - t0 > 900:
                    raise SystemExit(f"/runs answered {first.status_code} and no list: {first.text[:300]}")
                time.sleep(0.5)
                first = client.get("/runs")
            cold_ms = (time.perf_counter() - t0) * 1000
            assert first.status_code == 200, first.text[:300]
            models_built = 'data-testid="model-row"' in client.get("/models").text
            some = re.findall(r'data-testid="run-row" data-run="([^"]+)"', first.text)
            kinds = {
                "/runs": "/runs",
                "/runs page 37": "/runs?page=37",
                "/runs sort value asc": "/runs?sort=value&order=asc",
                "/runs sort p50, per 200": "/runs?sort=latency_p50_ms&per=200",
                "/runs filter q+state": "/runs?q=fraud&state=completed",
                "/runs filter task, sort fit": "/runs?task=regression&sort=fit_seconds",
                "/models": "/models",
                "/models page 2": "/models?page=2&per=10",
                "/runs/RUN": f"/runs/{some[0]}",
                "/runs/compare (2)": f"/runs/compare?run={some[0]}&run={some[1]}",
            }
            times: dict[str, list[float]] = {k: [] for k in kinds}
            statuses: dict[str, set[int]] = {k: set() for k in kinds}
            for _ in range(args.requests):
                for kind, url in kinds.items():
                    t0 = time.perf_counter()
                    r = client.get(url)
                    times[kind].append((time.perf_counter() - t0) * 1000)
                    statuses[kind].add(r.status_code)
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

        load = os.getloadavg()[0]
        print(f"\nmachine: {os.cpu_count()} cores, load average {load:.2f} (other work shares these cores)")
        print(f"{'request':32} {'n':>5} {'p50 ms':>9} {'p95 ms':>9} {'max ms':>9}  status")
        for kind in kinds:
            v = times[kind]
            print(
                f"{kind:32} {len(v):5d} {statistics.median(v):9.1f} {_percentile(v, 95):9.1f} {max(v):9.1f}  "
                + ",".join(map(str, sorted(statuses[kind])))
            )
        runs_all = [t for k, v in times.items() if k.startswith("/runs") and not k.startswith(("/runs/RUN", "/runs/compare")) for t in v]
        models_all = [t for k, v in times.items() if k.startswith("/models") for t in v]
        print()
        print(f"baseline: read_run of all {len(folders)} folders (a page without the index): {naive_ms:.0f} ms")
        print(
            f"first /runs after the start: answered in {first_ms:.0f} ms"
            + (f" with the 'reading the run folders' page; the list was ready after {cold_ms / 1000:.1f} s" if warming else "")
        )
        for label, v in (("runs list pages", runs_all), ("models pages", models_all)):
            p95 = _percentile(v, 95)
            verdict = "meets" if p95 < TARGET_P95_MS else "MISSES"
            print(
                f"{label}: p50 {statistics.median(v):.1f} ms, p95 {p95:.1f} ms over {len(v)} requests: {verdict} the {TARGET_P95_MS:.0f} ms p95 target"
            )
        print(f"ratio: a list page without the index would take {naive_ms / statistics.median(runs_all):.0f}x the indexed median")
        if not models_built:
            print("note: /models is still the skeleton's placeholder on this branch; its figures say nothing about the models page")
        registry.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
