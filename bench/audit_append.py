"""Benchmark: audit log appends per second on SQLite, against a plain INSERT per transaction.

What it measures
    Single-process appends per second (time.perf_counter), each append its own transaction,
    on a fresh SQLite file opened with the registry's engine (`trustforge.registry.make_engine`:
    WAL, synchronous=FULL, so one fsync per commit), in these configurations:

    * audit        - `AuditLog.append` as the registry uses it: head lock, hash chain, the head
                     checkpoint signed with the workspace key (ECDSA P-256, `Keyring.sign`)
                     after every append, a history checkpoint every 64 entries, and the head
                     file rewritten (temp + rename) after each commit.
    * no-file      - the same without the head file.
    * unsigned     - the same without the head file and without signing.
    * baseline     - the floor: one INSERT of an equally sized row per transaction, no chain,
                     no lock row, no signature, through the same SQLAlchemy engine.
    * audit-nofsync, baseline-nofsync - the same two with PRAGMA synchronous=OFF: without the
                     disk's fsync, what is left is TrustForge's own CPU cost per append.

    The configurations run alternately in rounds (each round appends for ~0.8 s per
    configuration, on its own database) so drift in machine load hits all alike; the script
    prints every round, the median appends/s per configuration and the ratio baseline/audit
    (how many times slower a real audited append is than the bare write). It also prints the
    bulk path (`append_many`, one transaction) and `verify` speed over the resulting log.

How to run
    .venv/bin/python bench/audit_append.py [--rounds R] [--seconds S]
    The default (4 rounds x 6 configurations x 0.8 s, plus bulk and verify) takes ~22 s.
    The exit status is 0 whatever the result: this is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from trustforge.registry import make_engine
from trustforge.secure._audit import AuditLog
from trustforge.secure._keys import Keyring

CONFIGS = ("audit", "no-file", "unsigned", "baseline", "audit-nofsync", "baseline-nofsync")


def _baseline_table(engine: sa.Engine) -> sa.Table:
    md = sa.MetaData()
    table = sa.Table(
        "plain_log",
        md,
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("time", sa.String(32)),
        sa.Column("actor", sa.String(200)),
        sa.Column("action", sa.String(64)),
        sa.Column("object", sa.String(512)),
        sa.Column("outcome", sa.String(16)),
        sa.Column("details", sa.Text),
        sa.Column("prev_hash", sa.String(64)),
        sa.Column("hash", sa.String(64)),
    )
    md.create_all(engine)
    return table


def run_config(kind: str, folder: Path, keyring: Keyring, seconds: float) -> float:
    """Appends per second of one configuration on a fresh database in `folder`."""
    engine = make_engine(f"sqlite:///{folder / f'{kind}.db'}")
    if kind.endswith("-nofsync"):
        sa.event.listen(engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA synchronous = OFF"))
    try:
        if kind.startswith("baseline"):
            table = _baseline_table(engine)
            row = {
                "time": "2025-01-01T00:00:00.000000Z",
                "actor": "alice",
                "action": "register",
                "object": "models:/iris/3",
                "outcome": "ok",
                "details": '{"i":0}',
                "prev_hash": "0" * 64,
                "hash": "f" * 64,
            }

            def one(i: int) -> None:
                with engine.begin() as conn:
                    conn.execute(sa.insert(table).values(**row))
        else:
            signer = (keyring.sign, keyring.verify) if kind != "unsigned" else (None, None)
            log = AuditLog(engine, *signer, head_path="auto" if kind.startswith("audit") else None)

            def one(i: int) -> None:
                log.append("alice", "register", f"models:/iris/{i}", "ok", {"i": i})

        one(0)  # warm-up: table creation, first connection
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            one(n)
            n += 1
        return n / elapsed
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0.8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tf-audit-bench-") as tmp:
        root = Path(tmp)
        keyring = Keyring.init(root / "keys")
        rates: dict[str, list[float]] = {k: [] for k in CONFIGS}
        for r in range(args.rounds):
            folder = root / f"round{r}"
            folder.mkdir()
            line = []
            for kind in CONFIGS:
                rates[kind].append(run_config(kind, folder, keyring, args.seconds))
                line.append(f"{kind} {rates[kind][-1]:.0f}/s")
            print(f"round {r + 1}: " + "  ".join(line), flush=True)

        med = {k: statistics.median(v) for k, v in rates.items()}
        print()
        for k in CONFIGS:
            print(f"median appends/s  {k:<16} {med[k]:8.0f}")
        print(
            f"ratio baseline/audit (cost of chain + signed checkpoint + head file): {med['baseline'] / med['audit']:.2f}x with fsync, "
            f"{med['baseline-nofsync'] / med['audit-nofsync']:.2f}x without"
        )

        engine = make_engine(f"sqlite:///{root / 'bulk.db'}")
        log = AuditLog(engine, keyring.sign, keyring.verify)
        n = 20_000
        start = time.perf_counter()
        log.append_many(
            {"actor": "alice", "action": "tag", "object": f"models:/iris/{i}", "outcome": "ok", "details": {"i": i}} for i in range(n)
        )
        bulk = n / (time.perf_counter() - start)
        start = time.perf_counter()
        report = log.verify()
        verify_rate = report.entries / (time.perf_counter() - start)
        engine.dispose()
        print(f"bulk append_many: {bulk:,.0f} entries/s; verify: {verify_rate:,.0f} entries/s ({report})")
        print(f"RESULT audit appends/s on SQLite (WAL, fsync per commit, signed head every append): {med['audit']:.0f}")


if __name__ == "__main__":
    main()
