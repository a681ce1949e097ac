"""All the runs of a workspace, read once and kept: `RunIndex` (the dashboard's runs list,
`trustforge runs list`), and the strict lookup of one run by its folder name (`named_run`).

`read_run` parses four or five files per folder; a workspace with thousands of runs cannot be
read again for every page. The index keeps each folder's row with the size and modification
time of the files `read_run` reads, and re-reads a folder only when one of them changed: a
refresh costs one directory scan and a few `stat` calls per folder. A row whose status.json
says "running" is also re-read when its process has gone, since that changes its state
(killed) without touching a file.
"""

from __future__ import annotations

import csv
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from trustforge.errors import RunError
from trustforge.evaluate._compare import _BOOKKEEPING, _alive, _yaml, json_object, metric_direction, read_run
from trustforge.evaluate._report_summary import flatten, num

__all__ = [
    "RunIndex",
    "named_run",
    "check_no_links",
    "read_run_or_note",
    "epoch_columns",
    "run_metrics",
    "run_settings",
    "metric_direction",
    "RUN_NAME",
]

# A run folder's name as pipeline.py makes it (`NAME-YYYYMMDD-HHMMSS`, maybe with a suffix):
# letters, digits, dot, dash, underscore, not starting with a dot (a folder being removed is `.rm-*`).
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


# Every file of a run folder that a reader here or the report follows; none may be a link, so
# a run folder can never make a page show a file from elsewhere.
_RUN_FILES = (
    "status.json",
    "spec.yaml",
    "metrics.json",
    "evidence.json",
    "epochs.csv",
    "profile.json",
    "label_issues.json",
    "tune.json",
    "explanations.safetensors",
    "report.html",
    "model_card.md",
    "package",
    "package/manifest.json",
    "checkpoints",
)


def check_no_links(run_dir: Path) -> None:
    """Refuse a run folder in which a file the readers follow is a symbolic link.

    Raises:
        RunError: naming the file (relative to the run folder).
    """
    for name in _RUN_FILES:
        if os.path.islink(os.path.join(run_dir, name)):
            raise RunError(f"{Path(run_dir).name}/{name}: a symbolic link; a run's files must lie in its folder")


def read_run_or_note(path: Path) -> dict[str, Any]:
    """`read_run(path)`, or for a folder whose files are corrupt (or links, `check_no_links`) a
    row in state "unreadable" whose note says why (one broken folder never hides the others)."""
    try:
        check_no_links(path)
        return read_run(path)
    except RunError as exc:
        return {
            "run": path.name,
            "path": str(path),
            "name": path.name,
            "state": "unreadable",
            "task": "-",
            "metric": None,
            "value": None,
            "started": None,
            "note": str(exc),
        }


def named_run(runs_dir: Path, name: str) -> Path:
    """The folder of run `name`, directly inside `runs_dir`, or RunError.

    `name` must be a plain folder name (`RUN_NAME`: no separators, no `..`, no leading dot, no
    NUL); the folder must be a real directory, not a link, resolve to a child of `runs_dir`,
    and hold no link among the files the readers follow (`check_no_links`).
    """
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise RunError("run: not a run name (letters, digits, '.', '-', '_')")
    root = Path(runs_dir).resolve()
    candidate = root / name
    if candidate.is_symlink() or not candidate.is_dir():
        raise RunError(f"run {name!r}: no such run")
    if candidate.resolve().parent != root:
        raise RunError(f"run {name!r}: no such run")
    check_no_links(candidate)
    return candidate


def epoch_columns(run_dir: Path, max_rows: int = 5000) -> dict[str, list[float | None]]:
    """epochs.csv as columns of numbers ({"epoch": [1, 2, ...], "val_loss": [...], ...}); a cell
    that is not a finite number is None. Empty when the run has no epochs.csv."""
    path = Path(run_dir) / "epochs.csv"
    if not path.is_file():
        return {}
    columns: dict[str, list[float | None]] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i >= max_rows:
                break
            for key, text in row.items():
                if key is None:
                    continue
                try:
                    value: float | None = float(text)
                    if value != value or value in (float("inf"), float("-inf")):
                        value = None
                except (TypeError, ValueError):
                    value = None
                columns.setdefault(key, []).append(value)
    return columns


def run_metrics(run_dir: Path) -> dict[str, float]:
    """The test metrics of a run that are single numbers (metrics.json, bookkeeping left out);
    empty when the run has none yet.

    Raises:
        RunError: metrics.json is not valid JSON, or not a JSON object.
    """
    found = json_object(Path(run_dir) / "metrics.json")
    if found is None:
        return {}
    out = {}
    for key, value in found.items():
        if key not in _BOOKKEEPING and not isinstance(value, bool) and num(value) is not None:
            out[str(key)] = float(value)
    return out


def run_settings(run_dir: Path) -> dict[str, Any]:
    """The run's spec.yaml flattened to dotted keys (`train.optimizer.lr: 0.02`); lists stay values.

    Raises:
        RunError: spec.yaml is not valid YAML.
    """
    return dict(flatten(_yaml(Path(run_dir) / "spec.yaml") or {}))


class RunIndex:
    """The rows (`read_run`) of every run folder in `runs_dir`, kept between calls.

    A folder is parsed again when its signature changes. Every file of a run but epochs.csv is
    written to a temporary name and renamed in (`atomic_write_text`), which changes the
    modification time of the folder itself: for a finished run (completed, failed, interrupted,
    killed, pruned, unreadable) that time is the signature, one `stat` per folder. A run that
    is not finished also has the time and size of status.json and epochs.csv (appended in place
    each epoch) in its signature. A folder changed in the last two seconds is parsed on every
    call, since two changes within one tick of the file system's clock would leave the same
    time. A file of a finished run edited in place by hand (not renamed in) is seen when its
    folder next changes, or by a new index.

    `rows()` is safe to call from several threads; the rows it returns are shared and must not
    be changed by the caller. `generation` grows whenever a call finds a change, so a caller can
    keep what it derived from the rows (a sorted list) until it does.
    """

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self._lock = threading.Lock()
        # folder name -> (signature, row, pid of a "running" status or None)
        self._cache: dict[str, tuple[Any, dict[str, Any], Any]] = {}
        self._rows: list[dict[str, Any]] = []
        self.reads = 0  # folders parsed since creation (tests and benchmarks read it)
        self.generation = 0
        self.progress = (0, 0)  # (folders read, folders to read) of the refresh under way
        self._warming: threading.Thread | None = None

    @property
    def warming(self) -> bool:
        """Whether `warm` is still reading the folders in the background."""
        return self._warming is not None and self._warming.is_alive()

    def unread(self) -> int:
        """How many folders of `runs_dir` this index has not read yet (one directory listing)."""
        try:
            with os.scandir(self.runs_dir) as listing:
                return sum(1 for e in listing if e.name not in self._cache and e.name[0] != ".")
        except FileNotFoundError:
            return 0

    def warm(self) -> None:
        """Read the folders in a background thread (a first listing of thousands of runs takes
        tens of seconds); `progress` says how far it got. No-op while one is running."""
        with self._lock:
            if self.warming:
                return
            self._warming = threading.Thread(target=self.rows, name="trustforge-run-index", daemon=True)
            self._warming.start()

    def rows(self) -> list[dict[str, Any]]:
        """Every run folder's row, in no particular order; folders re-read only when changed."""
        with self._lock:
            seen: dict[str, tuple[Any, dict[str, Any], Any]] = {}
            cache = self._cache
            changed = False
            racy_before = time.time_ns() - _RACY_NS
            try:
                listing = list(os.scandir(self.runs_dir))
            except FileNotFoundError:
                listing = []
            todo = sum(1 for e in listing if e.name not in cache)
            done = 0
            self.progress = (0, todo)
            for entry in listing:
                name = entry.name
                if name[0] == "." or not RUN_NAME.fullmatch(name):
                    continue  # a folder being removed (.rm-*), stray names
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue  # files and links are not runs
                    folder_ns = entry.stat(follow_symlinks=False).st_mtime_ns
                except OSError:
                    continue
                old = cache.get(name)
                if old is not None:
                    pid = old[2]
                    if pid is None:  # finished: the folder's time is the signature
                        if old[0] == folder_ns and folder_ns < racy_before:
                            seen[name] = old
                            continue
                    else:
                        sig = _live_signature(entry.path, folder_ns)
                        if old[0] == sig and max(folder_ns, sig[1][0] if sig[1] else 0) < racy_before and (pid is True or _alive(pid)):
                            seen[name] = old
                            continue
                sig = _live_signature(entry.path, folder_ns)  # taken before the read: a change during it is seen next time
                row = read_run_or_note(Path(entry.path))
                self.reads += 1
                done += 1
                if done % 50 == 0:
                    self.progress = (done, max(todo, done))
                changed = True
                if row.get("state") in _FINISHED:
                    seen[name] = (folder_ns, row, None)
                else:  # pid True: a run without a recorded process (nothing to check)
                    seen[name] = (sig, row, (_pid(entry.path) or True) if row.get("state") == "running" else True)
            if changed or len(seen) != len(cache):
                self.generation += 1
                self._rows = [row for _, row, _ in seen.values()]
            self._cache = seen
            self.progress = (done, done)
            return self._rows


# States a run does not leave by itself (a resumed run rewrites status.json by renaming it in).
_FINISHED = frozenset({"completed", "failed", "interrupted", "killed", "pruned", "unreadable"})
_RACY_NS = 2_000_000_000


def _live_signature(folder: str, folder_ns: int) -> tuple:
    out: list[Any] = [folder_ns]
    for name in ("status.json", "epochs.csv"):
        try:
            st = os.stat(f"{folder}/{name}")
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append(None)
    return tuple(out)


def _pid(folder: str) -> Any:
    import json

    try:
        with open(os.path.join(folder, "status.json"), encoding="utf-8") as f:
            return (json.load(f) or {}).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
