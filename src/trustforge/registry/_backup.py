"""Backup and restore of a workspace: one encrypted, signed archive file.

The archive holds the registry database (every table of the registry, access and audit
metadata, dumped as JSON rows), the stored package folders of every registered version (as
stored: sealed packages stay sealed), the public parts of the workspace keys and the workspace
masking secret wrapped by the KEK (`keys/masking.key`, as the keys folder holds it: a model
trained on hashed personal data needs it to predict, and files masked before unmask with it
only). On disk:

    TFBACKUP1\\n
    header\\n        one line of JSON: format, time, the signing key's id and public key, the
                    data key wrapped by the key-encryption key (KEK), the ciphertext's size and
                    SHA-256, and an ECDSA signature over all of that
    ciphertext      a tar archive sealed with AES-256-GCM under the data key (the header's
                    signed fields are its associated data)

The file is sealed and opened by `trustforge.secure` (`write_sealed_archive`, `open_sealed_archive`).
`restore_backup` checks everything before it writes anything: the signature, the ciphertext's
digest, the data key (only a holder of the KEK can have made the archive), the decryption,
then every archive entry (plain relative names under known folders, regular files only, no
`..`, absolute paths, backslashes or links), every file's digest, every row's columns and
their types, that each version's folder holds the package its row records, and that the
archive's audit log verifies (chain, checkpoints and signed head, by the archive's keys). Only
then, and only into an empty workspace (one that holds nothing but what opening a new
workspace creates: empty tables, the audit log's genesis head, keys), does it write: package
folders to a temporary folder renamed into place, all rows in one transaction, then the keys,
the masking secret and the audit log's witness and head file. Should any of that still fail,
everything it wrote is undone: the workspace is left as it was, empty, ready for another try.
`create_backup` refuses a workspace whose audit log does not verify. Restoring needs the same
KEK (keep it apart from the backups).

The KEK is not trust: anyone holding it (a CI job) can seal an archive. The signature must
verify with a key the target keyring already knows or with the public key the operator
hands in (`trusted_key`, `--trusted-key`), never with the key the archive carries. What the
restore adds to the workspace's trust is listed and refused unless accepted explicitly:
public keys the keyring does not know (kept as retired keys, so old package signatures and
the audit log's checkpoints verify), admin users, and an audit log shorter than the one the
workspace's audit head file recorded.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import uuid
from datetime import datetime
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from trustforge._fs import atomic_write_bytes, make_private
from trustforge.errors import IntegrityError, RegistryError, SecurityError
from trustforge.registry._binding import check_archived, open_bound
from trustforge.registry._store import DEFAULT_GC_GRACE_S, StagingLock, clean_restores, restore_temp
from trustforge.secure import (
    ARCHIVE_FORMAT,
    ARCHIVE_VERSION,
    AUDIT_GENESIS,
    METADATA,
    SEALED_MARKER,
    AccessStore,
    AuditLog,
    Keyring,
    archive_verifier,
    local_admin,
    open_sealed_archive,
    public_key_id,
    verify_audit_rows,
    write_sealed_archive,
)
from trustforge.settings import Settings

__all__ = ["create_backup", "restore_backup", "BACKUP_FORMAT"]

BACKUP_FORMAT = ARCHIVE_FORMAT
_VERSION = ARCHIVE_VERSION
_write_archive = write_sealed_archive  # the tests seal crafted archives with it
_CONTENTS = "backup.json"
_MASKING = "keys/masking.key"  # the masking secret, wrapped by the KEK (never in plaintext)
_SEALED = f"keys/{SEALED_MARKER}"  # the source workspace's id, which its access seals sign
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


# ---------------------------------------------------------------------------- database


def _engine(url: str) -> sa.Engine:
    from trustforge.registry._db import make_engine

    return make_engine(url)


def _metadatas() -> list[sa.MetaData]:
    """The registry's, the access store's and the audit log's tables (each module owns its own)."""
    from trustforge.registry import _db

    return [_db.metadata, *METADATA]


def _tables() -> list[sa.Table]:
    """Every table, parents before children (the order rows must be inserted in)."""
    return [t for md in _metadatas() for t in md.sorted_tables]


def _table(name: str) -> sa.Table:
    return next(t for t in _tables() if t.name == name)


def _encode(value: Any) -> Any:
    # Today every column is a string, number or boolean; tag anything else so it round-trips.
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((kind, text),) = value.items()
        if kind == "$bytes":
            return base64.b64decode(text)
        if kind == "$datetime":
            return datetime.fromisoformat(text)
    return value


def _dump(conn: sa.Connection) -> dict[str, list[dict[str, Any]]]:
    inspector = sa.inspect(conn)
    out = {}
    for table in _tables():
        if not inspector.has_table(table.name):
            out[table.name] = []
            continue
        order = list(table.primary_key.columns) or list(table.columns)
        rows = conn.execute(sa.select(table).order_by(*order)).mappings()
        out[table.name] = [{k: _encode(v) for k, v in row.items()} for row in rows]
    return out


# ---------------------------------------------------------------------------- create


def create_backup(settings: Settings, dest: Path, keyring: Keyring) -> dict[str, Any]:
    """Write one encrypted, signed archive of the workspace's registry, packages and public keys.

    The database is read in one transaction (on SQLite it holds the write lock, so no version
    is registered or deleted meanwhile) and the package folders of exactly the versions in
    that snapshot are archived. `dest` appears complete or not at all.

    The audit log's rows in that snapshot must verify (chain, checkpoints, signed head): the
    archive's signature is not put on a history that was edited.

    Returns:
        A summary: rows per table, the package files archived (`files`, as `restore_backup`
        counts them), the archive's size in bytes, the signing key id.

    Raises:
        IntegrityError: the audit log, or a user's or token's seal, does not verify (naming the
            first bad entry or rows); nothing is written.
        SecurityError: the keyring holds no key-encryption key.
        RegistryError: the database cannot be read, or a version's folder vanished meanwhile.
        FileExistsError: `dest` exists.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest}: already exists")
    keyring.kek_id  # fail now, before any work, when there is no KEK
    artifacts = Path(settings.artifacts or settings.home / "artifacts")
    files: dict[str, bytes] = {}
    engine = _engine(settings.db_url)
    # One snapshot across every table: REPEATABLE READ on PostgreSQL; on SQLite the registry's
    # engine begins with BEGIN IMMEDIATE, which also keeps writers out while folders are read.
    reader = engine.execution_options(isolation_level="REPEATABLE READ") if engine.dialect.name == "postgresql" else engine
    try:
        # Users and tokens as the workspace refuses them (a row changed or put back outside
        # TrustForge): the archive's signature would vouch for them, and a restore would seal them.
        _, broken = AccessStore(engine, keyring=keyring).verify_seals()
        if broken:
            raise IntegrityError(
                f"the users and tokens do not verify ({len(broken)}): {'; '.join(broken[:3])}; not backed up (the backup's "
                "signature would vouch for them): investigate with `trustforge audit verify`"
            )
        with reader.begin() as conn:
            tables = _dump(conn)
            report = verify_audit_rows(tables, keyring.verify)  # the history the archive's signature will vouch for
            if not report.ok:
                raise IntegrityError(
                    f"the audit log does not verify: entry {report.first_bad}: {report.problem}; not backed up (the backup's "
                    "signature would vouch for that history): investigate with `trustforge audit verify`"
                )
            for row in tables.get("registry_versions", []):
                folder = artifacts / str(row["name"]) / str(row["version"])
                if not folder.is_dir():
                    raise RegistryError(
                        f"{folder}: the stored package of {row['name']} version {row['version']} is missing; run `trustforge models gc` or retry"
                    )
                # Only packages bound to their rows go into a backup (and come back from it).
                open_bound(folder, SimpleNamespace(**row), keyring)
                for path in sorted(folder.rglob("*")):
                    if path.is_symlink():
                        raise RegistryError(f"{path}: a symbolic link in the artifact store")
                    if path.is_file():
                        files["artifacts/" + path.relative_to(artifacts).as_posix()] = path.read_bytes()
    finally:
        engine.dispose()
    for key_id in keyring.public_key_ids():
        files[f"keys/{key_id}.pub"] = keyring.public_key_pem(key_id)
    masking = keyring.export_masking_secret()  # wrapped under the KEK the archive is made under; None if never needed
    if masking is not None:
        files[_MASKING] = masking
    if (keyring.keys_dir / SEALED_MARKER).is_file():  # the id the users' and tokens' seals name (not a secret)
        files[_SEALED] = (keyring.keys_dir / SEALED_MARKER).read_bytes()
    for name, rows in tables.items():
        files[f"db/{name}.json"] = json.dumps(rows, sort_keys=True, separators=(",", ":")).encode("utf-8")
    contents = {
        "format": BACKUP_FORMAT + ".contents",
        "format_version": _VERSION,
        "tables": {name: len(rows) for name, rows in tables.items()},
        "files": {name: hashlib.sha256(blob).hexdigest() for name, blob in files.items()},
    }
    tar = _tar({_CONTENTS: json.dumps(contents, sort_keys=True, indent=1).encode("utf-8"), **files})
    write_sealed_archive(dest, tar, keyring)
    packaged = sum(name.startswith("artifacts/") for name in files)  # what a restore writes to the store, and counts
    return {"tables": contents["tables"], "files": packaged, "bytes": dest.stat().st_size, "key_id": keyring.key_id}


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def _safe_name(name: str) -> bool:
    """A relative POSIX path of plain parts under a folder a backup writes to (zip-slip guard)."""
    if not isinstance(name, str) or "\\" in name or "\x00" in name or name.startswith("/") or len(name) > 1024:
        return False
    parts = name.split("/")
    if not all(_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        return False
    if name == _CONTENTS:
        return True
    top = parts[0]
    return (top == "artifacts" and len(parts) >= 4) or (top in ("db", "keys") and len(parts) == 2)


def _members(src: Path, tar_bytes: bytes) -> dict[str, bytes]:
    """Every entry of the decrypted tar, each checked; IntegrityError naming the first bad one."""
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for info in tar:
                if not _safe_name(info.name) or str(PurePosixPath(info.name)) != info.name:
                    raise IntegrityError(f"{src}: archive entry {info.name[:200]!r} would escape the workspace or is not a plain path")
                if not info.isreg():
                    raise IntegrityError(f"{src}: archive entry {info.name[:200]!r} is not a regular file (links are refused)")
                if info.name in out:
                    raise IntegrityError(f"{src}: archive entry {info.name[:200]!r} appears twice")
                f = tar.extractfile(info)
                out[info.name] = f.read() if f is not None else b""
    except tarfile.TarError:
        raise IntegrityError(f"{src}: the archive inside is malformed") from None
    try:
        contents = json.loads(out.pop(_CONTENTS))
        listed = contents["files"]
        ok = contents.get("format") == BACKUP_FORMAT + ".contents" and isinstance(listed, dict)
    except (KeyError, ValueError, TypeError, RecursionError):
        ok = False
    if not ok:
        raise IntegrityError(f"{src}: the archive's {_CONTENTS} is missing or malformed")
    for name in sorted(out.keys() ^ listed.keys()):
        raise IntegrityError(
            f"{src}: archive entry {name[:200]!r} is {'not listed in' if name in out else 'listed in but missing from'} {_CONTENTS}"
        )
    for name, blob in out.items():
        if hashlib.sha256(blob).hexdigest() != listed[name]:
            raise IntegrityError(f"{src}: archive entry {name[:200]!r} does not match its digest")
    return out


# ---------------------------------------------------------------------------- restore


_RECOVER = (
    "restore only into an empty workspace: point TRUSTFORGE_HOME at a new folder (with the source's key-encryption key in "
    "TRUSTFORGE_KEK or its keys/kek.key) and restore there"
)


def _is_genesis(rows: list[Any]) -> bool:
    """The audit head of a log that never had an entry: what opening a new workspace writes."""
    return len(rows) == 1 and rows[0].id == 1 and rows[0].seq == 0 and rows[0].hash == AUDIT_GENESIS


def _not_empty(conn: sa.Connection) -> str | None:
    """Why the database is not empty (None when it is), as restore counts it.

    Empty means: no row in any registry, access or audit table, except the genesis audit head
    (entry 0, no entries, no checkpoints) that any command reading a new workspace writes when
    it opens it (`models list`, `audit show`, ...). That head records no history: restoring
    replaces it with the archive's, as if the log had never been opened. An entry, a checkpoint,
    a head past entry 0, a user, a token or a model is content, and is never overwritten.
    """
    inspector = sa.inspect(conn)
    head = None
    for table in _tables():
        if not inspector.has_table(table.name):
            continue
        if table.name == "audit_head":
            head = table
            continue
        count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
        if count:
            return f"table {table.name} of the workspace database is not empty ({count} row(s))"
    if head is not None:
        rows = conn.execute(sa.select(head.c.id, head.c.seq, head.c.hash).limit(2)).all()
        if rows and not _is_genesis(rows):
            return "table audit_head of the workspace database is not empty (its signed head is past entry 0)"
    return None


def _check_empty(settings: Settings, artifacts: Path) -> None:
    """Refuse a workspace that holds any registry, access or audit content, or any stored package.

    What opening a new workspace creates (empty tables, the genesis audit head, its head file
    and witness at entry 0, keys) does not count; see `_not_empty`.
    """
    if artifacts.exists() and (not artifacts.is_dir() or any(artifacts.iterdir())):
        raise RegistryError(f"{artifacts}: the artifact store is not empty; {_RECOVER}")
    url = sa.engine.make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" and not Path(url.database).exists():
        return  # no database yet: nothing to look at, and connecting would create the file
    engine = _engine(settings.db_url)
    try:
        with engine.connect() as conn:
            why = _not_empty(conn)
    finally:
        engine.dispose()
    if why is not None:
        raise RegistryError(f"{why}; {_RECOVER}")


def restore_backup(
    settings: Settings,
    src: Path,
    keyring: Keyring,
    *,
    trusted_key: bytes | None = None,
    accept_new_keys: bool = False,
    accept_admins: bool = False,
    accept_shorter_audit: bool = False,
) -> dict[str, Any]:
    """Restore an archive from `create_backup` into the empty workspace of `settings`.

    Everything is checked before anything is written (see the module docstring). Then the
    package folders are written to a temporary folder, the rows inserted in one transaction
    with the `restore` audit entry (by the local workspace admin, `local_admin`), and the
    folder renamed into place before that transaction commits; then the archive's
    public keys and masking secret are added and the audit log's witness started. If any of
    that fails, what was written is undone (rows, store, keys, witness and head file), so the
    workspace is as it was and a retry is not refused as not empty.

    Trust comes from a key, not from the KEK: the archive must be signed by a key `keyring`
    already knows or by `trusted_key`. What a restore would add to the workspace's trust is
    refused unless accepted explicitly, and reported either way: public keys the keyring does
    not know yet (they would verify packages and audit checkpoints from then on), admin users,
    and an audit history shorter than the one the workspace's audit head file records.

    Args:
        settings: the target workspace (its database may be SQLite or PostgreSQL).
        src: the archive file.
        keyring: the target workspace's keys; it must hold the KEK the archive was made under.
        trusted_key: the PEM public key of the source workspace (`trustforge keys export`),
            needed when `keyring` does not know the key that signed the archive.
        accept_new_keys: add the archive's public keys that `keyring` does not know.
        accept_admins: restore admin users.
        accept_shorter_audit: restore an audit log with fewer entries than the workspace's head
            file records (the newer entries are lost; the head file is reset to the archive's).

    Returns:
        A summary: rows per table, files restored, the key id that signed the archive,
        `new_keys` (ids added to the keyring), `new_admins` (names) and `audit` (entries in
        the archive, and those the workspace recorded before).

    Raises:
        IntegrityError: the archive was changed, holds an entry that is not a plain path
            under a known folder (zip-slip, links), a value of the wrong type, a version whose
            files are not the package its row records, or an audit log that does not verify;
            nothing is written. Or the restored log disagrees with the workspace's witness;
            what was written is undone.
        DataError: `src` does not exist.
        SecurityError: the archive was made under another KEK, is signed by a key that is not
            trusted, would add keys, admins or cut the audit history without consent, or holds
            a masking secret other than the one the workspace holds already; nothing is written.
        RegistryError: the target workspace is not empty; nothing is written.
    """
    src = Path(src)
    artifacts = Path(settings.artifacts or settings.home / "artifacts")
    _check_empty(settings, artifacts)
    header, tar_bytes = open_sealed_archive(src, keyring, trusted_key=trusted_key)
    members = _members(src, tar_bytes)
    del tar_bytes
    known = {t.name: t for t in _tables()}
    rows: dict[str, list[dict[str, Any]]] = {}
    new_keys: list[str] = []
    for name, blob in members.items():
        if name.startswith("db/"):
            table = name[3:-5] if name.endswith(".json") else ""
            if table not in known:
                raise IntegrityError(f"{src}: archive entry {name!r} is not a table this version of TrustForge knows")
            try:
                data = json.loads(blob)
                rows[table] = [{k: _decode(v) for k, v in r.items()} for r in data]
                unknown = {k for r in rows[table] for k in r} - set(known[table].columns.keys())
            except (ValueError, TypeError, AttributeError, RecursionError):
                raise IntegrityError(f"{src}: archive entry {name!r} is not a list of rows") from None
            if unknown:
                raise IntegrityError(f"{src}: archive entry {name!r} has unknown columns {sorted(unknown)[:5]}")
            _check_types(src, known[table], rows[table])
        elif name == _MASKING:
            # Opens with this keyring's KEK and does not replace a different secret of the workspace.
            keyring.import_masking_secret(blob, where=f"{src} ({name})", check_only=True)
        elif name == _SEALED:
            pass  # read when the seals are checked (`_seal_restored`)
        elif name.startswith("keys/"):
            try:
                key_id = public_key_id(blob)
            except SecurityError:
                raise IntegrityError(f"{src}: archive entry {name!r} is not a public key") from None
            if name != f"keys/{key_id}.pub":
                raise IntegrityError(f"{src}: archive entry {name!r} does not hold the key its name says")
            if not keyring.knows(key_id):
                new_keys.append(key_id)
    _check_constraints(src, known, rows)
    _check_bound(src, rows.get("registry_versions", []), members)
    pems = [blob for name, blob in members.items() if name.startswith("keys/") and name.endswith(".pub")]
    report = verify_audit_rows(rows, archive_verifier(keyring, pems))  # signed by the archive's keys (added below)
    if not report.ok:
        raise IntegrityError(
            f"{src}: the archive's audit log does not verify: entry {report.first_bad}: {report.problem}; nothing was restored"
        )
    new_admins = sorted({str(r.get("name")) for r in rows.get("access_users", []) if r.get("role") == "admin"})
    audit = {"archive": _archive_audit_length(rows), "workspace": _workspace_audit_length(settings)}
    _consent(
        src,
        new_keys=sorted(new_keys) if not accept_new_keys else [],
        new_admins=new_admins if not accept_admins else [],
        audit=audit if not accept_shorter_audit else None,
    )

    # ---- everything is verified; from here on we write, and undo it all if a step still fails.
    before = _Before(settings)
    clean_restores(artifacts, DEFAULT_GC_GRACE_S)  # what a killed restore left (never a live one's: it holds its lock)
    tmp, lock = restore_temp(artifacts, uuid.uuid4().hex[:8])
    tmp.parent.mkdir(parents=True, exist_ok=True)
    details = {
        "signed_by": header["key_id"],
        "new_keys": sorted(new_keys),
        "new_admins": new_admins,
        "audit_entries": audit["archive"],
        "audit_entries_before": audit["workspace"],
    }
    committed: list[bool] = []  # set by `_write_restored` as soon as its transaction has committed
    try:
        with StagingLock(lock):  # held until the store is in place or the folder gone: gc leaves it alone meanwhile
            files, refused = _write_restored(settings, src, members, rows, artifacts, tmp, keyring, details, committed)
        for name, blob in members.items():
            if name == _MASKING:  # hashed inputs of restored models and files masked before keep working
                keyring.import_masking_secret(blob, where=f"{src} ({name})")
            elif name.startswith("keys/") and name != _SEALED:  # old package signatures and audit checkpoints verify (accepted above)
                keyring.add_public_key(blob)
        _sync_audit_head(settings, keyring=keyring, reset=audit["archive"] < audit["workspace"])
    except BaseException as exc:
        try:
            before.put_back(artifacts, bool(committed))
        except Exception as undo:
            raise RegistryError(
                f"{exc}; undoing the partial restore failed too ({type(undo).__name__}): remove the workspace and restore into a new one"
            ) from exc
        raise
    return {
        "tables": {t: len(r) for t, r in rows.items()},
        "files": files,
        "key_id": header["key_id"],
        "new_keys": sorted(new_keys),
        "new_admins": new_admins,
        "unsealed": refused,
        "audit": audit,
    }


def _write_restored(
    settings: Settings,
    src: Path,
    members: dict[str, bytes],
    rows: dict[str, list[dict[str, Any]]],
    artifacts: Path,
    tmp: Path,
    keyring: Keyring,
    details: dict[str, Any],
    committed: list[bool],
) -> tuple[int, list[str]]:
    """Write the checked archive: package folders into `tmp`, then the rows and the `restore`
    audit entry (`details`, by the local workspace admin) in one transaction, renaming `tmp` to
    the store before it commits; `committed` gets True as soon as it has. Returns the number of
    files written and the users and tokens left unsealed (`_seal_restored`); on any failure
    before the commit (a kill included, as far as Python sees one: Ctrl-C, and SIGTERM under
    the CLI) nothing is left but `tmp` removed.

    The entry extends the archive's log inside the transaction, so a committed restore always
    has its entry. It is checked against the archive's keys (not yet in the keyring) and the
    head file and witness are left to `_sync_audit_head`, which adopts the log after the commit.

    An archive from before users and tokens were sealed (no `db/access_seals.json`) has its
    users and tokens sealed with `keyring` in that transaction: the archive's own signature
    vouches for them. A newer archive's seals are restored as they are, so a row changed in the
    source database before the backup stays refused."""
    tmp.mkdir()
    files, placed = 0, False
    pems = [blob for name, blob in members.items() if name.startswith("keys/") and name.endswith(".pub")]
    try:
        for name, blob in members.items():
            if not name.startswith("artifacts/"):
                continue
            target = tmp.joinpath(*name.split("/")[1:])
            if not target.resolve().is_relative_to(tmp.resolve()):  # the names were checked; defence in depth
                raise IntegrityError(f"{src}: archive entry {name!r} would escape the workspace")
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:  # a full disk: name the file as it would be in the store, not the temporary folder
                if exc.filename is None or str(exc.filename).startswith(str(tmp)):
                    exc.filename = str(artifacts.joinpath(*name.split("/")[1:]))
                raise
            files += 1
        make_private(tmp)  # 0600 files in 0700 folders, as the store writes them, whatever the umask
        engine = _engine(settings.db_url)
        try:
            from trustforge.registry._db import create_all

            create_all(engine)
            access = AccessStore(engine, keyring=keyring)
            access.ensure_workspace_id()  # before any row is in: the target's own id, never the archive's
            log = AuditLog(engine, keyring.sign, archive_verifier(keyring, pems), head_path=None, witness_path=None)
            with engine.begin() as conn:
                why = _not_empty(conn)  # again, under the write lock: nothing came in since the first check
                if why is not None:
                    raise RegistryError(f"{why}; {_RECOVER}")
                for table in _tables():
                    if table.name == "audit_head" and rows.get(table.name):
                        conn.execute(sa.delete(table))  # the genesis head at most (checked): the archive's replaces it
                    # Seals and the access head (and its log) are the source's: this workspace's own are made below.
                    if rows.get(table.name) and table.name not in ("access_seals", "access_head", "access_head_log"):
                        conn.execute(sa.insert(table), rows[table.name])
                refused = _seal_restored(access, conn, members, rows)
                head = access.seal_head(conn, restored=True)  # the re-sealed rows are the current ones here
                log.append(local_admin().name, "restore", src.name, "ok", {"files": files, **details, "unsealed": refused}, conn=conn)
                if artifacts.exists():
                    artifacts.rmdir()  # empty, as checked; a non-empty one makes this fail
                os.replace(tmp, artifacts)  # before the commit: no row ever names a missing folder
                placed = True
            committed.append(True)
            access.witness(head)  # this machine has seen the target's first head (a witness from the source's keys, too)
        finally:
            engine.dispose()
    except BaseException:
        if not committed:  # once committed, the rows name the store: `_Before.put_back` takes both out
            shutil.rmtree(artifacts if placed else tmp, ignore_errors=True)
        raise
    return files, refused


class _Before:
    """What a restore may change in the target outside its own transaction, read before it writes:
    the files of the keys folder (public keys, the masking secret, the workspace id, the audit
    witness) and the audit head file, whether the SQLite database existed, and its audit head
    rows (at most the genesis head: the workspace is empty). `put_back` returns the target to
    that state after a failed restore, so that a retry finds it empty again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = [p for p in (settings.keys_dir, _head_file(settings)) if p is not None]
        self.files = {f: f.read_bytes() for f in self._files()}
        self.folders = {d for root in self.paths for d in [root, *root.rglob("*")] if d.is_dir()}
        url = sa.engine.make_url(settings.db_url)
        self.db_file = Path(url.database) if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" else None
        self.db_existed = self.db_file is None or self.db_file.exists()
        self.head_rows: list[dict[str, Any]] = []
        if self.db_existed:  # never connect to a SQLite file that is not there: that would create it
            engine = _engine(settings.db_url)
            try:
                with engine.connect() as conn:
                    if sa.inspect(conn).has_table("audit_head"):
                        self.head_rows = [dict(r._mapping) for r in conn.execute(sa.select(_table("audit_head")))]
            finally:
                engine.dispose()

    def _files(self) -> list[Path]:
        return [f for root in self.paths for f in ([root] if root.is_file() else root.rglob("*")) if f.is_file() and not f.is_symlink()]

    def put_back(self, artifacts: Path, committed: bool) -> None:
        """Undo the restore: its rows and store once committed (its transaction undid itself before), and its files."""
        if committed:
            shutil.rmtree(artifacts, ignore_errors=True)
            if not self.db_existed:
                for suffix in ("", "-journal", "-wal", "-shm"):
                    Path(f"{self.db_file}{suffix}").unlink(missing_ok=True)
            else:
                engine = _engine(self.settings.db_url)
                try:
                    with engine.begin() as conn:
                        for table in reversed(_tables()):
                            conn.execute(sa.delete(table))
                        if self.head_rows:
                            conn.execute(sa.insert(_table("audit_head")), self.head_rows)
                finally:
                    engine.dispose()
        for f in self._files():
            if f not in self.files:
                f.unlink()
        for f, blob in self.files.items():
            if not f.is_file() or f.read_bytes() != blob:
                atomic_write_bytes(f, blob)
        for d in sorted({d for root in self.paths if root.is_dir() for d in root.rglob("*") if d.is_dir()} - self.folders, reverse=True):
            d.rmdir()


def _check_types(src: Path, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Every row has every column that needs a value, each value of its column's type (text,
    integer, boolean), or a null the column allows, and a primary key no other row has."""
    required = [c.name for c in table.columns if not c.nullable and c.default is None and c.server_default is None]
    keys: set[tuple] = set()
    for i, row in enumerate(rows, 1):
        for name in required:
            if name not in row:
                raise IntegrityError(
                    f"{src}: archive entry 'db/{table.name}.json', row {i}: column {name} is missing; nothing was restored"
                )
        for name, value in row.items():
            column = table.columns[name]
            kind = column.type.python_type
            if type(value) is not kind and not (value is None and column.nullable):
                raise IntegrityError(
                    f"{src}: archive entry 'db/{table.name}.json', row {i}: column {name} is of type {type(value).__name__}, "
                    f"expected {kind.__name__}{' or null' if column.nullable else ''}; nothing was restored"
                )
        key = tuple(row.get(c.name) for c in table.primary_key.columns)
        if key in keys:
            raise IntegrityError(
                f"{src}: archive entry 'db/{table.name}.json', row {i}: a second row with key {key!r:.80}; nothing was restored"
            )
        keys.add(key)


def _check_constraints(src: Path, known: dict[str, sa.Table], rows: dict[str, list[dict[str, Any]]]) -> None:
    """What the database would refuse inside the restore's transaction, refused before it, naming
    the row (never the database's own message): text longer than its column, a second row with
    the value of a unique column, a reference to a row the archive does not hold."""
    for name, table_rows in rows.items():
        table = known[name]
        unique = [(c.name,) for c in table.columns if c.unique] + [
            tuple(c.name for c in k.columns) for k in table.constraints if isinstance(k, sa.UniqueConstraint)
        ]
        seen: dict[tuple[str, ...], set[tuple]] = {cols: set() for cols in unique}
        parents = {
            fk: {tuple(r.get(e.column.name) for e in fk.elements) for r in rows.get(fk.referred_table.name, [])}
            for fk in table.foreign_key_constraints
        }
        for i, row in enumerate(table_rows, 1):
            where = f"{src}: archive entry 'db/{name}.json', row {i}"
            for column, value in row.items():
                length = getattr(table.columns[column].type, "length", None)
                if isinstance(value, str) and length is not None and len(value) > length:
                    raise IntegrityError(f"{where}: column {column} holds {len(value)} characters, at most {length}; nothing was restored")
            for cols, values in seen.items():
                value = tuple(row.get(c) for c in cols)
                if value in values:
                    raise IntegrityError(f"{where}: a second row with the same {', '.join(cols)}; nothing was restored")
                values.add(value)
            for fk, held in parents.items():
                value = tuple(row.get(c.name) for c in fk.columns)
                if None not in value and value not in held:
                    raise IntegrityError(
                        f"{where}: names a row of {fk.referred_table.name} the archive does not hold; nothing was restored"
                    )


def _seal_restored(access: AccessStore, conn: sa.Connection, members: dict[str, bytes], rows: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Seal the restored users and tokens for the target workspace, in `conn`: those of an archive
    from before seals all (the archive's signature vouches for them), those of a newer one only
    where the source's seal holds (a row changed in the source database stays refused). Returns
    the rows left unsealed."""
    if "db/access_seals.json" not in members:
        access.seal_unsealed(conn)
        return []
    pems = [blob for name, blob in members.items() if name.startswith("keys/") and name.endswith(".pub")]
    return access.reseal_restored(conn, rows.get("access_seals", []), members.get(_SEALED), pems, rows.get("access_head"))


def _check_bound(src: Path, versions: list[dict[str, Any]], members: dict[str, bytes]) -> None:
    """Every version row's archived folder holds the package the row records (package id, manifest digest)."""
    by_folder: dict[str, dict[str, bytes]] = {}
    for name, blob in members.items():
        parts = name.split("/")
        if parts[0] == "artifacts" and len(parts) == 4:
            by_folder.setdefault(f"{parts[1]}/{parts[2]}", {})[parts[3]] = blob
    for row in versions:
        try:
            check_archived(SimpleNamespace(**row), by_folder.get(f"{row.get('name')}/{row.get('version')}", {}))
        except IntegrityError as exc:
            raise IntegrityError(f"{src}: {exc}") from None
        except (AttributeError, TypeError):
            raise IntegrityError(f"{src}: archive entry 'db/registry_versions.json' has a malformed row") from None


def _archive_audit_length(rows: dict[str, list[dict[str, Any]]]) -> int:
    heads = [r.get("seq") for r in rows.get("audit_head", []) if isinstance(r.get("seq"), int)]
    return max([*heads, len(rows.get("audit_entries", []))])


def _head_file(settings: Settings) -> Path | None:
    # Where `AuditLog` keeps the signed head beside a SQLite database file (`<db file>.audit-head.json`).
    url = sa.engine.make_url(settings.db_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    db = Path(url.database)
    return db.with_name(db.name + ".audit-head.json")


def _workspace_audit_length(settings: Settings) -> int:
    """How many audit entries the (empty) workspace's head file or audit witness says its log
    once had (0 when none).

    The database is empty (checked), but a head file left beside it, or the witness beside the
    keys, records how long the log was before it was lost. The file is read, not verified: it can only make a restore ask for
    consent, never let one through.
    """
    from trustforge.secure import AUDIT_WITNESS_FILE

    longest = 0
    for path in (_head_file(settings), settings.keys_dir / AUDIT_WITNESS_FILE):  # the head file and the witness beside the keys
        if path is None or path.is_symlink() or not path.is_file():
            continue
        try:
            seq = json.loads(path.read_bytes()[:4096]).get("seq")
        except (OSError, ValueError, AttributeError, RecursionError, UnicodeDecodeError):
            continue
        longest = max(longest, seq if isinstance(seq, int) and seq > 0 else 0)
    return longest


def _consent(src: Path, *, new_keys: list[str], new_admins: list[str], audit: dict[str, int] | None) -> None:
    """Refuse, listing everything at once, what the restore would add or cut without the operator's consent."""
    problems = []
    if new_keys:
        problems.append(
            f"{len(new_keys)} signing key(s) this workspace does not hold yet ({', '.join(k[:16] for k in new_keys)}; a key "
            "given with --trusted-key counts too), whose package signatures and audit checkpoints would verify here "
            "from now on (--accept-new-keys)"
        )
    if new_admins:
        problems.append(f"admin user(s) {', '.join(new_admins)} (--accept-admins)")
    if audit is not None and audit["archive"] < audit["workspace"]:
        problems.append(
            f"an audit log of {audit['archive']} entries, shorter than the {audit['workspace']} this workspace recorded, "
            f"losing entries {audit['archive'] + 1}..{audit['workspace']} (--accept-shorter-audit)"
        )
    if problems:
        raise SecurityError(f"{src}: not restored; it needs explicit consent for " + "; ".join(problems))


def _sync_audit_head(settings: Settings, *, keyring: Keyring, reset: bool) -> None:
    """Start the restored audit log's witness and head file, once the restored log verifies.

    `reset`: the operator accepted a shorter history (--accept-shorter-audit); the old head
    file and witness, ahead of the restored log, go first.

    Raises:
        IntegrityError: the restored log does not verify, or is shorter than (or differs from)
            the witness or head file this workspace already holds (the caller undoes the restore).
    """
    from trustforge.secure import AUDIT_WITNESS_FILE

    if reset:
        for old in (_head_file(settings), settings.keys_dir / AUDIT_WITNESS_FILE):
            if old is not None:
                old.unlink(missing_ok=True)
    engine = _engine(settings.db_url)
    try:
        audit = AuditLog(
            engine, keyring.sign, keyring.verify, witness_path=settings.keys_dir / AUDIT_WITNESS_FILE, sink=settings.audit_sink
        )
        report = audit.adopt()
    finally:
        engine.dispose()
    if not report.ok:
        raise IntegrityError(
            f"the restored audit log does not verify with this workspace's copies of its head: entry {report.first_bad}: "
            f"{report.problem}; the restore was undone (the workspace is as it was)"
        )
