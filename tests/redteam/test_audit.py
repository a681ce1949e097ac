"""Red team, issue 11 finding 2: an audit log that cannot be erased or cut quietly.

An attacker who can write the database and the head file (but holds no signing key and cannot
write the keys folder) tries to make `audit verify` pass a log that lost entries: erase every
row and the head file, drop the tables, truncate to any checkpoint and forge the head from that
checkpoint's signature, or delete the head file. Every attempt must be detected, naming what is
missing. The 10,000-entry log is built once; each of the 1,000 attempts runs against an
in-memory copy of it (SQLite's online backup, a few milliseconds) instead of a file copy.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from _cli import run_main
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.pool import StaticPool

from trustforge.secure import AuditLog

N_ENTRIES = 10_000
ATTEMPTS = 1_000
EVERY = 64  # the log's checkpoint interval (CHECKPOINT_EVERY)
KINDS = ("erase-all", "drop-tables", "truncate-and-forge-head", "delete-head-file")


class Key:
    """ECDSA P-256, as the workspace key (`Keyring.sign` / `Keyring.verify`)."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())

    def sign(self, data: bytes) -> tuple[str, bytes]:
        return "k1", self.private.sign(data, ec.ECDSA(hashes.SHA256()))

    def verify(self, key_id: str, data: bytes, signature: bytes) -> bool:
        try:
            self.private.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return key_id == "k1"


def _memory_engine(conn: sqlite3.Connection) -> sa.Engine:
    return sa.create_engine("sqlite://", creator=lambda: conn, poolclass=StaticPool)


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    """(key, in-memory database holding a 10,000-entry log, head file bytes, witness bytes)."""
    key = Key()
    folder = tmp_path_factory.mktemp("master")
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    log = AuditLog(_memory_engine(conn), key.sign, key.verify, head_path=folder / "head.json", witness_path=folder / "witness.json")
    rng = random.Random(2)
    log.append_many(
        {
            "actor": rng.choice(["alice", "bob", "ci-bot"]),
            "action": rng.choice(["register", "alias", "tag", "delete", "authenticate"]),
            "object": f"models:/m{rng.randrange(40)}/{rng.randrange(1, 9)}",
            "outcome": rng.choice(["ok", "ok", "denied"]),
            "details": {"i": i},
        }
        for i in range(N_ENTRIES)
    )
    assert log.verify().ok and log.verify().entries == N_ENTRIES
    yield key, conn, (folder / "head.json").read_bytes(), (folder / "witness.json").read_bytes()
    conn.close()


def _attempt(master, folder: Path, kind: str, rng: random.Random) -> tuple[str, list[str]]:
    """Run one attack on a fresh copy; returns (what was done, the words the report must contain)."""
    key, source, head_bytes, witness_bytes = master
    db = sqlite3.connect(":memory:", check_same_thread=False)
    source.backup(db)
    head_file, witness = folder / "registry.db.audit-head.json", folder / "audit-witness.json"
    head_file.write_bytes(head_bytes)
    witness.write_bytes(witness_bytes)
    must: list[str] = []
    if kind == "erase-all":
        for table in ("audit_entries", "audit_checkpoints", "audit_head"):
            db.execute(f"DELETE FROM {table}")
        head_file.unlink()
        what = "deleted every audit row and the head file"
        must = ["witness", f"entries 1..{N_ENTRIES}", "audit_head row", head_file.name]
    elif kind == "drop-tables":
        dropped = rng.sample(["audit_entries", "audit_checkpoints", "audit_head"], rng.randrange(1, 4))
        for table in dropped:
            db.execute(f"DROP TABLE {table}")
        lose_head_file = rng.random() < 0.5
        if lose_head_file:
            head_file.unlink()
        what = f"dropped {dropped}" + (" and deleted the head file" if lose_head_file else "")
        if "audit_entries" in dropped:  # re-created empty when the log is opened
            must = [f"entries 1..{N_ENTRIES} are gone", "witness"]
        elif "audit_head" in dropped:
            must = ["missing", "audit_head row"]
        else:
            must = [head_file.name, "missing"] if lose_head_file else [f"checkpoint of entry {EVERY} is missing"]
    elif kind == "truncate-and-forge-head":
        cut = EVERY * rng.randrange(1, N_ENTRIES // EVERY + 1)
        cut = min(cut, N_ENTRIES - 1) if cut == N_ENTRIES else cut
        cp = db.execute("SELECT seq, hash, key_id, signature FROM audit_checkpoints WHERE seq = ?", (cut,)).fetchone()
        db.execute("DELETE FROM audit_entries WHERE seq > ?", (cut,))
        db.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (cut,))
        db.execute("UPDATE audit_head SET seq = ?, hash = ?, key_id = ?, signature = ? WHERE id = 1", cp)
        forged = {"seq": cp[0], "hash": cp[1], "key_id": cp[2], "signature": cp[3], "time": "2030-01-01T00:00:00.000000Z"}
        file_move = rng.choice(["keep", "delete", "forge"])
        if file_move == "delete":
            head_file.unlink()
        elif file_move == "forge":
            head_file.write_text(json.dumps(forged).ljust(511) + "\n")
        # The witness lives beside the keys, out of this attacker's reach: but check that the
        # domain separation alone catches the forged head when the witness is gone too.
        lose_witness = rng.random() < 0.25
        if lose_witness:
            witness.unlink()
            must = ["head", "invalid signature", "witness"]
        else:
            must = [f"entries {cut + 1}..{N_ENTRIES} are gone"]
        what = f"truncated to checkpoint {cut}, head forged from it, head file {file_move}, witness {'deleted' if lose_witness else 'kept'}"
    else:
        head_file.unlink()
        what = "deleted the head file"
        must = ["missing", head_file.name]
    db.commit()
    engine = _memory_engine(db)
    try:
        # Open the log as the registry does (it must not re-create anything), then verify.
        log = AuditLog(engine, key.sign, key.verify, head_path=head_file, witness_path=witness)
        report = log.verify()
    finally:
        engine.dispose()
        db.close()
    if report.ok:
        return f"{what}: NOT DETECTED ({report})", []
    missed = [m for m in must if m not in report.problem]
    return (f"{what}: detected, but the report does not say {missed}: {report.problem}" if missed else ""), []


def test_every_erasure_truncation_and_head_loss_is_detected(master, tmp_path):
    """1,000 random attempts of the four attacks over a 10,000-entry log: 100 % detected, each naming what is missing."""
    rng = random.Random(11)
    kinds = [KINDS[i % len(KINDS)] for i in range(ATTEMPTS)]
    rng.shuffle(kinds)
    started = time.perf_counter()
    failures = []
    for i, kind in enumerate(kinds):
        folder = tmp_path / f"a{i % 4}"
        folder.mkdir(exist_ok=True)
        problem, _ = _attempt(master, folder, kind, rng)
        if problem:
            failures.append(problem)
    elapsed = time.perf_counter() - started
    detected = ATTEMPTS - len(failures)
    print(f"\naudit red team: {detected}/{ATTEMPTS} attempts detected ({100 * detected / ATTEMPTS:.1f} %) in {elapsed:.1f} s")
    assert not failures, f"{len(failures)}/{ATTEMPTS} attempts not detected or not named:\n" + "\n".join(failures[:20])


# -- the finding as reported, through the CLI on a real workspace ------------------------------------


def _workspace_with_entries(home: Path, n: int) -> None:
    from trustforge.registry import Registry
    from trustforge.settings import Settings

    with Registry(Settings.from_env(home)) as reg:
        reg.audit.append_many({"actor": "alice", "action": "tag", "object": f"models:/m/{i}", "outcome": "ok"} for i in range(n))
        assert reg.audit.verify().ok


def test_cli_erased_log_fails_verify_naming_what_is_missing(workspace):
    _workspace_with_entries(workspace, 300)
    db = workspace / "registry.db"
    with sqlite3.connect(db) as c:
        for table in ("audit_entries", "audit_checkpoints", "audit_head"):
            c.execute(f"DELETE FROM {table}")
    c.close()
    (workspace / "registry.db.audit-head.json").unlink()
    code, out, err = run_main("audit", "verify", home=workspace)
    assert code != 0 and "ok:" not in out, (code, out, err)
    assert "entries 1..300 are gone" in err and "audit-witness.json" in err and "audit_head row" in err, err
    assert "Traceback" not in err and str(workspace) not in err


def test_cli_truncation_to_a_checkpoint_with_a_forged_head_fails_verify(workspace):
    _workspace_with_entries(workspace, 1_138)
    db = workspace / "registry.db"
    with sqlite3.connect(db) as c:
        cp = c.execute("SELECT seq, hash, key_id, signature FROM audit_checkpoints WHERE seq = 1088").fetchone()
        c.execute("DELETE FROM audit_entries WHERE seq > 1088")
        c.execute("DELETE FROM audit_checkpoints WHERE seq > 1088")
        c.execute("UPDATE audit_head SET seq = ?, hash = ?, key_id = ?, signature = ? WHERE id = 1", cp)
    c.close()
    head_file = workspace / "registry.db.audit-head.json"
    record = json.loads(head_file.read_text())
    record.update(seq=cp[0], hash=cp[1], key_id=cp[2], signature=cp[3])
    head_file.write_text(json.dumps(record).ljust(511) + "\n")
    code, out, err = run_main("audit", "verify", home=workspace)
    assert code != 0 and "ok:" not in out, (code, out, err)
    assert "entries 1089.." in err, err
    # Even with the witness gone too, the head's signature is not a head statement.
    (workspace / "keys" / "audit-witness.json").unlink()
    code, out, err = run_main("audit", "verify", home=workspace)
    assert code != 0 and "invalid signature" in err and "audit-witness.json" in err, err


def test_cli_head_file_deleted_fails_verify(workspace):
    _workspace_with_entries(workspace, 10)
    (workspace / "registry.db.audit-head.json").unlink()
    code, out, err = run_main("audit", "verify", home=workspace)
    assert code != 0 and "registry.db.audit-head.json" in err and "missing" in err, (code, out, err)


def test_cli_adopt_starts_a_missing_witness_only_for_a_log_that_verifies(workspace):
    _workspace_with_entries(workspace, 70)
    witness = workspace / "keys" / "audit-witness.json"
    assert witness.stat().st_mode & 0o777 == 0o600 and (workspace / "registry.db.audit-head.json").stat().st_mode & 0o777 == 0o600
    witness.unlink()  # a workspace copied without its witness
    code, out, err = run_main("audit", "verify", home=workspace)
    assert code != 0 and "audit-witness.json" in err, (code, out, err)
    code, out, err = run_main("audit", "verify", "--adopt", home=workspace)
    assert code == 0 and "ok: 70 entries (witness started)" in out, (code, out, err)
    code, out, err = run_main("audit", "verify", home=workspace)
    assert code == 0 and "ok: 71 entries" in out, (code, out, err)  # the adoption is itself audited
    # A witness naming a longer log is never replaced: a truncated log cannot be adopted.
    with sqlite3.connect(workspace / "registry.db") as c:
        cp = c.execute("SELECT seq, hash, key_id, signature FROM audit_checkpoints WHERE seq = 64").fetchone()
        c.execute("DELETE FROM audit_entries WHERE seq > 64")
        c.execute("UPDATE audit_head SET seq = ?, hash = ?, key_id = ?, signature = ? WHERE id = 1", cp)
    c.close()
    code, out, err = run_main("audit", "verify", "--adopt", home=workspace)
    assert code != 0 and json.loads(witness.read_text())["seq"] == 71, (code, out, err)
