"""Access control: roles, the one policy table, users, API tokens and principals.

The policy (`POLICY`, read by `allowed`, the docs and the tests alike):

| action        | viewer | trainer | deployer | admin | what it covers                                  |
|---------------|:------:|:-------:|:--------:|:-----:|-------------------------------------------------|
| read          |   x    |    x    |    x     |   x   | list/show models, versions, aliases, tags; load |
| register      |        |    x    |          |   x   | register a package as a new version             |
| export        |        |    x    |          |   x   | write a version's ONNX/TorchScript artefact     |
| tag           |        |    x    |    x     |   x   | set/delete tags on a version                    |
| alias         |        |         |    x     |   x   | set/delete aliases (promote to @champion, ...)  |
| serve         |        |         |    x     |   x   | start a server for a model                      |
| predict       |   x    |    x    |    x     |   x   | call a served model (infer, invocations)        |
| delete        |        |         |          |   x   | delete a version                                |
| gc            |        |         |          |   x   | remove orphan artifacts                         |
| users         |        |         |          |   x   | add/grant/revoke users, issue/revoke tokens     |
| keys          |        |         |          |   x   | init/rotate workspace keys                      |
| backup        |        |         |          |   x   | create a backup                                 |
| restore       |        |         |          |   x   | restore a backup                                |
| audit_verify  |        |         |          |   x   | show and verify the audit log                   |
| unmask        |        |         |          |   x   | turn masked personal data back (`unmask`)       |
| mask          |        |    x    |    x     |   x   | keyed `mask` (`--policy hash` or `fake`)        |

`predict` is every role's: whoever may read a model may load it and compute its predictions
anyway, and the applications that call a served model need no right to promote or register one.

A deployer may not register: separation of duties, so no one but an admin can both put a
model into the registry and promote it to production (the trainer who built it cannot
promote it; the deployer who promotes cannot slip in a model of their own). `export` goes
with `register` for the same reason: an artefact is what `serve --backend onnx` runs, so a
deployer does not write one (it is bound to its package's digest and checked against it anyway).

Principals: with no token, the acting principal is the local workspace admin (the OS user
who can read the workspace's keys and database anyway). With a token (`TRUSTFORGE_TOKEN`),
the token's user with the role they hold *now*: every `authenticate` reads the database, so
revocation, expiry and role changes take effect at once (nothing is cached).

Tokens are `tfk_<id>_<secret>`: `id` (16 hex digits) is a non-secret lookup key, `secret` is
256 random bits (base64url). Only SHA-256(tag, id, secret) is stored. A slow password hash
(argon2) would add nothing here: it protects low-entropy secrets against guessing, and
2^256 random bits cannot be guessed; a fast hash keeps every request cheap. There are no
passwords; if they are ever added they must use argon2 (DESIGN.md §6).

Seals: every user row (name, role, active) and token row (id, user, hash, expires, revoked) has
an ECDSA signature by the workspace signing key in `access_seals`, written in the transaction
that changes the row. `authenticate` refuses a token whose row or whose user's row does not
match its seal, so someone who can write the database but not read the keys cannot raise a
role, re-enable a user, un-revoke or extend a token, or add a user or token of their own (the
audit log guards its own tables the same way). A row is checked against a seal made by any key
the keyring knows, so seals survive `keys rotate`.

The access head (`access_head`, one row) is a signed record of which seal is the current one of
every row: {"user:NAME" | "token:ID": SHA-256 of the seal}, with a version that only grows. Each
change signs a new head built on the one it verified, with only its own rows' entries replaced,
so an older genuine row put back with its old seal (a replay: a revoked token's row from before
its revocation) is refused and stays refused after later changes. `keys/access-witness` records
the newest head this machine has seen: a database put back whole, head included, to an earlier
version is refused here. Each head signs the fingerprint of the one it was built on and is kept
in `access_head_log`, so a newer head is taken only if its links lead back to the witness's (a
copy of the workspace that changed on its own has a head of a higher version that does not). A
second machine sharing the database trusts a head it has not seen yet until it sees a newer one
(its witness is its own), as with the audit log's witness. The witnessed head's body is kept
beside it (`keys/access-witness.body`): with the whole access state put back, `audit verify`
names the rows against it and `reseal` leaves them out.

A change reads its rows back and seals them only if they hold what it wrote, and no change is made
while a trigger, view, rule or row-level security policy sits on the access tables (TrustForge
makes none): a database writer's trigger would otherwise decide what the admin's change seals.

Rows from before seals existed are sealed once, when a workspace is first opened with an audit
log by this version (audited as `seal_existing`), and `keys/access-sealed` is written; from then
on an unsealed row is refused, as a forged one is.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from trustforge._fs import atomic_write_bytes, locked_beside
from trustforge._shown import recorded
from trustforge.errors import AccessDenied, RegistryError, SecurityError, TrustForgeError, UsageError
from trustforge.secure import _primitives as P
from trustforge.secure._audit import _READONLY
from trustforge.secure._keys import _create_secret

if TYPE_CHECKING:
    from trustforge.secure._audit import AuditLog
    from trustforge.secure._keys import Keyring

__all__ = ["ROLES", "ACTIONS", "POLICY", "allowed", "Principal", "AccessStore", "require", "metadata", "validate_name"]

ROLES = ("viewer", "trainer", "deployer", "admin")
ACTIONS = (
    "read",
    "register",
    "export",
    "tag",
    "alias",
    "delete",
    "gc",
    "serve",
    "predict",
    "users",
    "keys",
    "backup",
    "restore",
    "audit_verify",
    "unmask",
    "mask",
)

POLICY: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read", "predict"}),
    # export writes a signed artefact beside a version's package: a package write, as register is.
    "trainer": frozenset({"read", "register", "export", "tag", "predict", "mask"}),
    "deployer": frozenset({"read", "tag", "alias", "serve", "predict", "mask"}),
    "admin": frozenset(ACTIONS),
}

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TOKEN_RE = re.compile(r"tfk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_TOKEN_ID_RE = re.compile(r"[0-9a-f]{16}")
_HASH_TAG = b"trustforge.token.v1\x00"
_SEAL_TAG = b"trustforge.access-seal.v1\x00"
SEALED_MARKER = "access-sealed"  # in the keys folder: rows are sealed; an unsealed one is forged
MAX_TTL_DAYS = 3650

metadata = sa.MetaData()

# Times are ISO-8601 UTC strings, as in the registry tables: the same on SQLite and PostgreSQL.
users_table = sa.Table(
    "access_users",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("created", sa.String(32), nullable=False),
)

tokens_table = sa.Table(
    "access_tokens",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("user", sa.String(64), sa.ForeignKey("access_users.name"), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("created", sa.String(32), nullable=False),
    sa.Column("expires", sa.String(32)),  # None: never
    sa.Column("revoked", sa.String(32)),  # when it was revoked; None: live
)

# A table of its own, so the two tables above keep their schema (no migration for old workspaces).
seals_table = sa.Table(
    "access_seals",
    metadata,
    sa.Column("kind", sa.String(8), primary_key=True),  # "user" or "token"
    sa.Column("key", sa.String(64), primary_key=True),  # the user's name or the token's id
    sa.Column("key_id", sa.String(64), nullable=False),  # the signing key's id
    sa.Column("signature", sa.String(200), nullable=False),  # base64 DER ECDSA-SHA256
)

# One row (id 1), signed, with a version that only grows: which seal is the current one of each
# row. A seal proves a row was once written by TrustForge; the head says it is the latest, so an
# older genuine row put back with its older seal (a revoked token's row from before its
# revocation) is refused, and a later change by an admin does not make it current.
head_table = sa.Table(
    "access_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # JSON {"user:NAME" | "token:ID": the seal's fingerprint}
    sa.Column("prev", sa.String(32)),  # the fingerprint of the head it was built on (None: the first)
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(200), nullable=False),
)

# Every head ever signed, without its body: a witness that saw version W checks that a newer head
# descends from it (its `prev` links lead back to W), so the access tables of a copy of the
# workspace that changed on its own, or a head signed on a branch, are refused here.
head_log_table = sa.Table(
    "access_head_log",
    metadata,
    sa.Column("fingerprint", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),  # SHA-256 of the body
    sa.Column("prev", sa.String(32)),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.String(200), nullable=False),
)


_MARKER_RE = re.compile(rb"trustforge access seals v1 ([0-9a-f]{32})\n")
_HEAD_TAG = b"trustforge.access-head.v1\x00"
_UNREADABLE = (1 << 64, "")  # an unreadable witness: newer than any head (a 64-bit version), so every head is refused
_MOVED = object()  # the access head changed between two reads (`AccessStore._current_entries`)
WITNESS_FILE = "access-witness"  # in the keys folder: the newest head this machine has seen
_WITNESS_RE = re.compile(rb"trustforge access head v1 ([0-9]{1,19}) ([0-9a-f]{32})\n")  # any 64-bit version
# Beside it, that head's body: which rows were current then. Read only by `reseal` and `audit
# verify` (never per request), to name the rows put back when the whole access state, head
# included, was put back. A separate file, so a request reads 60 bytes, not every row's entry.
WITNESS_BODY_FILE = "access-witness.body"
_WITNESS_BODY_RE = re.compile(rb"trustforge access head body v1 ([0-9]{1,19}) ([0-9a-f]{32})\n(.*)", re.DOTALL)


def _statement(workspace: str | None, fields: list[Any]) -> bytes | None:
    """What a seal signs: this workspace's id (so a row sealed in another workspace whose key
    this one trusts, e.g. after a restore, proves nothing here) and the row's fields. None when
    there is no workspace id yet or a field is not of its column's type (a database writer can
    put bytes or numbers where text belongs): such a row has no valid seal."""
    if workspace is None or not all(v is None or type(v) is str for v in fields):
        return None
    return _SEAL_TAG + json.dumps([workspace, *fields], separators=(",", ":")).encode("utf-8")


def _user_statement(workspace: str | None, row: Any) -> bytes | None:
    if type(row.active) not in (bool, int) or row.active not in (0, 1):  # SQLite keeps a Boolean as 0/1
        return None
    return _statement(workspace, ["user", row.name, row.role, "active" if row.active else "inactive"])


def _token_statement(workspace: str | None, row: Any) -> bytes | None:
    return _statement(workspace, ["token", row.id, row.user, row.hash, row.expires, row.revoked])


def _with_seals(table: sa.Table, kind: str, key: sa.Column) -> sa.Select:
    """`table`'s rows, each with its seal's key id and signature (None where it has none)."""
    s = seals_table.c
    return sa.select(table, s.key_id, s.signature).outerjoin(seals_table, sa.and_(s.kind == kind, s.key == key))


def _fingerprint(key_id: Any, signature: Any) -> str | None:
    """What the head keeps of a seal: SHA-256 of its key id and signature (32 hex digits)."""
    if type(key_id) is not str or type(signature) is not str:
        return None
    return hashlib.sha256(f"{key_id}\x00{signature}".encode("utf-8")).hexdigest()[:32]


def _body_digest(body: Any) -> str | None:
    return hashlib.sha256(body.encode("utf-8")).hexdigest() if type(body) is str else None


def _head_statement(workspace: str | None, version: Any, digest: Any, prev: Any) -> bytes | None:
    """What a head's signature signs: the workspace id, the version, the body's SHA-256 and the
    fingerprint of the head it was built on."""
    if workspace is None or type(version) is not int or type(digest) is not str or not (prev is None or type(prev) is str):
        return None
    return _HEAD_TAG + json.dumps([workspace, version, digest, prev], separators=(",", ":")).encode("utf-8")


def _read_access_witness(keys_dir: Path) -> tuple[int, str] | None:
    """(version, the head's fingerprint) of the newest head this machine has seen, None when
    none was kept (an unreadable one reads as `_UNREADABLE`: every head is then refused)."""
    try:
        blob = (Path(keys_dir) / WITNESS_FILE).read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return _UNREADABLE
    match = _WITNESS_RE.fullmatch(blob)
    return (int(match.group(1)), match.group(2).decode("ascii")) if match else _UNREADABLE


def _advance_access_witness(keys_dir: Path, version: int, digest: str, body: str | None = None) -> None:
    """Move the witness forward to (version, digest), 0600, never back: an exclusive `flock`
    beside it makes the compare-and-replace atomic across this machine's processes. `body`: the
    head's body, written after the witness (`WITNESS_BODY_FILE`; a process killed between the two
    leaves the witness ahead of the body, which is then not used), and written again when the
    witness names this head but the body does not (a witness from before bodies were kept)."""
    path = Path(keys_dir) / WITNESS_FILE
    current = _read_access_witness(keys_dir)
    if current == (version, digest):  # nothing to write (so a read-only keys folder serves a head it has seen)
        _keep_body(keys_dir, current, body)
        return
    if current is not None and current[0] >= version:
        return  # newer, or another head of this version seen first: it stays (the check refuses this one)
    with locked_beside(path):
        current = _read_access_witness(keys_dir)
        if current is not None and current[0] >= version:
            return
        atomic_write_bytes(path, b"trustforge access head v1 %d %s\n" % (version, digest.encode("ascii")))
    _keep_body(keys_dir, (version, digest), body)


def _keep_body(keys_dir: Path, witness: tuple[int, str], body: str | None) -> None:
    """Write `body`, the body of head `witness`, beside the witness unless it is there already.
    An aid to `reseal`, not a check: a keys folder that cannot take it serves as before."""
    if _has_body(keys_dir, witness, body):
        return
    header = b"trustforge access head body v1 %d %s\n" % (witness[0], witness[1].encode("ascii"))
    try:
        with locked_beside(Path(keys_dir) / WITNESS_FILE):  # the witness's lock: never a body of a head it has left
            if _read_access_witness(keys_dir) == witness and not _has_body(keys_dir, witness, body):
                atomic_write_bytes(Path(keys_dir) / WITNESS_BODY_FILE, header + body.encode("utf-8"))  # type: ignore[union-attr]
    except OSError:
        pass


def _has_body(keys_dir: Path, witness: tuple[int, str], body: str | None) -> bool:
    """Whether the body file beside the witness is that of head `witness` (or no body is given)."""
    if body is None:
        return True
    try:
        with open(Path(keys_dir) / WITNESS_BODY_FILE, "rb") as f:
            first = f.readline(200)
    except OSError:
        return False
    return first == b"trustforge access head body v1 %d %s\n" % (witness[0], witness[1].encode("ascii"))


def _witnessed_entries(keys_dir: Path) -> tuple[int, dict[str, str]] | None:
    """(version, entries) of the head the witness names, from its body kept beside it; None when
    there is no witness, or no body of that very head (a witness from before bodies were kept,
    or a process killed between writing the two)."""
    witness = _read_access_witness(keys_dir)
    if witness is None or witness == _UNREADABLE:
        return None
    try:
        match = _WITNESS_BODY_RE.fullmatch((Path(keys_dir) / WITNESS_BODY_FILE).read_bytes())
    except OSError:
        return None
    if match is None or (int(match.group(1)), match.group(2).decode("ascii")) != witness:
        return None
    try:
        entries = json.loads(match.group(3))
    except ValueError:
        return None
    if not isinstance(entries, dict) or not all(type(v) is str for v in entries.values()):
        return None
    return witness[0], entries


_SET = object()  # `_check_written`: any value but None (a revocation's time)
# The tables a change to users and tokens writes (the audit entry is appended in its transaction).
_GUARDED_TABLES = ("access_users", "access_tokens", "access_seals", "access_head", "access_head_log")
_GUARDED_TABLES += ("audit_entries", "audit_head", "audit_checkpoints")


def _check_written(name: str, row: Any, expected: dict[str, Any]) -> None:
    """Refuse to seal `row` unless it holds what the change wrote: a database writer's trigger or
    rule that undoes a revocation, or raises a role, in the same statement would otherwise have
    its row sealed as the admin's decision."""
    for field, value in expected.items():
        held = getattr(row, field)
        if (held is None) if value is _SET else (held != value or type(held) is not type(value)):
            raise SecurityError(
                f"{name}: the database did not keep the change to {field} (a trigger or rule made outside TrustForge?); "
                "nothing was changed; `trustforge audit verify` names what the access tables hold"
            )


def _rewriters(conn: sa.Connection) -> list[str]:
    """What a database writer can add to the tables a change of users and tokens writes, to
    decide what it writes or to make it fail: triggers and views, and foreign keys into them from
    other tables (SQLite and PostgreSQL); rules, row-level security, check constraints,
    inheriting tables and partitions (PostgreSQL), on the tables as this connection resolves
    their names. TrustForge makes none of them. Not a complete list of what a writer can do (a
    check function, an operator of its own): `seal_head` also refuses a seal the database did
    not keep as written, and a change the database refuses is audited, naming why."""
    names = list(_GUARDED_TABLES)
    if conn.dialect.name == "sqlite":
        rows = conn.execute(sa.text("SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('trigger', 'view', 'table')")).all()
        found = [f"{kind} {name!r} on {table}" for kind, name, table in rows if kind != "table" and str(table).lower() in names]
        for _, name, _ in (r for r in rows if r[0] == "table" and str(r[1]).lower() not in names):
            quoted = '"' + str(name).replace('"', '""') + '"'
            for fk in conn.execute(sa.text(f"PRAGMA foreign_key_list({quoted})")).mappings():
                if str(fk["table"]).lower() in names:
                    found.append(f"foreign key of table {name!r} into {fk['table']}")
        return found
    if conn.dialect.name != "postgresql":
        return []
    found = conn.execute(
        sa.text(
            "WITH g AS (SELECT c.oid, c.relname, c.relkind, c.relrowsecurity FROM pg_catalog.pg_class c "
            "WHERE c.relname = ANY(:n) AND pg_catalog.pg_table_is_visible(c.oid)) "
            "SELECT 'trigger', t.tgname, g.relname FROM pg_catalog.pg_trigger t JOIN g ON g.oid = t.tgrelid WHERE NOT t.tgisinternal "
            "UNION ALL SELECT 'rule', r.rulename, g.relname FROM pg_catalog.pg_rewrite r JOIN g ON g.oid = r.ev_class "
            "WHERE r.rulename <> '_RETURN' "
            "UNION ALL SELECT CASE g.relkind WHEN 'r' THEN 'row-level security' WHEN 'p' THEN 'partitioned table' ELSE 'view' END, "
            "g.relname, g.relname FROM g WHERE g.relkind <> 'r' OR g.relrowsecurity "
            "UNION ALL SELECT 'check constraint', k.conname, g.relname FROM pg_catalog.pg_constraint k JOIN g ON g.oid = k.conrelid "
            "WHERE k.contype = 'c' "
            "UNION ALL SELECT 'foreign key of table ' || quote_literal(c.relname) || ' named', k.conname, g.relname "
            "FROM pg_catalog.pg_constraint k JOIN g ON g.oid = k.confrelid JOIN pg_catalog.pg_class c ON c.oid = k.conrelid "
            "WHERE k.contype = 'f' AND NOT c.relname = ANY(:n) "
            "UNION ALL SELECT 'inheriting table', c.relname, g.relname FROM pg_catalog.pg_inherits i JOIN g ON g.oid = i.inhparent "
            "JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
            # A comparison of the column types outside pg_catalog: an exact match wins over the
            # catalog's text operators wherever the search path puts it (it can refuse every token).
            "UNION ALL SELECT 'operator', o.oprname, 'schema ' || n.nspname FROM pg_catalog.pg_operator o "
            "JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND (o.oprleft IN ('varchar'::regtype, 'text'::regtype, 'int4'::regtype, 'bool'::regtype) "
            "OR o.oprright IN ('varchar'::regtype, 'text'::regtype, 'int4'::regtype, 'bool'::regtype))"
        ),
        {"n": names},
    ).all()
    return [f"{kind} {name!r} on {table}" for kind, name, table in found]


def _refuse_rewriters(conn: sa.Connection) -> None:
    """Raise SecurityError naming what `_rewriters` finds, if anything."""
    rewriters = _rewriters(conn)
    if rewriters:
        raise SecurityError(
            f"the database holds {', '.join(rewriters)}, made outside TrustForge: it can decide what a change writes, so "
            "users and tokens cannot be changed until it is dropped (`trustforge audit verify` names it)"
        )


def _workspace_id_in(blob: bytes | None) -> str | None:
    """The workspace id a `keys/access-sealed` file holds, or None when it is not one."""
    match = _MARKER_RE.fullmatch(blob) if isinstance(blob, bytes) else None
    return match.group(1).decode("ascii") if match else None


def _read_workspace_id(keys_dir: Path) -> str | None:
    """The workspace id in `keys/access-sealed`, or None when the file is missing or malformed."""
    try:
        return _workspace_id_in((Path(keys_dir) / SEALED_MARKER).read_bytes())
    except OSError:
        return None


def allowed(role: str, action: str) -> bool:
    """Whether `role` may perform `action` according to `POLICY` (unknown roles may do nothing).

    Raises:
        ValueError: `action` is not one of `ACTIONS` (a typo in the caller, not a user error).
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    return action in POLICY.get(role, frozenset())


@dataclass(frozen=True)
class Principal:
    """Who is acting: `kind` is "user", "token" or "local-admin".

    The local workspace admin's `name` is the OS login running the process: it stays in this
    workspace's own records (the audit log and registry rows, for accountability), and
    `lineage_name` is what goes into anything that leaves the machine.
    """

    name: str
    role: str
    kind: str

    @property
    def lineage_name(self) -> str:
        """How a package's lineage names this principal (`created_by`): its TrustForge user name,
        or just its kind for the local workspace admin, whose name (the OS login) is personal data
        of this machine and must not travel with a shared package."""
        return self.kind if self.kind == "local-admin" else self.name


def require(principal: Principal, action: str, obj: str, audit: "AuditLog | None") -> None:
    """Return if `principal` may do `action` on `obj`; otherwise audit the denial and raise.

    Raises:
        AccessDenied: naming the principal, its role, the action and the object.
    """
    if allowed(principal.role, action):
        return
    if audit is not None:
        audit.append(principal.name, action, obj, "denied", {"role": principal.role, "kind": principal.kind})
    raise AccessDenied(f"{principal.name} (role {principal.role}) may not {action} {obj}; ask an admin for a role that allows it")


def validate_name(name: str, what: str = "user name") -> str:
    """Return `name` if it is 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit.

    Raises:
        RegistryError: naming what was wrong.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        shown = repr(name)[:80]
        raise RegistryError(f"{what} {shown} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise RegistryError(f"role {role!r} is unknown; expected one of {', '.join(ROLES)}")
    return role


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _token_hash(token_id: str, secret: bytes) -> str:
    return hashlib.sha256(_HASH_TAG + token_id.encode("ascii") + b"\x00" + secret).hexdigest()


def local_admin() -> Principal:
    """The local workspace admin: the OS user running this process."""
    try:
        name = getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        name = "local"
    return Principal(name=name or "local", role="admin", kind="local-admin")


class AccessStore:
    """Users and API tokens in SQL tables (on `metadata`, created if missing).

    Args:
        engine: the registry's engine.
        audit: the audit log; needed when mutations are made `by=` a principal. A store with
            one seals the rows of a workspace from before seals (once; see the module docstring).
        keyring: the workspace's keys: they seal every row written and check every row read.

    Mutations called with `by=principal` first `require(by, "users", ...)` and then append an
    "ok" (or, on failure, "error") audit entry in the same transaction as the change. Called
    without `by`, they are trusted library calls (whoever holds the engine and the keys holds
    the workspace). Either way the changed rows are sealed in that transaction.

    Raises:
        SecurityError: `keys/access-sealed` is missing while the database holds seals, or it
            is needed and cannot be written.
    """

    def __init__(self, engine: sa.Engine, audit: "AuditLog | None" = None, *, keyring: "Keyring") -> None:
        self.engine = engine
        self.audit = audit
        self.keyring = keyring
        self._good_seals: set[tuple[bytes, str, str]] = set()  # (statement, key id, signature) verified
        # The head last verified (its row) and the seals it names: a request pays no ECDSA check
        # and no read of the seals table while the head is unchanged.
        self._head_cache: tuple[tuple, dict[tuple[Any, Any], tuple[Any, Any]]] | None = None
        self._workspace = _read_workspace_id(keyring.keys_dir)  # None: no seal verifies (fails closed)
        try:
            metadata.create_all(engine)
        except sa_exc.DBAPIError:
            metadata.create_all(engine)  # another process created them between the check and the CREATE
        if audit is not None:
            self._seal_existing_once()
            self._adopt_head_once()

    # -- users -------------------------------------------------------------------------------

    def add_user(self, name: str, role: str, *, by: Principal | None = None) -> None:
        """Add an active user with `role`. Raises RegistryError if the name is taken or invalid."""
        validate_name(name)
        _check_role(role)

        def change(conn: sa.Connection) -> dict:
            if conn.execute(sa.select(users_table.c.name).where(users_table.c.name == name)).first():
                raise RegistryError(f"user {name!r} already exists; use `trustforge users grant` to change the role")
            conn.execute(sa.insert(users_table).values(name=name, role=role, active=True, created=_iso(_now())))
            self._seal_user(conn, name, role=role, active=True)
            return {"role": role}

        self._mutate(by, "add_user", name, change)

    def grant(self, name: str, role: str, *, by: Principal | None = None) -> None:
        """Give `name` the role `role` (replacing the old one) and re-enable a revoked user.

        Tokens revoked earlier stay revoked; issue a new one.
        """
        validate_name(name)
        _check_role(role)

        def change(conn: sa.Connection) -> dict:
            old = self._user(conn, name)
            conn.execute(sa.update(users_table).where(users_table.c.name == name).values(role=role, active=True))
            self._seal_user(conn, name, role=role, active=True)
            return {"role": role, "previous_role": old.role, "was_active": bool(old.active)}

        self._mutate(by, "grant", name, change)

    def revoke(self, name: str, *, by: Principal | None = None) -> None:
        """Disable `name` and revoke every token of theirs, effective immediately."""
        validate_name(name)

        def change(conn: sa.Connection) -> dict:
            self._user(conn, name)
            conn.execute(sa.update(users_table).where(users_table.c.name == name).values(active=False))
            t = tokens_table.c
            n = conn.execute(sa.update(tokens_table).where(t.user == name, t.revoked.is_(None)).values(revoked=_iso(_now()))).rowcount
            self._seal_user(conn, name, active=False)
            for (token_id,) in conn.execute(sa.select(t.id).where(t.user == name)).all():
                self._seal_token(conn, token_id, revoked=_SET)
            return {"tokens_revoked": n}

        self._mutate(by, "revoke", name, change)

    def list_users(self) -> list[dict]:
        """Every user: name, role, active, created and the ids of their live tokens."""
        now = _iso(_now())
        t = tokens_table.c
        with self.engine.execution_options(**_READONLY).connect() as conn:
            users = [dict(r._mapping) for r in conn.execute(sa.select(users_table).order_by(users_table.c.name))]
            live = conn.execute(sa.select(t.user, t.id, t.expires).where(t.revoked.is_(None)).order_by(t.created)).all()
        for u in users:  # a value a database writer put there (another type, a line break) is shown as repr, never as is
            u["tokens"] = [
                r.id if type(r.id) is str and _TOKEN_ID_RE.fullmatch(r.id) else repr(r.id)
                for r in live
                if r.user == u["name"] and (r.expires is None or str(r.expires) > now)
            ]
            u.update({k: u[k] if type(u[k]) is str and u[k].isprintable() else repr(u[k]) for k in ("name", "role", "created")})
            u["active"] = bool(u["active"])
        return users

    # -- tokens ------------------------------------------------------------------------------

    def issue_token(self, name: str, *, ttl_days: float | None = 90, by: Principal | None = None) -> str:
        """A new API token for active user `name`, valid `ttl_days` (None: until revoked).

        The token is returned once and never stored: only its hash is. Raises RegistryError for
        an unknown or revoked user or a ttl outside (0, 3650] days.
        """
        validate_name(name)
        if ttl_days is not None and not (0 < ttl_days <= MAX_TTL_DAYS):
            raise RegistryError(f"token lifetime must be in (0, {MAX_TTL_DAYS}] days; got {ttl_days}")
        token_id = secrets.token_hex(8)
        secret = secrets.token_bytes(32)
        now = _now()
        expires = _iso(now + timedelta(days=ttl_days)) if ttl_days is not None else None

        def change(conn: sa.Connection) -> dict:
            user = self._user(conn, name)
            if not user.active:
                raise RegistryError(f"user {name!r} is revoked; `trustforge users grant {name} ROLE` re-enables them")
            conn.execute(
                sa.insert(tokens_table).values(
                    id=token_id, user=name, hash=_token_hash(token_id, secret), created=_iso(now), expires=expires, revoked=None
                )
            )
            self._seal_token(conn, token_id, user=name, hash=_token_hash(token_id, secret), expires=expires, revoked=None)
            return {"token_id": token_id, "expires": expires}

        self._mutate(by, "issue_token", name, change)
        return f"tfk_{token_id}_{base64.urlsafe_b64encode(secret).rstrip(b'=').decode('ascii')}"

    def list_tokens(self, user: str | None = None, *, live_only: bool = False, limit: int | None = None, offset: int = 0) -> list[dict]:
        """Tokens (of `user`, or of everyone; only live ones with `live_only`), newest first, at
        most `limit` from `offset`: id, user, created, expires, revoked (None while live) and
        `live` (neither revoked nor expired now). Never the hash."""
        t = tokens_table.c
        now = _iso(_now())
        query = self._tokens_where(sa.select(t.id, t.user, t.created, t.expires, t.revoked), user, live_only, now)
        query = query.order_by(t.created.desc(), t.id).offset(max(0, int(offset)))
        if limit is not None:
            query = query.limit(max(0, int(limit)))
        with self.engine.execution_options(**_READONLY).connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for r in rows:
            r["live"] = r["revoked"] is None and (r["expires"] is None or str(r["expires"]) > now)
        return rows

    def count_tokens(self, user: str | None = None, *, live_only: bool = False) -> int:
        """How many tokens `list_tokens` with the same filters lists in all."""
        query = self._tokens_where(sa.select(sa.func.count()).select_from(tokens_table), user, live_only, _iso(_now()))
        with self.engine.execution_options(**_READONLY).connect() as conn:
            return int(conn.execute(query).scalar_one())

    @staticmethod
    def _tokens_where(query: sa.Select, user: str | None, live_only: bool, now: str) -> sa.Select:
        t = tokens_table.c
        if user is not None:
            query = query.where(t.user == validate_name(user))
        if live_only:
            query = query.where(t.revoked.is_(None), sa.or_(t.expires.is_(None), t.expires > now))
        return query

    def revoke_token(self, token_id: str, *, by: Principal | None = None) -> None:
        """Revoke one token by its id (the part after `tfk_`), effective immediately."""
        if not isinstance(token_id, str) or not _TOKEN_ID_RE.fullmatch(token_id):
            raise RegistryError("token id must be the 16 hex digits after `tfk_`")

        def change(conn: sa.Connection) -> dict:
            row = conn.execute(sa.select(tokens_table.c.user).where(tokens_table.c.id == token_id)).first()
            if row is None:
                raise RegistryError(f"token {token_id} does not exist")
            conn.execute(
                sa.update(tokens_table).where(tokens_table.c.id == token_id, tokens_table.c.revoked.is_(None)).values(revoked=_iso(_now()))
            )
            self._seal_token(conn, token_id, revoked=_SET)
            return {"token_id": token_id, "user": row.user}

        self._mutate(by, "revoke_token", f"token:{token_id}", change)

    def authenticate(self, token: str | None) -> Principal:
        """The principal acting with `token`; None means the local workspace admin.

        Raises:
            AccessDenied: the token is malformed, unknown, wrong, expired or revoked, or its
                user is revoked; the refusal is audited (action "authenticate") when the store
                has an audit log. Neither contains the token's secret.
        """
        if token is None:
            return local_admin()
        match = _TOKEN_RE.fullmatch(token.strip()) if isinstance(token, str) else None
        if match is None:
            self._deny("anonymous", "token:malformed", "malformed")
            raise AccessDenied("the API token is malformed (expected tfk_<id>_<secret>, as printed by `trustforge users token`)")
        token_id, secret_text = match.groups()
        try:
            secret = base64.urlsafe_b64decode(secret_text + "=")
        except ValueError:
            secret = b""
        # Read the database on every call: no cache, so revocation and expiry act at once. An
        # admin's change committed between the token's read and the head's: read both again.
        for _ in range(3):
            row = self._token_row(token_id)
            current = self._current_entries(row.head_version, row.head_key_id, row.head_signature) if row is not None else None
            if current is not _MOVED:
                break
        # Unknown id and wrong secret get the same answer, so ids cannot be probed.
        matches = row is not None and type(row.hash) is str and len(secret) == 32
        if not (matches and hmac.compare_digest(row.hash, _token_hash(token_id, secret))):
            self._deny("anonymous", f"token:{token_id}", "unknown or wrong")
            raise AccessDenied("the API token is not valid (unknown or wrong)")
        user_row = SimpleNamespace(name=row.user, role=row.role, active=row.active)
        token_ok = self._sealed(_token_statement(self._workspace, row), row.token_key_id, row.token_signature)
        if not (token_ok and self._sealed(_user_statement(self._workspace, user_row), row.user_key_id, row.user_signature)):
            # Anonymous: the user named on a row that fails its seal may be the forger's choice.
            self._deny("anonymous", f"token:{token_id}", "seal broken", claimed_user=str(row.user)[:64])
            raise AccessDenied(
                f"API token {token_id}: its record or its user's has no valid seal (changed outside TrustForge); "
                "an admin should run `trustforge audit verify`"
            )
        sealed_now = isinstance(current, dict) and (
            current.get(f"token:{token_id}") == _fingerprint(row.token_key_id, row.token_signature)
            and current.get(f"user:{row.user}") == _fingerprint(row.user_key_id, row.user_signature)
        )
        if not sealed_now:  # a genuine seal, but not the current one: an older row put back (a replay)
            self._deny("anonymous", f"token:{token_id}", "not current", claimed_user=str(row.user)[:64])
            raise AccessDenied(
                f"API token {token_id}: its record or its user's is not the one the signed access head names (an older "
                "record put back, or the head changed outside TrustForge); an admin should run `trustforge audit verify`"
            )
        if row.revoked is not None:
            self._deny(row.user, f"token:{token_id}", "revoked")
            raise AccessDenied(f"API token {token_id} was revoked at {row.revoked}", user=row.user, token_id=token_id)
        if row.expires is not None and row.expires <= _iso(_now()):
            self._deny(row.user, f"token:{token_id}", "expired")
            raise AccessDenied(f"API token {token_id} expired at {row.expires}", user=row.user, token_id=token_id)
        if not row.active:
            self._deny(row.user, f"token:{token_id}", "user revoked")
            raise AccessDenied(f"user {row.user!r} of API token {token_id} is revoked", user=row.user, token_id=token_id)
        return Principal(name=row.user, role=row.role, kind="token")

    def _token_row(self, token_id: str) -> Any:
        """Token `token_id`'s row with its user's role and active flag, both rows' seals and the
        access head's version, key id and signature, read in one statement (None: no such token)."""
        ts, us = seals_table.alias("ts"), seals_table.alias("us")
        with self.engine.execution_options(**_READONLY).connect() as conn:
            return conn.execute(
                sa.select(
                    tokens_table,
                    users_table.c.role,
                    users_table.c.active,
                    ts.c.key_id.label("token_key_id"),
                    ts.c.signature.label("token_signature"),
                    us.c.key_id.label("user_key_id"),
                    us.c.signature.label("user_signature"),
                    head_table.c.version.label("head_version"),
                    head_table.c.key_id.label("head_key_id"),
                    head_table.c.signature.label("head_signature"),
                )
                .join(users_table, users_table.c.name == tokens_table.c.user)
                .outerjoin(ts, sa.and_(ts.c.kind == "token", ts.c.key == tokens_table.c.id))
                .outerjoin(us, sa.and_(us.c.kind == "user", us.c.key == users_table.c.name))
                .outerjoin(head_table, head_table.c.id == 1)
                .where(tokens_table.c.id == token_id)
            ).first()

    def _deny(self, actor: str, obj: str, reason: str, **details: str) -> None:
        """Audit a refused authentication (the id is not secret; the secret is never logged)."""
        if self.audit is not None:
            self.audit.append(actor, "authenticate", obj, "denied", {"reason": reason, **details})

    # -- seals -------------------------------------------------------------------------------

    def _write_seal(self, conn: sa.Connection, kind: str, key: str, statement: bytes | None) -> None:
        if statement is None:
            raise SecurityError(f"{kind} {key!r} cannot be sealed: the workspace has no keys/{SEALED_MARKER} or the row is malformed")
        key_id, raw = self.keyring.sign(statement)
        signature = base64.b64encode(raw).decode("ascii")
        conn.info.setdefault("trustforge_sealed", {})[(kind, key)] = (key_id, signature)  # for the head (`seal_head`)
        conn.execute(sa.delete(seals_table).where(seals_table.c.kind == kind, seals_table.c.key == key))
        conn.execute(sa.insert(seals_table).values(kind=kind, key=key, key_id=key_id, signature=signature))

    def _seal_user(self, conn: sa.Connection, name: str, **expected: Any) -> None:
        """Seal user `name`'s row as the transaction `conn` now holds it, once it holds the values
        `expected` (what the change wrote)."""
        row = self._user(conn, name)
        _check_written(f"user {name!r}", row, expected)
        self._write_seal(conn, "user", name, _user_statement(self._workspace, row))

    def _seal_token(self, conn: sa.Connection, token_id: str, **expected: Any) -> None:
        """Seal token `token_id`'s row as the transaction `conn` now holds it, once it holds the
        values `expected` (`_SET`: any value but None)."""
        row = conn.execute(sa.select(tokens_table).where(tokens_table.c.id == token_id)).one()
        _check_written(f"token {token_id}", row, expected)
        self._write_seal(conn, "token", token_id, _token_statement(self._workspace, row))

    def _sealed(
        self, statement: bytes | None, key_id: Any, signature: Any, verify: Callable[[str, bytes, bytes], bool] | None = None
    ) -> bool:
        """Whether `signature` by key `key_id` (a key the keyring knows, retired ones included, or
        one `verify` knows) signs `statement`. Seals good for the keyring are remembered by their
        exact bytes, so a request pays one ECDSA check per row version, not one per call."""
        if statement is None or type(key_id) is not str or type(signature) is not str:
            return False
        if verify is None and (statement, key_id, signature) in self._good_seals:
            return True
        try:
            raw = base64.b64decode(signature, validate=True)
        except ValueError:
            return False
        if not (verify or self.keyring.verify)(key_id, statement, raw):
            return False
        if verify is not None:
            return True
        if len(self._good_seals) >= 4096:
            self._good_seals.clear()
        self._good_seals.add((statement, key_id, signature))
        return True

    def seal_head(self, conn: sa.Connection, *, restored: bool = False) -> tuple[int, str, str]:
        """Sign, in transaction `conn`, the next head: the current one's entries with those of the
        rows this transaction sealed (`_write_seal` lists them in `conn.info`) replaced. Without a
        head, a witness on this machine or any head signed before (a new workspace, one sealed
        before heads) every seal the table holds is taken; a head missing otherwise was deleted,
        and is refused. Returns (version, fingerprint, body) for `witness`,
        once the transaction has committed. `restored`: a restore's target, whose head names
        exactly the rows this transaction sealed (whatever its keys folder's witness says).

        Raises:
            SecurityError: the current head does not verify (so it cannot be built on: a row an
                admin changes would make whatever else the table holds current).
            RegistryError: another transaction moved the head meanwhile (try again).
        """
        # FOR UPDATE: on PostgreSQL a concurrent change waits here and then builds on this one's head
        # (SQLite's writers are serialised already); a first head inserted twice at once is refused once.
        _refuse_rewriters(conn)
        heads = conn.execute(sa.select(head_table).where(head_table.c.id == 1).with_for_update()).all()
        if len(heads) > 1 and "trustforge_head_entries" not in conn.info:  # a reseal replaces them all
            raise SecurityError(
                f"the access head (which seal of each user and token is current) is stored {len(heads)} times (changed outside "
                "TrustForge): users and tokens cannot be changed; an admin should run `trustforge audit verify`, then "
                "`trustforge users reseal`"
            )
        head = heads[0] if len(heads) == 1 else None
        witness = _read_access_witness(self.keyring.keys_dir)
        current = self._verified_head(head, conn) if head is not None else None  # checked once: built on below
        decided = conn.info.pop("trustforge_head_entries", None)  # `reseal`: an admin's decision
        if decided is not None:
            entries = dict(decided)
        elif restored:
            entries = {}
        elif head is None and witness is None and conn.execute(sa.select(head_log_table.c.fingerprint).limit(1)).first() is None:
            # A new workspace, or one sealed before heads: never a head deleted where heads were signed.
            entries = {f"{r.kind}:{r.key}": _fingerprint(r.key_id, r.signature) for r in conn.execute(sa.select(seals_table))}
        else:
            entries = current
            if entries is None:
                raise SecurityError(
                    "the access head (which seal of each user and token is current) is missing or does not verify: users "
                    "and tokens cannot be changed; an admin should run `trustforge audit verify`, then `trustforge users reseal`"
                )
            entries = dict(entries)
        # The head names the seals this transaction signed, as signed, never as read back: what the
        # database holds must be exactly those (a trigger elsewhere, a foreign key's cascade, a
        # conflict clause or a check function could have put an older seal in their place).
        s = seals_table.c
        for (kind, key), written in sorted(conn.info.pop("trustforge_sealed", {}).items()):
            held = [tuple(r) for r in conn.execute(sa.select(s.key_id, s.signature).where(s.kind == kind, s.key == key))]
            if held != [written]:
                raise SecurityError(
                    f"{kind} {str(key)[:64]!r}: the database did not keep its new seal as written (a trigger, rule or constraint "
                    "made outside TrustForge?); nothing was changed; `trustforge audit verify` names what it finds"
                )
            entries[f"{kind}:{key}"] = _fingerprint(*written)
        body = json.dumps({k: v for k, v in entries.items() if v is not None}, sort_keys=True, separators=(",", ":"))
        known = witness is not None and witness != _UNREADABLE
        # Built on: the stored head when it verified (it is then this machine's newest, or newer);
        # for a reseal, see `_reseal_link`. The version too: a head whose signature fails says
        # nothing, its version least of all (a writer's 10**18 would carry into the witness).
        if current is not None:
            prev, stored = _fingerprint(head.key_id, head.signature), head.version
        elif decided is not None:
            prev, stored = self._reseal_link(conn, head, witness[1] if known else None)  # type: ignore[index]
        else:
            prev, stored = (witness[1] if known and not restored else None), 0  # type: ignore[index]
        version = max(stored, witness[0] if known else 0) + 1
        statement = _head_statement(self._workspace, version, _body_digest(body), prev)
        if statement is None:
            raise SecurityError(f"the access head cannot be signed: the workspace has no keys/{SEALED_MARKER}")
        key_id, raw = self.keyring.sign(statement)
        signature = base64.b64encode(raw).decode("ascii")
        fingerprint = _fingerprint(key_id, signature) or ""
        conn.execute(
            sa.insert(head_log_table).values(
                fingerprint=fingerprint, version=version, digest=_body_digest(body), prev=prev, key_id=key_id, signature=signature
            )
        )
        values = {"version": version, "body": body, "prev": prev, "key_id": key_id, "signature": signature}
        if head is None:
            if heads:  # a reseal over duplicated head rows
                conn.execute(sa.delete(head_table).where(head_table.c.id == 1))
            conn.execute(sa.insert(head_table).values(id=1, **values))  # a concurrent first head: the primary key refuses one
        elif (
            conn.execute(sa.update(head_table).where(head_table.c.id == 1, head_table.c.version == head.version).values(**values)).rowcount
            != 1
        ):
            raise RegistryError("users and tokens were changed concurrently; try again")
        return version, fingerprint, body

    def witness(self, head: tuple[int, str, str] | None) -> None:
        """Record, after its transaction committed, that this machine has seen head `head`
        ((version, fingerprint, body), as `seal_head` returns it)."""
        if head is None:
            return
        try:
            _advance_access_witness(self.keyring.keys_dir, *head)
        except OSError as exc:  # a read-only keys folder: fails closed, in one line
            raise SecurityError(
                f"keys/{WITNESS_FILE} cannot be written ({exc.strerror or type(exc).__name__}): it records the newest access "
                "head this machine has seen, so that users and tokens put back from an older state are refused; make the keys "
                "folder writable"
            ) from None

    def _head_problem(self, head: Any, conn: sa.Connection | None = None) -> str | None:
        """Why the head row `head` (None: missing) is not to be trusted, or None. `conn`: where
        to read the head log, when the head is newer than this machine's witness."""
        if head is None:
            return "is missing"
        witness = _read_access_witness(self.keyring.keys_dir)
        if type(head.version) is not int:
            return "has a version that is not a number"
        if witness is not None:
            if witness == _UNREADABLE:
                return f"cannot be checked: keys/{WITNESS_FILE} is unreadable"
            if head.version < witness[0]:
                return f"is version {head.version}, older than version {witness[0]} this machine has seen (put back from an older state)"
            if head.version == witness[0] and _fingerprint(head.key_id, head.signature) != witness[1]:
                return f"is version {head.version}, but not the version {head.version} this machine has seen"
        statement = _head_statement(self._workspace, head.version, _body_digest(head.body), head.prev)
        if not self._sealed(statement, head.key_id, head.signature):
            return "does not match its signature (changed outside TrustForge)"
        if witness is not None and head.version > witness[0] and not self._descends(head, witness, conn):
            return (
                f"is version {head.version}, but does not descend from the version {witness[0]} this machine has seen (a copy "
                "of the workspace that changed on its own, or its log of heads changed: if `audit verify` warns of a gap in that "
                "log, an admin who trusts the stored head runs `trustforge users reseal --from-head`)"
            )
        return None

    def _reseal_link(self, conn: sa.Connection, head: Any, witnessed: str | None) -> tuple[str | None, int]:
        """(prev, the version to exceed) of a reseal's head over a stored head that is not to be
        trusted. Built on the stored head when its signature holds and it is not older than the
        one this machine saw (a gap in the log hid its descent, or it is of another branch: only
        its place in the chain is taken, never its entries), so the machines that follow it keep
        following; else on the head this machine saw, when the log holds it (a head deleted or
        put back: the machines that saw it or its ancestors follow); else on nothing. Above
        every signed version, so no machine sees two heads of one version."""
        signed = self._signed_log(conn)
        stored = head is not None and self._head_signed(head)
        floor = max([r.version for r in signed.values()] + ([head.version] if stored else []), default=0)
        seen = signed.get(witnessed) if witnessed is not None else None
        if stored and (seen is None or head.version >= seen.version):
            return _fingerprint(head.key_id, head.signature), floor  # newer than what this machine saw (a gap hid its descent)
        return (witnessed if seen is not None else None), floor

    def _head_signed(self, head: Any) -> bool:
        """Whether head row `head` matches its signature (whatever its version and place)."""
        return self._sealed(_head_statement(self._workspace, head.version, _body_digest(head.body), head.prev), head.key_id, head.signature)

    def _chain_problem(self, conn: sa.Connection, fingerprint: str | None) -> str | None:
        """Why the chain of heads from the one with `fingerprint` back to the first (`prev` None)
        is not whole and signed in `access_head_log`, or None. One ECDSA check per head."""
        log = {r.fingerprint: r for r in conn.execute(sa.select(head_log_table))}
        version = None  # of the head just checked, whose `prev` is `fingerprint`
        while fingerprint is not None:
            row = log.get(fingerprint)
            if row is None:
                return "misses the current head" if version is None else f"misses the head version {version} was built on"
            in_order = type(row.version) is int and (version is None or row.version < version)
            statement = _head_statement(self._workspace, row.version, row.digest, row.prev)
            if not (
                in_order and _fingerprint(row.key_id, row.signature) == fingerprint and self._sealed(statement, row.key_id, row.signature)
            ):
                return f"holds a head (version {str(row.version)[:20]}) that does not match its signature or is out of order"
            fingerprint, version = row.prev, row.version
        return None

    def _descends(self, head: Any, witness: tuple[int, str], conn: sa.Connection | None) -> bool:
        """Whether `head`'s `prev` links, through the signed heads of `access_head_log`, lead back
        to the head the witness names. One ECDSA check per head in between (usually none or one)."""
        if conn is None:
            with self.engine.execution_options(**_READONLY).connect() as own:
                return self._descends(head, witness, own)
        prev, version = head.prev, head.version
        while prev != witness[1]:
            row = conn.execute(sa.select(head_log_table).where(head_log_table.c.fingerprint == prev)).first() if prev else None
            if row is None or type(row.version) is not int or not witness[0] <= row.version < version:
                return False
            if _fingerprint(row.key_id, row.signature) != prev:
                return False
            if not self._sealed(_head_statement(self._workspace, row.version, row.digest, row.prev), row.key_id, row.signature):
                return False
            prev, version = row.prev, row.version
        return True

    def _verified_head(self, head: Any, conn: sa.Connection | None = None) -> dict[str, str] | None:
        """The entries of head row `head` ({"user:NAME": fingerprint, ...}), or None when it is
        missing, older than (or forks from) the newest this machine has seen, or its signature
        fails. The entries of the last verified head are kept, by its version and signature."""
        return self._entries_of(head) if self._head_problem(head, conn) is None else None

    def _entries_of(self, head: Any) -> dict[str, str] | None:
        """The entries of head row `head`, which `_head_problem` found sound (None: a body that is
        not a JSON object); this machine's witness moves to it, then it is cached."""
        key = (head.version, head.key_id, head.signature)
        if self._head_cache is not None and self._head_cache[0] == key:
            return self._head_cache[1]
        try:
            entries = json.loads(head.body)
        except ValueError:
            return None
        if not isinstance(entries, dict):
            return None
        self.witness((head.version, _fingerprint(head.key_id, head.signature) or "", head.body))  # first: a failure caches nothing
        self._head_cache = (key, entries)
        return entries

    def _current_entries(self, version: Any, key_id: Any, signature: Any) -> dict[str, str] | object | None:
        """The verified entries of the head (version, key id, signature) a token's query read;
        `_MOVED` when the stored head is another by now (read the token again), None when it is
        not to be trusted (`_verified_head`). The last verified head's entries are
        reused while the head is unchanged; the witness is read every time, since another process
        on this machine may have seen a newer head meanwhile."""
        if self._head_cache is not None and self._head_cache[0] == (version, key_id, signature):
            witness = _read_access_witness(self.keyring.keys_dir)
            if witness is None or version > witness[0] or (version == witness[0] and witness[1] == _fingerprint(key_id, signature)):
                return self._head_cache[1]
        with self.engine.execution_options(**_READONLY).connect() as conn:
            head = conn.execute(sa.select(head_table).where(head_table.c.id == 1)).first()
        if head is None:
            return None if version is None else _MOVED
        if (head.version, head.key_id, head.signature) != (version, key_id, signature):
            return _MOVED  # changed since the token was read (an admin's change): `authenticate` reads again
        return self._verified_head(head)

    def reseal(self, *, from_seals: bool = False, from_head: bool = False, by: Principal | None = None) -> dict[str, Any]:
        """An admin's way back after `trustforge audit verify` named the access head (missing, old,
        stored twice or changed): sign a new head naming, as the current ones, the rows whose seals
        hold and that are the ones the newest head this machine has seen named (the stored head
        when it verifies, else the body kept beside the witness). Rows put back from an older
        state, the whole access state included, are left out, named, for the admin to decide on
        again.

        Args:
            from_seals: take every row whose seal holds, rows put back with an older seal included:
                for a machine that has seen no head, or when no machine that saw the newest is left.
            from_head: check the rows against the stored head, whose signature holds, although this
                machine cannot check that it descends from the one it saw (a gap in the log of heads,
                or a head signed on a machine it never followed): an admin's decision to trust it.

        Raises:
            SecurityError: without `from_seals`, this machine has kept no head to check against,
                or the log holds a signed head newer than it (users changed on another machine).

        Returns:
            {"rows": how many the head names, "left_out": ["token ID" | "user 'NAME'", ...] (not
            the ones last seen), "broken": [...] (their seals fail), "checked_against": the
            version of the head checked against (None with `from_seals`)}.
        """
        named: dict[str, list[str]] = {"left_out": [], "broken": []}

        def change(conn: sa.Connection) -> dict:
            if from_seals and from_head:
                raise UsageError("users reseal: --from-seals and --from-head are two ways back; give one")
            basis = None if from_seals else self._reseal_basis(conn, from_head)
            rows = [("user", u.name, u, _user_statement) for u in conn.execute(_with_seals(users_table, "user", users_table.c.name))]
            rows += [("token", t.id, t, _token_statement) for t in conn.execute(_with_seals(tokens_table, "token", tokens_table.c.id))]
            entries = {}
            for kind, key, row, statement in rows:
                shown = f"user {str(key)[:64]!r}" if kind == "user" else f"token {str(key)[:64]}"
                fingerprint = _fingerprint(row.key_id, row.signature)
                if not self._sealed(statement(self._workspace, row), row.key_id, row.signature):
                    named["broken"].append(shown)
                elif basis is not None and (
                    basis[1].get(f"{kind}:{key}") != fingerprint or basis[2].get(f"{kind}:{key}", fingerprint) != fingerprint
                ):
                    named["left_out"].append(shown)
                else:
                    entries[f"{kind}:{key}"] = fingerprint
            conn.info["trustforge_head_entries"] = entries
            return {
                "rows": len(entries),
                "left_out": len(named["left_out"]),
                "broken": len(named["broken"]),
                "checked_against": basis[0] if basis is not None else None,
            }

        details = self._mutate(by, "reseal", "access:seals", change)
        return {**details, **named}

    def _reseal_basis(self, conn: sa.Connection, from_head: bool = False) -> tuple[int, dict[str, str], dict[str, str]]:
        """(version, entries, also) for `reseal`: a row is taken when its seal is the one `entries`
        names and, where `also` names one for it, that one too. `entries`: the newest head this
        machine has seen: the stored head when it verifies, else the witnessed head's body;
        `from_head`: the stored head whenever its signature holds and it is not older than the
        witness's, with `also` the witnessed body (a row changed since this machine's last head,
        on a branch that put it back or on another machine, is left out, never taken). Raises
        SecurityError when there is none, or when the log holds a signed head that descends from
        it and is newer: another machine saw changes this one did not, and rows it changed since
        would be taken as they were put back (a head of another branch is no such change)."""
        heads = conn.execute(sa.select(head_table).where(head_table.c.id == 1)).all()
        entries = self._verified_head(heads[0], conn) if len(heads) == 1 else None
        if entries is not None:
            basis = (heads[0].version, entries, _fingerprint(heads[0].key_id, heads[0].signature))
        elif from_head:
            witnessed = _witnessed_entries(self.keyring.keys_dir)
            trusted = self._trusted_head(heads[0] if len(heads) == 1 else None)  # raises unless there is one to trust
            return heads[0].version, trusted, witnessed[1] if witnessed is not None else {}
        else:
            witnessed, witness = _witnessed_entries(self.keyring.keys_dir), _read_access_witness(self.keyring.keys_dir)
            basis = (witnessed[0], witnessed[1], witness[1]) if witnessed is not None and witness is not None else None
        cure = (
            "on an admin's word, `trustforge users reseal --from-head` checks them against the stored head (when its signature "
            "holds), or `--from-seals` takes every row whose seal holds, rows put back with an older seal too"
        )
        if basis is None:
            raise SecurityError(
                "this machine has kept no access head to check the users and tokens against (it never saw one, or saw it before "
                f"their bodies were kept): run `trustforge users reseal` on a machine that has, or {cure}"
            )
        newest = self._newest_successor(conn, basis[2], basis[0])
        if newest > basis[0]:
            raise SecurityError(
                f"the log of access heads holds version {newest}, newer than version {basis[0]} this machine has seen and built on "
                f"it: users or tokens were changed on another machine since; run `trustforge users reseal` there, or {cure}"
            )
        return basis[0], basis[1], {}

    def _newest_successor(self, conn: sa.Connection, fingerprint: str, version: int) -> int:
        """The highest version among the signed heads of the log newer than `version` that may
        have been built on the head with `fingerprint`: those whose links lead to it, and those
        whose links break before they pass below it (a gap hides where they come from); not those
        that provably come from elsewhere (a branch). `version` when there is none."""
        signed = self._signed_log(conn)
        verdict: dict[str, bool] = {fingerprint: True}  # whether a head may descend from `fingerprint`

        def may_descend(fp: Any) -> bool:
            path = []
            while fp not in verdict:
                row = signed.get(fp) if fp is not None else None
                if row is None or row.version <= version:
                    verdict[fp] = row is None and fp is not None  # a missing link: maybe; the first head or an older one: no
                    break
                path.append(fp)
                fp = row.prev
            for step in path:
                verdict[step] = verdict[fp]
            return verdict[fp]

        newer = [r for r in signed.values() if r.version > version]
        return max([r.version for r in newer if may_descend(r.fingerprint)], default=version)

    def _trusted_head(self, head: Any) -> dict[str, str]:
        """The entries of the stored head `head`, taken on an admin's word (`reseal --from-head`):
        its signature must hold and it must not be older than this machine's witness."""
        witness = _read_access_witness(self.keyring.keys_dir)
        if head is None or not self._head_signed(head):
            raise SecurityError("users reseal --from-head: the stored access head is missing or does not match its signature")
        if witness is not None and (witness == _UNREADABLE or head.version < witness[0]):
            raise SecurityError(
                f"users reseal --from-head: the stored access head is version {head.version}, older than the one this machine "
                "has seen (put back from an older state); `trustforge users reseal` checks the rows against the newer one"
            )
        try:
            entries = json.loads(head.body)
        except ValueError:
            entries = None
        if not isinstance(entries, dict):
            raise SecurityError("users reseal --from-head: the stored access head's body is not readable")
        return entries

    def _signed_log(self, conn: sa.Connection) -> dict[str, Any]:
        """The rows of `access_head_log` whose signature holds, by fingerprint."""
        signed = {}
        for r in conn.execute(sa.select(head_log_table)):
            statement = _head_statement(self._workspace, r.version, r.digest, r.prev)
            if _fingerprint(r.key_id, r.signature) == r.fingerprint and self._sealed(statement, r.key_id, r.signature):
                signed[r.fingerprint] = r
        return signed

    def _adopt_head_once(self) -> None:
        """A workspace sealed before access heads (seals, no head) and never seen by this machine
        (no witness): its seals as they stand become the first head, audited as `seal_head`. With
        a witness, a missing head is a deletion, and every token stays refused."""
        if self._workspace is None or _read_access_witness(self.keyring.keys_dir) is not None:
            return
        with self.engine.execution_options(**_READONLY).connect() as conn:
            headless = conn.execute(sa.select(head_table.c.id)).first() is None
            if not headless or conn.execute(sa.select(seals_table.c.key).limit(1)).first() is None:
                return
            if conn.execute(sa.select(head_log_table.c.fingerprint).limit(1)).first() is not None:
                return  # heads were signed here: this one was deleted, not never made (every token stays refused)
        try:
            with self.engine.begin() as conn:
                head = self.seal_head(conn)
                details = {"op": "seal_head", "version": head[0]}
                self.audit.append("trustforge", "users", "access:seals", "ok", details, conn=conn)  # type: ignore[union-attr]
        except (sa_exc.IntegrityError, RegistryError):
            return  # another process adopted it at the same moment; its head stands
        self.witness(head)
        self.audit.sync_head_file()  # type: ignore[union-attr]

    def seal_unsealed(self, conn: sa.Connection) -> tuple[int, int]:
        """Seal, in transaction `conn`, every user and token row that has no seal: rows from
        before seals (a workspace's first open by this version, a restored old backup), which
        are genuine only because nothing else can be known of them. Returns (users, tokens)."""
        unsealed = seals_table.c.key.is_(None)
        users = conn.execute(_with_seals(users_table, "user", users_table.c.name).where(unsealed)).all()
        tokens = conn.execute(_with_seals(tokens_table, "token", tokens_table.c.id).where(unsealed)).all()
        for u in users:
            self._write_seal(conn, "user", u.name, _user_statement(self._workspace, u))
        for t in tokens:
            self._write_seal(conn, "token", t.id, _token_statement(self._workspace, t))
        return len(users), len(tokens)

    def reseal_restored(
        self,
        conn: sa.Connection,
        seals: list[dict[str, Any]],
        marker: bytes | None,
        pems: list[bytes],
        heads: list[dict[str, Any]] | None = None,
    ) -> list[str]:
        """Seal for this workspace, in transaction `conn`, the restored rows whose seal from the
        archive holds and is the current one the archive's access head names; the others stay
        unsealed, so they are refused here as they were there (a row put back in the source
        with its old seal is not made current by a restore).

        Args:
            seals: the archive's `access_seals` rows.
            marker: the archive's `keys/access-sealed` (the source workspace's id).
            pems: the archive's public keys; with this keyring's, what the seals are checked with.
            heads: the archive's `access_head` rows: None or [] for an archive from before heads
                (each row's seal alone decides); a head that does not verify reseals nothing.

        Returns:
            The rows left unsealed, one line each.
        """
        workspace = _workspace_id_in(marker)
        keys = {}
        for pem in pems:
            try:
                key = P.load_public_key(pem)
            except P.CryptoFailure:
                continue
            keys[key.key_id] = key

        def verify(key_id: str, data: bytes, signature: bytes) -> bool:
            key = keys.get(key_id)
            return key.verify(data, signature) if key is not None else self.keyring.verify(key_id, data, signature)

        by_key = {(s.get("kind"), s.get("key")): s for s in seals if isinstance(s, dict)}
        current = None  # an archive from before heads: the seals alone decide
        if heads:
            head = next((SimpleNamespace(**{"prev": None, **h}) for h in heads if isinstance(h, dict) and h.get("id") == 1), None)
            signed = head is not None and self._sealed(
                _head_statement(workspace, head.version, _body_digest(head.body), head.prev), head.key_id, head.signature, verify
            )
            try:
                current = json.loads(head.body) if signed else {}
            except ValueError:
                current = {}
            current = current if isinstance(current, dict) else {}
        refused = []
        rows = [("user", r.name, r, _user_statement) for r in conn.execute(sa.select(users_table))]
        rows += [("token", r.id, r, _token_statement) for r in conn.execute(sa.select(tokens_table))]
        for kind, key, row, statement in rows:
            seal = by_key.get((kind, key)) or {}
            named = current is None or current.get(f"{kind}:{key}") == _fingerprint(seal.get("key_id"), seal.get("signature"))
            if named and self._sealed(statement(workspace, row), seal.get("key_id"), seal.get("signature"), verify):
                self._write_seal(conn, kind, key, statement(self._workspace, row))
            else:
                refused.append(f"{kind} {str(key)[:64]!r}")
        return refused

    def ensure_workspace_id(self) -> None:
        """Give the workspace its id (`keys/access-sealed`, random, 0600) if it has none yet.

        Raises:
            SecurityError: the file is missing although the database holds seals (a keys folder
                put back without it: every seal would fail), or it cannot be written.
        """
        if self._workspace is not None:
            return
        marker = Path(self.keyring.keys_dir) / SEALED_MARKER
        if marker.exists():
            raise SecurityError(f"keys/{SEALED_MARKER} is not what TrustForge writes; put back the keys folder's own copy of it")
        with self.engine.execution_options(**_READONLY).connect() as conn:
            sealed = conn.execute(sa.select(seals_table.c.key).limit(1)).first() is not None
        if sealed:
            raise SecurityError(
                f"keys/{SEALED_MARKER} is missing, but the database holds sealed users and tokens: put back the keys "
                "folder's copy of that file (keep it with the keys); without it no token can be checked"
            )
        try:  # exactly one process's id wins when several open a new workspace at once
            _create_secret(marker, b"trustforge access seals v1 " + secrets.token_hex(16).encode("ascii") + b"\n")
        except OSError as exc:
            raise SecurityError(
                f"keys/{SEALED_MARKER} cannot be written ({exc.strerror}): open the workspace once with its keys folder writable"
            ) from None
        self._workspace = _read_workspace_id(self.keyring.keys_dir)

    def _seal_existing_once(self) -> None:
        """On a workspace's first open by this version: give it its id and seal the rows it holds
        (rows from before seals), so that from then on an unsealed row is refused. The id is
        written first: a process killed between the two leaves the old rows refused (an admin
        re-grants them), never a forged row accepted."""
        if self._workspace is not None:
            return
        self.ensure_workspace_id()
        try:
            with self.engine.begin() as conn:
                users, tokens = self.seal_unsealed(conn)
                head = self.seal_head(conn) if users or tokens else None
                if users or tokens:
                    details = {"op": "seal_existing", "users": users, "tokens": tokens}
                    self.audit.append("trustforge", "users", "access:seals", "ok", details, conn=conn)  # type: ignore[union-attr]
        except (sa_exc.IntegrityError, RegistryError):
            pass  # another process sealed them at the same moment; its seals stand
        else:
            if users or tokens:
                self.witness(head)
                self.audit.sync_head_file()  # type: ignore[union-attr]

    def verify_seals(self) -> tuple[int, list[str]]:
        """Check every user and token row against its seal, and each seal against the access head
        (the current one of its row): (rows checked, problems), each problem one line naming the
        row or the head (never a hash or secret)."""
        with self.engine.execution_options(**_READONLY).connect() as conn:
            users = conn.execute(_with_seals(users_table, "user", users_table.c.name).order_by(users_table.c.name)).all()
            tokens = conn.execute(_with_seals(tokens_table, "token", tokens_table.c.id).order_by(tokens_table.c.id)).all()
            heads = conn.execute(sa.select(head_table)).all()
            head = heads[0] if len(heads) == 1 and heads[0].id == 1 else None
            why = self._head_problem(head, conn) if head is not None or users or tokens else None
            if len(heads) > 1 or (heads and head is None):
                why = f"is stored {len(heads)} times" if len(heads) > 1 else "is not stored as row id 1"
            entries = self._entries_of(head) if why is None and head is not None else None
            if why is None and head is not None and entries is None:
                why = "is not readable"
            rewriters = _rewriters(conn)
        problems = [f"the database holds {r}, made outside TrustForge: it can decide what a change writes; drop it" for r in rewriters]
        if why is not None:
            problems.append(f"the access head (which seal of each user and token is current) {why}: no token is accepted")
        # With the head not to be trusted, the rows are named against the head this machine last
        # saw, from the body kept beside its witness (a whole access state put back names its rows).
        compared, against = entries, "the access head names"
        if entries is None and (witnessed := _witnessed_entries(self.keyring.keys_dir)) is not None:
            compared, against = witnessed[1], f"the access head this machine last saw (version {witnessed[0]}) named"
        rows = [("user", u.name, u, _user_statement, "role or active") for u in users]
        rows += [("token", t.id, t, _token_statement, "user, hash, expiry or revocation") for t in tokens]
        for kind, key, row, statement, fields in rows:
            name = f"{kind} {str(key)[:64]!r}" if kind == "user" else f"token {str(key)[:64]}"
            if not self._sealed(statement(self._workspace, row), row.key_id, row.signature):
                problems.append(f"{name} " + ("has no seal" if row.signature is None else f"does not match its seal ({fields} changed?)"))
            elif compared is not None and compared.get(f"{kind}:{key}") != _fingerprint(row.key_id, row.signature):
                problems.append(f"{name} is not the one {against}: an older record put back (a replay), or added")
        if compared is not None:
            held = {f"{kind}:{key}" for kind, key, *_ in rows}
            named = against.removesuffix(" names").removesuffix(" named")
            problems += [f"{k.replace(':', ' ', 1)} is named by {named} but missing (deleted)" for k in sorted(set(compared) - held)]
        return len(users) + len(tokens), problems

    def head_log_gap(self) -> str | None:
        """Why the chain of heads in `access_head_log`, from the stored head back to the first, is
        not whole and signed (rows deleted or changed outside TrustForge), or None. Not a refusal
        here (this machine checks its head against its own witness), but a machine that last saw
        a head older than the gap cannot follow the chain and refuses every token until an admin
        runs `trustforge users reseal` there."""
        with self.engine.execution_options(**_READONLY).connect() as conn:
            heads = conn.execute(sa.select(head_table)).all()
            if len(heads) != 1:
                return None  # `verify_seals` names the head
            return self._chain_problem(conn, _fingerprint(heads[0].key_id, heads[0].signature))

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _user(conn: sa.Connection, name: str):
        row = conn.execute(sa.select(users_table).where(users_table.c.name == name)).first()
        if row is None:
            raise RegistryError(f"user {name!r} does not exist; `trustforge users add {name} --role ROLE` creates it")
        return row

    def _mutate(self, by: Principal | None, what: str, name: str, change: Callable[[sa.Connection], dict]) -> dict:
        """Run `change` in one transaction; with `by`, check "users" and audit it in that
        transaction. Returns what `change` returned (the audit entry's details)."""
        obj = name if name.startswith(("token:", "access:")) else f"user:{name}"
        if by is not None:
            if self.audit is None:
                raise TypeError("AccessStore needs an audit log for mutations made by a principal")
            require(by, "users", obj, self.audit)
        try:
            with self.engine.begin() as conn:
                _refuse_rewriters(conn)  # before the change: its rows would be read back as a trigger left them
                details = change(conn)
                head = self.seal_head(conn)  # the changed seals are the current ones from now on
                if by is not None:
                    self.audit.append(by.name, "users", obj, "ok", {"op": what, "by_kind": by.kind, **details}, conn=conn)
            self.witness(head)
            if by is not None:
                self.audit.sync_head_file()  # the entry committed with the change; now the file
            return details
        except TrustForgeError as exc:
            if by is not None:
                try:
                    self.audit.append(by.name, "users", obj, "error", {"op": what, "by_kind": by.kind, "error": recorded(exc)})
                except TrustForgeError as unrecorded:  # the refusal is the news; say the log did not take it too
                    exc.args = (f"{exc}; and its audit entry could not be written: {unrecorded}",)
            raise
        except sa_exc.DBAPIError as exc:
            # Two admins adding the same user at once: the primary key refuses the second. But a
            # foreign key, constraint or function a database writer added refuses it too, for good.
            why = (str(getattr(exc, "orig", exc) or "").strip().splitlines() or [type(exc).__name__])[0][:160]
            err = RegistryError(
                f"the database refused the change to {obj} ({why}): a concurrent change (try again), or a constraint, foreign "
                "key or function made outside TrustForge (`trustforge audit verify` names what it finds)"
            )
            if by is not None:
                self.audit.append(by.name, "users", obj, "error", {"op": what, "by_kind": by.kind, "error": recorded(err)})
            raise err from None
