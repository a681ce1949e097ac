"""Serving throughput and latency: TrustForge against a naive FastAPI + torch server and MLServer.

What it measures (issue 13, "What must hold"), side by side in one run, for one trained
breast-cancer MLP (30 numeric columns), one row per request (the clients cycle through the
data set's 569 rows, shuffled):

  naive     a FastAPI app written here: loads the same verified `Model`, calls `model.predict`
            on each request alone (a sync route, torch at one thread); `POST /invocations`.
  tf-eager  `trustforge serve` (the same `serve()` the CLI calls) with eager PyTorch, one model
            worker process, dynamic batching (32 rows, 10 ms), token auth, request
            validation and drift monitoring on; `POST /invocations` with a bearer token.
  tf-onnx   the same with `--backend onnx`.
  mlserver  MLServer (its own venv, see bench/serve_mlserver.py) with adaptive batching set to
            the same 32 requests / 10 ms, serving the same network traced with TorchScript
            (standardisation + MLP + temperature + softmax, checked against `predict_proba`);
            `POST /v2/models/bench-mlp/infer` with one FP32 [1, 30] tensor.
  tf-nodrift  tf-eager with drift monitoring off, at 8 clients only: the cost of monitoring.

All servers run at once, each in its own process, on 127.0.0.1 only. A separate client process
per measurement (so the load generator shares no interpreter with a server) keeps 1, 8, 32
and 64 keep-alive HTTP/1.1 connections busy in a closed loop, for a bounded time and number of
requests, after a warm-up on the same connections. Four rounds; in each round every level runs
against every server, the servers in a rotated order, so the load of the machine (shared with
other work) falls on all of them alike; the drift-off server runs right beside tf-eager.
The cost of drift monitoring is the ratio that varies most with the machine's load, so each
round also measures `--drift-pairs` more pairs of tf-eager and tf-nodrift at 8 clients, back
to back, in alternating order; the cost is the median of the drift-on/drift-off ratios of all
pairs, and the CPU time per request of each server's HTTP process (its workers and monitor
process not counted) is printed beside it.
Figures are medians over the rounds; ratios to the naive server are taken within each round,
then the median. Every answer that is not 200 is counted (4xx, 5xx, broken connections,
warm-ups included) and printed. Before the load, each server answers one row once and its
probability is checked against `Model.predict_proba` in this process.

It also measures in-process `Model.predict` on one row (and on 32 rows) with the eager network
and the ONNX export, interleaved over the same rounds, in a process of its own at one thread;
and `Model.predict_columns` where the model has it.

How to run
    make bench-peers                               # once: MLServer into .venv-mlserver
    .venv/bin/python bench/serve_load.py           # 4 rounds x 4 levels x 4 servers, ~9 min on 2 cores
    .venv/bin/python bench/serve_load.py --quick   # 2 rounds, 1.5 s per level, ~2 min
    options: --seconds S --warmup W --rounds R --max-requests N --workers K --drift-pairs K --mlserver PATH|none
             --json FILE (every measurement) --keep (keep the workspace and the servers' logs)
    In a worktree whose .venv is shared, put the worktree's source first:
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD/src .venv/bin/python bench/serve_load.py --quick

The exit status is 0 whatever the figures: this is a benchmark, not a test. It installs
nothing; without .venv-mlserver it prints that MLServer is absent and measures the rest. The
last lines are the ratios and the issue's targets, each marked OK or MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"  # loopback only, always
LEVELS = (1, 8, 32, 64)
DRIFT_LEVEL = 8
BATCH_ROWS, BATCH_MS = 32, 10.0  # every batching server gets these
SPEC = {
    "name": "bench-breast-cancer",
    "data": {"source": "builtin:breast_cancer"},
    "model": {"kind": "mlp", "hidden": [64, 32]},
    "train": {"max_epochs": 5, "seed": 7},
    "evaluate": {"speed": False, "corruptions": False, "explain": False},
}


# ---------------------------------------------------------------------------- servers (each in its own process)


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


def trustforge_server(uri: str, port: int, backend: str, workers: int, drift: bool) -> None:
    """`trustforge serve URI` as the CLI runs it (token auth); with `drift` False, no drift monitor."""
    from trustforge.serve import ServeConfig, serve
    from trustforge.serve._service import ModelService

    if not drift:
        if not hasattr(ModelService, "_monitor_for"):
            raise SystemExit("serve_load: ModelService._monitor_for is gone; the drift-off server needs another way to turn monitoring off")
        ModelService._monitor_for = lambda self, *args, **kwargs: None
    config = ServeConfig(
        host=HOST, port=port, workers=workers, backend=backend, max_batch_size=BATCH_ROWS, max_latency_ms=BATCH_MS, auth="token"
    )
    serve(uri, config)


# ---------------------------------------------------------------------------- the load generator (its own process)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> tuple[int, bool]:
    """Send one request, read its whole response; (status, whether the server closes the connection)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, close = 0, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"connection" and b"close" in value.lower():
            close = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.readexactly(length)
    return status, close


async def _one_client(requests: list[bytes], port: int, measure_from: float, stop_at: float, state: dict) -> None:
    conn = None
    state["clients"] += 1
    at = state["clients"] * 97 % len(requests)  # each connection starts elsewhere in the rows
    while time.perf_counter() < stop_at and state["budget"] > 0:
        try:
            if conn is None:
                conn = await asyncio.open_connection(HOST, port)
            started = time.perf_counter()
            counted = started >= measure_from
            if counted:
                state["budget"] -= 1
            at = (at + 1) % len(requests)
            status, close = await _exchange(*conn, requests[at])
            if counted:
                state["latencies"].append(time.perf_counter() - started)
                state["last"] = time.perf_counter()
                state["status"][status // 100] = state["status"].get(status // 100, 0) + 1
            elif status != 200:
                state["warmup_failed"] += 1
            if close:
                conn[1].close()
                conn = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            state["broken" if time.perf_counter() >= measure_from else "warmup_failed"] += 1
            if conn is not None:
                conn[1].close()
            conn = None
            await asyncio.sleep(0.01)
    if conn is not None:
        conn[1].close()


async def _level(requests: list[bytes], port: int, clients: int, seconds: float, warmup: float, max_requests: int) -> dict:
    now = time.perf_counter()
    measure_from = now + warmup
    state = {"budget": max_requests, "latencies": [], "status": {}, "broken": 0, "warmup_failed": 0, "clients": 0, "last": measure_from}
    await asyncio.gather(*(_one_client(requests, port, measure_from, measure_from + seconds, state) for _ in range(clients)))
    lat = sorted(state["latencies"])
    n = len(lat)
    elapsed = max(1e-9, state["last"] - measure_from)
    ok = state["status"].get(2, 0)
    return {
        "clients": clients,
        "requests": n,
        "ok": ok,
        "status_4xx": state["status"].get(4, 0),
        "status_5xx": state["status"].get(5, 0),
        "other": n - ok - state["status"].get(4, 0) - state["status"].get(5, 0),
        "broken": state["broken"],
        "warmup_failed": state["warmup_failed"],  # non-200 or broken during the warm-up: failures too
        "seconds": elapsed,
        "rps": ok / elapsed,
        "p50_ms": 1000 * lat[n // 2] if n else float("nan"),
        "p99_ms": 1000 * lat[min(n - 1, int(n * 0.99))] if n else float("nan"),
    }


def client_main(port: int, request_file: str, clients: int, seconds: float, warmup: float, max_requests: int) -> None:
    """One concurrency level against one server; print one JSON line."""
    requests = [r.encode("latin-1") for r in json.loads(Path(request_file).read_text())]
    cpu0 = time.process_time()
    out = asyncio.run(_level(requests, port, clients, seconds, warmup, max_requests))
    out["client_cpu_s"] = time.process_time() - cpu0
    print(json.dumps(out))


# ---------------------------------------------------------------------------- in-process predict (its own process)


def inprocess_main(package: str, seconds: float, rounds: int) -> None:
    """Calls/s of `Model.predict` (and `predict_columns` where it exists) on 1 and 32 rows,
    eager and ONNX, interleaved over `rounds`; print one JSON line of per-round figures."""
    import torch

    from trustforge.data import load_source
    from trustforge.package import Model
    from trustforge.secure import Keyring
    from trustforge.serve._onnx import load_onnx_model, prepare_onnx
    from trustforge.serve._service import package_digest
    from trustforge.settings import Settings

    torch.set_num_threads(1)
    eager = Model.load(package)
    s = Settings.from_env()
    keyring = Keyring.load_or_init(s.keys_dir, kek_b64=s.kek)
    digest = package_digest(eager)
    onnx = load_onnx_model(Model.load(package), prepare_onnx(eager, digest, s.cache_dir, keyring), digest, keyring, 1)
    columns = [c["name"] for c in eager.manifest["signature"]["inputs"]]
    raw = load_source("builtin:breast_cancer", target=None, image_size=(32, 32), channels=3, seed=7).frame[columns]
    frames = {1: raw.iloc[:1].reset_index(drop=True), 32: raw.iloc[:32].reset_index(drop=True)}
    calls = []
    for name, model in (("eager", eager), ("onnx", onnx)):
        for rows, frame in frames.items():
            calls.append((f"{name} predict {rows} row{'s' if rows > 1 else ''}", lambda m=model, f=frame: m.predict(f)))
            if hasattr(model, "predict_columns"):
                cols = {c: frame[c].to_numpy() for c in frame.columns}
                calls.append((f"{name} predict_columns {rows} row{'s' if rows > 1 else ''}", lambda m=model, c=cols: m.predict_columns(c)))
    out: dict[str, list[float]] = {name: [] for name, _ in calls}
    for fn in (fn for _, fn in calls):  # warm-up: first calls build caches
        for _ in range(20):
            fn()
    for r in range(rounds):
        for name, fn in calls[r % len(calls) :] + calls[: r % len(calls)]:
            n, t0 = 0, time.perf_counter()
            stop = t0 + seconds
            while True:
                fn()
                n += 1
                now = time.perf_counter()
                if now >= stop:
                    break
            out[name].append(n / (now - t0))
    print(json.dumps(out))


# ---------------------------------------------------------------------------- orchestration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _http(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@dataclass
class Server:
    key: str
    label: str
    cmd: list[str]
    env: dict[str, str]
    ready_path: str
    request: Path  # the raw HTTP requests the clients send, whole, as a JSON list of latin-1 strings
    port: int = field(default_factory=_free_port)
    cwd: str | None = None
    levels: tuple[int, ...] = LEVELS
    proc: subprocess.Popen | None = None
    log: Path | None = None
    optional: bool = False  # a peer or a variant: the run goes on without it if it does not start
    beside: str | None = None  # measured right before or after this server (alternating by round)
    cpu_s: float = 0.0
    sent: int = 0

    def start(self, logs: Path) -> None:
        self.log = logs / f"{self.key}.log"
        with self.log.open("wb") as out:
            cmd = [a.replace("{port}", str(self.port)) for a in self.cmd]
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-1500:]
                raise RuntimeError(f"{self.label} exited with code {self.proc.returncode} before it was ready; its log ends:\n{tail}")
            try:
                if _http(self.port, "GET", self.ready_path, timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{self.label} not ready on port {self.port} within {timeout:.0f} s (log: {self.log})")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the server and its workers only
            self.proc.wait()


def _cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU time of a process and (unless `children` is False) its children
    (worker processes, the drift monitor's process), from /proc."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir() if children else ():
            for child in (task / "children").read_text().split():
                total += _cpu_seconds(int(child))
    except (OSError, IndexError, ValueError):
        pass
    return total


def _measure(server: Server, clients: int, args: argparse.Namespace) -> dict:
    before, main_before = _cpu_seconds(server.proc.pid), _cpu_seconds(server.proc.pid, children=False)
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            str(server.port),
            str(server.request),
            str(clients),
            str(args.seconds),
            str(args.warmup),
            str(args.max_requests),
        ],
        capture_output=True,
        text=True,
        timeout=(args.seconds + args.warmup) * 4 + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed against {server.label}: {done.stderr[-800:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["server_cpu_s"] = _cpu_seconds(server.proc.pid) - before
    out["server_main_cpu_s"] = _cpu_seconds(server.proc.pid, children=False) - main_before
    server.cpu_s += out["server_cpu_s"]
    server.sent += out["requests"]
    return out


def _write_requests(path: Path, requests: list[bytes]) -> None:
    path.write_text(json.dumps([r.decode("latin-1") for r in requests]))


def _order(servers: list[Server], r: int) -> list[Server]:
    """Round `r`'s order: rotated by one each round; a server measured `beside` another runs right
    after it in even rounds and right before it in odd ones (the drift-off pair: adjacent runs
    see the same load of the machine)."""
    main = [s for s in servers if s.beside is None]
    main = main[r % len(main) :] + main[: r % len(main)] if main else []
    for s in servers:
        if s.beside is not None:
            at = next((i for i, m in enumerate(main) if m.key == s.beside), len(main) - 1)
            main.insert(at + 1 - r % 2, s)
    return main


def _http_request(path: str, body: bytes, token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n{auth}Content-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


def _answer(server: Server, expected: float, first_class: str) -> str:
    """Send the bench row once; compare the first class's probability with `predict_proba`."""
    raw = json.loads(server.request.read_text())[0].encode("latin-1")
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    path = lines[0].split()[1]
    headers = dict(line.split(": ", 1) for line in lines[1:] if not line.lower().startswith(("host", "content-length")))
    status, data = _http(server.port, "POST", path, body, headers)
    if status != 200:
        return f"HTTP {status}: {data[:200]!r}"
    reply = json.loads(data)
    got = float(reply["outputs"][0]["data"][0]) if "outputs" in reply else float(reply["predictions"][0][f"proba_{first_class}"])
    diff = abs(got - expected)
    return f"p({first_class}) = {got:.6f}, |diff| {diff:.1e} " + ("ok" if diff < 1e-4 else "DIFFERS")


def _drift_state(server: Server, token: str, model: str) -> str:
    try:
        status, data = _http(server.port, "GET", f"/v2/models/{model}/drift", headers={"Authorization": f"Bearer {token}"})
    except OSError as exc:
        return f"unknown ({exc})"
    if status != 200:
        return f"unknown (HTTP {status})"
    reply = json.loads(data)
    if not reply.get("enabled"):
        return "OFF"
    d = reply.get("drift") or {}
    extra = {k: v for k, v in d.items() if isinstance(v, (int, float)) and k not in ("window",)}
    text = "on, " + ", ".join(f"{k} {v}" for k, v in extra.items())
    feed = d.get("feed") or {}
    if "thread_cpu_s" in feed and d.get("rows_seen"):
        where = "in the server process" if feed.get("in_process") else "in a process of its own"
        text += (
            f"; monitor {where}, the feed thread took {1000 * feed['thread_cpu_s'] / d['rows_seen']:.4f} ms of the server "
            f"process's CPU per row, dropped batches {feed.get('dropped_batches')}"
        )
    return text


def _failed(runs: list[dict]) -> int:
    """Answers that were not 200, and broken connections, warm-ups included."""
    return sum(x["requests"] - x["ok"] + x["broken"] + x["warmup_failed"] for x in runs)


def _fivexx(runs: list[dict]) -> int:
    return sum(x["status_5xx"] for x in runs)


def _median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def _load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds, 1.5 s per level, 0.5 s warm-up (for a quick look)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 4; --quick 2)")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds per level (default 5; --quick 1.5)")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds per level, not recorded (default 1; --quick 0.5)")
    parser.add_argument("--max-requests", type=int, default=20000, help="at most this many measured requests per level")
    parser.add_argument(
        "--drift-pairs", type=int, default=None, help="extra drift-on/drift-off pairs at 8 clients per round (default 3; --quick 2)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="model worker processes of the TrustForge servers (0: in the server process)"
    )
    parser.add_argument(
        "--mlserver", default=None, help="MLServer's venv or `mlserver` executable (default .venv-mlserver); none: leave it out"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every measurement to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace (server logs are in it)")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 4)
    args.seconds = args.seconds or (1.5 if args.quick else 5.0)
    args.drift_pairs = args.drift_pairs if args.drift_pairs is not None else (2 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    inproc_seconds = 0.3 if args.quick else 1.0

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import serve_mlserver

    mlserver_exe, mlserver_line = serve_mlserver.find_mlserver(args.mlserver)
    print(mlserver_line, flush=True)

    root = Path(tempfile.mkdtemp(prefix="tf-serve-bench-"))
    logs = root / "logs"
    logs.mkdir()
    env = {**os.environ, "TRUSTFORGE_HOME": str(root / "ws"), "OMP_NUM_THREADS": "1"}
    env.pop("TRUSTFORGE_TOKEN", None)
    servers: list[Server] = []
    try:
        os.environ.update(TRUSTFORGE_HOME=env["TRUSTFORGE_HOME"])
        import torch

        from trustforge.data import load_source
        from trustforge.pipeline import run
        from trustforge.registry import Registry

        torch.set_num_threads(1)
        print(f"training {SPEC['name']} ...", flush=True)
        result = run(SPEC, progress=False)
        with Registry() as reg:
            reg.set_alias(SPEC["name"], "champion", 1)
            reg.access.add_user("bench-client", "viewer")
            token = reg.access.issue_token("bench-client", ttl_days=1)
            model = reg.load_model(result.model_uri)
        columns = [s["name"] for s in model.manifest["signature"]["inputs"]]
        frame = load_source("builtin:breast_cancer", target=None, image_size=(32, 32), channels=3, seed=7).frame[columns]
        # The clients cycle through every row of the data set, shuffled, one per request: the drift
        # monitor sees the data the model was trained on, not one row repeated (which it flags as drift).
        sample = frame.sample(frac=1.0, random_state=7)
        rows = [[float(v) for v in r] for r in sample.to_numpy()]
        expected = float(model.predict_proba(sample.iloc[:1])[0][0])
        first_class = model.classes[0]

        # in-process predict first, while no server runs
        print("in-process Model.predict, eager and ONNX ...", flush=True)
        load_inproc = _load()
        done = subprocess.run(
            [sys.executable, __file__, "--inprocess", str(result.package), str(inproc_seconds), str(args.rounds)],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        inproc = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {"error": done.stderr[-1500:]}

        bodies = [json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}).encode() for row in rows]
        _write_requests(root / "invocations.http", [_http_request("/invocations", b, token) for b in bodies])
        uri = f"models:/{SPEC['name']}@champion"
        me = [sys.executable, __file__]
        w = args.workers
        servers = [
            Server(
                "naive",
                "naive FastAPI + torch",
                [*me, "--baseline", str(result.package), "{port}"],
                env,
                "/ping",
                root / "invocations.http",
            ),
            Server(
                "tf-eager",
                f"TrustForge eager ({w} worker)",
                [*me, "--trustforge", uri, "{port}", "torch", str(w), "on"],
                env,
                "/v2/health/ready",
                root / "invocations.http",
            ),
            Server(
                "tf-onnx",
                f"TrustForge ONNX ({w} worker)",
                [*me, "--trustforge", uri, "{port}", "onnx", str(w), "on"],
                env,
                "/v2/health/ready",
                root / "invocations.http",
            ),
        ]
        if mlserver_exe is not None:
            repo = root / "mlserver"
            repo.mkdir()
            network = repo / "network.pt"
            diff = serve_mlserver.trace_network(model, frame.iloc[:64], network)
            print(f"traced network for MLServer: largest difference from Model.predict_proba on 64 rows {diff:.1e}", flush=True)
            path = f"/v2/models/{serve_mlserver.MODEL_NAME}/infer"
            _write_requests(root / "v2.http", [_http_request(path, serve_mlserver.request_body(row), None) for row in rows])
            mls = Server(
                "mlserver",
                "MLServer, adaptive batching",
                serve_mlserver.command(mlserver_exe, repo),
                serve_mlserver.environment(env),
                f"/v2/models/{serve_mlserver.MODEL_NAME}/ready",
                root / "v2.http",
                cwd=str(repo),
                optional=True,
            )
            serve_mlserver.write_repository(repo, network, HOST, (mls.port, _free_port(), _free_port()), BATCH_ROWS, BATCH_MS / 1000)
            servers.append(mls)
        servers.append(
            Server(
                "tf-nodrift",
                f"TrustForge eager, drift OFF ({w} worker)",
                [*me, "--trustforge", uri, "{port}", "torch", str(w), "off"],
                env,
                "/v2/health/ready",
                root / "invocations.http",
                levels=(DRIFT_LEVEL,),
                optional=True,
                beside="tf-eager",
            )
        )
        print("starting " + ", ".join(s.key for s in servers) + " ...", flush=True)
        for s in servers:
            s.start(logs)
        for s in list(servers):
            try:
                s.wait_ready()
            except RuntimeError as exc:
                if not s.optional:
                    raise
                print(f"  LEFT OUT: {exc}", flush=True)
                s.stop()
                servers.remove(s)
        for s in servers:
            print(f"  {s.label:<40} port {s.port}: {_answer(s, expected, first_class)}", flush=True)

        load_before = _load()
        t0 = time.monotonic()
        runs: list[dict] = []
        for r in range(args.rounds):
            for clients in LEVELS:
                for s in _order([s for s in servers if clients in s.levels], r):
                    out = _measure(s, clients, args)
                    runs.append({"round": r, "server": s.key, **out})
            pair = {s.key: s for s in servers if s.key in ("tf-eager", "tf-nodrift")}
            for p in range(args.drift_pairs if len(pair) == 2 else 0):
                # back to back, the order alternating: the two see the same load of the machine
                for key in ("tf-eager", "tf-nodrift") if (r + p) % 2 else ("tf-nodrift", "tf-eager"):
                    out = _measure(pair[key], DRIFT_LEVEL, args)
                    runs.append({"round": r, "pair": p, "server": key, **out})
            print(f"  round {r + 1}/{args.rounds} done ({time.monotonic() - t0:.0f} s, load average {_load():.1f})", flush=True)
        load_after = _load()
        drift_states = {s.key: _drift_state(s, token, SPEC["name"]) for s in servers if s.key.startswith("tf-")}
    finally:
        for s in servers:
            s.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"workspace and server logs kept in {root}")

    _report(servers, runs, inproc, args, drift_states, mlserver_line, (load_inproc, load_before, load_after))


def _report(servers: list[Server], runs: list[dict], inproc: dict, args, drift_states: dict, mlserver_line: str, loads: tuple) -> None:
    def pick(key: str, clients: int) -> list[dict]:
        return [x for x in runs if x["server"] == key and x["clients"] == clients and "pair" not in x]

    def ratios(key: str, base: str, clients: int) -> list[float]:
        a = {x["round"]: x["rps"] for x in pick(base, clients)}
        return [x["rps"] / a[x["round"]] for x in pick(key, clients) if a.get(x["round"])]

    keys = [s.key for s in servers]
    labels = {s.key: s.label for s in servers}
    print(
        f"\nOne row of breast cancer per request, keep-alive clients on loopback in their own process; {args.rounds} interleaved rounds, "
        f"{args.seconds:g} s per level after {args.warmup:g} s warm-up (<= {args.max_requests} requests); batching {BATCH_ROWS} rows / "
        f"{BATCH_MS:g} ms; {os.cpu_count()} CPUs, 1-min load average {loads[1]:.1f} before / {loads[2]:.1f} after the load "
        f"(other work on the machine slows every server alike; compare ratios, not req/s across runs)"
    )
    print(mlserver_line)
    print(
        f"{'server':<42} {'clients':>7} {'req/s':>8} {'x naive':>8} {'(range)':>11} {'p50 ms':>7} {'p99 ms':>8} {'non-200':>7} {'5xx':>4}"
    )
    for clients in LEVELS:
        for key in keys:
            xs = pick(key, clients)
            if not xs:
                continue
            rs = ratios(key, "naive", clients)
            rps, p50, p99 = (_median([x[k] for x in xs]) for k in ("rps", "p50_ms", "p99_ms"))
            ratio, spread = (_median(rs), _spread(rs)) if key != "naive" else (1.0, "")
            print(
                f"{labels[key]:<42} {clients:>7} {rps:>8.1f} {ratio:>7.2f}x {spread:>11} "
                f"{p50:>7.2f} {p99:>8.2f} {_failed(xs):>7} {_fivexx(xs):>4}"
            )
    client_ms = 1000 * sum(x["client_cpu_s"] for x in runs) / max(1, sum(x["requests"] for x in runs))
    print(
        "server CPU per request (its process and workers, all levels): "
        + ", ".join(f"{s.key} {1000 * s.cpu_s / max(1, s.sent):.2f} ms" for s in servers)
        + f"; load generator CPU per request {client_ms:.2f} ms"
    )
    print("drift monitor at the end: " + "; ".join(f"{k}: {v}" for k, v in drift_states.items()))

    print(f"\nIn-process, one thread, {args.rounds} interleaved rounds (1-min load average {loads[0]:.1f}), calls/s (median, range):")
    if "error" in inproc:
        print("  FAILED: " + inproc["error"])
    else:
        for name, vals in inproc.items():
            print(f"  {name:<32} {_median(vals):>9.0f}  ({min(vals):.0f}-{max(vals):.0f})")

    failed, fivexx = _failed(runs), _fivexx(runs)
    broken = sum(x["broken"] for x in runs)
    print(
        f"\nfailed requests (non-200 or broken connection, warm-ups included): {failed}; "
        f"of them 5xx: {fivexx}; broken connections: {broken}"
    )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "inprocess": inproc, "loads": loads}, indent=1))
        print(f"every measurement: {args.json}")

    def mark(ok: bool) -> str:
        return "OK  " if ok else "MISS"

    print("\nratios (medians of per-round ratios, same run) and the issue's targets:")
    has_mls = "mlserver" in keys
    for key in ("tf-eager", "tf-onnx") + (("mlserver",) if has_mls else ()):
        print(f"  {labels[key]:<40} x naive at " + ", ".join(f"{c}: {_median(ratios(key, 'naive', c)):.2f}x" for c in LEVELS))
    for key in ("tf-eager", "tf-onnx"):
        at32 = _median(ratios(key, "naive", 32))
        line = f"  {mark(at32 >= 8)} {key} at 32 clients >= 8x naive: {at32:.2f}x"
        if has_mls:
            vs = _median(ratios(key, "mlserver", 32))
            line += f";  {mark(vs >= 1)} >= MLServer: {vs:.2f}x MLServer"
        print(line)
        p50, naive_p50 = _median([x["p50_ms"] for x in pick(key, 1)]), _median([x["p50_ms"] for x in pick("naive", 1)])
        print(f"  {mark(p50 < naive_p50)} {key} p50 at 1 client below naive's: {p50:.2f} ms vs {naive_p50:.2f} ms")
    if not has_mls:
        print("  ---- TrustForge >= MLServer at 32 clients: NOT MEASURED (MLServer absent; `make bench-peers`)")
    # drift-on req/s over drift-off, per pair: the pair of each round's main loop and the extra pairs
    paired: dict[tuple, dict[str, dict]] = {}
    for x in runs:
        if x["server"] in ("tf-eager", "tf-nodrift") and x["clients"] == DRIFT_LEVEL:
            paired.setdefault((x["round"], x.get("pair", -1)), {})[x["server"]] = x
    both = [p for p in paired.values() if len(p) == 2 and p["tf-nodrift"]["rps"] > 0]
    on_off = [p["tf-eager"]["rps"] / p["tf-nodrift"]["rps"] for p in both]
    cost = 1 - _median(on_off)

    def http_ms(key: str) -> float:
        xs = [p[key] for p in both]
        return 1000 * sum(x["server_main_cpu_s"] for x in xs) / max(1, sum(x["requests"] for x in xs))

    print(
        f"  {mark(cost < 0.10)} drift monitoring costs < 10 % at {DRIFT_LEVEL} clients: {100 * cost:+.1f} % "
        f"(on/off {_median(on_off):.3f}, median of {len(on_off)} back-to-back pairs, range {_spread(on_off)}; "
        f"HTTP-process CPU per request {http_ms('tf-eager'):.3f} ms on, {http_ms('tf-nodrift'):.3f} ms off)"
        if both
        else "  ---- drift monitoring cost: NOT MEASURED (the drift-off server did not run)"
    )
    if "error" not in inproc:
        for call in ("predict", "predict_columns"):
            if f"eager {call} 1 row" in inproc:
                one = _median(inproc[f"eager {call} 1 row"])
                print(f"  {mark(one >= 1000)} in-process Model.{call}, 1 row, eager >= 1000 calls/s: {one:.0f}")
        for call in ("predict", "predict_columns"):
            for rows in ("1 row", "32 rows"):
                e, o = inproc.get(f"eager {call} {rows}", []), inproc.get(f"onnx {call} {rows}", [])
                if e and o:
                    per_round = [b / a for a, b in zip(e, o)]
                    print(
                        f"  {mark(_median(per_round) > 1)} ONNX faster than eager, Model.{call} {rows}: "
                        f"{_median(per_round):.2f}x ({_spread(per_round)})"
                    )
    print(f"  {mark(failed == 0 and fivexx == 0)} zero failed requests and zero 5xx: {failed} failed, {fivexx} 5xx")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--baseline":
        baseline_server(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--trustforge":
        trustforge_server(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), sys.argv[6] == "on")
    elif len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--inprocess":
        inprocess_main(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
