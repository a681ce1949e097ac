"""The drift history: every tested window of a registry model, one JSON line each, in the workspace.

A `DriftMonitor` keeps its last windows in memory and audits the drifted ones; neither says how
a feature's statistic moved over days. `trustforge monitor` (for a registry model) and a
server's monitor therefore also append each tested window, drifted or not, to

    WORKSPACE/drift/NAME.jsonl          (NAME: the registry model's checked name)

as one JSON object per line: when, which version and source (`monitor` or `serve`), the rows,
the decision, and per feature (and `prediction`) the deciding test, its statistic, p-value,
threshold and decision, and the PSI. No input value is written: statistics only.

Bounded: when the file passes `max_bytes` it becomes `NAME.jsonl.1` (replacing the older one)
and a new file starts, so a model keeps at most about twice `max_bytes`. Writers in several
processes (a CLI check beside a server) take an exclusive lock on `NAME.lock` (never rotated)
for each append. A line that does not parse (a write cut by a crash) is skipped by the reader.

Recording never fails the monitor: an error is logged once per history and recording stops.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import stat
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trustforge._fs import PRIVATE_FILE, private_dir

if TYPE_CHECKING:
    from trustforge.monitor._monitor import WindowResult

__all__ = ["DriftHistory", "read_drift_history", "drift_history_models", "history_dir", "HISTORY_DIR", "DEFAULT_MAX_BYTES"]

HISTORY_DIR = "drift"
DEFAULT_MAX_BYTES = 2 * 1024 * 1024  # about 500 windows of 20 features per file
_SUFFIX = ".jsonl"
_OLD_SUFFIX = ".jsonl.1"  # not ".1.jsonl": that is the live file of a model named NAME.1
# The registry's model-name rule (`trustforge.registry.check_name`; the monitor cannot import the
# registry, a sibling stage). Only names that pass become file names; nothing else is read or written.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_LOG = logging.getLogger("trustforge.monitor")


def _checked(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"model name {str(name)[:80]!r}: not a registry model name (letters, digits, '.', '_', '-'; at most 64)")
    return name


def history_dir(home: str | os.PathLike[str]) -> Path:
    """Where the drift histories of the workspace `home` live."""
    return Path(home) / HISTORY_DIR


def _figure(r: dict[str, Any]) -> dict[str, Any]:
    """One feature's result as the history keeps it (finite numbers, or None)."""
    out: dict[str, Any] = {"kind": r.get("kind"), "test": r.get("decided_by")}
    for key in ("statistic", "p_value", "threshold"):
        out[key] = _number(r.get(key))
    psi = r.get("psi")
    out["psi"] = _number(psi.get("value")) if isinstance(psi, dict) else _number(psi)
    out["drift"] = bool(r.get("drift"))
    m = r.get("missing_test")
    if isinstance(m, dict):  # the share of missing values tested against training's (a numeric feature)
        out["missing_share"], out["missing_p_value"], out["missing_drift"] = (
            _number(m.get("share")),
            _number(m.get("p_value")),
            bool(m.get("drift")),
        )
    return out


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if x == x and x not in (float("inf"), float("-inf")) else None


class DriftHistory:
    """Appends a model's tested windows to its history file (thread- and process-safe).

    Args:
        folder: the workspace's history folder (`history_dir(settings.home)`).
        name: the registry model's name (checked: it becomes the file name).
        model: how the windows name the model version (e.g. `models:/fraud/3`).
        source: who tested the windows: "monitor" (an offline check) or "serve".
        max_bytes: the file size past which it is rotated.

    Raises:
        ValueError: `name` is not a registry model name.
    """

    def __init__(self, folder: str | os.PathLike[str], name: str, *, model: str, source: str, max_bytes: int = DEFAULT_MAX_BYTES):
        self.name = _checked(name)
        self.folder = Path(folder)
        self.model = str(model)[:200]
        self.source = str(source)[:40]
        self.max_bytes = max(int(max_bytes), 4096)
        self.check = uuid.uuid4().hex[:12]  # groups the windows of one monitor (one check, one server run)
        self._lock = threading.Lock()
        self._failed = False

    def record(self, window: "WindowResult") -> None:
        """Append one tested window; never raises (a failure is logged once and recording stops)."""
        if self._failed:
            return
        try:
            line = json.dumps(self._entry(window), allow_nan=False, separators=(",", ":")) + "\n"
            with self._lock:
                self._append(line.encode("utf-8"))
        except Exception as exc:  # noqa: BLE001 - the history must never fail the monitor
            self._failed = True
            _LOG.error("drift history of %s: not recorded (%s: %s); recording stopped", self.name, exc.__class__.__name__, str(exc)[:200])

    def _entry(self, w: "WindowResult") -> dict[str, Any]:
        features = {k: _figure(r) for k, r in w.features.items()}
        if w.prediction is not None:
            features["prediction"] = _figure(w.prediction)
        return {
            "time": w.time,
            "model": self.model,
            "source": self.source,
            "check": self.check,
            "window": w.index,
            "rows": w.rows,
            "partial": w.partial,
            "drift": w.drift,
            "drifted": list(w.drifted),
            "features": features,
        }

    def _append(self, data: bytes) -> None:
        private_dir(self.folder)
        path = self.folder / f"{self.name}{_SUFFIX}"
        lock = os.open(self.folder / f"{self.name}.lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                size = os.stat(path, follow_symlinks=False).st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(data) > self.max_bytes:
                os.replace(path, self.folder / f"{self.name}{_OLD_SUFFIX}")
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        finally:
            os.close(lock)  # releases the lock


def _read_lines(path: Path, limit_bytes: int) -> list[bytes]:
    """The last `limit_bytes` of a regular file (not a link), split in lines; [] when absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, OSError):
        return []
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return []
        size = os.fstat(f.fileno()).st_size
        start = max(0, size - limit_bytes)
        f.seek(start)
        data = f.read(limit_bytes)
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first line was cut by the seek
    return [line for line in lines if line.strip()]


def _parse(lines: list[bytes]) -> tuple[list[dict[str, Any]], int]:
    out, bad = [], 0
    for line in lines:
        try:
            entry = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(entry, dict) and isinstance(entry.get("features"), dict):
            out.append(entry)
        else:
            bad += 1
    return out, bad


def read_drift_history(
    folder: str | os.PathLike[str], name: str, limit: int = 500, *, max_read_bytes: int = 16 * 1024 * 1024
) -> dict[str, Any]:
    """The last `limit` recorded windows of model `name`, oldest first.

    Returns:
        {"name", "windows": [entries as written, oldest first], "skipped": lines that did not
        parse, "total": windows read (before `limit`)}; no windows when nothing is recorded.

    Raises:
        ValueError: `name` is not a registry model name (no file is touched then).
    """
    name = _checked(name)
    folder = Path(folder)
    windows, bad = _parse(_read_lines(folder / f"{name}{_SUFFIX}", max_read_bytes))
    if len(windows) < limit:  # the rotated file holds the windows before these
        older, bad_older = _parse(_read_lines(folder / f"{name}{_OLD_SUFFIX}", max_read_bytes))
        windows, bad = older + windows, bad + bad_older
    return {"name": name, "windows": windows[-limit:] if limit > 0 else [], "skipped": bad, "total": len(windows)}


def drift_history_models(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The models with a drift history: [{"name", "bytes", "modified"}], by name.

    Only files named after a registry model name are listed; `modified` is the POSIX time of
    the last append.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not entry.name.endswith(_SUFFIX) or not entry.is_file(follow_symlinks=False):
            continue
        name = entry.name[: -len(_SUFFIX)]
        if not _NAME.fullmatch(name) or ".." in name:
            continue
        st = entry.stat(follow_symlinks=False)
        found[name] = {"name": name, "bytes": st.st_size, "modified": st.st_mtime}
    return [found[k] for k in sorted(found)]
