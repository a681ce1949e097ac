"""The audit log: chain, signed checkpoints, tamper detection over 10,000 entries, concurrency."""

from __future__ import annotations

import base64
import json
import multiprocessing as mp
import os
import random
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trustforge.errors import IntegrityError, SecurityError
from trustforge.secure._audit import CHECKPOINT_EVERY, GENESIS, AuditLog, entry_hash

N_ENTRIES = 10_000
FIELDS = ("time", "actor", "action", "object", "outcome", "details", "prev_hash", "hash", "seq")


class SigningStub:
    """A stand-in for `Keyring.sign` / `Keyring.verify` (ECDSA P-256, as the workspace key)."""

    def __init__(self, pem: bytes | None = None):
        self.private = serialization.load_pem_private_key(pem, None) if pem else ec.generate_private_key(ec.SECP256R1())
        self.key_id = "test-key"

    def pem(self) -> bytes:
        return self.private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def sign(self, data: bytes) -> tuple[str, bytes]:
        return self.key_id, self.private.sign(data, ec.ECDSA(hashes.SHA256()))

    def verify(self, key_id: str, data: bytes, signature: bytes) -> bool:
        try:
            self.private.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            return False
        return key_id == self.key_id


def fast_engine(path: Path) -> sa.Engine:
    """A plain SQLite engine without fsync per commit (durability is not under test here)."""
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):  # noqa: ANN001
        dbapi_conn.execute("PRAGMA synchronous = OFF")

    return engine


def open_log(path: Path, key: SigningStub | None, **kwargs) -> AuditLog:
    """The log of `path`, with its witness at `<path>.witness.json` (the registry keeps it in keys/)."""
    kwargs.setdefault("witness_path", Path(f"{path}.witness.json"))
    return AuditLog(fast_engine(path), key.sign if key else None, key.verify if key else None, **kwargs)


def _record(i: int, rng: random.Random) -> dict:
    actions = ["register", "tag", "alias", "delete", "users", "gc", "serve"]
    return {
        "actor": rng.choice(["alice", "bob", "carol", "root", "ci-bot"]),
        "action": rng.choice(actions),
        "object": f"models:/m{rng.randrange(50)}/{rng.randrange(1, 30)}",
        "outcome": rng.choice(["ok", "ok", "ok", "denied", "error"]),
        "details": {"i": i, "note": rng.choice(["", "ünïcode", 'quote"s', "x" * rng.randrange(40)])},
    }


@pytest.fixture(scope="module")
def key() -> SigningStub:
    return SigningStub()


@pytest.fixture(scope="module")
def big_log(tmp_path_factory, key) -> Path:
    """A 10,000-entry log built once (append_many computes the real hashes and checkpoints)."""
    path = tmp_path_factory.mktemp("big") / "audit.db"
    log = open_log(path, key)
    rng = random.Random(5)
    for start in range(0, N_ENTRIES, 2500):
        log.append_many(_record(i, rng) for i in range(start, start + 2500))
    log.engine.dispose()
    return path


def fresh_copy(src: Path, dest_dir: Path, name: str) -> Path:
    dest = dest_dir / name
    shutil.copyfile(src, dest)
    shutil.copyfile(f"{src}.audit-head.json", f"{dest}.audit-head.json")
    shutil.copyfile(f"{src}.witness.json", f"{dest}.witness.json")
    return dest


def _different(field: str, value, rng: random.Random):
    if field == "seq":
        return 10 * N_ENTRIES + rng.randrange(1000)  # an unused seq: the entry vanishes from its place
    if field in ("prev_hash", "hash"):
        return "".join(rng.choice("0123456789abcdef") for _ in range(64))
    if field == "details":
        return json.dumps({"i": -1}, separators=(",", ":"))
    if field == "time":
        return "2001-01-01T00:00:00.000000Z"
    return value + rng.choice(["x", " ", "."]) if rng.random() < 0.7 else value[:-1] or "z"


# -- basics ----------------------------------------------------------------------------------


def test_entries_chain_and_report_ok(tmp_path, key):
    log = open_log(tmp_path / "a.db", key)
    assert log.verify().ok and log.verify().entries == 0
    assert log.append("alice", "register", "models:/iris/1", "ok", {"b": 2, "a": [1]}) == 1
    assert log.append("bob", "alias", "models:/iris@champion", "denied") == 2
    rows = log.entries()
    assert [r["seq"] for r in rows] == [2, 1]  # newest first
    first = rows[1]
    assert first["prev_hash"] == GENESIS and first["details"] == {"a": [1], "b": 2}
    assert first["time"].endswith("Z")
    assert first["hash"] == entry_hash(1, first["time"], "alice", "register", "models:/iris/1", "ok", '{"a":[1],"b":2}', GENESIS)
    assert rows[0]["prev_hash"] == first["hash"]
    assert log.entries(limit=1, offset=1)[0]["seq"] == 1
    report = log.verify()
    assert report.ok and report.entries == 2 and report.first_bad is None and str(report) == "ok: 2 entries"
    head = json.loads((tmp_path / "a.db.audit-head.json").read_text())
    assert head["seq"] == 2 and head["hash"] == rows[0]["hash"] and head["key_id"] == "test-key"
    with pytest.raises(ValueError):
        log.append("a", "b", "c", "maybe")


def test_append_inside_callers_transaction_rolls_back_with_it(tmp_path, key):
    log = open_log(tmp_path / "t.db", key)
    log.append("a", "register", "x", "ok")
    with pytest.raises(RuntimeError):
        with log.engine.begin() as conn:
            assert log.append("a", "tag", "x", "ok", conn=conn) == 2
            raise RuntimeError("the caller's work failed")
    assert [r["seq"] for r in log.entries()] == [1]
    with log.engine.begin() as conn:
        assert log.append("a", "tag", "y", "ok", conn=conn) == 2
    log.sync_head_file()
    assert json.loads((tmp_path / "t.db.audit-head.json").read_text())["seq"] == 2
    assert log.verify().ok


def test_checkpoints_survive_key_rotation(tmp_path):
    from trustforge.secure._keys import Keyring

    ring = Keyring.init(tmp_path / "keys")
    log = AuditLog(fast_engine(tmp_path / "k.db"), ring.sign, ring.verify)
    log.append_many({"actor": "a", "action": "tag", "object": "x", "outcome": "ok"} for _ in range(CHECKPOINT_EVERY + 3))
    ring2 = ring.rotate()
    log2 = AuditLog(log.engine, ring2.sign, ring2.verify)
    log2.append("a", "keys", "workspace", "ok")
    assert log2.verify().ok, log2.verify()
    # A verifier that does not know the old key refuses the old checkpoints.
    stranger = SigningStub()
    assert not AuditLog(log.engine, None, stranger.verify).verify().ok


def test_without_a_verifier_it_warns(tmp_path):
    log = open_log(tmp_path / "u.db", None)
    log.append("a", "tag", "x", "ok")
    report = log.verify()
    assert report.ok and any("not checked" in w for w in report.warnings)


# -- tamper detection over 10,000 entries ---------------------------------------------------------


def _verify_copy(path: Path, key: SigningStub):
    log = open_log(path, key)
    try:
        return log.verify()
    finally:
        log.engine.dispose()


def _check_all(cases, big_log, tmp_path, key):
    """Apply each (description, mutate(conn), expected_first_bad) to a fresh copy; all must be caught."""
    missed = []
    for i, (what, mutate, expected) in enumerate(cases):
        path = fresh_copy(big_log, tmp_path, f"m{i}.db")
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            mutate(conn)
        conn.close()
        report = _verify_copy(path, key)
        if report.ok or report.first_bad != expected:
            missed.append(f"{what}: expected first_bad={expected}, got ok={report.ok} first_bad={report.first_bad} ({report.problem})")
        path.unlink()
    assert not missed, f"{len(missed)}/{len(cases)} mutations not detected or misplaced:\n" + "\n".join(missed[:20])


def test_untouched_copy_verifies(big_log, tmp_path, key):
    report = _verify_copy(fresh_copy(big_log, tmp_path, "clean.db"), key)
    assert report.ok and report.entries == N_ENTRIES and not report.warnings


def test_every_single_edit_is_detected_at_the_edited_entry(big_log, tmp_path, key):
    rng = random.Random(11)
    cases = []
    source = sqlite3.connect(big_log)
    for k in range(81):
        seq, field = rng.randrange(1, N_ENTRIES + 1), FIELDS[k % len(FIELDS)]
        old = source.execute(f"SELECT {field} FROM audit_entries WHERE seq = ?", (seq,)).fetchone()[0]
        new = _different(field, old, rng)
        assert new != old

        def mutate(c, field=field, new=new, seq=seq):
            assert c.execute(f"UPDATE audit_entries SET {field} = ? WHERE seq = ?", (new, seq)).rowcount == 1

        cases.append((f"edit {field} of entry {seq}", mutate, seq))
    source.close()
    _check_all(cases, big_log, tmp_path, key)


def test_every_deletion_is_detected_at_the_deleted_entry(big_log, tmp_path, key):
    rng = random.Random(12)
    seqs = [1, N_ENTRIES] + [rng.randrange(1, N_ENTRIES + 1) for _ in range(43)]
    cases = [(f"delete entry {s}", lambda c, s=s: c.execute("DELETE FROM audit_entries WHERE seq = ?", (s,)), s) for s in seqs]
    _check_all(cases, big_log, tmp_path, key)


def test_every_reorder_is_detected_at_the_earlier_position(big_log, tmp_path, key):
    rng = random.Random(13)
    cases = []
    for k in range(45):
        i = rng.randrange(1, N_ENTRIES)
        j = i + 1 if k % 3 == 0 else rng.randrange(i + 1, N_ENTRIES + 1)

        def swap(c, i=i, j=j):
            c.execute("UPDATE audit_entries SET seq = -1 WHERE seq = ?", (i,))
            c.execute("UPDATE audit_entries SET seq = ? WHERE seq = ?", (i, j))
            c.execute("UPDATE audit_entries SET seq = ? WHERE seq = -1", (j,))

        cases.append((f"swap entries {i} and {j}", swap, i))
    _check_all(cases, big_log, tmp_path, key)


def test_every_tail_truncation_is_detected_at_the_first_missing_entry(big_log, tmp_path, key):
    rng = random.Random(14)
    drops = [1, 2, CHECKPOINT_EVERY, N_ENTRIES - 1] + [rng.randrange(1, N_ENTRIES) for _ in range(36)]
    cases = [
        (f"drop the last {k}", lambda c, k=k: c.execute("DELETE FROM audit_entries WHERE seq > ?", (N_ENTRIES - k,)), N_ENTRIES - k + 1)
        for k in drops
    ]
    _check_all(cases, big_log, tmp_path, key)


# -- attacks beyond single mutations ----------------------------------------------------------


def _rechain_from(c, start: int, edit: str) -> None:
    """Edit entry `start` and recompute every later hash, as an attacker without the key would."""
    rows = c.execute(
        "SELECT seq, time, actor, action, object, outcome, details, prev_hash FROM audit_entries WHERE seq >= ? ORDER BY seq", (start,)
    ).fetchall()
    prev = c.execute("SELECT hash FROM audit_entries WHERE seq = ?", (start - 1,)).fetchone()[0] if start > 1 else GENESIS
    for row in rows:
        row = list(row)
        if row[0] == start:
            row[2] = edit
        row[7] = prev
        prev = entry_hash(*row)
        c.execute("UPDATE audit_entries SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", (row[2], row[7], prev, row[0]))
    c.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (prev,))


def test_a_recomputed_chain_is_caught_by_the_checkpoints(big_log, tmp_path, key):
    for start in (5, 4_000, N_ENTRIES - 3):
        path = fresh_copy(big_log, tmp_path, f"rechain{start}.db")
        with sqlite3.connect(path) as c:
            _rechain_from(c, start, "nobody")
        c.close()
        report = _verify_copy(path, key)
        assert not report.ok
        # Localised to the checkpoint interval holding the edit.
        assert start - CHECKPOINT_EVERY < report.first_bad <= start, report


def test_tampered_head_and_checkpoints_are_caught(big_log, tmp_path, key):
    mutations = {
        "forged head signature": "UPDATE audit_head SET signature = 'AAAA' WHERE id = 1",
        "head removed": "DELETE FROM audit_head",
        "checkpoint removed": f"DELETE FROM audit_checkpoints WHERE seq = {CHECKPOINT_EVERY * 10}",
        "checkpoint hash changed": f"UPDATE audit_checkpoints SET hash = '{'0' * 64}' WHERE seq = {CHECKPOINT_EVERY * 3}",
        "entry appended behind TrustForge's back": "INSERT INTO audit_entries SELECT seq + 1, time, actor, action, object, outcome, details, hash, hash FROM audit_entries WHERE seq = 10000",
    }
    for what, sql in mutations.items():
        path = fresh_copy(big_log, tmp_path, "t.db")
        with sqlite3.connect(path) as c:
            c.execute(sql)
        c.close()
        assert not _verify_copy(path, key).ok, what
    # Appending after such an insertion refuses instead of forking the chain.
    with pytest.raises(IntegrityError, match="beyond the signed head"):
        open_log(path, key).append("a", "tag", "x", "ok")


def test_a_rewritten_chain_is_never_extended_so_no_append_can_launder_it(tmp_path, key):
    """Whoever writes the database but lacks the key rewrites an entry and recomputes the chain:
    the next append must refuse, or it would sign a new head over the forgery and `verify` would
    then pass (found by a probe: `users add` after such an edit re-signed the forged log)."""
    forgeries = {
        "head hash moved to the new chain, old signature left": lambda c: _rechain_from(c, 4, "nobody"),
        "head row left alone": lambda c: (_rechain_from(c, 4, "nobody"), c.execute("UPDATE audit_head SET hash = ? WHERE id = 1", (old,))),
        "last entry edited, chain recomputed from it": lambda c: _rechain_from(c, 10, "nobody"),
    }
    for what, forge in forgeries.items():
        shutil.rmtree(tmp_path / "w", ignore_errors=True)
        (tmp_path / "w").mkdir()
        log = _small_log(tmp_path / "w", key, n=10)
        old = log._head()["hash"]
        log.engine.dispose()
        with sqlite3.connect(tmp_path / "w" / "s.db") as c:
            forge(c)
        c.close()
        log = open_log(tmp_path / "w" / "s.db", key)
        assert not log.verify().ok, what
        with pytest.raises(IntegrityError, match="nothing was appended"):
            log.append("root", "users", "user:u4", "ok")
        with log.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT max(seq) FROM audit_entries")).scalar() == 10, what
        assert not log.verify().ok, what  # still reported: the forgery was not re-signed
    # An untouched log appends as before.
    shutil.rmtree(tmp_path / "w")
    (tmp_path / "w").mkdir()
    log = _small_log(tmp_path / "w", key, n=10)
    assert log.append("root", "users", "user:u4", "ok") == 11 and log.verify().ok


def test_truncation_with_an_old_genuine_head_is_caught_by_the_head_file(big_log, tmp_path, key):
    path = fresh_copy(big_log, tmp_path, "roll.db")
    with sqlite3.connect(path) as c:
        old_head = c.execute(
            "SELECT seq, hash, key_id, signature FROM audit_checkpoints WHERE seq = ?", (CHECKPOINT_EVERY * 100,)
        ).fetchone()
        c.execute("DELETE FROM audit_entries WHERE seq > ?", (old_head[0],))
        c.execute("UPDATE audit_head SET seq = ?, hash = ?, key_id = ?, signature = ? WHERE id = 1", old_head)
    c.close()
    report = _verify_copy(path, key)
    assert not report.ok and report.first_bad == old_head[0] + 1 and "rolled back" in report.problem


def test_database_rolled_back_to_an_older_copy_is_caught(tmp_path, key):
    log = open_log(tmp_path / "r.db", key)
    for i in range(5):
        log.append("a", "tag", f"x{i}", "ok")
    log.engine.dispose()
    shutil.copyfile(tmp_path / "r.db", tmp_path / "old.db")
    log = open_log(tmp_path / "r.db", key)
    log.append("a", "delete", "models:/x/1", "ok")
    log.engine.dispose()
    shutil.copyfile(tmp_path / "old.db", tmp_path / "r.db")  # the head file stays
    report = open_log(tmp_path / "r.db", key).verify()
    assert not report.ok and report.first_bad == 6
    # Without the head file the witness still names entry 6, and the missing file is named.
    (tmp_path / "r.db.audit-head.json").unlink()
    report = open_log(tmp_path / "r.db", key).verify()
    assert not report.ok and "r.db.audit-head.json" in report.problem and "entries 6..6 are gone" in report.problem, report
    # Appending to the rolled-back database would fork the witnessed history: refused.
    with pytest.raises(IntegrityError, match="witness"):
        open_log(tmp_path / "r.db", key).append("a", "tag", "y", "ok")


def test_a_torn_or_forged_head_file_is_ignored_with_a_warning(tmp_path, key):
    log = open_log(tmp_path / "h.db", key)
    log.append("a", "tag", "x", "ok")
    head_file = tmp_path / "h.db.audit-head.json"
    assert head_file.stat().st_size == 512
    head_file.write_bytes(head_file.read_bytes()[:100] + b"garbage")
    report = log.verify()
    assert report.ok and any("unreadable" in w for w in report.warnings)
    log.append("a", "tag", "y", "ok")  # the next append rewrites it
    assert log.verify().ok and not log.verify().warnings
    record = json.loads(head_file.read_text())
    record["seq"] = 99
    head_file.write_text(json.dumps(record))
    report = log.verify()
    assert report.ok and any("invalid signature" in w for w in report.warnings)


def test_entry_hash_is_sha256_of_the_compact_ascii_json_array():
    import hashlib

    fields = (7, "2025-01-01T00:00:00.000000Z", 'ü"\\\n\u2028', "a", "b/c", "ok", '{"k":"ü"}', "0" * 64)
    reference = json.dumps(["trustforge.audit.v1", *fields], ensure_ascii=True, separators=(",", ":"))
    assert entry_hash(*fields) == hashlib.sha256(reference.encode()).hexdigest()


# -- concurrency ---------------------------------------------------------------------------------


def _engine_for(kind: str, target: str) -> sa.Engine:
    if kind == "plain":  # sqlite3's own (deferred) transactions: only the head-row write serialises
        return fast_engine(Path(target))
    from trustforge.registry import make_engine

    engine = make_engine(target if kind == "postgresql" else f"sqlite:///{target}")
    if kind == "registry":  # WAL and BEGIN IMMEDIATE, as in a workspace; fsync is not under test
        sa.event.listen(engine, "connect", lambda dbapi_conn, _rec: dbapi_conn.execute("PRAGMA synchronous = OFF"))
    return engine


def _append_worker(kind: str, target: str, pem: bytes, worker: int, n: int, start) -> None:
    key = SigningStub(pem)
    engine = _engine_for(kind, target)
    log = AuditLog(engine, key.sign, key.verify)
    start.wait()
    for i in range(n):
        log.append(f"worker{worker}", "tag", f"models:/m/{i}", "ok", {"worker": worker, "i": i})
    engine.dispose()


@pytest.mark.parametrize("kind", ["plain", "registry", "postgresql"])
def test_four_processes_append_gapless(tmp_path, key, kind, request):
    target = request.getfixturevalue("pg_url") if kind == "postgresql" else str(tmp_path / "c.db")
    parent = AuditLog(_engine_for(kind, target), key.sign, key.verify)
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_append_worker, args=(kind, target, key.pem(), w, 200, start)) for w in range(4)]
    for p in procs:
        p.start()
    start.set()
    reports = []
    deadline = time.monotonic() + 120
    while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
        reports.append(parent.verify())  # verifying during appends never raises a false alarm
        time.sleep(0.1)
    for p in procs:
        p.join(timeout=max(1, deadline - time.monotonic()))
        assert p.exitcode == 0
    assert all(r.ok for r in reports), [str(r) for r in reports if not r.ok][:3]
    with parent.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(sa.text("SELECT seq FROM audit_entries ORDER BY seq"))]
        per_worker = conn.execute(sa.text("SELECT actor, count(*) FROM audit_entries GROUP BY actor")).all()
    assert seqs == list(range(1, 801))
    assert sorted(tuple(r) for r in per_worker) == [(f"worker{w}", 200) for w in range(4)]
    report = parent.verify()
    assert report.ok and report.entries == 800, report
    if kind != "postgresql":
        assert json.loads(Path(f"{target}.audit-head.json").read_text())["seq"] == 800
    # The same tampering is caught on every backend.
    with parent.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_entries SET outcome = 'ok' WHERE seq = 500 AND outcome <> 'ok'"))
        conn.execute(sa.text("UPDATE audit_entries SET object = 'models:/other/1' WHERE seq = 300"))
    assert parent.verify().first_bad == 300
    with parent.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entries WHERE seq >= 300"))
    report = parent.verify()
    assert not report.ok and report.first_bad == 300 and "truncated" in report.problem
    parent.engine.dispose()


# -- erasure, truncation with a forged head, the witness, the sink, legacy logs (issue 11) ---------


def _small_log(tmp_path: Path, key, n: int = 3 * CHECKPOINT_EVERY + 5, **kwargs) -> AuditLog:
    log = open_log(tmp_path / "s.db", key, **kwargs)
    log.append_many({"actor": "a", "action": "tag", "object": f"x{i}", "outcome": "ok"} for i in range(n))
    return log


def _forge_head_from_checkpoint(path: Path, cut: int) -> tuple:
    with sqlite3.connect(path) as c:
        cp = c.execute("SELECT seq, hash, key_id, signature FROM audit_checkpoints WHERE seq = ?", (cut,)).fetchone()
        c.execute("DELETE FROM audit_entries WHERE seq > ?", (cut,))
        c.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (cut,))
        c.execute("UPDATE audit_head SET seq = ?, hash = ?, key_id = ?, signature = ? WHERE id = 1", cp)
    c.close()
    return cp


def test_a_checkpoint_signature_cannot_stand_in_for_the_head(tmp_path, key):
    """Domain separation alone (no head file, no witness) catches a head forged from a checkpoint."""
    log = _small_log(tmp_path, key, head_path=None, witness_path=None)
    log.engine.dispose()
    _forge_head_from_checkpoint(tmp_path / "s.db", 2 * CHECKPOINT_EVERY)
    report = open_log(tmp_path / "s.db", key, head_path=None, witness_path=None).verify()
    assert not report.ok and "head" in report.problem and "invalid signature" in report.problem, report
    assert report.first_bad == 2 * CHECKPOINT_EVERY + 1


def test_erasing_every_row_and_the_head_file_is_caught_by_the_witness(tmp_path, key):
    log = _small_log(tmp_path, key, n=10)
    log.engine.dispose()
    with sqlite3.connect(tmp_path / "s.db") as c:
        for table in ("audit_entries", "audit_checkpoints", "audit_head"):
            c.execute(f"DELETE FROM {table}")
    c.close()
    (tmp_path / "s.db.audit-head.json").unlink()
    log = open_log(tmp_path / "s.db", key)  # opening never re-creates the head of a log that had entries
    with log.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM audit_head")).scalar() == 0
    report = log.verify()
    assert not report.ok and report.first_bad == 1
    for words in ("audit_head row", "s.db.audit-head.json", "the witness s.db.witness.json names entry 10", "entries 1..10 are gone"):
        assert words in report.problem, report.problem
    with pytest.raises(IntegrityError, match="head row is missing"):
        log.append("a", "tag", "x", "ok")


def test_dropped_tables_are_named(tmp_path, key):
    log = _small_log(tmp_path, key, n=10)
    with log.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE audit_entries"))
    report = log.verify()  # on the open log: the table is gone
    assert not report.ok and "audit_entries" in report.problem and "entries 1..10 are gone" in report.problem, report
    report = open_log(tmp_path / "s.db", key).verify()  # reopened: re-created empty, still caught
    assert not report.ok and "entries 1..10 are gone" in report.problem, report


def test_the_head_file_and_witness_are_required_once_there_are_entries(tmp_path, key):
    log = _small_log(tmp_path, key, n=5)
    head_file, witness = tmp_path / "s.db.audit-head.json", tmp_path / "s.db.witness.json"
    assert head_file.stat().st_mode & 0o777 == 0o600 and witness.stat().st_mode & 0o777 == 0o600
    assert json.loads(witness.read_text())["seq"] == 5
    head_file.unlink()
    report = log.verify()
    assert not report.ok and "missing: the head file s.db.audit-head.json" in report.problem, report
    with pytest.raises(IntegrityError, match="head file s.db.audit-head.json is missing"):
        log.append("a", "tag", "x", "ok")  # the next append would write a new head file and hide the deletion
    assert not head_file.exists() and not log.verify().ok
    log.sync_head_file()  # an explicit sync by whoever checked the entries rewrites it, forward
    assert log.verify().ok
    witness.unlink()
    report = log.verify()
    assert not report.ok and "the witness s.db.witness.json" in report.problem, report
    with pytest.raises(IntegrityError, match="witness s.db.witness.json is missing"):
        log.append("a", "tag", "x", "ok")  # appending would re-create it from whatever the database says
    assert not witness.exists()
    # An operator who accepts the database's log as it is starts the witness explicitly.
    report = log.adopt()
    assert report.ok and report.entries == 5 and json.loads(witness.read_text())["seq"] == 5
    log.append("a", "tag", "y", "ok")
    assert log.verify().ok and log.verify().entries == 6


def test_a_head_file_written_0644_becomes_0600(tmp_path, key):
    log = _small_log(tmp_path, key, n=1)
    head_file = tmp_path / "s.db.audit-head.json"
    os.chmod(head_file, 0o644)
    log.append("a", "tag", "y", "ok")
    assert head_file.stat().st_mode & 0o777 == 0o600


def test_a_new_log_starts_fresh_and_the_witness_only_moves_forward(tmp_path, key):
    log = open_log(tmp_path / "n.db", key)
    witness = tmp_path / "n.db.witness.json"
    assert json.loads(witness.read_text())["seq"] == 0 and log.verify().ok and not log.verify().warnings
    log.append("a", "tag", "x", "ok")
    older = json.loads(witness.read_text())
    log.append("a", "tag", "y", "ok")
    log._write_witness({**older, "time": "t"})  # a late writer with an older head
    assert json.loads(witness.read_text())["seq"] == 2
    # adopt never replaces a witness that names a longer log
    with log.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_entries WHERE seq = 2"))
        conn.execute(sa.text("UPDATE audit_head SET seq = 1, hash = :h"), {"h": older["hash"]})
    assert not log.adopt().ok and json.loads(witness.read_text())["seq"] == 2


def test_a_file_sink_gets_a_line_per_update_and_catches_erasure_of_everything_else(tmp_path, key):
    sink = tmp_path / "other-volume" / "audit.log"
    sink.parent.mkdir()
    log = _small_log(tmp_path, key, n=4, sink=f"file:{sink}")
    log.append("a", "tag", "y", "ok")
    lines = [json.loads(x) for x in sink.read_text().splitlines()]
    assert [r["seq"] for r in lines] == [0, 4, 5] and {r["statement"] for r in lines} == {"trustforge.audit.head.v2"}
    assert sink.stat().st_mode & 0o777 == 0o600
    log.engine.dispose()
    # The attacker erases the database, the head file and the witness: only the sink remembers.
    (tmp_path / "s.db").unlink()
    (tmp_path / "s.db.audit-head.json").unlink()
    (tmp_path / "s.db.witness.json").unlink()
    log = open_log(tmp_path / "s.db", key, sink=f"file:{sink}")  # not a new log: the sink names entries
    report = log.verify()
    assert not report.ok and "the audit sink (file) names entry 5" in report.problem and "entries 1..5 are gone" in report.problem, report
    assert "audit_head row" in report.problem
    with pytest.raises(SecurityError, match="TRUSTFORGE_AUDIT_SINK"):
        open_log(tmp_path / "x.db", key, sink="http://example.org/log")


def test_a_syslog_sink_receives_datagrams(tmp_path, key):
    import socket

    path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    try:
        log = open_log(tmp_path / "y.db", key, sink=f"syslog:{path}")
        log.append("a", "tag", "x", "ok")
        messages = [server.recv(4096).decode() for _ in range(2)]
    finally:
        server.close()
    assert all(m.startswith("<86>trustforge-audit: {") for m in messages)
    assert json.loads(messages[-1].split(": ", 1)[1])["seq"] == 1


def _make_legacy(path: Path, key) -> None:
    """Re-sign a log's head and checkpoints the way TrustForge did before v2 (one tag for both)."""
    from trustforge.secure import _audit

    with sqlite3.connect(path) as c:
        for table, where in (("audit_head", "id = 1"), ("audit_checkpoints", "1 = 1")):
            for seq, hash_ in c.execute(f"SELECT seq, hash FROM {table} WHERE {where}").fetchall():
                _kid, sig = key.sign(_audit._LEGACY_TAG + f"{seq}:{hash_}".encode())
                c.execute(f"UPDATE {table} SET signature = ? WHERE seq = ? AND {where}", (base64.b64encode(sig).decode(), seq))
        head = c.execute("SELECT seq, hash, key_id, signature, time FROM audit_head").fetchone()
    c.close()
    record = dict(zip(("seq", "hash", "key_id", "signature", "time"), head))
    Path(f"{path}.audit-head.json").write_text(json.dumps(record).ljust(511) + "\n")


def test_a_legacy_log_is_upgraded_once_and_its_old_signatures_then_refused(tmp_path, key):
    log = _small_log(tmp_path, key, n=3 * CHECKPOINT_EVERY, witness_path=None)
    log.engine.dispose()
    path = tmp_path / "s.db"
    _make_legacy(path, key)
    with sqlite3.connect(path) as c:
        legacy_cp = c.execute("SELECT seq, hash, key_id, signature FROM audit_checkpoints WHERE seq = ?", (CHECKPOINT_EVERY,)).fetchone()
    c.close()
    # Read without the signing key: it verifies, named as legacy.
    reader = AuditLog(fast_engine(path), None, key.verify, witness_path=None)
    report = reader.verify()
    assert report.ok and any("legacy" in w for w in report.warnings), report
    # Opened with the key: verified under the old rules, re-signed as v2, witness started, recorded.
    log = open_log(path, key)
    report = log.verify()
    assert report.ok and report.entries == 3 * CHECKPOINT_EVERY + 1 and not report.warnings, report
    assert log.entries(limit=1)[0]["action"] == "audit_upgrade" and log.entries(limit=1)[0]["details"]["legacy_entries"] == 192
    assert json.loads((tmp_path / "s.db.witness.json").read_text())["seq"] == 3 * CHECKPOINT_EVERY + 1
    log.engine.dispose()
    # An old v1 checkpoint signature (kept from before the upgrade) no longer makes a head,
    # even with the witness and the head file gone.
    with sqlite3.connect(path) as c:
        c.execute("DELETE FROM audit_entries WHERE seq > ?", (CHECKPOINT_EVERY,))
        c.execute("DELETE FROM audit_checkpoints WHERE seq > ?", (CHECKPOINT_EVERY,))
        c.execute("UPDATE audit_head SET seq = ?, hash = ?, key_id = ?, signature = ? WHERE id = 1", legacy_cp)
    c.close()
    (tmp_path / "s.db.witness.json").unlink()
    (tmp_path / "s.db.audit-head.json").unlink()
    log = open_log(path, key)  # v1 head, v2 checkpoint below it: not a legacy log, so no upgrade
    report = log.verify()
    assert not report.ok and "witness" in report.problem, report
    assert log.entries(limit=1)[0]["seq"] == CHECKPOINT_EVERY  # nothing appended: no upgrade
    report = open_log(path, key, witness_path=None, head_path=None).verify()
    assert not report.ok and "checkpoint" in report.problem, report


def test_a_tampered_legacy_log_is_not_upgraded(tmp_path, key):
    log = _small_log(tmp_path, key, n=2 * CHECKPOINT_EVERY, witness_path=None)
    log.engine.dispose()
    path = tmp_path / "s.db"
    _make_legacy(path, key)
    with sqlite3.connect(path) as c:
        c.execute("UPDATE audit_entries SET actor = 'mallory' WHERE seq = 70")
    c.close()
    log = open_log(path, key)
    assert not (tmp_path / "s.db.witness.json").exists()
    report = log.verify()
    assert not report.ok and "witness" in report.problem
    with pytest.raises(IntegrityError):
        log.append("a", "tag", "x", "ok")
    assert open_log(path, key, witness_path=None).verify().first_bad == 70


@pytest.mark.parametrize(
    "edit, first_bad",
    [
        ("UPDATE audit_entries SET seq = 'x' WHERE seq = 1", 1),
        ("UPDATE audit_entries SET seq = 'x' WHERE seq = 3", 3),
        ("UPDATE audit_entries SET seq = -1 WHERE seq = 2", 2),
        ("UPDATE audit_entries SET actor = x'41' WHERE seq = 2", 2),
        ("UPDATE audit_head SET seq = 'x'", 1),
    ],
    ids=["first-seq-text", "last-seq-text", "seq-negative", "actor-blob", "head-seq-text"],
)
def test_a_value_of_the_wrong_type_is_an_edit_never_a_crash(edit, first_bad, tmp_path, key):
    """SQLite keeps whatever an edit puts in a column: `verify` names the entry, `append` refuses."""
    log = open_log(tmp_path / "t.db", key)
    for i in range(3):
        log.append("alice", "tag", f"models:/m/{i}", "ok")
    with log.engine.begin() as conn:
        conn.execute(sa.text(edit))
    report = open_log(tmp_path / "t.db", key).verify()
    assert not report.ok and report.first_bad == first_bad, report
    assert "edited" in report.problem
    if "audit_head" in edit:
        with pytest.raises(IntegrityError, match="audit_head row was edited"):
            log.append("mallory", "tag", "models:/m/1", "ok")
