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
from pathlib import Path
from typing import Any

from trustforge.errors import RunError
from trustforge.evaluate._compare import _BOOKKEEPING, _LOWER_IS_BETTER, _alive, _json, _yaml, read_run
from trustforge.evaluate._report_summary import flatten, num

__all__ = ["RunIndex", "named_run", "read_run_or_note", "epoch_columns", "run_metrics", "run_settings", "metric_direction", "RUN_NAME"]

# The files `read_run` reads (with the package's manifest.json, which never changes once written).
_WATCHED = ("status.json", "spec.yaml", "metrics.json", "evidence.json", "epochs.csv")
# A run folder's name as pipeline.py makes it (`NAME-YYYYMMDD-HHMMSS`, maybe with a suffix):
# letters, digits, dot, dash, underscore, not starting with a dot (a folder being removed is `.rm-*`).
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def read_run_or_note(path: Path) -> dict[str, Any]:
    """`read_run(path)`, or for a folder whose files are corrupt a row in state "unreadable"
    whose note says why (one broken folder never hides the others)."""
    try:
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
    NUL); the folder must be a real directory, not a link, and resolve to a child of `runs_dir`.
    """
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise RunError("run: not a run name (letters, digits, '.', '-', '_')")
    root = Path(runs_dir).resolve()
    candidate = root / name
    if candidate.is_symlink() or not candidate.is_dir():
        raise RunError(f"run {name!r}: no such run")
    if candidate.resolve().parent != root:
        raise RunError(f"run {name!r}: no such run")
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
        RunError: metrics.json is not valid JSON.
    """
    found = _json(Path(run_dir) / "metrics.json")
    if not isinstance(found, dict):
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


def metric_direction(metric: str) -> str | None:
    """ "higher" or "lower" (which figure of `metric` is better), or None for a figure this
    version does not know the direction of (then no run is marked best on it)."""
    from trustforge.evaluate._metrics import METRICS

    if metric in METRICS:
        return "higher" if METRICS[metric].higher_is_better else "lower"
    if metric in _LOWER_IS_BETTER:
        return "lower"
    return None


class RunIndex:
    """The rows (`read_run`) of every run folder in `runs_dir`, kept between calls.

    `rows()` is safe to call from several threads; the rows it returns are shared and must not
    be changed by the caller.
    """

    def __init__(self, runs_dir: Path):
        self.runs_dir = Path(runs_dir)
        self._lock = threading.Lock()
        # folder name -> (signature of its watched files, row, pid of a "running" status)
        self._cache: dict[str, tuple[tuple, dict[str, Any], Any]] = {}
        self.reads = 0  # folders parsed since creation (tests and benchmarks read it)

    def rows(self) -> list[dict[str, Any]]:
        """Every run folder's row, in no particular order; folders re-read only when changed."""
        with self._lock:
            seen: dict[str, tuple[tuple, dict[str, Any], Any]] = {}
            try:
                entries = list(os.scandir(self.runs_dir))
            except FileNotFoundError:
                entries = []
            for entry in entries:
                if entry.name.startswith(".") or not RUN_NAME.fullmatch(entry.name):
                    continue  # a folder being removed (.rm-*), stray names
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue  # files and links are not runs
                except OSError:
                    continue
                sig = _signature(entry.path)
                old = self._cache.get(entry.name)
                if old is not None and old[0] == sig and not (old[1].get("state") == "running" and not _alive(old[2])):
                    seen[entry.name] = old
                    continue
                row = read_run_or_note(Path(entry.path))
                self.reads += 1
                seen[entry.name] = (sig, row, _pid(entry.path) if row.get("state") == "running" else None)
            self._cache = seen
            return [row for _, row, _ in seen.values()]


def _signature(folder: str) -> tuple:
    out = []
    for name in _WATCHED:
        try:
            st = os.stat(os.path.join(folder, name))
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
