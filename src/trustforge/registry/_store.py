"""The artifact store on disk: staging with liveness locks, flushing, and sweeping orphans.

Layout under the store root (`Settings.artifacts`):

    .staging/<token>/        a package being sealed for registration (token: 32 hex digits)
    .staging/<token>.lock    held (flock) by the registering process while it stages
    NAME/VERSION/            a registered version (only ever created by a rename)
    NAME/VERSION.onnx, ...   its `package export` artefacts (`VERSION.onnx`, `.onnx-int8`,
                             `.torchscript`, `.torchscript-int8`) and, while one is written,
                             its temporary folders `.VERSION.onnx.plain-TAG`, ... (`package._artefact`)

Beside the store (in its parent folder), a `backup restore` writes the packages to
`.ARTIFACTS.restore-<tag>/` (tag: 8 hex digits) before renaming it to the store, holding a flock
on `.ARTIFACTS.restore-<tag>.lock` meanwhile (`restore_temp`); `clean_restores` removes what a
killed restore left there.

The kernel releases a flock when its process dies, even by SIGKILL, so a staging entry
whose lock nobody holds belongs to a dead process. `.staging` starts with a dot, which no
model name may, so it can never collide with a model's folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
import time
from pathlib import Path

from trustforge._fs import fsync_path
from trustforge.errors import RegistryError
from trustforge.package import export_entry_version
from trustforge.registry._names import check_name

__all__ = [
    "STAGING",
    "DEFAULT_GC_GRACE_S",
    "EXPORT_TEMP_GRACE_S",
    "StagingLock",
    "clean_staging",
    "clean_restores",
    "restore_temp",
    "sweep_versions",
    "fsync_dir",
    "fsync_tree",
]

STAGING = ".staging"
DEFAULT_GC_GRACE_S = 10.0
# An export writes its temporary folders within seconds to minutes and holds no lock on them, so
# one beside a version that still exists is taken as a crashed export's only after this long.
EXPORT_TEMP_GRACE_S = 3600.0
_TOKEN = re.compile(r"[0-9a-f]{32}")
_RESTORE_TAG = re.compile(r"[0-9a-f]{8}")


class StagingLock:
    """An exclusive flock on `.staging/<token>.lock`, held while a registration stages.

    The file is created with O_EXCL and then locked; the instant between the two is what
    gc's grace period covers. Leaving the block removes the file and releases the lock.
    """

    def __init__(self, path: Path):
        self.path = path
        self.fd = -1

    def __enter__(self) -> "StagingLock":
        self.fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)


def _is_locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # closing releases the lock if we took it
    return False


def _age(path: Path, now: float) -> float:
    try:
        return now - path.lstat().st_mtime
    except FileNotFoundError:
        return float("inf")


def clean_staging(staging: Path, grace_s: float) -> list[str]:
    """Remove staging entries of dead registrations; returns them as `.staging/NAME`.

    An entry is kept while a lock file with its token is held, or is younger than `grace_s`;
    an entry younger than `grace_s` is kept too (a temporary file of a registration that is
    just starting).
    """
    if not staging.is_dir():
        return []
    now = time.time()
    live = {lock.stem for lock in staging.glob("*.lock") if _TOKEN.fullmatch(lock.stem) and (_age(lock, now) < grace_s or _is_locked(lock))}
    removed: list[str] = []
    for entry in sorted(staging.iterdir()):
        token = _TOKEN.search(entry.name)
        if (token and token.group(0) in live) or _age(entry, now) < grace_s:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(f"{STAGING}/{entry.name}")
    return removed


def restore_temp(artifacts: Path, tag: str) -> tuple[Path, Path]:
    """The temporary folder a restore writes the store to, and the lock file it holds meanwhile."""
    if not _RESTORE_TAG.fullmatch(tag):
        raise ValueError(f"a restore tag is 8 hex digits; got {tag!r}")
    folder = artifacts.with_name(f".{artifacts.name}.restore-{tag}")
    return folder, folder.with_name(folder.name + ".lock")


def clean_restores(artifacts: Path, grace_s: float) -> list[str]:
    """Remove what killed restores left beside the store; returns the names removed.

    A restore's temporary folder (`.ARTIFACTS.restore-<tag>`) is kept while a restore holds the
    lock file with its tag, or while that lock file or the folder is younger than `grace_s`
    (the instant between creating the lock file and locking it, as for staging). A stale lock
    file goes too. Only names of exactly that form are ever touched.
    """
    parent = artifacts.parent
    prefix = f".{artifacts.name}.restore-"
    if not parent.is_dir():
        return []
    now = time.time()
    mine = []
    for entry in parent.iterdir():
        if entry.name.startswith(prefix):
            tag, _, suffix = entry.name[len(prefix) :].partition(".")
            if _RESTORE_TAG.fullmatch(tag) and suffix in ("", "lock"):
                mine.append((entry, tag, suffix))
    live = {tag for entry, tag, suffix in mine if suffix == "lock" and (_age(entry, now) < grace_s or _is_locked(entry))}
    removed: list[str] = []
    for entry, tag, _suffix in sorted(mine, key=lambda m: m[0].name):
        if tag in live or _age(entry, now) < grace_s:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def sweep_versions(
    root: Path, rows: set[tuple[str, int]], models: set[str], *, grace_s: float = DEFAULT_GC_GRACE_S
) -> dict[str, list[str]]:
    """Remove version folders that have no row, and export artefacts of versions that have none;
    report rows without folders and foreign entries.

    The caller must hold the registry's write lock, so that no registration is between its
    rename and its commit (its folder would look like an orphan). Export entries (`VERSION.onnx`,
    ...) of a version with no row are removed (a crash after a delete's commit, or an export
    that finished after the delete); a temporary export folder (`.VERSION.onnx.plain-TAG`, ...)
    too, and beside a version that still exists once it is older than `EXPORT_TEMP_GRACE_S`
    and `grace_s` (a crashed export's, which may hold a plaintext copy of the weights).

    Returns:
        {"orphans": removed `NAME/ENTRY`s, "missing": rows whose folder is gone,
        "unknown": entries the registry never creates (left alone)}.
    """
    report: dict[str, list[str]] = {"orphans": [], "missing": [], "unknown": []}
    now = time.time()
    if root.is_dir():
        for top in sorted(root.iterdir()):
            if top.name == STAGING:
                continue
            if not top.is_dir() or top.is_symlink() or not _is_name(top.name):
                report["unknown"].append(top.name)
                continue
            for sub in sorted(top.iterdir()):
                rel = f"{top.name}/{sub.name}"
                export = export_entry_version(sub.name)
                if export is not None and sub.is_dir() and not sub.is_symlink():
                    version, temporary = export
                    alive = (top.name, version) in rows
                    if not alive or (temporary and _age(sub, now) >= max(grace_s, EXPORT_TEMP_GRACE_S)):
                        shutil.rmtree(sub)
                        report["orphans"].append(rel)
                elif not (sub.name.isdigit() and sub.is_dir() and not sub.is_symlink()):
                    report["unknown"].append(rel)
                elif (top.name, int(sub.name)) not in rows:
                    shutil.rmtree(sub)
                    report["orphans"].append(rel)
            if top.name not in models and not any(top.iterdir()):
                top.rmdir()  # the folder of a first version that never committed
    report["missing"] = [f"{n}/{v}" for n, v in sorted(rows) if not (root / n / str(v)).is_dir()]
    return report


def _is_name(text: str) -> bool:
    try:
        check_name(text)
    except RegistryError:
        return False
    return True


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (the renames in it) to disk."""
    fsync_path(path)


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root`, so that a committed version survives a power cut."""
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            fsync_path(os.path.join(dirpath, f))
        fsync_dir(Path(dirpath))
