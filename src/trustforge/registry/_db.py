"""The registry's database: engine set-up for SQLite and PostgreSQL, and the registry tables.

SQLite (the embedded default) is configured so that several processes can share one file:
write-ahead logging (readers never block the writer), a 30 s busy timeout (a writer waits for
another instead of failing), foreign keys enforced, and every transaction started with
`BEGIN IMMEDIATE`. The last one matters for correctness, not only speed: a transaction that
starts as a reader and later writes (read the next version, then insert it) cannot upgrade
its lock once another process has committed, and SQLite then fails it at once
(SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out). Taking the write lock at BEGIN
serialises writers up front. Pure readers may opt out with `readonly(engine)` (plain `BEGIN`).

PostgreSQL is reached through psycopg 3 (`postgresql+psycopg://`); `postgresql://` and
`postgres://` URLs are read as that. There, version allocation relies on row locks
(`SELECT ... FOR UPDATE`), see `_registry.py`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from trustforge._extras import require
from trustforge._fs import PRIVATE_FILE, private_dir
from trustforge.errors import RegistryError

__all__ = [
    "make_engine",
    "readonly",
    "create_all",
    "database_errors",
    "lock_registry",
    "metadata",
    "models",
    "versions",
    "aliases",
    "tags",
    "is_sqlite",
]

BUSY_TIMEOUT_S = 30
_BEGIN_OPTION = "trustforge_sqlite_begin"
_DDL_LOCK = 0x7472757374646466  # a PostgreSQL advisory lock key ("trustddf")
# Held shared by every registry mutation and exclusively by gc (and backup), until the end of
# the transaction; the key spells "trustfor".
REGISTRY_LOCK = 0x7472757374666F72

metadata = sa.MetaData()

# Timestamps are ISO-8601 UTC strings: identical on SQLite and PostgreSQL, and in backups.
models = sa.Table(
    "registry_models",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    # Unique lower-cased name: `Iris` and `iris` would share a folder on a case-insensitive
    # file system (macOS, Windows), so they may not both exist.
    sa.Column("name_key", sa.String(64), nullable=False, unique=True),
    # The last version ever allocated; never decreases, so a deleted version's number is never reused.
    sa.Column("last_version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.String(32), nullable=False),
)

versions = sa.Table(
    "registry_versions",
    metadata,
    sa.Column("name", sa.String(64), sa.ForeignKey("registry_models.name", ondelete="RESTRICT"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("encrypted", sa.Boolean, nullable=False),
    sa.Column("package_id", sa.String(64), nullable=False),
    sa.Column("package_digest", sa.String(64), nullable=False),  # SHA-256 of the verified manifest.json
    sa.Column("run", sa.String(200)),
    sa.Column("dataset_digest", sa.String(128)),
    sa.Column("spec_digest", sa.String(128)),
    sa.Column("parent_version", sa.Integer),
    sa.Column("task", sa.String(32)),
    sa.Column("metrics", sa.Text),  # JSON of the package's scalar test metrics
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.UniqueConstraint("name", "version", name="uq_registry_versions_name_version"),
)

aliases = sa.Table(
    "registry_aliases",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("alias", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_by", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["registry_versions.name", "registry_versions.version"], ondelete="CASCADE"),
)

tags = sa.Table(
    "registry_tags",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(1024), nullable=False),
    sa.ForeignKeyConstraint(["name", "version"], ["registry_versions.name", "registry_versions.version"], ondelete="CASCADE"),
)


def _safe_url(url: str) -> str:
    """The URL as it may appear in an error message (password hidden)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


def make_engine(url: str) -> sa.Engine:
    """An engine for the registry database at `url`.

    SQLite (`sqlite:///PATH`): WAL journal, 30 s busy timeout, foreign keys on, and every
    transaction begun with `BEGIN IMMEDIATE` (see the module docstring); the folder of PATH
    is created. PostgreSQL (`postgresql+psycopg://...`; `postgresql://` and `postgres://`
    mean the same): connections are checked before use.

    Raises:
        RegistryError: the URL is malformed or names an unsupported database; the message
            never contains the password.
    """
    if url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url[len("postgres://") :]
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise RegistryError(f"database URL {_safe_url(url)!r} is malformed (expected sqlite:///PATH or postgresql+psycopg://...)") from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed)
        if backend == "postgresql":
            if parsed.get_driver_name() != "psycopg":
                raise RegistryError(f"database URL {_safe_url(url)!r}: use the psycopg driver (postgresql+psycopg://...)")
            return sa.create_engine(parsed, pool_pre_ping=True)
    except NoSuchModuleError:
        require("postgres", f"database URL {_safe_url(url)!r}")
        raise RegistryError(f"database URL {_safe_url(url)!r}: driver not installed (pip install 'psycopg[binary]')") from None
    raise RegistryError(f"database URL {_safe_url(url)!r}: unsupported database {backend!r} (use SQLite or PostgreSQL)")


def _private_sqlite_files(db: Path) -> None:
    """The database file and its -wal/-shm/-journal companions are 0600 (their folder 0700 when we make it).

    The file is created here, empty (a valid empty SQLite database), before SQLite opens it:
    SQLite gives the write-ahead log and shared-memory files the mode of the database file, so
    they are private from their first byte, whatever the umask. Files of an older workspace
    are narrowed to 0600 here too.
    """
    if not db.parent.exists():
        private_dir(db.parent)
    try:
        fd = os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        pass
    else:
        os.fchmod(fd, PRIVATE_FILE)
        os.close(fd)
    for path in (db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if not path.is_symlink() and stat.S_IMODE(path.stat().st_mode) & 0o077:
                os.chmod(path, PRIVATE_FILE)


def _sqlite_engine(url: sa.URL) -> sa.Engine:
    db = url.database
    if db and db != ":memory:" and not db.startswith("file:"):
        _private_sqlite_files(Path(db).expanduser())
    engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001 - SQLAlchemy's hook signature
        # SQLAlchemy's documented recipe: sqlite3 must not issue BEGIN itself (it would begin
        # lazily and DEFERRED); `_on_begin` issues it instead.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            cur.execute("PRAGMA foreign_keys = ON")
            if db and db != ":memory:":
                cur.execute("PRAGMA journal_mode = WAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql("BEGIN" if mode == "DEFERRED" else "BEGIN IMMEDIATE")

    return engine


def readonly(engine: sa.Engine) -> sa.Engine:
    """The same engine, with SQLite transactions begun as plain (deferred) `BEGIN`.

    For transactions that only read: they then run alongside a writer instead of waiting for
    it. A transaction begun this way must not write (on SQLite it could fail to upgrade).
    Has no effect on PostgreSQL.
    """
    return engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn "cannot reach / locked / gone away" database errors, and statements a database whose
    tables were changed refuses, into one-line `RegistryError`s.

    The message names the database by its URL with the password hidden, and the driver's
    first line of explanation (which never holds the password).
    """
    try:
        yield
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        raise RegistryError(f"registry database {_safe_url(url)!r}: {_first_line(exc)}") from None
    except (sa_exc.ProgrammingError, sa_exc.DataError) as exc:  # a column's type changed, a table dropped
        raise RegistryError(
            f"registry database {_safe_url(url)!r} refused a statement ({_first_line(exc)}): its tables are not as "
            "TrustForge made them (changed outside TrustForge?)"
        ) from None


def _first_line(exc: sa_exc.DBAPIError) -> str:
    """The driver's first line of explanation (it never holds the password)."""
    return (str(getattr(exc, "orig", exc) or "").strip().splitlines() or [type(exc).__name__])[0][:200]


def lock_registry(conn: sa.Connection, *, exclusive: bool = False) -> None:
    """Take the registry's lock for the rest of `conn`'s transaction.

    Shared: registering, deleting, aliasing, tagging (they run alongside each other; versions
    of one name are serialised by its model row). Exclusive: gc and backup, which must see no
    registration between its folder rename and its commit. On PostgreSQL an advisory lock;
    on SQLite nothing, because `BEGIN IMMEDIATE` already serialises every writer.

    Call it as the transaction's first statement: a PostgreSQL REPEATABLE READ snapshot is
    taken at the first statement, so a snapshot wanted *after* the lock needs READ COMMITTED
    (or the lock taken in an earlier transaction).
    """
    if conn.dialect.name != "sqlite":
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        conn.execute(sa.text(f"SELECT {fn}(:k)"), {"k": REGISTRY_LOCK})


def is_sqlite(engine: sa.Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create_all(engine: sa.Engine) -> None:
    """Create every table TrustForge keeps in the database (registry, users and tokens, audit log).

    Idempotent: existing tables are left as they are.
    """
    from trustforge.secure import METADATA

    with engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE, so concurrent creators take turns
        if not is_sqlite(engine):
            # PostgreSQL's CREATE TABLE IF NOT EXISTS is not safe against a concurrent creator.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK})
        for md in (metadata, *METADATA):
            md.create_all(conn)
