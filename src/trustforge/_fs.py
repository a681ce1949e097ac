"""File-system helpers shared by every stage that writes state: atomic writes and fsync.

A reader never sees half a file: data go to a temporary sibling, are flushed to disk, and
replace the target with one rename; the folder is flushed too when the rename must survive
a power cut.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

__all__ = ["fsync_path", "atomic_write_bytes", "atomic_write_text", "atomic_folder"]


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file, or a folder's entries (the renames in it), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes | bytearray | memoryview, *, mode: int = 0o644, sync_dir: bool = False
) -> None:
    """Write `data` to `path` through a flushed temporary sibling and a rename.

    Args:
        mode: permission bits of the new file (0o600 for anything secret).
        sync_dir: also flush the folder, so the rename itself survives a power cut.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_path(path.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, **kwargs) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), **kwargs)


@contextlib.contextmanager
def atomic_folder(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Fill a temporary sibling folder, then publish it at `dest` with one rename.

    The block writes into the yielded folder. On success every file in it and the folder are
    flushed, the folder is renamed to `dest` and the parent flushed; on any error the
    temporary folder is removed and nothing appears at `dest`.
    """
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    try:
        yield tmp
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_path(dest.parent)
