"""`trustforge runs ...`: the run folders of the workspace (list, show, rm), and the text of `compare`.

Run folders live in `TRUSTFORGE_HOME/runs/`. Reading them needs no principal (they are local
files of this workspace); `rm` is a `delete` action, checked and written to the audit log like
every other change of state. Tables fit the terminal (`shutil.get_terminal_size`): a run name
that does not fit is shortened in the middle with an ellipsis (its date and time stay), then
optional columns are left out; headers are never cut; `--json` prints everything.
Library errors (`TrustForgeError`) propagate to the main command, which prints them as one line.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

import typer

app = typer.Typer(help="The run folders of the workspace: list, show, rm.", no_args_is_help=True, add_completion=False)


def _print(text: str = "") -> None:
    typer.echo(text)


def _width() -> int:
    return max(40, shutil.get_terminal_size((80, 24)).columns)


def _runs_dir() -> Path:
    from trustforge.settings import Settings

    return Settings.from_env().runs_dir


def _all_runs() -> list[dict[str, Any]]:
    from trustforge.evaluate import RunIndex

    # One unreadable folder does not hide the others: it is listed in state "unreadable".
    return sorted(RunIndex(_runs_dir()).rows(), key=lambda r: (r.get("started") or "", r["run"]))


def _named(name: str) -> Path:
    """The run folder NAME (a folder name in the workspace's runs/ or a path to one), checked to
    lie directly inside the workspace's runs folder."""
    from trustforge.errors import RunError

    runs = _runs_dir().resolve()
    given = Path(name)
    candidate = given if (given.is_absolute() or len(given.parts) > 1 or given.name in (".", "..")) else runs / name
    if candidate.is_symlink():
        raise RunError(f"{name}: a link, not a run folder of the workspace ({runs}/); refusing it")
    resolved = candidate.resolve()
    if resolved.parent != runs:
        raise RunError(f"{name}: not a run folder of this workspace ({runs}/); refusing it")
    if not resolved.is_dir():
        raise RunError(f"{name}: no such run in the workspace's runs folder ({runs}/; `trustforge runs list` shows them)")
    return resolved


# ---------------------------------------------------------------------------- tables


def shorten(text: str, width: int) -> str:
    """`text` cut to `width` characters by an ellipsis in the middle (a run's name and its time stay)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


def fit_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    shrink: int,
    optional: Sequence[int] = (),
    right: Sequence[int] = (),
    min_shrunk: int = 12,
) -> list[str]:
    """Lines of a plain table no wider than `width` where possible.

    The `optional` columns are left out, in order, until the table fits; only when it does not
    fit without them is column `shrink` (the run names) shortened in the middle, down to
    `min_shrunk` characters. Headers are never cut.
    """
    natural = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def others(cols: list[int]) -> int:
        return sum(natural[i] for i in cols if i != shrink) + 2 * (len(cols) - 1)

    shown = list(range(len(headers)))
    for drop in range(len(optional) + 1):
        shown = [i for i in range(len(headers)) if i not in optional[:drop]]
        if others(shown) + natural[shrink] <= width:
            break
    widths = list(natural)
    widths[shrink] = min(natural[shrink], max(width - others(shown), min_shrunk, len(headers[shrink])))

    def line(cells: Sequence[str]) -> str:
        parts = []
        for i in shown:
            text = shorten(cells[i], widths[i]) if i == shrink else cells[i]
            parts.append(text.rjust(widths[i]) if i in right else text.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    return [line(headers)] + [line(r) for r in rows]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _when(iso: Any, *, short: bool = False) -> str:
    """An ISO time from status.json in this machine's time zone, to the minute (`short`: without
    the year when it is this year's)."""
    if not isinstance(iso, str):
        return "-"
    try:
        t = datetime.fromisoformat(iso).astimezone()
    except ValueError:
        return iso[:16]
    return t.strftime("%m-%d %H:%M" if short and t.year == datetime.now().year else "%Y-%m-%d %H:%M")


def _wrapped(text: str, indent: str, subsequent: str | None = None) -> list[str]:
    """`text` wrapped to the terminal, the first line after `indent`, the others after `subsequent` (default: as deep)."""
    later = " " * len(indent) if subsequent is None else subsequent
    return textwrap.wrap(text, width=max(30, _width() - len(indent)), initial_indent=indent, subsequent_indent=later) or [indent]


# ---------------------------------------------------------------------------- commands


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """List the runs of the workspace, oldest first: state, task, headline metric, start time."""
    rows = _all_runs()
    if as_json:
        _print(json.dumps(rows, indent=1))
        return
    if not rows:
        _print(f"no runs in {_runs_dir()}")
        return
    cells = [
        (
            r["run"],
            r["state"],
            r["task"],
            f"{r['metric']} {r['value']:.4f}" if r.get("value") is not None else "-",
            _when(r.get("started"), short=True),
        )
        for r in rows
    ]
    # A run's folder name carries its start time: STARTED is the first to go on a narrow terminal.
    for line in fit_table(("RUN", "STATE", "TASK", "METRIC", "STARTED"), cells, width=_width(), shrink=0, optional=(4, 2)):
        _print(line)


@app.command()
def show(
    run: str = typer.Argument(..., help="a run folder name (from `trustforge runs list`) or a path to a run folder"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Show one run: its status, what its spec trains, and its test metrics."""
    from trustforge.evaluate import read_run, run_folder

    folder = run_folder(Path(run)) if (os.sep in run or Path(run).is_absolute()) else _named(run)
    row = read_run(folder)
    spec = _spec(folder)
    metrics = _metrics(folder)
    if as_json:
        _print(json.dumps({**row, "spec": spec, "metrics": metrics}, indent=1))
        return
    data, model, train = (spec.get(k) if isinstance(spec.get(k), dict) else {} for k in ("data", "model", "train"))
    facts = [
        ("run", row["run"]),
        ("path", row["path"]),
        ("state", row["state"] + (f": {row['note']}" if row["note"] and row["state"] != "completed" else "")),
        ("started", _when(row["started"])),
        ("updated", _when(row["updated"])),
        ("model", row["model_uri"] or "not registered"),
        ("spec", f"{row['name']}: {row['task']}" + (f" of {data['target']}" if data.get("target") else "") + f" on {row['dataset']}"),
        ("network", ", ".join(f"{k} {v}" for k, v in model.items() if v is not None and not isinstance(v, dict)) or "-"),
        (
            "training",
            f"{row['epochs']} of {train.get('max_epochs', '?')} epochs, batch {train.get('batch_size', '?')}, seed {train.get('seed', '?')}",
        ),
    ]
    width = max(len(k) for k, _ in facts)
    for key, value in facts:
        _print(f"{key:<{width}}  {value}")
    scalars = [(k, v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not scalars:
        _print("metrics   none yet (metrics.json is written after training)")
        return
    _print("metrics")
    mw = max(len(k) for k, _ in scalars)
    for key, value in scalars:
        _print(f"  {key:<{mw}}  {value:.4f}" if isinstance(value, float) else f"  {key:<{mw}}  {value}")


@app.command()
def rm(
    runs: list[str] = typer.Argument(..., help="run folder names (from `trustforge runs list`) or paths to run folders"),
    yes: bool = typer.Option(False, "--yes", "-y", help="delete without asking (required when not at a terminal)"),
) -> None:
    """Delete run folders of this workspace (a `delete` action, audited).

    Only folders directly inside the workspace's runs folder are deleted; a run still running
    is refused. A registered model keeps its own copy in the registry.
    """
    from trustforge.errors import RunError
    from trustforge.evaluate import read_run
    from trustforge.registry import Registry
    from trustforge.secure import require

    targets = [_named(name) for name in runs]  # every name checked before anything is deleted
    rows = [read_run(t) for t in targets]
    for row in rows:
        if row["state"] == "running":
            raise RunError(f"{row['run']}: still running; stop it (Ctrl-C) before deleting it")
    listing = ", ".join(f"{r['run']} ({r['state']})" for r in rows)
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise RunError(f"would delete {listing}; add --yes to delete")
        if not typer.confirm(f"delete {listing}?", default=False):
            raise typer.Exit(1)
    with Registry() as reg:
        for folder, row in zip(targets, rows):
            obj = f"runs/{folder.name}"
            require(reg.principal, "delete", obj, reg.audit)
            # Renamed first, so a deletion cut short never leaves a half run that looks whole.
            doomed = folder.with_name(f".rm-{folder.name}-{os.getpid()}")
            folder.rename(doomed)
            shutil.rmtree(doomed)
            reg.audit.append(reg.principal.name, "delete", obj, "ok", {"state": row["state"], "model_uri": row.get("model_uri")})
            kept = f"; {row['model_uri']} stays in the registry" if row.get("model_uri") else ""
            _print(f"deleted {folder.name}{kept}")


def _spec(folder: Path) -> dict[str, Any]:
    import yaml

    try:
        found = yaml.safe_load((folder / "spec.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def _metrics(folder: Path) -> dict[str, Any]:
    try:
        found = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


# ---------------------------------------------------------------------------- compare


_NORMS = {"inf": "L∞", "2": "L2", "edits": "edits"}


def print_compare(paths: Sequence[Path], metric: Optional[str], as_json: bool) -> None:
    """The text of `trustforge compare`: one leaderboard per task and data source, incomplete runs marked."""
    from collections import Counter

    from trustforge.evaluate import compare_runs, run_folder

    rows = compare_runs(list(paths), metric)
    # compare_runs lists a run given twice once; say so rather than leave the user counting rows.
    for folder, times in Counter(run_folder(Path(p)) for p in paths).items():
        if times > 1:
            typer.echo(f"note: run {folder.name} was given {times} times; it is compared once", err=True)
    if as_json:
        _print(json.dumps(rows, indent=1))
        return
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    older = False
    thresholds_shown = False
    robust_shown = False
    for n, (group, members) in enumerate(groups.items()):
        if n:
            _print()
        direction = members[0].get("direction")
        said = f"{direction} is better" if direction or members[0]["metric"] is None else "direction unknown; ranked highest first"
        ranked = [r for r in members if r["rank"] is not None]
        question, _, split = group.partition("; ")  # the split that picks the test rows on a line of its own
        head = question if members[0]["metric"] is None else f"{question} ({said})"
        for line in _wrapped(head + ("" if ranked else ": no run to rank"), "", "  "):
            _print(line)
        for line in _wrapped(f"scored on the {split}", "  ") if split else []:
            _print(line)
        # Runs whose decision thresholds differ classify the same scores differently: say so per run.
        show_threshold = len({r["threshold"] for r in ranked}) > 1
        thresholds_shown = thresholds_shown or show_threshold
        # The attack column only where a ranked run was attacked; budgets of different norms are not comparable.
        norms = {r["robust_norm"] for r in ranked if r["robust_median_flip"] is not None or r.get("robust_beyond") is not None}
        show_robust = bool(norms)
        robust_shown = robust_shown or show_robust
        cells = []
        for r in ranked:
            forward = r["latency_source"] not in (None, "speed.predict.p50_ms")
            older = older or forward
            row = [
                str(r["rank"]),
                r["run"],
                _fmt(r["value"], ".4f"),
                _fmt(r["n"], ","),
                _fmt(r["fit_seconds"], ".1f"),
                _fmt(r["latency_p50_ms"], ".3f") + ("*" if forward else ""),
                _fmt(None if r["package_bytes"] is None else r["package_bytes"] / 1024, ".1f"),
                _fmt(r["parameters"], ","),
            ]
            if show_robust:
                flip = _fmt(r["robust_median_flip"], ".3g") if r.get("robust_beyond") is None else "> " + _fmt(r["robust_beyond"], ".3g")
                row.append(flip + (f" ({_NORMS.get(r['robust_norm'], r['robust_norm'])})" if len(norms) > 1 and flip != "-" else ""))
            if show_threshold:
                row.insert(3, _fmt(r["threshold"], ".3g"))
            cells.append(tuple(row))
        if cells:
            # n: the test rows each figure was scored on (a group shares its split, not always its n).
            headers = ["#", "run", str(members[0]["metric"]), "n", "fit s", "p50 ms", "KiB", "params"]
            optional, right = (7, 6, 4), (0, 2, 3, 4, 5, 6, 7)
            if show_robust:
                headers.append("flip ε" + (f" ({_NORMS.get(next(iter(norms)), next(iter(norms)))})" if len(norms) == 1 else ""))
                optional, right = (7, 6, 4, 8), (0, 2, 3, 4, 5, 6, 7, 8)
            if show_threshold:  # never dropped: the figures mean something else without it
                headers.insert(3, "threshold")
                optional, right = tuple(i + (i >= 3) for i in optional), tuple(i + (i >= 3) for i in right) + (3,)
            for line in fit_table(headers, cells, width=_width(), shrink=1, optional=optional, right=right):
                _print(line)
        for r in members:
            if r["rank"] is None:
                for line in _wrapped(f"{r['run']}: not ranked, {r['note']}", "   - "):
                    _print(line)
    if any(r["rank"] is not None for r in rows):
        _print()
        for line in _wrapped(
            "p50 ms: median latency of Model.predict on one row (speed.predict.p50_ms)"
            + ("; a figure marked * is an older run's forward pass only" if older else "")
            + ". n: the test rows the figure is scored on. KiB: package size."
            + (
                " flip ε: the median smallest attack budget that flips a prediction the run got right"
                " (robustness.smallest_flip; larger is sturdier, comparable only on the same data and norm;"
                " > ε: most rows resisted the largest budget swept)."
                if robust_shown
                else ""
            )
            + (
                " threshold: the probability of the positive class from which a run predicts it; it differs"
                " within a group, so precision, recall and F1 there are at different operating points."
                if thresholds_shown
                else ""
            ),
            "",
        ):
            _print(line)
