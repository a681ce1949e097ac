"""File-system helpers shared by every stage that writes state: atomic writes, fsync, modes.

A reader never sees half a file: data go to a temporary sibling, are flushed to disk, and
replace the target with one rename; the folder is flushed too when the rename must survive
a power cut.

Least privilege at rest: what TrustForge writes holds models, data summaries and secrets, so
files are created mode 0600 and folders 0700 (`PRIVATE_FILE`, `PRIVATE_DIR`), whatever the
process umask: the mode is set with chmod after creation, since the umask can only narrow
what `open` or `mkdir` asks for and a umask of 0 would otherwise leave group bits set.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

__all__ = [
    "fsync_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_folder",
    "locked_beside",
    "private_dir",
    "make_private",
    "create_private",
    "write_private_bytes",
    "open_private_append",
    "PRIVATE_FILE",
    "PRIVATE_DIR",
]

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file, or a folder's entries (the renames in it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create the workspace folder `path` (and missing parents) mode 0700, or tighten it to 0700.

    Parents that already existed are left as they are: they may be the user's own folders.
    """
    path = Path(path)
    _make_missing(path)
    if path.is_dir() and not path.is_symlink():
        os.chmod(path, PRIVATE_DIR)
    return path


def _make_missing(path: Path) -> None:
    """Create `path` and its missing parents, each 0700; existing folders are not changed."""
    missing = []
    p = path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # another process made it in between; not ours to change
            continue
        os.chmod(folder, PRIVATE_DIR)


def make_private(root: str | os.PathLike[str]) -> None:
    """Set every folder under `root` (and `root`) to 0700 and every file to 0600; links are not followed."""
    root = Path(root)
    if root.is_symlink() or not root.exists():
        return
    if root.is_file():
        os.chmod(root, PRIVATE_FILE)
        return
    os.chmod(root, PRIVATE_DIR)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            p = os.path.join(folder, name)
            if not os.path.islink(p):
                os.chmod(p, PRIVATE_DIR)
        for name in files:
            p = os.path.join(folder, name)
            if not os.path.islink(p):
                os.chmod(p, PRIVATE_FILE)


def create_private(path: str | os.PathLike[str]) -> None:
    """Create `path` empty and mode 0600 (whatever the umask), or empty an existing file and set it 0600.

    For writers that take a path and open it themselves (safetensors' `save_file`): they
    truncate the file, which keeps its mode, so what they write is private from the start.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def write_private_bytes(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Write `data` to a new or emptied file `path` that is mode 0600 from its creation (not atomic:
    for files inside a folder that `atomic_folder` publishes as a whole)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), PRIVATE_FILE)
            f.write(data)
    except OSError as exc:  # a full disk: name the file
        _name_file(exc, Path(path), Path(path))
        raise


def open_private_append(path: str | os.PathLike[str], **kwargs) -> IO[Any]:
    """`open(path, "a", **kwargs)`, the file created mode 0600 (whatever the umask) if it is new.

    An existing file is narrowed to 0600 too: a log appended during a run is private from its
    first byte, even if the process is killed before the run's end.
    """
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        return os.fdopen(fd, "a", **kwargs)
    except BaseException:
        os.close(fd)
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str],
    data: bytes | bytearray | memoryview,
    *,
    mode: int = PRIVATE_FILE,
    sync_dir: bool = False,
    sync: bool = True,
    replace: bool = True,
) -> None:
    """Write `data` to `path` through a flushed temporary sibling and a rename.

    Args:
        mode: permission bits of the new file, set whatever the umask (default 0600: private).
        sync_dir: also flush the folder, so the rename itself survives a power cut.
        sync: flush the data to disk before the rename (False: a crash may leave the old file,
            the new one, or on a file system that does not order data before renames an empty
            one; for files written on every request, where the flush costs more than the write).
        replace: False: never write over a file that is there (FileExistsError), even one made
            after the caller checked (the file is linked into place, not renamed over it).

    Raises:
        FileExistsError: `replace` is False and `path` exists.
    """
    path = Path(path)
    if path.is_dir():  # else the rename fails naming the temporary file, which the user never named
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file path", str(path))
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except OSError as exc:
        _name_file(exc, path, tmp)
        raise
    try:
        os.fchmod(fd, mode)  # exactly `mode`, whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            _place_new(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        _name_file(exc, path, tmp)
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_path(path.parent)


def _place_new(tmp: Path, path: Path) -> None:
    """Move `tmp` to `path` unless something is there: a hard link fails on an existing name (a
    rename would replace it). Where the file system has no hard links, a check then a rename."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink(missing_ok=True)
        raise FileExistsError(errno.EEXIST, "already exists; nothing was written over it", str(path)) from None
    except OSError:
        if path.exists() or path.is_symlink():
            tmp.unlink(missing_ok=True)
            raise FileExistsError(errno.EEXIST, "already exists; nothing was written over it", str(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextlib.contextmanager
def locked_beside(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive `flock` on `.NAME.lock` beside `path` (0600, created if missing): reading
    `path` and replacing it (`atomic_write_bytes`) inside is one compare-and-replace across this
    machine's processes (the witnesses that only move forward)."""
    path = Path(path)
    lock = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


def _name_file(exc: OSError, path: Path, tmp: Path) -> None:
    """Have `exc` name `path`, the file the caller asked for, where it names no file (a write or a
    flush: "No space left on device") or the temporary sibling the user never named."""
    if exc.errno is not None and exc.filename in (None, str(tmp)):
        exc.filename = str(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, **kwargs) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), **kwargs)


@contextlib.contextmanager
def atomic_folder(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Fill a temporary sibling folder, then publish it at `dest` with one rename.

    The block writes into the yielded folder. On success every file in it is made private
    (0600; the folder and missing parents are 0700) and flushed, the folder is renamed to
    `dest` and the parent flushed; on any error the temporary folder is removed and nothing
    appears at `dest`.
    """
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    _make_missing(dest.parent)
    tmp.mkdir(mode=PRIVATE_DIR)
    try:
        os.chmod(tmp, PRIVATE_DIR)
        yield tmp
        make_private(tmp)
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(dest.parent)
