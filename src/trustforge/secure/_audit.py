"""The tamper-evident audit log: an append-only, hash-chained table with signed checkpoints.

Every entry is one row: `seq` (1, 2, 3, ... with no gaps), `time` (UTC ISO-8601), `actor`,
`action`, `object`, `outcome` (`ok` | `denied` | `error`), `details` (canonical JSON),
`prev_hash` (the hash of entry `seq - 1`; 64 zeros for entry 1) and `hash`, the SHA-256 of a
canonical JSON array of all of those fields in a fixed order (see `entry_hash`). Changing,
deleting or reordering any entry therefore breaks the chain at that entry.

A chain alone cannot show that its tail was cut off, nor that someone rewrote an entry and
recomputed every later hash. Signed statements close that gap. Each is a signature over a
type tag, then `seq:hash`; heads and checkpoints carry different tags
(`trustforge.audit.head.v2` and `trustforge.audit.checkpoint.v2`), so the signature of an old
checkpoint can never stand in for the head (domain separation):

* the *head*: after every append, in the same transaction, the new `(seq, hash)` is signed
  with the workspace key (`signer`, i.e. `Keyring.sign`) and stored in the one-row
  `audit_head` table, a different table from the entries, so deleting entries does not delete
  it. Signing costs well under a millisecond, so there is no batching: the head always names
  the latest entry, and any tail truncation, even of one entry, is detected.
* *copies of the signed head outside the database*, written after each commit and only ever
  forward: the *head file* beside a SQLite database (`<db file>.audit-head.json`, mode 0600),
  the *witness* beside the keys (`keys/audit-witness.json`, mode 0600, replaced atomically),
  and optionally one line per witness update in an append-only *sink* the operator names
  (`file:/PATH` on another volume, or `syslog:/dev/log`). They survive the database being
  erased, dropped, truncated or rolled back to an older copy. They may lag behind the head row
  (they are written after commit; appends made inside a caller's transaction reach them at the
  next `sync_head_file()` or own append) and are then checked against the entry they name.
  Once a log has entries, a missing head file or witness is an error, never re-created
  silently: opening a log creates a fresh head only for a truly new one (no entries, no
  checkpoints, no head, no witness), and appending refuses while the witness is missing or
  ahead of the database, or while the head file is missing. `adopt` starts the witness (and
  writes the head file) for a log that verifies (a restored backup, a deleted head file).
* *history checkpoints*: every `CHECKPOINT_EVERY`-th entry's `(seq, hash)` is also signed into
  `audit_checkpoints`. They localise a rewrite whose chain was recomputed to the
  `CHECKPOINT_EVERY` entries before the first checkpoint that disagrees, while `verify` checks
  only 1 signature per `CHECKPOINT_EVERY` entries (an ECDSA check costs 20-50 entry hashes).

Legacy logs. Before v2, heads and checkpoints were signed under one tag
(`trustforge.audit.checkpoint.v1`), so a checkpoint's signature copied into the head verified.
Such a log is *upgraded once*: the first time it is opened with the signing key and it has no
witness, it is verified in full under the old rules, then its head and every checkpoint are
re-signed as v2 in one transaction, the witness is started and an `audit_upgrade` entry records
how many entries were accepted. We re-sign rather than keep naming old signatures as legacy
because a v1 signature left in the database is exactly what the forgery copies; after the
upgrade none is left, and a log that mixes a v1 head with v2 checkpoints, or a v1 head beside a
witness, is refused. Opened without the signing key, a legacy log verifies with a warning that
names it as legacy (a truncation before the upgrade cannot be ruled out).

Threat model. Detected: anyone who can write the database and the head file but does not hold
the signing key editing, deleting, inserting or reordering entries, truncating the tail,
recomputing the chain, forging the head from a checkpoint, erasing every row or dropping the
tables, tampering with checkpoints, deleting the head file; a database rolled back to an older
copy. Nor can the next append launder such an edit: appending first checks the head row's
signature, that the entry it names holds its hash and that the witness agrees with the chain,
and refuses otherwise (without that check, an append would sign a fresh head over a recomputed
chain and `verify` would pass again). Out of scope: an attacker holding the signing key (they
can sign any head), and one who also deletes or rolls back the witness in the keys folder (name a sink on another volume or a
syslog socket to catch that too). Without a signer the checkpoints are unsigned and only
accidental damage is detected; `verify` says so.

Appends from several processes are serialised by a write on the head row first in each
transaction: a row lock on PostgreSQL (plus `SELECT ... FOR UPDATE`), the database write lock
on SQLite (a transaction that writes first never has to upgrade a read lock, so the busy
timeout applies instead of an immediate SQLITE_BUSY). `seq` is the primary key, so a fork of
the chain is impossible even if that serialisation failed; transient lock errors are retried.
The witness is moved forward under an exclusive `flock`, so concurrent writers never move it back.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from trustforge._fs import atomic_write_bytes, locked_beside
from trustforge.errors import IntegrityError, RegistryError, SecurityError

__all__ = ["AuditLog", "AuditReport", "verify_rows", "metadata", "entry_hash", "CHECKPOINT_EVERY", "OUTCOMES", "WITNESS_FILE", "SINK_FORMS"]

OUTCOMES = ("ok", "denied", "error")
GENESIS = "0" * 64
CHECKPOINT_EVERY = 64
_ENTRY_TAG = "trustforge.audit.v1"
# Signed statements: a type tag, then "seq:hash". Heads and checkpoints are different types.
HEAD_STATEMENT = "trustforge.audit.head.v2"
CHECKPOINT_STATEMENT = "trustforge.audit.checkpoint.v2"
_HEAD_TAG = HEAD_STATEMENT.encode("ascii") + b"\x00"
_CHECKPOINT_TAG = CHECKPOINT_STATEMENT.encode("ascii") + b"\x00"
# Before v2 heads and checkpoints were both signed under this one tag (see "Legacy logs").
_LEGACY_TAG = b"trustforge.audit.checkpoint.v1\x00"
WITNESS_FILE = "audit-witness.json"  # in the keys folder
SINK_FORMS = "file:/ABSOLUTE/PATH or syslog:/SOCKET (e.g. syslog:/dev/log)"
_SINK_TAIL = 64 * 1024  # bytes of a file sink read back by `verify` (its newest lines)
_UPGRADE_ACTOR = "trustforge"
_RETRIES = 10
_HEAD_RECORD = 512  # bytes of the head file: one sector, one write
# Registry engines (`trustforge.registry.make_engine`) begin every SQLite transaction with
# BEGIN IMMEDIATE unless this execution option says DEFERRED; reads need no write lock.
_READONLY = {"trustforge_sqlite_begin": "DEFERRED"}

_log = logging.getLogger("trustforge.audit")

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
_READ_HEAD = (
    sa.select(head_table.c.seq, head_table.c.hash, head_table.c.key_id, head_table.c.signature)
    .where(head_table.c.id == 1)
    .with_for_update()
)
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


def _statement(tag: bytes, seq: int, hash_: str) -> bytes:
    return tag + f"{seq}:{hash_}".encode("ascii")


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
        signer: signs statements, returning (key_id, signature); pass `keyring.sign`.
            None keeps unsigned checkpoints (then only accidental damage is detectable).
        verifier: checks (key_id, data, signature); pass `keyring.verify` (it knows retired keys).
        head_path: the head file; by default `<db file>.audit-head.json` for a SQLite file
            database and none otherwise. Pass None to keep no file.
        witness_path: the witness, a signed copy of the head kept outside the database
            (the registry passes `keys/audit-witness.json`); None keeps none, and `verify`
            then warns that erasing the database and the head file together goes unnoticed.
        sink: an append-only place that receives one line per witness update:
            `file:/ABSOLUTE/PATH` (read back by `verify`) or `syslog:/SOCKET`.

    Raises:
        SecurityError: `sink` is not of a known form.
    """

    def __init__(
        self,
        engine: sa.Engine,
        signer: Signer | None = None,
        verifier: Verifier | None = None,
        *,
        head_path: Path | None | str = "auto",
        witness_path: Path | str | None = None,
        sink: str | None = None,
    ) -> None:
        self.engine = engine
        self._signer = signer
        self._verifier = verifier
        if head_path == "auto":
            head_path = _default_head_path(engine)
        self.head_path = Path(head_path) if head_path is not None else None
        self.witness_path = Path(witness_path) if witness_path is not None else None
        self._sink = _Sink.parse(sink) if sink else None
        _create_tables(engine)
        self._open()

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
            IntegrityError: the head row is missing or behind the entries, or the witness is
                missing or ahead of the database (tampering): nothing is appended.
            RegistryError: the database stayed locked or unavailable through every retry.
        """
        record = self._record(actor, action, obj, outcome, details)
        if conn is not None:
            return self._append_locked(conn, [record])[0][0]
        return self._with_retry(lambda c: self._append_locked(c, [record]))[0]

    def append_many(self, records: Iterable[dict[str, Any]], *, conn: sa.Connection | None = None) -> int:
        """Append many entries in one transaction (imports, tests); returns the last `seq`.

        Each record is a dict with actor, action, object, outcome and optional details and
        time. Hashes and checkpoints are computed exactly as by `append`. With `conn`, the
        entries join the caller's transaction (then call `sync_head_file` after it commits).
        """
        prepared = [self._record(r["actor"], r["action"], r["object"], r["outcome"], r.get("details"), r.get("time")) for r in records]
        if not prepared:
            return self._head().get("seq", 0)
        if conn is not None:
            return self._append_locked(conn, prepared)[0][-1]
        return self._with_retry(lambda c: self._append_locked(c, prepared))[-1]

    def sync_head_file(self) -> None:
        """Move the head file, the witness and the sink forward to the committed signed head
        (after appends made with `conn=`)."""
        head = self._head()
        if head:
            self._publish(head)

    def adopt(self) -> AuditReport:
        """Verify the log as the database holds it and, if it checks out, start its witness.

        For a log that arrived without its witness (a restored backup, a workspace copied
        without `keys/audit-witness.json`): whoever calls this accepts the database's length as
        genuine. A witness that already names a longer or different log is never replaced.

        Returns:
            The report; the witness and head file are written only when it is ok.
        """
        self._open()  # a legacy log is upgraded first
        report = self._verify(outside=False)
        if not report.ok:
            return report
        witness = self._read_witness()
        if witness is not None:  # a witness that names a longer or different log is never replaced
            if not _is_head_record(witness) or witness["seq"] > report.entries:
                return self.verify()
            with self.engine.execution_options(**_READONLY).connect() as conn:
                at = _hash_at(conn, witness["seq"])
            if at != witness["hash"] or (self._verifier is not None and self._signed_as(witness, (_HEAD_TAG,)) is None):
                return self.verify()
        head = self._head()
        if self._verifier is not None and self._signed_as(head, (_HEAD_TAG,)) is None:
            return AuditReport(False, report.entries, report.entries + 1, "the head is not a signed v2 head statement", report.warnings)
        self._publish(head)
        return self.verify()

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
        self._publish(head)
        return seqs

    def _append_locked(self, conn: sa.Connection, records: list[tuple]) -> tuple[list[int], dict]:
        """Append under the head lock; returns the new seqs and the new signed head."""
        # Write first: takes the row lock (PostgreSQL) or the database write lock (SQLite) before
        # anything is read, so no two appenders see the same head.
        locked = conn.execute(_LOCK_HEAD).rowcount
        head = conn.execute(_READ_HEAD).first()
        if not locked or head is None:
            raise IntegrityError(
                "audit log: the head row is missing (the audit_head table was tampered with, or the log was erased); "
                "run `trustforge audit verify`"
            )
        self._check_before_append(conn, dict(head._mapping))
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
                checkpoints.append({"seq": seq, "hash": digest, **self._sign(_CHECKPOINT_TAG, seq, digest)})
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
        new_head = {"seq": seq, "hash": prev, "time": _now(), **self._sign(_HEAD_TAG, seq, prev)}
        conn.execute(_SET_HEAD, new_head)
        return seqs, new_head

    def _check_before_append(self, conn: sa.Connection, head: dict) -> None:
        """Refuse to extend a chain that is not what the signed head and its copies say it is.

        * The witness missing (once the log has entries) or ahead of the head: appending would
          re-create the witness from a cut log, or fork the witnessed history. A missing head
          file likewise: the next append would write a new one and hide that it was deleted.
        * The head row's signature not a v2 head statement of this workspace (with a verifier),
          the entry it names holding another hash, or the witness naming an entry the chain
          now holds differently. Without these, whoever can write the database could rewrite
          entries, recompute the chain and set the head row's hash to the new last hash: `verify`
          would catch it, but the next append would sign a fresh head over the forged chain and
          move the witness forward, and `verify` would then pass. Each check is O(1): one
          signature and at most two entries read. An edit the chain still shows (an entry
          changed without recomputing the rest) is not hidden by an append: `verify` reports it.
        """
        seq, hash_ = head["seq"], head["hash"]
        advice = "run `trustforge audit verify`; nothing was appended"
        if type(seq) is not int or seq < 0:
            raise IntegrityError(f"audit log: the head's seq is not an entry number (the audit_head row was edited); {advice}")
        witness = self._read_witness()
        if self.witness_path is not None:
            name = self.witness_path.name
            if witness is None:
                if seq > 0:
                    raise IntegrityError(f"audit log: the witness {name} is missing while the log holds {seq} entries; {advice}")
            elif not _is_head_record(witness):
                raise IntegrityError(f"audit log: the witness {name} is unreadable; {advice}")
            elif witness["seq"] > seq:
                raise IntegrityError(
                    f"audit log: the witness {name} names entry {witness['seq']} but the database's head is entry {seq} "
                    f"(the database was truncated, erased or rolled back); {advice}"
                )
        if self.head_path is not None and seq > 0 and not self.head_path.exists():
            raise IntegrityError(
                f"audit log: the head file {self.head_path.name} is missing while the log holds {seq} entries; "
                "run `trustforge audit verify` (then `audit verify --adopt` once the log is known to be whole)"
            )
        if self._verifier is not None and self._signed_as(head, (_HEAD_TAG,)) is None:
            if witness is not None or self._signed_as(head, (_LEGACY_TAG,)) is None:  # a legacy head is upgraded on open
                raise IntegrityError(
                    f"audit log: the head (entry {seq}) is not signed by this workspace's key (the audit_head row was edited); {advice}"
                )
        if _hash_at(conn, seq) != hash_:
            raise IntegrityError(f"audit log: entry {seq} does not match the signed head (the entries were edited); {advice}")
        if witness is not None and witness["hash"] != (hash_ if witness["seq"] == seq else _hash_at(conn, witness["seq"])):
            raise IntegrityError(
                f"audit log: the witness {self.witness_path.name} signed a different entry {witness['seq']} (the entries were rewritten); {advice}"
            )

    def _sign(self, tag: bytes, seq: int, hash_: str) -> dict:
        if self._signer is None:
            return {"key_id": None, "signature": None}
        key_id, sig = self._signer(_statement(tag, seq, hash_))
        return {"key_id": key_id, "signature": base64.b64encode(sig).decode("ascii")}

    def _open(self) -> None:
        """Start a new log, or upgrade a legacy one; never re-create the head of a log that had entries.

        A fresh head (the signed genesis, seq 0) is created only when the log is truly new: no
        head row, no entries, no checkpoints and no witness. Anything else without a head row is
        left as it is for `verify` to report and `append` to refuse.
        """
        with self.engine.execution_options(**_READONLY).connect() as conn:
            head = self._head(conn)
            has_rows = any(conn.execute(sa.select(t.c.seq).limit(1)).first() is not None for t in (entries_table, checkpoints_table))
        witness = self._read_witness()
        if not head:
            if has_rows or witness is not None or self._sink_names_entries():
                return
            try:
                with self.engine.begin() as conn:
                    conn.execute(sa.insert(head_table).values(id=1, seq=0, hash=GENESIS, time=_now(), **self._sign(_HEAD_TAG, 0, GENESIS)))
            except sa_exc.IntegrityError:
                pass  # another process created it first
            self.sync_head_file()
            return
        if self._signer is not None and self._verifier is not None and witness is None:
            if self._signed_as(head, (_HEAD_TAG,)) is None and self._signed_as(head, (_LEGACY_TAG,)) is not None:
                self._upgrade_legacy()
                return
        if head["seq"] == 0 and not has_rows and witness is None:
            self._publish(head)  # a new log whose first publication was lost

    def _sink_names_entries(self) -> bool:
        """True when a file sink holds a head of this workspace with entries: the log is not new."""
        if self._sink is None:
            return False
        latest, _ = self._sink.latest(lambda r: self._verifier is None or self._signed_as(r, (_HEAD_TAG,)) is not None)
        return latest is not None and latest["seq"] > 0

    def _upgrade_legacy(self) -> None:
        """Verify a v1 log under the old rules, re-sign its head and checkpoints as v2 statements,
        start the witness and record the upgrade (see "Legacy logs" in the module docstring)."""
        report = self._verify(outside=False)
        if not report.ok:
            _log.warning("audit log: a legacy (v1) log failed verification and was not upgraded: %s", report.problem)
            return
        for attempt in range(_RETRIES):
            try:
                with self.engine.begin() as conn:
                    conn.execute(_LOCK_HEAD)
                    head = self._head(conn)
                    if not head or self._signed_as(head, (_LEGACY_TAG,)) is None or head["seq"] != report.entries:
                        return  # upgraded (or changed) by another process meanwhile
                    conn.execute(_SET_HEAD, {"time": _now(), **self._sign(_HEAD_TAG, head["seq"], head["hash"])})
                    c = checkpoints_table.c
                    for cp in conn.execute(sa.select(c.seq, c.hash)).all():
                        conn.execute(
                            sa.update(checkpoints_table).where(c.seq == cp.seq).values(**self._sign(_CHECKPOINT_TAG, cp.seq, cp.hash))
                        )
                break
            except sa_exc.OperationalError:
                if attempt == _RETRIES - 1:
                    raise RegistryError(f"audit log: the database stayed locked during the upgrade after {_RETRIES} attempts") from None
                time.sleep(0.05 * (attempt + 1))
        self.sync_head_file()
        _log.warning("audit log: upgraded a legacy (v1) log of %d entries to v2 signed statements", report.entries)
        self.append(_UPGRADE_ACTOR, "audit_upgrade", "audit-log", "ok", {"legacy_entries": report.entries, "from": "v1", "to": "v2"})

    def _head(self, conn: sa.Connection | None = None) -> dict:
        if conn is None:
            with self.engine.execution_options(**_READONLY).connect() as c:
                return self._head(c)
        row = conn.execute(sa.select(head_table).where(head_table.c.id == 1)).first()
        return dict(row._mapping) if row is not None else {}

    # -- the copies outside the database --------------------------------------------------------

    def _publish(self, head: dict) -> None:
        """Move the head file, the witness and the sink forward to `head` (never back)."""
        if not head:
            return
        if self.head_path is not None:
            self._write_head_file(head)
        if self.witness_path is not None:
            self._write_witness(head)
        elif self._sink is not None:
            self._sink.push(_head_record(head))

    def _write_head_file(self, head: dict) -> None:
        """Overwrite the head file's one fixed-size record in place, never with an older head.

        Not temp-file-and-rename, on purpose: replacing a file by rename makes ext4 flush it
        at the next commit, which halved append throughput (bench/audit_append.py). A record of
        `_HEAD_RECORD` bytes written with one `pwrite` at offset 0 is cheap; should it ever be
        torn (a crash, a read racing the write), the record no longer parses or its signature
        fails, so `verify` ignores it with a warning and the next append rewrites it. The
        witness, replaced atomically, covers what a torn head file cannot.
        """
        current = _read_json(self.head_path)
        if isinstance(current, dict) and isinstance(current.get("seq"), int) and current["seq"] > head["seq"]:
            return  # another process wrote a newer head after we committed
        body = json.dumps(_head_record(head), sort_keys=True).encode("ascii")
        record = body + b" " * (_HEAD_RECORD - 1 - len(body)) + b"\n"
        fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o077:
                os.fchmod(fd, 0o600)  # written 0644 by earlier versions
            os.pwrite(fd, record, 0)
            if st.st_size != _HEAD_RECORD:
                os.ftruncate(fd, _HEAD_RECORD)
        finally:
            os.close(fd)

    def _write_witness(self, head: dict) -> None:
        """Replace the witness with `head` (0600, temporary file then rename) if it moves forward.

        An exclusive `flock` on a lock file beside it makes the compare-and-replace atomic across
        processes, so the witness, and the sink's lines, only ever move forward.
        """
        with locked_beside(self.witness_path):
            current = _read_json(self.witness_path)
            if _is_head_record(current) and current["seq"] >= head["seq"]:
                return
            record = _head_record(head)
            # Not flushed: the flush made every append 2.7x slower (92 against 251 appends/s; 1.4x
            # without the witness). The rename is atomic, so a crash leaves the old witness (a lag,
            # checked as a prefix) or the new one; on a file system that does not order data before
            # renames (ext4 does) it may leave an empty one, which fails closed: `verify` reports it.
            atomic_write_bytes(self.witness_path, (json.dumps(record, sort_keys=True) + "\n").encode("ascii"), sync=False)
            if self._sink is not None:
                self._sink.push(record)

    def _read_witness(self) -> Any:
        """None (no witness kept, or the file is absent), "unreadable", or the parsed record."""
        if self.witness_path is None:
            return None
        witness = _read_json(self.witness_path)
        if witness == "unreadable":  # never torn (it is replaced by rename); retry once for I/O races
            time.sleep(0.01)
            witness = _read_json(self.witness_path)
        return witness

    # -- reading -----------------------------------------------------------------------------

    def entries(
        self, *, limit: int = 100, offset: int = 0, actor: str | None = None, action: str | None = None, outcome: str | None = None
    ) -> list[dict]:
        """The newest entries first: `limit` of them after skipping `offset`; details parsed.

        `actor`, `action` and `outcome` keep only the entries whose field equals the value
        exactly (None: any); the filter runs in the database, so paging stays cheap.
        """
        e = entries_table.c
        query = sa.select(entries_table).where(*_filters(actor, action, outcome)).order_by(e.seq.desc())
        query = query.limit(max(0, int(limit))).offset(max(0, int(offset)))
        with self.engine.execution_options(**_READONLY).connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for r in rows:
            try:
                r["details"] = json.loads(r["details"])
            except ValueError:
                pass  # a damaged entry is shown as stored; `verify` reports it
        return rows

    def count(self, *, actor: str | None = None, action: str | None = None, outcome: str | None = None) -> int:
        """How many entries match the filters of `entries` (all of them without any)."""
        query = sa.select(sa.func.count()).select_from(entries_table).where(*_filters(actor, action, outcome))
        with self.engine.execution_options(**_READONLY).connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def values(self, field: str, *, limit: int = 1000) -> list[str]:
        """The distinct values of `field` ("actor", "action" or "outcome") in the log, sorted;
        at most `limit` of them (what a filter can offer to choose from).

        Raises:
            ValueError: another field (a caller's mistake: only these three are filters).
        """
        if field not in _FILTER_FIELDS:
            raise ValueError(f"field must be one of {', '.join(_FILTER_FIELDS)}; got {field!r}")
        column = entries_table.c[field]
        query = sa.select(column).distinct().order_by(column).limit(max(0, int(limit)))
        with self.engine.execution_options(**_READONLY).connect() as conn:
            return [r[0] for r in conn.execute(query)]

    def verify(self) -> AuditReport:
        """Check the whole chain, every checkpoint, the head and its copies outside the database.

        Reads the copies (witness, sink, head file) first, then the head row, then the entries
        up to the head's `seq`, so appends committed meanwhile (past the head, and covered by a
        newer head) never cause a false alarm. Stops at the first problem found; a log that is
        shorter than any signed copy says which entries are missing, and anything missing
        (the head row, the tables, the head file, the witness) is named.
        """
        return self._verify(outside=True)

    def _verify(self, *, outside: bool) -> AuditReport:  # noqa: C901 - one pass, checks in order
        warnings: list[str] = []
        signed = self._verifier is not None
        if not signed:
            warnings.append("no verifier: checkpoint signatures were not checked, so a rewritten or truncated log can go unnoticed")

        def bad(entries: int, first: int, problem: str) -> AuditReport:
            return AuditReport(False, entries, first, problem, tuple(warnings))

        # Signed copies of the head held outside the database: (what, record).
        copies: list[tuple[str, dict]] = []
        missing: list[str] = []
        broken = ""  # a witness that is present but unusable
        witness = self._read_witness() if outside else None
        if outside and self.witness_path is None:
            warnings.append("no witness kept: erasing the database and the head file together would go unnoticed")
        wname = self.witness_path.name if self.witness_path is not None else ""
        if witness is not None:
            if not _is_head_record(witness):
                broken = f"the witness {wname} is unreadable (damaged or replaced)"
            elif signed and self._signed_as(witness, (_HEAD_TAG,)) is None:
                broken = f"the witness {wname} has an invalid signature (forged, or not a head statement)"
            else:
                copies.append((f"the witness {wname}", witness))
        if outside and self._sink is not None:
            latest, note = self._sink.latest(lambda r: not signed or self._signed_as(r, (_HEAD_TAG,)) is not None)
            if latest is not None:
                copies.append((f"the audit sink ({self._sink.kind})", latest))
            if note:
                warnings.append(note)
        file_head = None
        if self.head_path is not None:
            file_head = _read_json(self.head_path)
            if file_head == "unreadable":  # perhaps read while another process rewrote it
                time.sleep(0.01)
                file_head = _read_json(self.head_path)
            fname = self.head_path.name
            if file_head is None:
                pass  # judged below, once we know whether the log ever had entries
            elif not _is_head_record(file_head):
                warnings.append(f"the head file {fname} is unreadable; it was ignored")
            elif signed and self._signed_as(file_head, (_HEAD_TAG,)) is None and self._signed_as(file_head, (_LEGACY_TAG,)) is not None:
                warnings.append(f"the head file {fname} is in the legacy v1 format; it was ignored")
            elif signed and self._signed_as(file_head, (_HEAD_TAG,)) is None:
                warnings.append(f"the head file {fname} has an invalid signature (forged or from an unknown key); it was ignored")
            else:
                copies.append((f"the head file {fname}", file_head))
        evidence = max((r["seq"] for _, r in copies), default=0)

        with self.engine.execution_options(**_READONLY).connect() as conn:
            inspector = sa.inspect(conn)
            dropped = [t.name for t in metadata.sorted_tables if not inspector.has_table(t.name)]
            if dropped:
                what = f"the tables {', '.join(dropped)} are missing (dropped)"
                if evidence:
                    what += f"; the signed head outside the database names entry {evidence}: entries 1..{evidence} are gone"
                return bad(0, 1, what)
            head = self._head(conn)
            e = entries_table.c
            odd = _odd_seq(conn)
            if odd:
                return bad(odd[0] - 1, odd[0], odd[1])
            if head and (type(head["seq"]) is not int or head["seq"] < 0 or not isinstance(head["hash"], str)):
                return bad(
                    0,
                    1,
                    f"the signed head's seq or hash is not what TrustForge writes ({str(head['seq'])[:40]!r}): the audit_head row was edited",
                )
            if not head:
                missing.append("the audit_head row (the signed head)")
                top = conn.execute(sa.select(sa.func.max(e.seq))).scalar() or 0
                legacy = False
            else:
                top = head["seq"]
                legacy = signed and self._signed_as(head, (_HEAD_TAG,)) is None and self._signed_as(head, (_LEGACY_TAG,)) is not None
            if outside and self.witness_path is not None and witness is None and (top > 0 or not head):
                missing.append(f"the witness {wname}")
            if outside and self.head_path is not None and file_head is None and (top > 0 or evidence > 0 or not head):
                missing.append(f"the head file {self.head_path.name}")
            head_problem = ""
            if head and signed:
                if legacy and (witness is not None or evidence > 0):
                    head_problem = "the head is signed in the legacy v1 format although a v2 witness exists (a checkpoint's signature was copied into it)"
                elif not legacy:
                    head_problem = self._check_signed("head", head, (_HEAD_TAG,))
            if legacy:
                warnings.append(
                    "legacy log: its head and checkpoints are signed in the v1 format, where a checkpoint can stand in for the head; "
                    "open the workspace with its signing key to upgrade it"
                )
            if missing:
                # Something that must exist does not: say so before (and instead of) walking the
                # chain, with what the signed copies outside the database say is gone.
                last = conn.execute(sa.select(sa.func.max(e.seq))).scalar() or 0
                text = f"missing: {', '.join(missing)}"
                if evidence > last:
                    what = next(w for w, r in copies if r["seq"] == evidence)
                    start = "the log is empty" if last == 0 else f"the log ends at entry {last}"
                    text += f"; {start} but {what} names entry {evidence}: entries {last + 1}..{evidence} are gone"
                if head_problem:
                    text += f"; {head_problem}"
                return bad(0, last + 1, text + " (nothing missing is re-created silently)")
            cp_tags = (_LEGACY_TAG,) if legacy else (_CHECKPOINT_TAG,)
            c = checkpoints_table.c
            cps = {r.seq: dict(r._mapping) for r in conn.execute(sa.select(checkpoints_table).where(c.seq <= top))}
            checks = {}  # seq -> [(what, hash)] of the copies to compare with the chain
            for what, r in copies:
                checks.setdefault(r["seq"], []).append((what, r["hash"]))
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
                try:
                    edited = entry_hash(*row[:8]) != row[8]
                except TypeError:  # a field of another type than TrustForge writes (text where it wrote text)
                    edited = True
                if edited:
                    return bad(seq - 1, seq, f"entry {seq} was edited (its content no longer matches its hash)")
                prev = row[8]
                if seq % CHECKPOINT_EVERY == 0:
                    problem = self._check_checkpoint(cps.get(seq), seq, prev, signed, cp_tags)
                    if problem:
                        return bad(last_cp, last_cp + 1, problem)
                    last_cp = seq
                for what, hash_ in checks.get(seq, ()):
                    if hash_ != prev:
                        return bad(
                            last_cp, last_cp + 1, f"{what} signed a different entry {seq}: entries {last_cp + 1}..{seq} were rewritten"
                        )
                expected += 1
            count = expected - 1
            beyond = conn.execute(sa.select(sa.func.max(e.seq)).where(e.seq > top)).scalar() if head else None
            if beyond is not None and self._head(conn).get("seq", 0) < beyond:
                # A committed append moves the head in the same transaction, so an entry past
                # the current head was not written by `append`.
                return bad(
                    count,
                    top + 1,
                    f"entries {top + 1}..{beyond} lie beyond the signed head (inserted outside TrustForge, or the head was rolled back)",
                )
        if evidence > count:
            what = next(w for w, r in copies if r["seq"] == evidence)
            start = "the log is empty" if count == 0 else f"the log ends at entry {count}"
            return bad(
                count,
                count + 1,
                f"{start} but {what} names entry {evidence}: erased, truncated or rolled back (entries {count + 1}..{evidence} are gone)",
            )
        if head and count < top:
            return bad(
                count,
                count + 1,
                f"the log ends at entry {count} but the signed head names entry {top}: truncated (entries {count + 1}..{top} are gone)",
            )
        if head_problem:
            return bad(last_cp, last_cp + 1, f"{head_problem}: entries after {last_cp} cannot be trusted")
        if head and head["hash"] != prev:
            return bad(
                last_cp,
                last_cp + 1,
                f"the signed head names a different entry {top}: entries {last_cp + 1}..{top} were rewritten and the chain recomputed",
            )
        if broken:
            return bad(count, count + 1, broken)
        return AuditReport(True, count, None, "", tuple(warnings))

    def _signed_as(self, row: Any, tags: tuple[bytes, ...]) -> bytes | None:
        """The tag under which `row`'s signature verifies, or None (unsigned, forged, unknown key)."""
        if self._verifier is None or not isinstance(row, dict):
            return None
        key_id, signature, seq, hash_ = row.get("key_id"), row.get("signature"), row.get("seq"), row.get("hash")
        if not (isinstance(key_id, str) and isinstance(signature, str) and type(seq) is int and isinstance(hash_, str)):
            return None
        try:
            sig = base64.b64decode(signature, validate=True)
            for tag in tags:
                if self._verifier(key_id, _statement(tag, seq, hash_), sig):
                    return tag
        except Exception:
            return None
        return None

    def _check_signed(self, what: str, row: dict, tags: tuple[bytes, ...]) -> str:
        if not row.get("signature") or not row.get("key_id"):
            return f"the {what} at entry {row['seq']} is not signed"
        if self._signed_as(row, tags) is None:
            return f"the {what} at entry {row['seq']} has an invalid signature (forged, another statement's signature, or an unknown key)"
        return ""

    def _check_checkpoint(self, cp: dict | None, seq: int, chain_hash: str, signed: bool, tags: tuple[bytes, ...]) -> str:
        if cp is None:
            return f"the signed checkpoint of entry {seq} is missing (the audit_checkpoints table was tampered with)"
        problem = self._check_signed("checkpoint", cp, tags) if signed else ""
        if problem:
            return problem
        if cp["hash"] != chain_hash:
            return (
                f"the signed checkpoint of entry {seq} names a different hash: entries up to {seq} were rewritten and the chain recomputed"
            )
        return ""


def verify_rows(rows: dict[str, list[dict[str, Any]]], verifier: Verifier | None) -> AuditReport:
    """Verify an audit log held as rows (a backup's), before they are written anywhere.

    `rows` maps table names (`audit_entries`, `audit_head`, `audit_checkpoints`) to their rows;
    they are copied into a private in-memory database and checked as `AuditLog.verify` checks a
    workspace's log (chain, checkpoints, signed head), without the copies outside a database,
    which rows do not have. Rows of no audit table at all are a log never opened: ok, empty.

    Raises:
        sqlalchemy.exc.StatementError: a row does not fit its table (callers check types first).
    """
    if not any(rows.get(t.name) for t in metadata.sorted_tables):
        return AuditReport(True, 0)
    engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            for table in metadata.sorted_tables:
                if rows.get(table.name):
                    conn.execute(sa.insert(table), rows[table.name])
        return AuditLog(engine, None, verifier, head_path=None)._verify(outside=False)
    finally:
        engine.dispose()


_FILTER_FIELDS = ("actor", "action", "outcome")


def _hash_at(conn: sa.Connection, seq: int) -> str | None:
    """The stored hash of entry `seq` (GENESIS for 0, the hash before entry 1; None: no such entry)."""
    return conn.execute(sa.select(entries_table.c.hash).where(entries_table.c.seq == seq)).scalar() if seq else GENESIS


def _odd_seq(conn: sa.Connection) -> tuple[int, str] | None:
    """(position, problem) of an entry whose seq is not a positive integer (a SQLite column holds
    any value an edit puts there), or None. Its position is the entry after the one it links to."""
    e = entries_table.c
    odd = conn.execute(sa.select(e.seq, e.prev_hash).where(sa.or_(e.seq.is_(None), sa.not_(e.seq.between(1, 2**62)))).limit(1)).first()
    if odd is None:
        return None
    before = conn.execute(sa.select(e.seq).where(e.hash == odd.prev_hash).limit(1)).scalar() if odd.prev_hash != GENESIS else 0
    at = before + 1 if type(before) is int and before >= 0 else 1
    return at, f"entry {at} was edited: its seq is {str(odd.seq)[:40]!r}, not a positive integer"


def _filters(actor: str | None, action: str | None, outcome: str | None) -> list:
    """The WHERE clauses of an exact-match filter on actor, action and outcome (None: any)."""
    e = entries_table.c
    return [e[name] == value for name, value in zip(_FILTER_FIELDS, (actor, action, outcome)) if value is not None]


class _Sink:
    """An append-only place outside the workspace that receives one JSON line per witness update."""

    def __init__(self, kind: str, target: str) -> None:
        self.kind, self._target = kind, target

    @classmethod
    def parse(cls, spec: str) -> "_Sink":
        kind, _, target = str(spec).partition(":")
        if kind in ("file", "syslog") and target.startswith("/") and "\x00" not in target:
            return cls(kind, target)
        raise SecurityError(f"the audit sink (TRUSTFORGE_AUDIT_SINK) must be {SINK_FORMS}; got a value of another form")

    def push(self, record: dict) -> None:
        """Append one line; a sink that cannot be reached is logged, never fatal (the entry is committed)."""
        line = json.dumps({"statement": HEAD_STATEMENT, **record}, sort_keys=True)
        try:
            if self.kind == "file":
                fd = os.open(self._target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, (line + "\n").encode("ascii"))
                finally:
                    os.close(fd)
            else:
                with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
                    s.sendto(f"<86>trustforge-audit: {line}".encode("ascii"), self._target)  # authpriv.info
        except OSError as exc:
            _log.warning("audit sink (%s) could not be written: %s", self.kind, type(exc).__name__)

    def latest(self, trusted: Callable[[dict], bool]) -> tuple[dict | None, str]:
        """(the newest trusted head among the file sink's last lines, a warning or "")."""
        if self.kind != "file":
            return None, ""
        try:
            with open(self._target, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - _SINK_TAIL))
                tail = f.read().decode("ascii", "replace").splitlines()
        except FileNotFoundError:
            return None, "the audit sink file does not exist yet"
        except OSError as exc:
            return None, f"the audit sink file could not be read ({type(exc).__name__})"
        records = []
        for line in tail:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if _is_head_record(record) and record.get("statement") == HEAD_STATEMENT:
                records.append(record)
        # The highest head, not the last line: a log re-created after an erasure appends lower ones.
        for record in sorted(records, key=lambda r: r["seq"], reverse=True):
            if trusted(record):
                return record, ""
        return None, "the audit sink file holds no head signed by this workspace"


def _head_record(head: dict) -> dict:
    return {k: head.get(k) for k in ("seq", "hash", "key_id", "signature", "time")}


def _is_head_record(record: Any) -> bool:
    return isinstance(record, dict) and type(record.get("seq")) is int and record["seq"] >= 0 and isinstance(record.get("hash"), str)


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


def _read_json(path: Path | None) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="ascii"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return "unreadable"
