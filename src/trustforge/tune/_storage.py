"""Where a study lives: one storage URL for every worker, on one machine or many.

- none given: an Optuna journal file in the workspace (`studies/NAME.journal`), which local
  worker processes share through file locks (`tune` creates that folder; a folder named by
  `--storage` must exist);
- `journal:PATH` (or a path ending in `.journal`/`.log`): an Optuna journal file;
- `sqlite:///PATH`: an RDB storage in a SQLite file (one machine);
- `postgresql://...` (psycopg is the driver): an RDB storage that workers on many machines share;
- `registry`: the registry's own database (`TRUSTFORGE_DB_URL`); Optuna's tables sit beside
  the registry's (theirs are named `registry_*`).

A storage is described in lineage and reports by its kind and database name only: never a
user, password or host.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from trustforge._shown import remember_written
from trustforge.errors import TuneError, UsageError
from trustforge.settings import Settings

__all__ = ["open_storage", "storage_url", "describe_storage", "check_study_name"]

# A study's name becomes a file name (`studies/NAME.journal`): a plain name, as a spec's name is
# (which is at most 64 characters, so every spec name is a study name).
_STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_study_name(name: str, field: str = "--study") -> str:
    """`name` when it is a plain name: 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit.

    Raises:
        UsageError: naming `field` (`--study`, or `name` when the spec's name is the default).
    """
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        raise UsageError(f"{field} must be 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit; got {name!r}")
    return name


def storage_url(storage: str | None, settings: Settings, study: str) -> str:
    """The storage the study uses, as a URL every worker can open (`journal:PATH` for journal files).

    Raises:
        UsageError: `storage` is none of the forms, or names a file that is a folder or whose folder does not exist.
    """
    check_study_name(study)
    if storage is None or storage == "":
        return f"journal:{settings.home / 'studies' / (study + '.journal')}"
    if storage == "registry":
        return settings.db_url
    if storage.startswith(("journal:", "sqlite:", "postgresql:", "postgresql+")):
        url = storage
    elif storage.endswith((".journal", ".log")):
        path = Path(storage).expanduser().resolve()  # every worker opens the same file, whatever its folder
        remember_written(path, storage)  # messages name it as typed
        url = f"journal:{path}"
    else:
        scheme = storage.split(":", 1)[0] if ":" in storage else storage
        raise UsageError(
            f"--storage must be sqlite:///PATH, postgresql://..., journal:PATH (or a .journal file) or registry; got a {scheme!r} value"
        )
    if _in_memory(url):
        raise UsageError(
            f"--storage {storage!r} is an in-memory SQLite database: each worker would open its own, empty one, and nothing "
            "would be left to resume; name a file (sqlite:///PATH or journal:PATH) or a database server"
        )
    problem = _file_problem(url)
    if problem is not None:
        raise UsageError(problem)
    return url


def describe_storage(url: str) -> dict[str, str]:
    """{kind, database}: what lineage may say of a storage (no credentials, no host)."""
    if url.startswith("journal:"):
        return {"kind": "journal", "database": Path(url[len("journal:") :]).name}
    kind = "postgresql" if url.startswith("postgresql") else url.split(":", 1)[0].split("+", 1)[0]
    try:
        import sqlalchemy as sa

        name = sa.make_url(url).database or ""
    except Exception:  # a URL SQLAlchemy cannot parse: say nothing of it
        name = ""
    return {"kind": kind, "database": Path(name).name if kind == "sqlite" else name}


def open_storage(url: str) -> Any:
    """The Optuna storage of `url` (from `storage_url`).

    Raises:
        TuneError: the file is a folder or its folder does not exist (it is never created here), the
            database cannot be reached or the file cannot be opened (the reason, no credentials in it).
    """
    import optuna

    desc = describe_storage(url)
    problem = _file_problem(url)
    if problem is not None:
        raise TuneError(problem)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url[len("journal:") :])
            _check_journal(path, desc)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return _rdb_storage(optuna, url)
    except TuneError:
        raise
    except Exception as exc:  # SQLAlchemy and OS errors; their text may hold the URL, so it is not repeated
        raise TuneError(f"cannot open the study storage ({desc['kind']} {desc['database']}): {_reason(exc, url)}") from None


def _check_journal(path: Path, desc: dict[str, str]) -> None:
    """Refuse an existing, non-empty file that is not an Optuna journal, before Optuna appends to it.

    Every whole line must be a JSON record of a study (an object with an `op_code`); a last line
    without its newline is allowed after whole ones (another worker may be writing it), but a
    file without a single whole line is not a journal. Optuna itself skips a bad last line and
    appends after it, so without this check a user's file would be written into.

    Raises:
        TuneError: naming the file and its first line that is no journal record; the file is unchanged.
    """
    import json

    try:
        with open(path, "rb") as f:
            lines = f.read().splitlines(keepends=True)
    except FileNotFoundError:
        return  # a new journal
    for number, line in enumerate(lines, start=1):
        if not line.endswith(b"\n") and number > 1:
            break  # being written by another worker
        try:
            record = json.loads(line) if line.endswith(b"\n") else None
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
            raise TuneError(
                f"cannot open the study storage ({desc['kind']} {desc['database']}): the file is not an Optuna journal "
                f"(line {number} of {path} is not a JSON record of a study); it was left unchanged: name a new file or a journal"
            )


def _in_memory(url: str) -> bool:
    """A SQLite URL of an in-memory database (`sqlite://`, `sqlite:///:memory:`, `mode=memory`)."""
    if not url.startswith("sqlite:"):
        return False
    try:
        import sqlalchemy as sa

        parsed = sa.make_url(url)
    except Exception:  # a URL SQLAlchemy cannot parse: opening it says so
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or "mode=memory" in database or parsed.query.get("mode") == "memory"


def _file_problem(url: str) -> str | None:
    """What is wrong with the file a journal or SQLite storage names (a folder, or in a folder
    that does not exist); None when nothing is, or the storage is a database server."""
    file = _file_of(url)
    kind = describe_storage(url)["kind"]
    if file is None:
        return None
    if file.is_dir():
        return f"--storage names a folder ({file}), not a {kind} file; name a file in it (created when missing)"
    if not file.parent.is_dir():
        # A typo in a path must not become a new tree of folders (journal) or a driver's bare error (SQLite).
        return f"--storage names a {kind} file whose folder does not exist ({file}); create the folder or name another"
    return None


def _reason(exc: BaseException, url: str) -> str:
    """Why a storage did not open, in words that hold no credentials, host or path."""
    if isinstance(exc, IsADirectoryError):
        return "it is a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if url.startswith("journal:"):
        return "the file is not an Optuna journal (each line a JSON record of the study)"
    orig = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error
    if url.startswith("sqlite:") and orig is not None:
        return f"{orig} (SQLite)"  # sqlite3's own words, e.g. "file is not a database": no path in them
    return f"the database could not be reached or opened ({type(exc).__name__})"


def _file_of(url: str) -> Path | None:
    """The file a journal or SQLite storage lives in; None for a database server or SQLite in memory."""
    if url.startswith("journal:"):
        return Path(url[len("journal:") :])
    if not url.startswith("sqlite:"):
        return None
    try:
        import sqlalchemy as sa

        database = sa.make_url(url).database
    except Exception:  # a URL SQLAlchemy cannot parse: opening it says so
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _rdb_storage(optuna: Any, url: str, attempts: int = 6) -> Any:
    """Optuna's RDB storage, retried when processes that start together race to create its schema.

    Each process that opens a new database creates Optuna's tables and writes its version row;
    two doing it at once make one of them fail with an integrity or duplicate-object error
    (PostgreSQL), after which the schema is there and opening it again succeeds.
    """
    import random
    import time

    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    for attempt in range(attempts):
        try:
            # pool_pre_ping: a worker that waited through a long trial finds its connection alive.
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=None)
        except (IntegrityError, ProgrammingError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
    raise AssertionError("unreachable")
