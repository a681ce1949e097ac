"""The model registry: named models with integer versions, aliases, tags and lineage.

Where things live: rows in the registry database (`_db.py`), package folders in the
artifact store at `ARTIFACTS/NAME/VERSION/` (sealed, i.e. encrypted, by default).

The invariant every operation keeps: **a committed version row always has complete files**.
Registering therefore goes

    verify the package → seal a copy into ARTIFACTS/.staging/<token>/ (flock held on
    .staging/<token>.lock) → one transaction { allocate the version, insert the row, rename
    the staged folder to ARTIFACTS/NAME/VERSION/, append the audit entry } → commit

and a process killed at any point leaves either nothing visible or a complete version; what
it leaves on disk (a staging folder, or a final folder whose row never committed) is an
orphan that `gc()` removes. `gc()` decides under the same lock that registering holds, so it
never takes a folder that a live transaction is about to commit, and it skips staging
folders whose owner still holds their lock.

Version allocation: each model row keeps `last_version`; registering increments it inside
the transaction. SQLite serialises writers with `BEGIN IMMEDIATE` (see `_db.py`);
PostgreSQL locks the model row (`INSERT ... ON CONFLICT DO NOTHING`, then `SELECT ... FOR
UPDATE`). A rolled-back transaction rolls the counter back too, so versions are exactly
1..N with no gaps or duplicates; a deleted version's number is never reused.
"""

from __future__ import annotations

import copy
import functools
import hmac
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from hashlib import sha256
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, TypeVar

import sqlalchemy as sa

from trustforge import secure
from trustforge._fs import make_private, private_dir
from trustforge._shown import audit_object, recorded
from trustforge.errors import AccessDenied, IntegrityError, ModelUriError, RegistryError, TrustForgeError, checked_argument, described
from trustforge.package import export_entries
from trustforge.registry._binding import open_bound
from trustforge.registry._db import (
    aliases,
    create_all,
    database_errors,
    is_sqlite,
    lock_registry,
    make_engine,
    models,
    readonly,
    tags,
    versions,
)
from trustforge.registry._names import (
    check_alias,
    check_name,
    check_tag_key,
    check_tag_value,
    check_version,
    format_uri,
    parse_model_uri,
)
from trustforge.registry._store import (
    DEFAULT_GC_GRACE_S,
    STAGING,
    StagingLock,
    clean_restores,
    clean_staging,
    fsync_dir,
    fsync_tree,
    sweep_versions,
)
from trustforge.settings import Settings

if TYPE_CHECKING:
    from trustforge.package import Model

__all__ = ["Registry", "ModelVersion"]

_F = TypeVar("_F", bound=Callable[..., Any])

# What the key that fingerprints tag values in the audit log is derived for (`Registry._tag_value_print`).
_TAG_AUDIT_PURPOSE = "audit-tag-value"


def _guarded(fn: _F) -> _F:
    """Report an unreachable, locked or vanished database as one RegistryError (no traceback)."""

    @functools.wraps(fn)
    def wrapper(self: "Registry", *args: Any, **kwargs: Any) -> Any:
        with database_errors(self.settings.db_url):
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _crash_point(stage: str) -> None:
    """A no-op; the crash-safety tests replace it to stop a process at `stage`."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, with its lineage.

    Attributes:
        name, version: identity; `uri` is `models:/NAME/VERSION`.
        path: the stored package folder (sealed when `encrypted`).
        package_digest: SHA-256 of the package's verified manifest.json (which lists the
            SHA-256 of every other file, so it identifies the whole package).
        run, dataset_digest, spec_digest, parent_version: lineage.
        aliases: the aliases pointing at this version; tags: its tags.
    """

    name: str
    version: int
    path: Path
    encrypted: bool
    state: str
    package_id: str
    package_digest: str
    run: str | None
    dataset_digest: str | None
    spec_digest: str | None
    parent_version: int | None
    task: str | None
    metrics: dict[str, Any]
    created_by: str
    created_at: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return format_uri(self.name, self.version)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        d["aliases"] = list(self.aliases)
        d["uri"] = self.uri
        return d


class Registry:
    """Named models with versions, aliases and tags, every operation checked and audited.

    Args:
        settings: workspace settings (default: from the environment).
        principal: who acts; default: the principal of `settings.token`
            (`TRUSTFORGE_TOKEN`), or the local workspace admin when there is none.
        encrypt: store packages sealed (AES-256-GCM envelope; the default) or as plain folders.

    Raises:
        AccessDenied: the token is unknown, expired or revoked.
        SecurityError: the keys cannot be loaded.
        RegistryError: the database URL is unusable.
    """

    def __init__(self, settings: Settings | None = None, *, principal: "secure.Principal | None" = None, encrypt: bool = True):
        checked_argument(settings, (Settings, type(None)), "Registry(settings)", "a trustforge.Settings or None", RegistryError)
        checked_argument(
            principal, (secure.Principal, type(None)), "Registry(principal)", "a trustforge.secure.Principal or None", RegistryError
        )
        checked_argument(encrypt, bool, "Registry(encrypt)", "True or False", RegistryError)
        self.settings = settings or Settings.from_env()
        self.artifacts = Path(self.settings.artifacts or self.settings.home / "artifacts")
        self.encrypt = encrypt
        self._refusals: set[tuple[str, str]] = set()  # (version, failure) already audited
        self.engine = make_engine(self.settings.db_url)
        self._reader = readonly(self.engine)
        try:
            with database_errors(self.settings.db_url):
                create_all(self.engine)
                self.keyring = secure.Keyring.load_or_init(self.settings.keys_dir, kek_b64=self.settings.kek)
                self.audit = secure.AuditLog(
                    self.engine,
                    self.keyring.sign,
                    self.keyring.verify,
                    witness_path=self.settings.keys_dir / secure.AUDIT_WITNESS_FILE,
                    sink=self.settings.audit_sink,
                )
                self.access = secure.AccessStore(self.engine, self.audit, keyring=self.keyring)
                self.principal = principal if principal is not None else self.access.authenticate(self.settings.token)
        except BaseException:
            self.engine.dispose()
            raise

    def acting_as(self, principal: "secure.Principal") -> "Registry":
        """This registry (same database, keys and audit log) acting as `principal`: every action
        of the copy is checked against that principal's role and audited under its name. Closing
        the copy is not needed (it shares this registry's connections)."""
        checked_argument(principal, secure.Principal, "Registry.acting_as(principal)", "a trustforge.secure.Principal", RegistryError)
        view = copy.copy(self)
        view.principal = principal
        view._refusals = set()
        return view

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ access

    def _require(self, action: str, obj: str) -> None:
        secure.require(self.principal, action, obj, self.audit)

    @contextmanager
    def _write(self, *, exclusive: bool = False) -> Iterator[sa.Connection]:
        """A write transaction: BEGIN IMMEDIATE on SQLite; on PostgreSQL the registry's advisory
        lock, shared (registering, other mutations) or exclusive (gc)."""
        with self.engine.begin() as conn:
            lock_registry(conn, exclusive=exclusive)
            yield conn
        # Audit entries appended inside the transaction: move the signed head file forward.
        self.audit.sync_head_file()

    def _folder(self, name: str, version: int) -> Path:
        # Always derived from a checked name and an int, never read from the database.
        return self.artifacts / check_name(name) / str(int(version))

    # ------------------------------------------------------------------ register

    @_guarded
    def register(
        self,
        package: Path,
        *,
        name: str | None = None,
        parent_version: int | None = None,
        tags: dict[str, str] | None = None,
        run: str | None = None,
    ) -> ModelVersion:
        """Verify a signed package and store it as the next version of `name`.

        Args:
            package: a signed package folder.
            name: the model name (default: the name in the package's manifest).
            parent_version: the version of `name` this one was derived from (lineage).
            tags: initial tags.
            run: the run that produced the package (default: the manifest's lineage).

        Returns:
            The new version, which is complete on disk once this returns.

        Raises:
            AccessDenied: the principal may not register (audited).
            IntegrityError: the package fails verification (names the file).
            RegistryError: an invalid name, tag or parent version.
        """
        checked_argument(
            package, (str, os.PathLike), "Registry.register(package)", "a package folder (a str or os.PathLike)", RegistryError
        )
        checked_argument(tags, (Mapping, type(None)), "Registry.register(tags)", "a mapping of tag key to value, or None", RegistryError)
        checked_argument(run, (str, type(None)), "Registry.register(run)", "the name of a run (a str) or None", RegistryError)
        package = Path(package)
        if name is not None:
            self._require("register", format_uri(check_name(name)))  # before any work for a denied principal
        if parent_version is not None:
            check_version(parent_version)
        initial_tags = {check_tag_key(k): check_tag_value(v) for k, v in (tags or {}).items()}
        try:
            manifest = secure.verify_package(package, self.keyring)
            if name is None:
                name = check_name(manifest.get("name"))
                self._require("register", format_uri(name))
            return self._register(package, name, parent_version, initial_tags, run)
        except AccessDenied:
            raise  # audited by `require`
        except TrustForgeError as exc:
            # A refused package (bad signature, changed file) is a security event: on the record,
            # under the model's URI, or the package folder's name where no name was read.
            folder = audit_object("package", package)
            self.audit.append(
                self.principal.name,
                "register",
                format_uri(name) if name else folder,
                "error",
                {"package": folder.removeprefix("package:"), "error": recorded(exc, home=self.settings.home)},
            )
            raise

    def _register(
        self, package: Path, name: str, parent_version: int | None, initial_tags: dict[str, str], run: str | None
    ) -> ModelVersion:
        staging = self.artifacts / STAGING
        private_dir(staging)  # 0700, as are artifacts/ and the model folders (least privilege at rest)
        token = uuid.uuid4().hex
        staged = staging / token
        with StagingLock(staging / f"{token}.lock"):
            try:
                blobs = self._stage(package, staged)
                _crash_point("staged")
                return self._commit(name, staged, blobs, parent_version, initial_tags, run)
            finally:
                shutil.rmtree(staged, ignore_errors=True)  # gone already when the version committed

    def _stage(self, package: Path, staged: Path) -> dict[str, bytes]:
        """Copy the package into `staged` (sealed unless encryption is off), flush it to disk,
        and return the stored copy's verified contents: what gets committed is what was checked."""
        if self.encrypt:
            secure.seal_package(package, staged, self.keyring)
            fsync_tree(staged)
            return secure.open_sealed(staged, self.keyring)
        shutil.copytree(package, staged, symlinks=True)
        make_private(staged)
        fsync_tree(staged)
        secure.verify_package(staged, self.keyring)
        return {"manifest.json": (staged / "manifest.json").read_bytes()}

    def _commit(
        self, name: str, staged: Path, blobs: dict[str, bytes], parent_version: int | None, initial_tags: dict[str, str], run: str | None
    ) -> ModelVersion:
        raw = blobs["manifest.json"]
        manifest = json.loads(raw)
        lineage = manifest.get("lineage") if isinstance(manifest.get("lineage"), dict) else {}
        metrics = {k: v for k, v in (manifest.get("metrics") or {}).items() if isinstance(v, (int, float, str, bool))}
        row = {
            "state": "ready",
            "encrypted": self.encrypt,
            "package_id": str(manifest.get("package_id") or ""),
            "package_digest": sha256(raw).hexdigest(),
            "run": run if run is not None else _opt_str(lineage.get("run")),
            "dataset_digest": _opt_str(lineage.get("dataset_digest")),
            "spec_digest": _opt_str(lineage.get("spec_digest")),
            "parent_version": parent_version,
            "task": _opt_str(manifest.get("task")),
            "metrics": json.dumps(metrics, sort_keys=True),
            "created_by": self.principal.name,
            "created_at": _now(),
        }
        details: dict[str, Any] = {
            "package_id": row["package_id"],
            "package_digest": row["package_digest"],
            "encrypted": self.encrypt,
            "parent_version": parent_version,
        }
        if initial_tags:  # as `set_tag` audits a tag: the key, never the value
            details["tags"] = {k: self._tag_value_print(v) for k, v in initial_tags.items()}
        final: Path | None = None
        moved = False
        with self.engine.connect() as conn:
            trans = conn.begin()  # SQLite: BEGIN IMMEDIATE
            try:
                lock_registry(conn)
                version = self._allocate(conn, name)
                if parent_version is not None and parent_version >= version:
                    raise RegistryError(
                        f"parent_version {parent_version} of {name!r}: must be an earlier version (the new one is {version})"
                    )
                conn.execute(versions.insert().values(name=name, version=version, **row))
                for k, v in initial_tags.items():
                    conn.execute(tags.insert().values(name=name, version=version, key=k, value=v))
                final = self._folder(name, version)
                if final.exists():
                    # Left by a process killed after its rename, before its commit (the counter
                    # rolled back with it). We hold the lock on this name and gc waits for us, so
                    # nobody else can be using it.
                    shutil.rmtree(final)
                private_dir(final.parent)
                os.rename(staged, final)
                moved = True
                fsync_dir(final.parent)
                _crash_point("renamed")
                self.audit.append(self.principal.name, "register", format_uri(name, version), "ok", details, conn=conn)
                _crash_point("before_commit")
            except BaseException:
                # Still inside the transaction, so still holding the locks: the folder goes back
                # before anyone else can allocate this version number again.
                try:
                    if moved and final is not None:
                        os.rename(final, staged)
                finally:
                    trans.rollback()
                raise
            # A failed COMMIT leaves the outcome unknown (the server may have committed); the
            # folder stays, and gc (which decides under the lock) removes it if there is no row.
            trans.commit()
        _crash_point("committed")
        self.audit.sync_head_file()
        return self._version(name, version)

    def _allocate(self, conn: sa.Connection, name: str) -> int:
        """The next version number of `name`, with the model row locked until commit."""
        if is_sqlite(self.engine):
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        # Any conflict (same name, or same name in another case) inserts nothing; a concurrent
        # insert of the same name makes PostgreSQL wait here until that transaction ends.
        conn.execute(insert(models).values(name=name, name_key=name.lower(), last_version=0, created_at=_now()).on_conflict_do_nothing())
        current = conn.execute(sa.select(models.c.last_version).where(models.c.name == name).with_for_update()).scalar()
        if current is None:
            other = conn.execute(sa.select(models.c.name).where(models.c.name_key == name.lower())).scalar()
            raise RegistryError(f"model name {name!r}: differs only in case from the existing model {other!r}")
        conn.execute(models.update().where(models.c.name == name).values(last_version=current + 1))
        return current + 1

    # ------------------------------------------------------------------ reading

    @_guarded
    def get(self, uri_or_name: str, version: int | None = None) -> ModelVersion:
        """The version a URI (`models:/NAME/3`, `models:/NAME@alias`, `models:/NAME` = latest)
        or a name and version designate.

        Raises:
            AccessDenied: the principal may not read (audited).
            RegistryError: bad URI, or no such model, version or alias.
        """
        name, ver, alias = parse_model_uri(uri_or_name)
        if version is not None:
            if ver is not None or alias is not None:
                raise RegistryError(f"{uri_or_name!r} already names a version; do not pass version={version!r} too")
            ver = check_version(version)
        self._require("read", format_uri(name, ver, alias))
        with self._reader.connect() as conn:
            if alias is not None:
                ver = conn.execute(sa.select(aliases.c.version).where(aliases.c.name == name, aliases.c.alias == alias)).scalar()
                if ver is None:
                    raise RegistryError(f"{format_uri(name, alias=alias)}: no such alias")
            elif ver is None:
                ver = conn.execute(sa.select(sa.func.max(versions.c.version)).where(versions.c.name == name)).scalar()
                if ver is None:
                    raise RegistryError(f"{format_uri(name)}: no such model (or it has no versions)")
            return self._version(name, ver, conn)

    def _version(self, name: str, version: int, conn: sa.Connection | None = None) -> ModelVersion:
        if conn is None:
            with self._reader.connect() as c:
                return self._version(name, version, c)
        row = conn.execute(sa.select(versions).where(versions.c.name == name, versions.c.version == version)).mappings().first()
        if row is None:
            raise RegistryError(f"{format_uri(name, version)}: no such version")
        names = conn.execute(
            sa.select(aliases.c.alias).where(aliases.c.name == name, aliases.c.version == version).order_by(aliases.c.alias)
        ).scalars()
        tagged = conn.execute(
            sa.select(tags.c.key, tags.c.value).where(tags.c.name == name, tags.c.version == version).order_by(tags.c.key)
        )
        return _to_version(row, self._folder(name, version), tuple(names), {k: v for k, v in tagged})

    @_guarded
    def list_models(self) -> list[dict[str, Any]]:
        """Every model: name, number of versions, latest version, aliases (alias → version),
        `created_at`, and `updated_at` (the latest version's registration or alias move; ISO-8601 UTC).

        Raises:
            AccessDenied: the principal may not read (audited).
        """
        self._require("read", "models:/")
        with self._reader.connect() as conn:
            counts = {
                n: (c, m)
                for n, c, m in conn.execute(
                    sa.select(versions.c.name, sa.func.count(), sa.func.max(versions.c.version)).group_by(versions.c.name)
                )
            }
            named: dict[str, dict[str, int]] = {}
            changed: dict[str, str] = {}
            for n, a, v, at in conn.execute(
                sa.select(aliases.c.name, aliases.c.alias, aliases.c.version, aliases.c.updated_at).order_by(aliases.c.alias)
            ):
                named.setdefault(n, {})[a] = v
                changed[n] = max(changed.get(n, ""), at or "")
            for n, at in conn.execute(sa.select(versions.c.name, sa.func.max(versions.c.created_at)).group_by(versions.c.name)):
                changed[n] = max(changed.get(n, ""), at or "")
            out = []
            for n, created in conn.execute(sa.select(models.c.name, models.c.created_at).order_by(models.c.name)):
                count, latest = counts.get(n, (0, None))
                out.append(
                    {
                        "name": n,
                        "versions": count,
                        "latest": latest,
                        "aliases": named.get(n, {}),
                        "created_at": created,
                        "updated_at": changed.get(n) or created,
                    }
                )
            return out

    @_guarded
    def list_versions(self, name: str) -> list[ModelVersion]:
        """Every version of `name`, oldest first (an empty list for an unknown model).

        Raises:
            AccessDenied: the principal may not read (audited).
        """
        check_name(name)
        self._require("read", format_uri(name))
        # Three queries whatever the number of versions (one per version took 0.5 s for 200).
        with self._reader.connect() as conn:
            rows = conn.execute(sa.select(versions).where(versions.c.name == name).order_by(versions.c.version)).mappings().all()
            named: dict[int, list[str]] = {}
            for a, v in conn.execute(sa.select(aliases.c.alias, aliases.c.version).where(aliases.c.name == name).order_by(aliases.c.alias)):
                named.setdefault(v, []).append(a)
            tagged: dict[int, dict[str, str]] = {}
            for v, k, value in conn.execute(
                sa.select(tags.c.version, tags.c.key, tags.c.value).where(tags.c.name == name).order_by(tags.c.key)
            ):
                tagged.setdefault(v, {})[k] = value
            return [
                _to_version(r, self._folder(name, r["version"]), tuple(named.get(r["version"], ())), tagged.get(r["version"], {}))
                for r in rows
            ]

    @_guarded
    def load_model(self, uri: str) -> "Model":
        """Build the model a URI designates, decrypting and verifying its package in memory.

        Plaintext weights of a sealed package never touch the disk. The version folder must
        hold the package its row records (package id and manifest digest), checked before
        anything is decrypted or parsed beyond what the comparison needs, and again on the
        verified bytes (see `_binding.py`): a folder copied over from another version is refused.

        Raises:
            AccessDenied: the principal may not read (audited).
            RegistryError: no such model, version or alias.
            IntegrityError: the folder holds another package (names the version), or the
                stored package fails verification (names the file); audited either way.
        """
        from trustforge.package import Model

        _not_a_folder(uri)
        mv = self.get(uri)
        try:
            pkg = open_bound(mv.path, mv, self.keyring)
        except IntegrityError as exc:
            raise self._refused(mv, exc) from None
        return Model.from_package(pkg, keyring=self.keyring)

    @_guarded
    def verify_version(self, name: str, version: int) -> dict[str, Any]:
        """Check a stored version as `load_model` does, without building the model (no torch).

        The folder must hold the package the row recorded (package id and manifest digest,
        before and after verification), and the package must verify: for a sealed one the data
        key unwraps and every file authenticates; then the signature with the workspace's keys,
        every file's SHA-256 and size, and the manifest. Decrypts and hashes the whole package
        in memory; nothing is written.

        Returns:
            {"uri", "package_digest" (the row's), "files" (files checked), "signature": True,
            "digests": True, "binding": True, "encrypted"}; any failure raises instead.

        Raises:
            AccessDenied: the principal may not read (audited).
            RegistryError: bad name or version, or no such version.
            IntegrityError: naming the version and the file that fails (never the local path);
                audited once per distinct failure, as for `load_model`.
        """
        check_name(name)
        check_version(version)
        self._require("read", format_uri(name, version))
        mv = self._version(name, version)
        try:
            pkg = open_bound(mv.path, mv, self.keyring)
        except IntegrityError as exc:
            raise self._refused(mv, exc) from None
        files = pkg.manifest.get("files")
        return {
            "uri": mv.uri,
            "package_digest": mv.package_digest,
            "files": 1 + (len(files) if isinstance(files, dict) else 0),
            "signature": True,
            "digests": True,
            "binding": True,
            "encrypted": mv.encrypted,
        }

    def _refused(self, mv: ModelVersion, exc: IntegrityError) -> IntegrityError:
        """Audit a stored package that failed its binding or verification, once per distinct
        failure, and return the error to raise. It names the version, not the store's local path
        (`models:/NAME/3/weights.safetensors.enc: ...`, see `open_bound`), as do the audit entry,
        the server's log and a page.

        A server following an alias retries a refused version at every poll; one entry per
        (version, failure) for the life of this Registry keeps that from flooding the log.
        """
        found = getattr(exc, "found", None)
        details = {"error": recorded(exc, home=self.settings.home), "package_id": mv.package_id, "package_digest": mv.package_digest}
        if isinstance(found, dict):
            details["found"] = found
        key = (mv.uri, details["error"])
        if key not in self._refusals:
            self._refusals.add(key)
            self.audit.append(self.principal.name, "load", mv.uri, "error", details)
        return exc

    # ------------------------------------------------------------------ mutations

    @_guarded
    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point `models:/NAME@ALIAS` at `version` (moving it if it pointed elsewhere).

        Raises:
            AccessDenied: the principal may not set aliases (audited).
            RegistryError: bad name or alias, or no such version.
        """
        check_name(name)
        check_alias(alias)
        check_version(version)
        uri = format_uri(name, alias=alias)
        self._require("alias", uri)
        with self._write() as conn:
            self._must_exist(conn, name, version)
            before = conn.execute(sa.select(aliases.c.version).where(aliases.c.name == name, aliases.c.alias == alias)).scalar()
            values = {"version": version, "updated_by": self.principal.name, "updated_at": _now()}
            if before is None:
                conn.execute(aliases.insert().values(name=name, alias=alias, **values))
            else:
                conn.execute(aliases.update().where(aliases.c.name == name, aliases.c.alias == alias).values(**values))
            self.audit.append(self.principal.name, "alias", uri, "ok", {"version": version, "previous": before}, conn=conn)

    @_guarded
    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias.

        Raises:
            AccessDenied: the principal may not set aliases (audited).
            RegistryError: bad name or alias, or no such alias.
        """
        check_name(name)
        check_alias(alias)
        uri = format_uri(name, alias=alias)
        self._require("alias", uri)
        with self._write() as conn:
            gone = conn.execute(aliases.delete().where(aliases.c.name == name, aliases.c.alias == alias)).rowcount
            if not gone:
                raise RegistryError(f"{uri}: no such alias")
            self.audit.append(self.principal.name, "alias", uri, "ok", {"deleted": True}, conn=conn)

    @_guarded
    def set_tag(self, name: str, version: int, key: str, value: str) -> None:
        """Set (or overwrite) one tag of a version.

        Raises:
            AccessDenied: the principal may not tag (audited).
            RegistryError: bad name, key or value, or no such version.
        """
        check_name(name)
        check_version(version)
        check_tag_key(key)
        check_tag_value(value)
        uri = format_uri(name, version)
        self._require("tag", uri)
        details = {"key": key, **self._tag_value_print(value)}  # before the transaction: a key that cannot be derived changes nothing
        with self._write() as conn:
            self._must_exist(conn, name, version)
            where = (tags.c.name == name, tags.c.version == version, tags.c.key == key)
            if conn.execute(sa.select(tags.c.value).where(*where)).first() is None:
                conn.execute(tags.insert().values(name=name, version=version, key=key, value=value))
            else:
                conn.execute(tags.update().where(*where).values(value=value))
            self.audit.append(self.principal.name, "tag", uri, "ok", details, conn=conn)

    def _tag_value_print(self, value: str) -> dict[str, Any]:
        """What the audit log records of a tag's value: its length and a keyed fingerprint, never
        the value.

        A tag value is free text (an approver's name, a ticket, a note) and the audit log is never
        erased, so personal data typed into a tag must not land in it; the value itself lives in
        the version's tags, where it can be overwritten. A plain SHA-256 of a short value ("yes",
        a name) is reversed by hashing guesses, so the fingerprint is keyed: the first 64 bits of
        HMAC-SHA256 under a key derived from the workspace's masking secret (`Keyring.derive_key`).
        Equal values in one workspace give equal fingerprints; without its keys nothing can be
        checked against them.
        """
        mac = hmac.new(self.keyring.derive_key(_TAG_AUDIT_PURPOSE), value.encode("utf-8"), sha256).hexdigest()
        return {"value_length": len(value), "value_hmac": mac[:16]}

    @_guarded
    def delete(self, name: str, version: int) -> None:
        """Delete a version: its row, tags and the aliases pointing at it, then its files.

        Its files are its package folder and every `package export` artefact beside it
        (`VERSION.onnx`, ..., and temporary folders of an export in progress): a deleted model
        leaves no weights on disk. The audit entry names the artefacts removed.

        The row goes first (in one transaction), so the version is never visible without its
        files; files left by a crash after the commit (or written by an export that finishes
        after it) are orphans that `gc()` removes. The version number is not reused.

        Raises:
            AccessDenied: the principal may not delete (audited).
            RegistryError: no such version.
        """
        check_name(name)
        check_version(version)
        uri = format_uri(name, version)
        self._require("delete", uri)
        folder = self._folder(name, version)
        with self._write() as conn:
            self._must_exist(conn, name, version)
            exports = export_entries(folder)
            dropped = conn.execute(sa.select(aliases.c.alias).where(aliases.c.name == name, aliases.c.version == version)).scalars().all()
            conn.execute(aliases.delete().where(aliases.c.name == name, aliases.c.version == version))
            conn.execute(tags.delete().where(tags.c.name == name, tags.c.version == version))
            conn.execute(versions.delete().where(versions.c.name == name, versions.c.version == version))
            details = {"aliases_removed": sorted(dropped), "exports_removed": [p.name for p in exports]}
            self.audit.append(self.principal.name, "delete", uri, "ok", details, conn=conn)
        _crash_point("deleted")
        # A crash from here on leaves entries with no row: orphans that gc removes.
        for entry in export_entries(folder):  # again: an export may have finished since
            shutil.rmtree(entry, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)

    def _must_exist(self, conn: sa.Connection, name: str, version: int) -> None:
        found = conn.execute(sa.select(versions.c.version).where(versions.c.name == name, versions.c.version == version)).first()
        if found is None:
            raise RegistryError(f"{format_uri(name, version)}: no such version")

    # ------------------------------------------------------------------ gc

    @_guarded
    def gc(self, *, grace_s: float = DEFAULT_GC_GRACE_S) -> dict[str, Any]:
        """Remove what crashed or interrupted operations left in the artifact store.

        Removed: staging entries whose owner no longer holds their lock and that are older
        than `grace_s` (the grace covers the instant between creating a lock file and
        locking it), and likewise the temporary folders of killed restores beside the store
        (`.artifacts.restore-XXXXXXXX`, reported under `staging`; see `_store.clean_restores`); version folders with no committed row, and the export artefacts
        (`VERSION.onnx`, ...) of versions with none (see `_store.sweep_versions`). Version rows whose folder is
        missing are reported (`missing`), never deleted. Entries whose names the registry
        never creates are left alone and reported (`unknown`).

        Returns:
            {"staging": [...], "orphans": [...], "missing": [...], "unknown": [...]}: relative paths.

        Raises:
            AccessDenied: the principal may not run gc (audited).
        """
        checked_argument(grace_s, (int, float), "Registry.gc(grace_s)", "a number of seconds >= 0", RegistryError)
        if not grace_s >= 0 or grace_s == float("inf"):
            raise RegistryError(f"Registry.gc(grace_s): must be a number of seconds >= 0; got {described(grace_s)}")
        self._require("gc", "artifacts")
        # A killed restore's temporary folder beside the store too (kept while a restore holds its lock).
        removed = clean_staging(self.artifacts / STAGING, grace_s) + clean_restores(self.artifacts, grace_s)
        with self._write(exclusive=True) as conn:
            # Exclusive: no register/delete transaction is between its rename and its commit now.
            rows = {(n, v) for n, v in conn.execute(sa.select(versions.c.name, versions.c.version))}
            known = set(conn.execute(sa.select(models.c.name)).scalars())
            report = {"staging": removed, **sweep_versions(self.artifacts, rows, known, grace_s=grace_s)}
            self.audit.append(self.principal.name, "gc", "artifacts", "ok", {k: len(v) for k, v in report.items()}, conn=conn)
        return report


# ---------------------------------------------------------------------------- helpers


def _not_a_folder(uri: object) -> None:
    """Refuse a package folder's path given for a model URI (it failed as "model name must not be
    empty; got ''"), naming what loads a folder. A bare NAME is a URI, even where a folder of
    that name exists: only a path with a separator in it is taken for a folder."""
    if isinstance(uri, str) and not uri.startswith("models:/") and ("/" in uri or os.sep in uri) and os.path.isdir(uri):
        raise ModelUriError(
            f"Registry.load_model(uri): {uri[:80]!r} is a folder, not a model URI (models:/NAME/VERSION, models:/NAME@ALIAS "
            "or models:/NAME); load a package folder with trustforge.Model.load(path)"
        )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)[:200]


def _to_version(row: Any, path: Path, names: tuple[str, ...], tagged: dict[str, str]) -> ModelVersion:
    return ModelVersion(
        name=row["name"],
        version=row["version"],
        path=path,
        encrypted=bool(row["encrypted"]),
        state=row["state"],
        package_id=row["package_id"],
        package_digest=row["package_digest"],
        run=row["run"],
        dataset_digest=row["dataset_digest"],
        spec_digest=row["spec_digest"],
        parent_version=row["parent_version"],
        task=row["task"],
        metrics=json.loads(row["metrics"] or "{}"),
        created_by=row["created_by"],
        created_at=row["created_at"],
        aliases=names,
        tags=tagged,
    )
