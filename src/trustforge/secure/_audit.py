"""The tamper-evident audit log: an append-only, hash-chained table with signed checkpoints.

Every entry is one row: `seq` (1, 2, 3, ... with no gaps), `time` (UTC ISO-8601), `actor`,
`action`, `object`, `outcome` (`ok` | `denied` | `error`), `details` (canonical JSON),
`prev_hash` (the hash of entry `seq - 1`; 64 zeros for entry 1) and `hash`, the SHA-256 of a
canonical JSON array of all of those fields in a fixed order (see `entry_hash`). Changing,
deleting or reordering any entry therefore breaks the chain at that entry.

A chain alone cannot show that its tail was cut off, nor that someone rewrote an entry and
recomputed every later hash. Signed checkpoints close that gap:

* the *head*: after every append, in the same transaction, the new `(seq, hash)` is signed
  with the workspace key (`signer`, i.e. `Keyring.sign`) and stored in the one-row
  `audit_head` table, a different table from the entries, so deleting entries does not delete
  it. Signing costs well under a millisecond, so there is no batching: the head always names
  the latest entry, and any tail truncation, even of one entry, is detected.
* a *head file* beside a SQLite database (`<db file>.audit-head.json`), rewritten after each
  commit (one signed fixed-size record, only ever forward). It survives a rollback of the
  database file to an older copy, which the head row cannot detect. It may lag behind the
  head row (it is written after commit; appends made inside a caller's transaction reach it
  at the next `sync_head_file()` or own append) and is then checked against the entry it
  names. A missing, torn or unverifiable head file is a warning, never a failure.
* *history checkpoints*: every `CHECKPOINT_EVERY`-th entry's `(seq, hash)` is also signed into
  `audit_checkpoints`. They localise a rewrite whose chain was recomputed to the
  `CHECKPOINT_EVERY` entries before the first checkpoint that disagrees, while `verify` checks
  only 1 signature per `CHECKPOINT_EVERY` entries (an ECDSA check costs 20-50 entry hashes).

Threat model. Detected: anyone who can write the database but does not hold the signing key
editing, deleting, inserting or reordering entries, truncating the tail, recomputing the
chain, or tampering with checkpoints; a database rolled back to an older copy while the head
file stays. Out of scope: an attacker holding the signing key (they can sign any head), and
one who rolls back the database *and* the head file consistently to an earlier state, or
deletes the head file and restores an older signed head row (both are rollbacks to a state
that was once genuine; keep backups and the head file elsewhere to catch those). Without a
signer the checkpoints are unsigned and only accidental damage is detected; `verify` says so.

Appends from several processes are serialised by a write on the head row first in each
transaction: a row lock on PostgreSQL (plus `SELECT ... FOR UPDATE`), the database write lock
on SQLite (a transaction that writes first never has to upgrade a read lock, so the busy
timeout applies instead of an immediate SQLITE_BUSY). `seq` is the primary key, so a fork of
the chain is impossible even if that serialisation failed; transient lock errors are retried.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from trustforge.errors import IntegrityError, RegistryError

__all__ = ["AuditLog", "AuditReport", "metadata", "entry_hash", "CHECKPOINT_EVERY", "OUTCOMES"]

OUTCOMES = ("ok", "denied", "error")
GENESIS = "0" * 64
CHECKPOINT_EVERY = 64
_ENTRY_TAG = "trustforge.audit.v1"
_CHECKPOINT_TAG = b"trustforge.audit.checkpoint.v1\x00"
_RETRIES = 10
_HEAD_RECORD = 512  # bytes of the head file: one sector, one write
# Registry engines (`trustforge.registry.make_engine`) begin every SQLite transaction with
# BEGIN IMMEDIATE unless this execution option says DEFERRED; reads need no write lock.
_READONLY = {"trustforge_sqlite_begin": "DEFERRED"}

Signer = Callable[[bytes], "tuple[str, bytes]"]
Verifier = Callable[[str, bytes, bytes], bool]

metadata = sa.MetaData()

entries_table = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("time", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object", sa.String(512), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# One row (id = 1): the lock every append takes, and the signed checkpoint of the latest entry.
head_table = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(128)),
    sa.Column("signature", sa.String(200)),
    sa.Column("time", sa.String(32), nullable=False),
)

checkpoints_table = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("key_id", sa.String(128)),
    sa.Column("signature", sa.String(200)),
)


_ESCAPE = json.encoder.encode_basestring_ascii  # str -> its JSON string literal, ASCII only
_TAG_JSON = _ESCAPE(_ENTRY_TAG)


# Statements built once: building them per append cost more CPU than running them.
_LOCK_HEAD = sa.update(head_table).where(head_table.c.id == 1).values(id=1)
_READ_HEAD = sa.select(head_table.c.seq, head_table.c.hash).where(head_table.c.id == 1).with_for_update()
_INSERT_ENTRY = sa.insert(entries_table)
_INSERT_CHECKPOINT = sa.insert(checkpoints_table)
_SET_HEAD = sa.update(head_table).where(head_table.c.id == 1)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical_details(details: dict | None) -> str:
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def entry_hash(seq: int, time_: str, actor: str, action: str, obj: str, outcome: str, details: str, prev_hash: str) -> str:
    """SHA-256 (hex) of one entry: a JSON array of a version tag and every field, in this order.

    A fixed-order array of strings and one integer has exactly one compact ASCII JSON
    encoding, so the hash is canonical without relying on key ordering; `details` is hashed
    as the stored text, so any byte of it that changes is detected.
    """
    # Exactly json.dumps([...], ensure_ascii=True, separators=(",", ":")) (a test checks it),
    # built from json's own C string escaper: 3x faster, and `verify` does this per entry.
    if type(seq) is not int:
        raise TypeError(f"seq must be an int; got {type(seq).__name__}")
    esc = _ESCAPE
    data = f"[{_TAG_JSON},{seq},{esc(time_)},{esc(actor)},{esc(action)},{esc(obj)},{esc(outcome)},{esc(details)},{esc(prev_hash)}]"
    return hashlib.sha256(data.encode("ascii")).hexdigest()


def _checkpoint_message(seq: int, hash_: str) -> bytes:
    return _CHECKPOINT_TAG + f"{seq}:{hash_}".encode("ascii")


@dataclass(frozen=True)
class AuditReport:
    """The result of `AuditLog.verify`.

    Attributes:
        ok: True when the chain and every checkpoint check out.
        entries: the number of entries checked (those up to the signed head).
        first_bad: the `seq` of the first entry that was edited, deleted, reordered or cut
            off (for a truncated log: the first missing entry); None when ok.
        problem: one line saying what is wrong ("" when ok).
        warnings: things that weaken the check without being tampering (e.g. no head file).
    """

    ok: bool
    entries: int
    first_bad: int | None = None
    problem: str = ""
    warnings: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return f"ok: {self.entries} entries" if self.ok else f"entry {self.first_bad}: {self.problem}"


class AuditLog:
    """The audit log in a SQL database (tables on `metadata`, created if missing).

    Args:
        engine: the registry's engine (SQLite or PostgreSQL).
        signer: signs checkpoint bytes, returning (key_id, signature); pass `keyring.sign`.
            None keeps unsigned checkpoints (then only accidental damage is detectable).
        verifier: checks (key_id, data, signature); pass `keyring.verify` (it knows retired keys).
        head_path: the head file; by default `<db file>.audit-head.json` for a SQLite file
            database and none otherwise. Pass None to keep no file.
    """

    def __init__(
        self, engine: sa.Engine, signer: Signer | None = None, verifier: Verifier | None = None, *, head_path: Path | None | str = "auto"
    ) -> None:
        self.engine = engine
        self._signer = signer
        self._verifier = verifier
        if head_path == "auto":
            head_path = _default_head_path(engine)
        self.head_path = Path(head_path) if head_path is not None else None
        _create_tables(engine)
        self._init_head()

    # -- writing -----------------------------------------------------------------------------

    def append(
        self, actor: str, action: str, obj: str, outcome: str, details: dict | None = None, *, conn: sa.Connection | None = None
    ) -> int:
        """Append one entry and re-sign the head; returns its `seq`.

        Args:
            actor: who acted (a principal's name).
            action: what was attempted (e.g. "register", "users").
            obj: what it was done to (e.g. "models:/iris/3", "user:alice").
            outcome: "ok", "denied" or "error".
            details: JSON-serialisable facts about the action; never put secrets here.
            conn: an open connection inside the caller's transaction: the entry then commits
                or rolls back with the caller's work (no retry is possible then).

        Raises:
            IntegrityError: the head row is missing or behind the entries (tampering).
            RegistryError: the database stayed locked or unavailable through every retry.
        """
        record = self._record(actor, action, obj, outcome, details)
        if conn is not None:
            return self._append_locked(conn, [record])[0][0]
        return self._with_retry(lambda c: self._append_locked(c, [record]))[0]

    def append_many(self, records: Iterable[dict[str, Any]]) -> int:
        """Append many entries in one transaction (imports, tests); returns the last `seq`.

        Each record is a dict with actor, action, object, outcome and optional details and
        time. Hashes and checkpoints are computed exactly as by `append`.
        """
        prepared = [self._record(r["actor"], r["action"], r["object"], r["outcome"], r.get("details"), r.get("time")) for r in records]
        if not prepared:
            return self._head()["seq"]
        return self._with_retry(lambda c: self._append_locked(c, prepared))[-1]

    def sync_head_file(self) -> None:
        """Write the committed signed head to the head file (after appends made with `conn=`)."""
        if self.head_path is not None:
            head = self._head()
            self._write_head_file(head)

    def _record(self, actor: str, action: str, obj: str, outcome: str, details: dict | None, time_: str | None = None) -> tuple:
        if outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {OUTCOMES}; got {outcome!r}")
        if not action or len(action) > 64:
            raise ValueError(f"audit action must be 1-64 characters; got {action!r}")
        # Over-long names are cut, not refused: an audit entry must never make an action fail,
        # and the hash covers the stored (cut) value.
        return (time_ or _now(), str(actor)[:200], action, str(obj)[:512], outcome, _canonical_details(details))

    def _with_retry(self, work: Callable[[sa.Connection], tuple[list[int], dict]]) -> list[int]:
        delay = 0.01
        for attempt in range(_RETRIES):
            try:
                with self.engine.begin() as conn:
                    seqs, head = work(conn)
                break
            except sa_exc.OperationalError as exc:  # "database is locked", deadlock, serialization failure
                if attempt == _RETRIES - 1:
                    raise RegistryError(
                        f"audit log: the database stayed locked or unavailable after {_RETRIES} attempts ({type(exc.orig).__name__})"
                    ) from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)
        if self.head_path is not None:
            self._write_head_file(head)
        return seqs

    def _append_locked(self, conn: sa.Connection, records: list[tuple]) -> tuple[list[int], dict]:
        """Append under the head lock; returns the new seqs and the new signed head."""
        # Write first: takes the row lock (PostgreSQL) or the database write lock (SQLite) before
        # anything is read, so no two appenders see the same head.
        locked = conn.execute(_LOCK_HEAD).rowcount
        head = conn.execute(_READ_HEAD).first()
        if not locked or head is None:
            raise IntegrityError(
                "audit log: the head row is missing (the audit_head table was tampered with); run `trustforge audit verify`"
            )
        seq, prev = head.seq, head.hash
        rows, checkpoints, seqs = [], [], []
        for time_, actor, action, obj, outcome, details in records:
            seq += 1
            digest = entry_hash(seq, time_, actor, action, obj, outcome, details, prev)
            rows.append(
                {
                    "seq": seq,
                    "time": time_,
                    "actor": actor,
                    "action": action,
                    "object": obj,
                    "outcome": outcome,
                    "details": details,
                    "prev_hash": prev,
                    "hash": digest,
                }
            )
            if seq % CHECKPOINT_EVERY == 0:
                checkpoints.append({"seq": seq, "hash": digest, **self._sign(seq, digest)})
            seqs.append(seq)
            prev = digest
        try:
            conn.execute(_INSERT_ENTRY, rows)
            if checkpoints:
                conn.execute(_INSERT_CHECKPOINT, checkpoints)
        except sa_exc.IntegrityError:
            raise IntegrityError(
                f"audit log: entry {rows[0]['seq']} already exists beyond the signed head (entries were inserted behind TrustForge's back); run `trustforge audit verify`"
            ) from None
        new_head = {"seq": seq, "hash": prev, "time": _now(), **self._sign(seq, prev)}
        conn.execute(_SET_HEAD, new_head)
        return seqs, new_head

    def _sign(self, seq: int, hash_: str) -> dict:
        if self._signer is None:
            return {"key_id": None, "signature": None}
        key_id, sig = self._signer(_checkpoint_message(seq, hash_))
        return {"key_id": key_id, "signature": base64.b64encode(sig).decode("ascii")}

    def _init_head(self) -> None:
        """Create the head row (the genesis checkpoint, signed) if this is a new log."""
        with self.engine.connect() as conn:
            if conn.execute(sa.select(head_table.c.id)).first() is not None:
                return
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(head_table).values(id=1, seq=0, hash=GENESIS, time=_now(), **self._sign(0, GENESIS)))
        except sa_exc.IntegrityError:
            pass  # another process created it first

    def _head(self, conn: sa.Connection | None = None) -> dict:
        if conn is None:
            with self.engine.execution_options(**_READONLY).connect() as c:
                return self._head(c)
        row = conn.execute(sa.select(head_table).where(head_table.c.id == 1)).first()
        return dict(row._mapping) if row is not None else {}

    def _write_head_file(self, head: dict) -> None:
        """Overwrite the head file's one fixed-size record in place, never with an older head.

        Not temp-file-and-rename, on purpose: replacing a file by rename makes ext4 flush it
        at the next commit, which halved append throughput (bench/audit_append.py). A record of
        `_HEAD_RECORD` bytes written with one `pwrite` at offset 0 is cheap; should it ever be
        torn (a crash, a read racing the write), the record no longer parses or its signature
        fails, so `verify` ignores it with a warning (it never raises a false alarm) and the
        next append rewrites it.
        """
        if not head:
            return
        current = _read_head_file(self.head_path)
        if isinstance(current, dict) and isinstance(current.get("seq"), int) and current["seq"] > head["seq"]:
            return  # another process wrote a newer head after we committed
        body = json.dumps({k: head[k] for k in ("seq", "hash", "key_id", "signature", "time")}, sort_keys=True).encode("ascii")
        record = body + b" " * (_HEAD_RECORD - 1 - len(body)) + b"\n"
        fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, record, 0)
            if os.fstat(fd).st_size != _HEAD_RECORD:
                os.ftruncate(fd, _HEAD_RECORD)
        finally:
            os.close(fd)

    # -- reading -----------------------------------------------------------------------------

    def entries(self, *, limit: int = 100, offset: int = 0) -> list[dict]:
        """The newest entries first: `limit` of them after skipping `offset`; details parsed."""
        e = entries_table.c
        query = sa.select(entries_table).order_by(e.seq.desc()).limit(max(0, int(limit))).offset(max(0, int(offset)))
        with self.engine.execution_options(**_READONLY).connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for r in rows:
            try:
                r["details"] = json.loads(r["details"])
            except ValueError:
                pass  # a damaged entry is shown as stored; `verify` reports it
        return rows

    def verify(self) -> AuditReport:
        """Check the whole chain and every checkpoint; report the first bad entry.

        Reads the head file first, then the head row, then the entries up to the head's `seq`,
        so appends committed meanwhile (past the head, and covered by a newer head) never cause
        a false alarm. Stops at the first problem found.
        """
        warnings: list[str] = []
        signed = self._verifier is not None
        if not signed:
            warnings.append("no verifier: checkpoint signatures were not checked, so a rewritten or truncated log can go unnoticed")

        def bad(entries: int, first: int, problem: str) -> AuditReport:
            return AuditReport(False, entries, first, problem, tuple(warnings))

        file_head = _read_head_file(self.head_path) if self.head_path is not None else None
        if file_head == "unreadable":  # perhaps read while another process rewrote it
            time.sleep(0.01)
            file_head = _read_head_file(self.head_path)
        with self.engine.execution_options(**_READONLY).connect() as conn:
            head = self._head(conn)
            if not head:
                return bad(0, 1, "the audit_head row (the signed head checkpoint) is missing")
            top = head["seq"]
            head_problem = self._check_signed("head checkpoint", head, signed)
            file_problem, file_seq, file_hash = self._check_file(file_head, top, signed, warnings)
            c = checkpoints_table.c
            cps = {r.seq: dict(r._mapping) for r in conn.execute(sa.select(checkpoints_table).where(c.seq <= top))}
            e = entries_table.c
            query = (
                sa.select(e.seq, e.time, e.actor, e.action, e.object, e.outcome, e.details, e.prev_hash, e.hash)
                .where(e.seq <= top)
                .order_by(e.seq)
            )
            expected, prev, last_cp = 1, GENESIS, 0
            for row in conn.execute(query.execution_options(yield_per=2000)):
                seq = row[0]
                if seq != expected:
                    return bad(expected - 1, expected, f"entry {expected} is missing (deleted, or its seq was changed)")
                if row[7] != prev:
                    return bad(
                        seq - 1,
                        seq,
                        f"entry {seq} does not link to entry {seq - 1} (prev_hash differs): reordered, inserted, or the entry before it was replaced",
                    )
                if entry_hash(*row[:8]) != row[8]:
                    return bad(seq - 1, seq, f"entry {seq} was edited (its content no longer matches its hash)")
                prev = row[8]
                if seq % CHECKPOINT_EVERY == 0:
                    problem = self._check_checkpoint(cps.get(seq), seq, prev, signed)
                    if problem:
                        return bad(last_cp, last_cp + 1, problem)
                    last_cp = seq
                if seq == file_seq and file_hash != prev:
                    return bad(
                        last_cp,
                        last_cp + 1,
                        f"the head file {self.head_path.name} signed a different entry {seq}: entries {last_cp + 1}..{seq} were rewritten",
                    )
                expected += 1
            count = expected - 1
            beyond = conn.execute(sa.select(sa.func.max(e.seq)).where(e.seq > top)).scalar()
            if beyond is not None and self._head(conn).get("seq", 0) < beyond:
                # A committed append moves the head in the same transaction, so an entry past
                # the current head was not written by `append`.
                return bad(
                    count,
                    top + 1,
                    f"entries {top + 1}..{beyond} lie beyond the signed head (inserted outside TrustForge, or the head was rolled back)",
                )
        if count < top:
            return bad(
                count,
                count + 1,
                f"the log ends at entry {count} but the signed head names entry {top}: truncated (entries {count + 1}..{top} are gone)",
            )
        if head_problem:
            return bad(last_cp, last_cp + 1, f"{head_problem}: entries after {last_cp} cannot be trusted")
        if head["hash"] != prev:
            return bad(
                last_cp,
                last_cp + 1,
                f"the signed head names a different entry {top}: entries {last_cp + 1}..{top} were rewritten and the chain recomputed",
            )
        if file_problem:
            return bad(count, count + 1, file_problem)
        return AuditReport(True, count, None, "", tuple(warnings))

    def _check_signed(self, what: str, row: dict, signed: bool) -> str:
        if not signed:
            return ""
        if not row.get("signature") or not row.get("key_id"):
            return f"the {what} at entry {row['seq']} is not signed"
        try:
            sig = base64.b64decode(row["signature"], validate=True)
            good = self._verifier(row["key_id"], _checkpoint_message(row["seq"], row["hash"]), sig)
        except Exception:
            good = False
        return "" if good else f"the {what} at entry {row['seq']} has an invalid signature (forged or from an unknown key)"

    def _check_checkpoint(self, cp: dict | None, seq: int, chain_hash: str, signed: bool) -> str:
        if cp is None:
            return f"the signed checkpoint of entry {seq} is missing (the audit_checkpoints table was tampered with)"
        problem = self._check_signed("checkpoint", cp, signed)
        if problem:
            return problem
        if cp["hash"] != chain_hash:
            return (
                f"the signed checkpoint of entry {seq} names a different hash: entries up to {seq} were rewritten and the chain recomputed"
            )
        return ""

    def _check_file(self, file_head: Any, top: int, signed: bool, warnings: list[str]) -> tuple[str, int | None, str | None]:
        """(problem, seq, hash): a head file ahead of the database is a problem; one behind it names an entry to check."""
        if self.head_path is None:
            return "", None, None
        if file_head is None:
            if top > 0:
                warnings.append(f"no head file {self.head_path.name}: a rollback of the whole database would go unnoticed")
            return "", None, None
        if not isinstance(file_head, dict) or not isinstance(file_head.get("seq"), int) or not isinstance(file_head.get("hash"), str):
            warnings.append(f"the head file {self.head_path.name} is unreadable; it was ignored")
            return "", None, None
        problem = self._check_signed("head file", file_head, signed)
        if problem:
            warnings.append(f"{problem}; the head file was ignored")
            return "", None, None
        if file_head["seq"] > top:
            return (
                f"the head file {self.head_path.name} names entry {file_head['seq']} but the database's head is entry {top}: the database was rolled back or truncated",
                None,
                None,
            )
        return "", file_head["seq"], file_head["hash"]


def _create_tables(engine: sa.Engine) -> None:
    try:
        metadata.create_all(engine)
    except sa_exc.DBAPIError:
        metadata.create_all(engine)  # another process created them between the check and the CREATE


def _default_head_path(engine: sa.Engine) -> Path | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    db = Path(url.database).expanduser()
    return db.with_name(db.name + ".audit-head.json")


def _read_head_file(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "unreadable"
