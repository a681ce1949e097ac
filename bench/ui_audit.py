"""Benchmark: the dashboard's audit page on a log of many entries.

What it measures
    Wall time (time.perf_counter around each request, through Starlette's TestClient in this
    process, signed in as an admin) of GET /audit on a fresh workspace whose audit log holds
    `--entries` entries (default 100,000; written with `AuditLog.append_many`, so hashes,
    checkpoints and the signed head are real):

    * the first visit, which verifies the whole chain (then cached with its time);
    * the first page, a filtered page (actor and outcome), and the last page (deep OFFSET),
      each `--requests` times (default 30), interleaved; median and p95 are printed.

    For reference, in the same run: what the page would cost without its one-minute cache of
    the filter values (`AuditLog.values` of actor and action, a DISTINCT over the whole log),
    and the library calls the page makes (`count`, `entries` with and without filters).

How to run
    .venv/bin/python bench/ui_audit.py [--entries N] [--requests R]
    The default takes about 30 s. The exit status is 0 whatever the result: this is a
    benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _ms(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="tf-bench-audit-")) / "ws"
    os.environ["TRUSTFORGE_HOME"] = str(home)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ui"))
    from _ui import signed_in_client

    from trustforge.registry import Registry
    from trustforge.settings import Settings
    from trustforge.ui import create_app

    settings = Settings.from_env()
    registry = Registry(settings)
    registry.access.add_user("admin", "admin")
    token = registry.access.issue_token("admin")
    audit = registry.audit
    rng = random.Random(1)
    t = time.perf_counter()
    for start in range(0, args.entries, 10_000):
        audit.append_many(
            {
                "actor": rng.choice(["alice", "bob", "carol", "ci-bot", "anonymous"]),
                "action": rng.choice(["tag", "alias", "register", "users", "authenticate"]),
                "object": f"models:/m{i % 50}/{i % 30 + 1}",
                "outcome": rng.choice(["ok", "ok", "ok", "denied", "error"]),
                "details": {"i": i},
            }
            for i in range(start, min(args.entries, start + 10_000))
        )
    print(f"log of {audit.count()} entries written in {time.perf_counter() - t:.1f} s")

    client = signed_in_client(create_app(settings, registry=registry), token)
    first = _ms(lambda: client.get("/audit"), 1)[0]
    print(f"first visit (verifies the chain): {first:.0f} ms")
    last_page = -(-audit.count() // 50)
    kinds = {
        "page 1": {},
        "actor=bob&outcome=denied": {"actor": "bob", "outcome": "denied"},
        f"page={last_page}": {"page": last_page},
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(args.requests):
        for name, params in kinds.items():
            t = time.perf_counter()
            answer = client.get("/audit", params=params)
            times[name].append((time.perf_counter() - t) * 1000)
            assert answer.status_code == 200, (name, answer.status_code)
    for name, values in times.items():
        print(f"GET /audit {name:<28} median {statistics.median(values):6.1f} ms  p95 {_p95(values):6.1f} ms")

    print("reference (library calls, median of 5):")
    for name, fn in (
        ("values(actor) + values(action): uncached", lambda: (audit.values("actor"), audit.values("action"))),
        ("count()", lambda: audit.count()),
        ("count(actor, outcome)", lambda: audit.count(actor="bob", outcome="denied")),
        ("entries(limit=50)", lambda: audit.entries(limit=50)),
        ("entries(limit=50, actor, outcome)", lambda: audit.entries(limit=50, actor="bob", outcome="denied")),
    ):
        print(f"  {name:<42} {statistics.median(_ms(fn, 5)):6.1f} ms")
    registry.close()


if __name__ == "__main__":
    main()
