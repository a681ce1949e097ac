"""A flood of unauthenticated requests: audit entries written, and a valid caller's latency.

`trustforge serve` (default options: token auth, one model worker) serves a small iris model
on 127.0.0.1. A separate client process floods it with requests that carry no token, from
`--clients` keep-alive connections, each from its own loopback source address (127.0.0.2,
127.0.0.3, ...), as many sources as an attacker's machines. Meanwhile one valid caller (its
own token, from 127.0.0.1) sends one scoring request at a time. The script prints:

- the audit entries the flood left (new rows in the audit log, counted after the server
  stopped and wrote its last window), against the number of flood requests;
- the valid caller's p50 latency without the flood and during it (measured in the same run,
  alternating phases), and their ratio.

    .venv/bin/python bench/serve_flood.py                      # 10,000 requests, 16 clients
    .venv/bin/python bench/serve_flood.py --requests 2000      # shorter

`run_flood` is what `tests/redteam/test_serve.py` runs, at a smaller size.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HOST = "127.0.0.1"
SPEC = {
    "name": "flood-iris",
    "data": {"source": "builtin:iris"},
    "model": {"kind": "mlp", "hidden": [16]},
    "train": {"max_epochs": 5, "seed": 1},
    "evaluate": {"speed": False, "corruptions": False, "explain": False},
}
ROW = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4, "petal width (cm)": 0.2}
BODY = json.dumps({"dataframe_records": [ROW]}).encode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- the flood (its own process)


async def _flood_client(index: int, port: int, count: int, statuses: dict[int, int]) -> None:
    source = f"127.0.0.{2 + index}"
    request = (
        f"POST /invocations HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    reader = writer = None
    sent = 0
    while sent < count:
        if writer is None:
            reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
        writer.write(request)
        sent += 1
        try:
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length, close = 0, False
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            await reader.readexactly(length)
        except (ConnectionError, IndexError, ValueError, asyncio.IncompleteReadError):
            status, close = 0, True
        statuses[status] = statuses.get(status, 0) + 1
        if close:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def _flood(port: int, requests: int, clients: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    per = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    await asyncio.gather(*(_flood_client(i, port, n, statuses) for i, n in enumerate(per)))
    return statuses


def flood_main(port: int, requests: int, clients: int) -> None:
    started = time.perf_counter()
    statuses = asyncio.run(_flood(port, requests, clients))
    print(json.dumps({"statuses": statuses, "seconds": time.perf_counter() - started}), flush=True)


# ---------------------------------------------------------------------------- the valid caller


def _latencies(port: int, token: str, stop: threading.Event, limit: int) -> list[float]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    out: list[float] = []
    while not stop.is_set() and len(out) < limit:
        t = time.perf_counter()
        conn.request("POST", "/invocations", body=BODY, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"the valid caller got {r.status}")
        out.append(time.perf_counter() - t)
        time.sleep(0.005)  # a caller with think time, not a second flood
    conn.close()
    return out


def _quiet_p50(port: int, token: str, n: int) -> float:
    return statistics.median(_latencies(port, token, threading.Event(), n))


# ---------------------------------------------------------------------------- the run


def run_flood(home: Path, *, requests: int, clients: int, quiet_requests: int = 60) -> dict:
    """Train and register the model in `home`, serve it, flood it; returns the figures."""
    env = {**os.environ, "TRUSTFORGE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    from trustforge.pipeline import run
    from trustforge.registry import Registry
    from trustforge.settings import Settings

    settings = Settings.from_env(home)
    result = run(SPEC, settings=settings, progress=False)
    with Registry(settings) as reg:
        reg.set_alias(SPEC["name"], "champion", int(result.model_uri.rsplit("/", 1)[1]))
        reg.access.add_user("app", "viewer")
        token = reg.access.issue_token("app")
        seq_before = max((e["seq"] for e in reg.audit.entries(limit=1)), default=0)

    port = _free_port()
    cmd = [
        sys.executable,
        "-c",
        "from trustforge.cli import main; main()",
        "serve",
        f"models:/{SPEC['name']}@champion",
        "--port",
        str(port),
    ]
    log = (home / "server.log").open("wb")  # one JSON line per request: a file, never a pipe that fills up
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start: " + (home / "server.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        _quiet_p50(port, token, 20)  # warm-up
        quiet = [_quiet_p50(port, token, quiet_requests)]

        flooder = subprocess.Popen(
            [sys.executable, __file__, "--flood-only", str(port), str(requests), str(clients)],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        stop = threading.Event()
        during: list[float] = []
        caller = threading.Thread(target=lambda: during.extend(_latencies(port, token, stop, 10**9)), daemon=True)
        time.sleep(0.5)  # let the flood reach its pace before measuring
        caller.start()
        out, _ = flooder.communicate(timeout=900)
        stop.set()
        caller.join(60)
        flood = json.loads(out.strip().splitlines()[-1])
        quiet.append(_quiet_p50(port, token, quiet_requests))  # and after: the quiet figure brackets the flood
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    with Registry(settings) as reg:
        new = [e for e in reg.audit.entries(limit=100_000) if e["seq"] > seq_before]
    denials = [e for e in new if e["action"] == "serve_denials"]
    p50_quiet = statistics.median(quiet)
    p50_flood = statistics.median(during) if during else float("nan")
    return {
        "flood_requests": requests,
        "clients": clients,
        "flood_statuses": {int(k): v for k, v in flood["statuses"].items()},
        "flood_seconds": round(flood["seconds"], 2),
        "flood_rate_per_s": round(requests / flood["seconds"], 1),
        "audit_entries": len(new),
        "denial_entries": len(denials),
        "refusals_counted": sum(e["details"]["refused"] + e["details"]["limited"] for e in denials),
        "caller_requests_during_flood": len(during),
        "p50_ms_quiet": round(p50_quiet * 1000, 2),
        "p50_ms_flood": round(p50_flood * 1000, 2),
        "p50_ratio": round(p50_flood / p50_quiet, 3),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--flood-only":
        flood_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = run_flood(Path(tmp) / "ws", requests=args.requests, clients=args.clients)
    print(json.dumps(figures, indent=1))
    print(
        f"{figures['flood_requests']} unauthenticated requests from {figures['clients']} sources "
        f"({figures['flood_rate_per_s']}/s): {figures['audit_entries']} audit entries; "
        f"valid caller p50 {figures['p50_ms_quiet']} ms quiet, {figures['p50_ms_flood']} ms during the flood: "
        f"ratio {figures['p50_ratio']}"
    )


if __name__ == "__main__":
    main()
