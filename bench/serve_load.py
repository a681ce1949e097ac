"""Serving throughput and latency: TrustForge's server against a naive FastAPI + torch server.

Three servers answer the same MLflow scoring request (`POST /invocations`, one row of the
breast-cancer table as `dataframe_split`) for the same registered model:

  (a) baseline: a naive FastAPI app written here that loads the same verified `Model` and
      calls `model.predict` on each request alone (a sync route, torch at one thread);
  (b) `trustforge serve` with eager PyTorch, dynamic batching, a model worker process and
      bearer-token auth on every request;
  (c) the same with `--backend onnx` (exported on first serve, checked against eager).

A separate client process (so the load generator does not share the server's interpreter)
keeps 1, 8 and 32 connections busy in a closed loop over raw HTTP/1.1 keep-alive sockets, for
a bounded time and number of requests per level, after a warm-up. It prints requests/s and
p50/p99 latency per server and level, and the ratios (b)/(a) and (c)/(a) at equal
concurrency. Everything listens on 127.0.0.1 only and stops by itself.

    .venv/bin/python bench/serve_load.py                 # about 2 minutes on 2 cores
    .venv/bin/python bench/serve_load.py --seconds 3     # shorter levels
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"  # loopback only, always
LEVELS = (1, 8, 32)
SPEC = {
    "name": "bench-breast-cancer",
    "data": {"source": "builtin:breast_cancer"},
    "model": {"kind": "mlp", "hidden": [64, 32]},
    "train": {"max_epochs": 5, "seed": 7},
    "evaluate": {"speed": False, "corruptions": False, "explain": False},
}


# ---------------------------------------------------------------------------- (a) the baseline server


def baseline_server(package: str, port: int) -> None:
    """The naive server: one `model.predict` per request, no batching, no auth."""
    import pandas as pd
    import torch
    import uvicorn
    from fastapi import FastAPI

    from trustforge.package import Model

    torch.set_num_threads(1)
    model = Model.load(package)
    app = FastAPI()

    @app.post("/invocations")
    def invocations(body: dict) -> dict:
        split = body["dataframe_split"]
        frame = pd.DataFrame(split["data"], columns=split["columns"])
        return {"predictions": model.predict(frame).to_dict(orient="records")}

    @app.get("/ping")
    def ping() -> dict:
        return {"ready": True}

    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------------------- the load generator


async def _one_client(request: bytes, stop_at: float, budget: list[int], latencies: list[float], failures: list[int], port: int) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < stop_at and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                failures[0] += 1
    except (ConnectionError, asyncio.IncompleteReadError):
        failures[0] += 1
    finally:
        writer.close()


async def _level(request: bytes, port: int, clients: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    failures = [0]
    stop_at = time.perf_counter() + seconds
    budget = [max_requests]
    started = time.perf_counter()
    await asyncio.gather(*(_one_client(request, stop_at, budget, latencies, failures, port) for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    n = len(latencies)
    return {
        "clients": clients,
        "requests": n,
        "failed": failures[0],
        "seconds": elapsed,
        "rps": n / elapsed if elapsed else 0.0,
        "p50_ms": 1000 * latencies[n // 2] if n else float("nan"),
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else float("nan"),
    }


def client_main(port: int, request_file: str, seconds: float, max_requests: int, warmup: float) -> None:
    """Run every concurrency level against one server; print one JSON line of results."""
    request = Path(request_file).read_bytes()
    out, sent = [], 0
    for clients in LEVELS:
        sent += asyncio.run(_level(request, port, clients, warmup, max_requests))["requests"]  # warm-up, not recorded
        out.append(asyncio.run(_level(request, port, clients, seconds, max_requests)))
        sent += out[-1]["requests"]
    print(json.dumps({"levels": out, "sent": sent}))


# ---------------------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was ready")
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server on port {port} not ready within {timeout:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (worker processes), from /proc."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            total += _cpu_seconds(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


def _measure(name: str, cmd: list[str], env: dict, port: int, ready_path: str, request_file: Path, args) -> dict:
    print(f"  {name}: starting", flush=True)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, ready_path, proc)
        before = _cpu_seconds(proc.pid)
        client = subprocess.run(
            [
                sys.executable,
                __file__,
                "--client",
                str(port),
                str(request_file),
                str(args.seconds),
                str(args.max_requests),
                str(args.warmup),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=len(LEVELS) * (args.seconds + args.warmup) * 4 + 120,
            check=True,
        )
        out = json.loads(client.stdout.strip().splitlines()[-1])
        out["cpu_ms_per_request"] = 1000 * (_cpu_seconds(proc.pid) - before) / max(1, out["sent"])
        return out
    finally:
        _stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per level (not recorded)")
    parser.add_argument("--max-requests", type=int, default=20000, help="at most this many requests per level")
    parser.add_argument("--workers", type=int, default=1, help="model worker processes of the TrustForge servers")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="tf-serve-bench-"))
    env = {**os.environ, "TRUSTFORGE_HOME": str(root / "ws"), "OMP_NUM_THREADS": "1"}
    env.pop("TRUSTFORGE_TOKEN", None)
    try:
        os.environ.update(TRUSTFORGE_HOME=env["TRUSTFORGE_HOME"])
        from trustforge.pipeline import run
        from trustforge.registry import Registry

        print(f"training {SPEC['name']} ...", flush=True)
        result = run(SPEC, progress=False)
        with Registry() as reg:
            reg.set_alias(SPEC["name"], "champion", 1)
            reg.access.add_user("bench-client", "viewer")
            token = reg.access.issue_token("bench-client", ttl_days=1)
            model = reg.load_model(result.model_uri)
        columns = [s["name"] for s in model.manifest["signature"]["inputs"]]
        from trustforge.data import load_source

        raw = load_source("builtin:breast_cancer", target=None, image_size=(32, 32), channels=3, seed=7)
        row = [float(raw.frame[c].iloc[0]) for c in columns]
        body = json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}).encode()
        request_file = root / "request.http"
        request_file.write_bytes(
            b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

        trustforge = str(Path(sys.executable).with_name("trustforge"))
        load = os.getloadavg()
        uri = f"models:/{SPEC['name']}@champion"
        results = {}
        port = _free_port()
        results["a"] = _measure(
            "(a) naive FastAPI + torch",
            [sys.executable, __file__, "--baseline", str(result.package), str(port)],
            env,
            port,
            "/ping",
            request_file,
            args,
        )
        for key, backend in (("b", "torch"), ("c", "onnx")):
            port = _free_port()
            cmd = [trustforge, "serve", uri, "--host", HOST, "--port", str(port), "--workers", str(args.workers), "--backend", backend]
            results[key] = _measure(f"({key}) trustforge serve --backend {backend}", cmd, env, port, "/v2/health/ready", request_file, args)

        names = {
            "a": "naive FastAPI + torch",
            "b": f"TrustForge eager, batching, {args.workers} worker",
            "c": f"TrustForge ONNX, batching, {args.workers} worker",
        }
        print(
            f"\nPOST /invocations, 1 row of {len(columns)} columns; {args.seconds:g} s per level (<= {args.max_requests} requests), "
            f"loopback, clients in a separate process, {os.cpu_count()} CPUs, load average {load[0]:.1f} before / "
            f"{os.getloadavg()[0]:.1f} after"
        )
        print(f"{'server':<38} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'failed':>7}")
        for key in "abc":
            for r in results[key]["levels"]:
                print(f"{names[key]:<38} {r['clients']:>7} {r['rps']:>9.1f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['failed']:>7}")
        print(
            "\nserver CPU time per request, all levels (server process and its workers): "
            + ", ".join(f"({key}) {results[key]['cpu_ms_per_request']:.2f} ms" for key in "abc")
        )
        print("\nratios at equal concurrency (throughput; p99)")
        for i, clients in enumerate(LEVELS):
            a = results["a"]["levels"][i]
            parts = []
            for key in "bc":
                r = results[key]["levels"][i]
                parts.append(f"({key})/(a) = {r['rps'] / a['rps']:.2f}x req/s, p99 {r['p99_ms'] / a['p99_ms']:.2f}x")
            print(f"  {clients:>2} clients: " + "; ".join(parts))
        failed = sum(r["failed"] for key in "abc" for r in results[key]["levels"])
        print(f"\nfailed requests: {failed}")
        print(json.dumps({"results": results}, separators=(",", ":")))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline":
        baseline_server(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]))
    else:
        main()
