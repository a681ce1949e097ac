"""The runs pages of the dashboard: the list (filter, sort, pages), the comparison of 2 to 6 runs
(metrics side by side, learning curves, settings that differ), one run (summary, evidence,
report and model card).

The list reads an in-memory `RunIndex` kept on the app (`app.state.runs_index`): a page costs
one scan of the runs folder and a `stat` of each run's files; only folders whose files changed
are parsed again. A run named in a path is a plain folder name (`RUN_NAME`) resolved only
directly inside `settings.runs_dir`: no separators, no `..`, no links.

A run's report.html is served as it is, under a Content-Security-Policy of its own: the file
holds an inline stylesheet, `style=` attributes and PNG plots as data: URIs, and never a
script, so the policy allows exactly those and no script at all, in a sandbox.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from trustforge import evaluate
from trustforge.errors import RunError, TrustForgeError
from trustforge.ui._render import paging, render
from trustforge.ui._session import Session, needs

router = APIRouter()

# The report's own policy: its inline <style> and style= attributes, its data: images, nothing else.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'none'; sandbox; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
# Reports and cards rendered for runs without report.html, kept per run (the last 32): a render
# costs seconds of CPU, so a reload must not cost another. One render at a time.
_RENDERED_MAX = 32
_render_lock = threading.Lock()
# Sort keys of the list: column -> label. Rows without the figure go last in either order.
SORTS = {
    "started": "started",
    "run": "run",
    "name": "spec name",
    "state": "state",
    "task": "task",
    "value": "headline value",
    "baseline": "baseline",
    "fit_seconds": "fit time",
    "latency_p50_ms": "latency p50",
}
_BADGES = {"completed": "ok", "running": "", "interrupted": "warn", "killed": "bad", "failed": "bad", "unreadable": "bad", "pruned": "warn"}
_STATE_WORDS = {"completed": "finished"}
_MODEL_URI = re.compile(r"models:/([A-Za-z0-9][A-Za-z0-9._-]{0,127})(?:/(\d+)|@([A-Za-z0-9][A-Za-z0-9._-]*))")
_CURVE_SKIP = {"epoch", "seconds"}
_index_lock = threading.Lock()
_WARM_AFTER = 300  # unread folders past which the first listing is read in the background


def _states() -> tuple[str, ...]:
    return (*evaluate.RUN_STATES, "unknown", "unreadable")


def _tasks() -> tuple[str, ...]:
    return tuple(sorted(evaluate.TASKS))


def _runs_dir(request: Request) -> Path:
    return Path(request.app.state.settings.runs_dir)


def runs_index(request: Request) -> evaluate.RunIndex:
    """The app's index of run folders (made on first use)."""
    state = request.app.state
    index = getattr(state, "runs_index", None)
    if index is None:
        with _index_lock:
            index = getattr(state, "runs_index", None)
            if index is None:
                index = state.runs_index = evaluate.RunIndex(_runs_dir(request))
    return index


def _bad(request: Request, message: str, status: int = 400) -> HTMLResponse:
    return render(request, "error.html", {"title": "Bad request" if status == 400 else "Not found", "message": message}, status)


def _folder(request: Request, run: str) -> Path | HTMLResponse:
    """The folder of `run`, or the error page to answer (400 for a malformed name, 404 for none)."""
    if not evaluate.RUN_NAME.fullmatch(run):
        return _bad(request, "run: not a run name (letters, digits, '.', '-', '_', not starting with '.')")
    try:
        return evaluate.named_run(_runs_dir(request), run)
    except RunError as exc:  # no such folder, a link, or a link among its files
        return _bad(request, _clean(request, str(exc)), 404)


def _clean(request: Request, text: Any) -> Any:
    """A note without the workspace's local path (pages never show one)."""
    if not isinstance(text, str):
        return text
    root = _runs_dir(request)
    for prefix in {str(root.resolve()), str(root)}:
        text = text.replace(prefix + "/", "").replace(prefix, "runs")
    return text


def _model_link(uri: Any) -> dict[str, str] | None:
    if not isinstance(uri, str):
        return None
    match = _MODEL_URI.fullmatch(uri)
    return {"uri": uri, "name": match.group(1)} if match else None


def _utc(iso: Any) -> str:
    """An ISO time of status.json as `YYYY-MM-DD HH:MM` in UTC ("" when absent or not a time)."""
    if not isinstance(iso, str):
        return ""
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        return ""
    return (t.astimezone(timezone.utc) if t.tzinfo else t).strftime("%Y-%m-%d %H:%M")


def _row_view(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    state = row.get("state") or "unknown"
    return {
        "run": row["run"],
        "name": row.get("name") or row["run"],
        "state": state,
        "state_text": _STATE_WORDS.get(state, state),
        "badge": _BADGES.get(state, ""),
        "task": row.get("task") or "-",
        "metric": row.get("metric"),
        "value": row.get("value"),
        "baseline": row.get("baseline"),
        "baseline_metric": row.get("baseline_metric"),
        "baseline_verdict": row.get("baseline_verdict"),
        "fit_seconds": row.get("fit_seconds"),
        "latency_p50_ms": row.get("latency_p50_ms"),
        "started": _utc(row.get("started")),
        "note": _clean(request, row.get("note")),
        "model": _model_link(row.get("model_uri")),
    }


def select_runs(
    rows: list[dict[str, Any]], *, q: str = "", state: str = "", task: str = "", sort: str = "started", order: str = "desc"
) -> list[dict[str, Any]]:
    """The rows that match the filters (`q`: a substring of the run or spec name, any case), sorted
    by `sort` (a key of `SORTS`); rows without that figure come last in either order."""
    needle = q.strip().lower()
    out = [
        r
        for r in rows
        if (not needle or needle in r["run"].lower() or needle in str(r.get("name") or "").lower())
        and (not state or r.get("state") == state)
        and (not task or r.get("task") == task)
    ]
    present = [r for r in out if r.get(sort) is not None]
    missing = [r for r in out if r.get(sort) is None]
    present.sort(
        key=lambda r: (r[sort], r["run"]) if not isinstance(r[sort], str) else (r[sort].lower(), r["run"]), reverse=order == "desc"
    )
    missing.sort(key=lambda r: r["run"])
    return present + missing


def _selection(request: Request, index: evaluate.RunIndex, rows: list[dict[str, Any]], **how: str) -> list[dict[str, Any]]:
    """`select_runs(rows, **how)`, kept until the index next changes (the last 32 selections):
    paging through a list, or a second user on the same view, costs no filter or sort."""
    key = (index.generation, tuple(sorted(how.items())))
    with _index_lock:
        kept = getattr(request.app.state, "runs_selections", None)
        if kept is None or len(kept) >= 32 or any(k[0] != index.generation for k in kept):
            kept = request.app.state.runs_selections = {}
        found = kept.get(key)
    if found is None:
        found = select_runs(rows, **how)
        with _index_lock:
            request.app.state.runs_selections[key] = found
    return found


@router.get("/runs")
def runs_page(
    request: Request,
    session: Session = Depends(needs("read")),
    page: int = Query(1, ge=1, le=1_000_000),
    per: int = Query(50, ge=10, le=200),
    sort: str = Query("started", max_length=40),
    order: str = Query("desc", max_length=10),
    q: str = Query("", max_length=100),
    state: str = Query("", max_length=40),
    task: str = Query("", max_length=40),
) -> HTMLResponse:
    if sort not in SORTS:
        return _bad(request, f"sort must be one of: {', '.join(SORTS)}")
    if order not in ("asc", "desc"):
        return _bad(request, "order must be asc or desc")
    if state and state not in _states():
        return _bad(request, f"state must be one of: {', '.join(_states())}")
    if task and task not in _tasks():
        return _bad(request, f"task must be one of: {', '.join(_tasks())}")
    if any(ord(c) < 32 for c in q):
        return _bad(request, "q must be plain text")
    index = runs_index(request)
    if index.generation == 0 and (index.warming or index.unread() > _WARM_AFTER):
        # A first visit after the start over thousands of runs: read them in the background
        # and say how far it got, rather than hold the page for tens of seconds.
        index.warm()
        done, todo = index.progress
        return render(request, "runs_indexing.html", {"title": "Runs", "done": done, "todo": todo or index.unread()}, 200)
    rows = index.rows()
    chosen = _selection(request, index, rows, q=q, state=state, task=task, sort=sort, order=order)
    at = paging(len(chosen), page, per)
    pages, page = at["pages"], at["page"]
    shown = [_row_view(request, r) for r in chosen[(page - 1) * per : page * per]]
    filters = {"q": q, "state": state, "task": task, "sort": sort, "order": order, "per": per}

    def link(**changes: Any) -> str:
        """This list's URL with some parameters changed (defaults left out)."""
        params = {**filters, "page": page, **changes}
        defaults = {"q": "", "state": "", "task": "", "sort": "started", "order": "desc", "per": 50, "page": 1}
        return "/runs?" + urlencode({k: v for k, v in params.items() if v != defaults.get(k)})

    ctx = {
        "title": "Runs",
        "rows": shown,
        "total": len(rows),
        "matched": len(chosen),
        "page": page,
        "pages": pages,
        "per": per,
        "filters": filters,
        "states": _states(),
        "tasks": _tasks(),
        "sorts": SORTS,
        "first": (page - 1) * per + 1 if chosen else 0,
        "last": min(page * per, len(chosen)),
        "link": link,
    }
    return render(request, "runs.html", ctx)


# ---------------------------------------------------------------------------- compare


def _compare_metrics(metrics: list[dict[str, float]], groups: list[str]) -> list[dict[str, Any]]:
    """The metrics table: per metric, each run's figure, the best marked only among runs that
    answer the same question (`groups`, as `compare` groups them: task, data source, positive
    class); a digits run's accuracy is never "best" against an iris run's."""
    names: list[str] = []
    for m in metrics:
        names.extend(k for k in m if k not in names)
    table = []
    for name in names:
        values = [m.get(name) for m in metrics]
        direction = evaluate.metric_direction(name)
        best: dict[str, float] = {}
        for group in dict.fromkeys(groups):
            present = [v for v, g in zip(values, groups) if g == group and v is not None]
            if direction and len(present) >= 2 and len(set(present)) > 1:
                best[group] = max(present) if direction == "higher" else min(present)
        table.append(
            {
                "metric": name,
                "direction": direction,
                "cells": [{"value": v, "best": v is not None and best.get(g) == v} for v, g in zip(values, groups)],
            }
        )
    return table


def _curves(runs: list[str], columns: list[dict[str, list[float | None]]]) -> list[dict[str, Any]]:
    """One chart per column of epochs.csv (loss, validation metrics, learning rate), the runs'
    series aligned on the epoch numbers of them all (None where a run has no such epoch)."""
    names: list[str] = []
    for c in columns:
        names.extend(k for k in c if k not in _CURVE_SKIP and k not in names)
    charts = []
    for i, name in enumerate(names):
        by_run = []
        epochs: set[float] = set()
        for c in columns:
            xs = c.get("epoch") or [float(n + 1) for n in range(len(c.get(name) or []))]
            pairs = {x: y for x, y in zip(xs, c.get(name) or []) if x is not None}
            by_run.append(pairs)
            epochs.update(pairs)
        if not any(v is not None for pairs in by_run for v in pairs.values()):
            continue
        x = sorted(epochs)
        charts.append(
            {
                "id": f"curve-{i}",
                "metric": name,
                "x": [int(e) if float(e).is_integer() else e for e in x],
                "series": [{"label": run, "values": [pairs.get(e) for e in x]} for run, pairs in zip(runs, by_run)],
            }
        )
    return charts


def _differences(settings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys: list[str] = []
    for s in settings:
        keys.extend(k for k in s if k not in keys)
    out = []
    missing = object()
    for key in sorted(keys):
        values = [s.get(key, missing) for s in settings]
        if len({repr(v) for v in values}) > 1:
            out.append({"key": key, "values": ["(not set)" if v is missing else _text(v) for v in values]})
    return out


def _text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@router.get("/runs/compare")
def compare_page(
    request: Request,
    session: Session = Depends(needs("read")),
    run: list[str] = Query([]),
) -> HTMLResponse:
    if not 2 <= len(run) <= 6:
        return _bad(request, f"run: choose 2 to 6 runs to compare; got {len(run)}")
    if len(set(run)) != len(run):
        return _bad(request, "run: the same run is named twice")
    folders = []
    for name in run:
        folder = _folder(request, name)
        if isinstance(folder, Response):
            return folder
        folders.append(folder)
    try:
        read = [evaluate.read_run_or_note(f) for f in folders]
        rows = [_row_view(request, r) for r in read]
        groups = evaluate.comparable_groups(read)
        metrics = [evaluate.run_metrics(f) for f in folders]
        settings = [evaluate.run_settings(f) for f in folders]
        columns = [evaluate.epoch_columns(f) for f in folders]
    except TrustForgeError as exc:
        return _bad(request, _clean(request, str(exc)))
    charts = _curves(run, columns)
    ctx = {
        "title": "Compare runs",
        "runs": rows,
        "metrics": _compare_metrics(metrics, groups),
        "groups": [_clean(request, g) for g in groups],
        "distinct_groups": len(set(groups)),
        "charts": charts,
        "chart_data": {"charts": charts},
        "differences": _differences(settings),
        "compared": len(settings[0]) if settings else 0,
    }
    return render(request, "runs_compare.html", ctx)


# ---------------------------------------------------------------------------- one run


@router.get("/runs/{run}")
def run_page(request: Request, run: str, session: Session = Depends(needs("read"))) -> HTMLResponse:
    folder = _folder(request, run)
    if isinstance(folder, Response):
        return folder
    row = evaluate.read_run_or_note(folder)
    view = _row_view(request, row)
    summary, problem = None, None
    if row.get("state") == "completed" and (folder / "metrics.json").is_file():
        try:
            summary = evaluate.report_summary(folder)
        except TrustForgeError as exc:
            problem = _clean(request, str(exc))
    facts = [
        ("Data", row.get("dataset")),
        ("Epochs", f"{row.get('epochs')} of {row.get('max_epochs')}" if row.get("max_epochs") else row.get("epochs")),
        ("Fit time", None if row.get("fit_seconds") is None else f"{row['fit_seconds']:.3g} s"),
        ("Latency p50", None if row.get("latency_p50_ms") is None else f"{row['latency_p50_ms']:.3g} ms"),
        ("Parameters", None if row.get("parameters") is None else f"{row['parameters']:,}"),
        ("Package size", None if row.get("package_bytes") is None else f"{row['package_bytes'] / 1024:.1f} KiB"),
        ("Started", view["started"] or None),
    ]
    models = _registered(request, session, row)
    ctx = {
        "title": f"Run {row['run']}",
        "models": models,
        "row": view,
        "facts": [(k, v) for k, v in facts if v not in (None, "")],
        "summary": summary,
        "problem": problem,
        "has_report": (folder / "report.html").is_file() or summary is not None,
        "report_file": (folder / "report.html").is_file(),
        "has_card": (folder / "model_card.md").is_file() or summary is not None,
    }
    return render(request, "run.html", ctx)


def _registered(request: Request, session: Session, row: dict[str, Any]) -> list[dict[str, str]]:
    """The model versions trained in this run: the URI its status.json names, and the versions of
    the model named like its spec whose lineage names this run (read as the signed-in user)."""
    found = [m for m in [_model_link(row.get("model_uri"))] if m is not None]
    name = row.get("name")
    if isinstance(name, str) and name:
        try:
            versions = request.app.state.registry.acting_as(session.principal).list_versions(name)
        except TrustForgeError:
            versions = []
        for v in versions:
            if v.run == row["run"] and all(m["uri"] != v.uri for m in found):
                found.append({"uri": v.uri, "name": v.name})
    return found


def _own_file(folder: Path, name: str) -> Path | None:
    """`folder/name` when it is a regular file (not a link) of the run."""
    path = folder / name
    return path if path.is_file() and not path.is_symlink() and path.resolve().parent == folder.resolve() else None


def _stamp(folder: Path) -> tuple:
    """What changes when any file of the run folder does: (path, size, mtime) of every entry."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            out.append((os.path.relpath(os.path.join(root, name), folder), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _rendered(request: Request, folder: Path, model_uri: str | None) -> tuple[str, str]:
    """`evaluate.render_report(folder, model_uri)`, kept in `app.state.rendered_reports` (LRU of
    32) until a file of the folder changes or the model URI does.

    Raises:
        TrustForgeError: as `render_report`.
    """
    state = request.app.state
    key = (folder.name, model_uri, _stamp(folder))
    with _render_lock:
        kept: OrderedDict = getattr(state, "rendered_reports", None) or OrderedDict()
        state.rendered_reports = kept
        found = kept.get(folder.name)
        if found is not None and found[0] == key:
            kept.move_to_end(folder.name)
            return found[1]
        result = evaluate.render_report(folder, model_uri)
        kept[folder.name] = (key, result)
        kept.move_to_end(folder.name)
        while len(kept) > _RENDERED_MAX:
            kept.popitem(last=False)
        return result


def _model_uri(request: Request, session: Session, run: str, folder: Path) -> str | None:
    """The URI of this run's model: what status.json names, else the registered version whose run
    is this run (as the signed-in user may read it), else None."""
    models = _registered(request, session, evaluate.read_run_or_note(folder))
    return models[0]["uri"] if models else None


def _report_body(request: Request, session: Session, run: str, folder: Path) -> bytes | None:
    path = _own_file(folder, "report.html")
    if path is not None:
        return path.read_bytes()
    try:  # no report.html yet (`trustforge train` does not write one): rendered here, not saved
        return _rendered(request, folder, _model_uri(request, session, run, folder))[0].encode("utf-8")
    except TrustForgeError:
        return None


@router.get("/runs/{run}/report")
def report_page(request: Request, run: str, session: Session = Depends(needs("read"))) -> HTMLResponse:
    """The report inside the dashboard: header, navigation, and the report in a sandboxed frame."""
    folder = _folder(request, run)
    if isinstance(folder, Response):
        return folder
    if _own_file(folder, "report.html") is None and not (folder / "metrics.json").is_file():
        return _bad(request, f"run {run} has no report: it has no test metrics yet", 404)
    return render(request, "run_report.html", {"title": f"Report of {run}", "run": run})


@router.get("/runs/{run}/report/raw")
def report_raw(request: Request, run: str, session: Session = Depends(needs("read"))) -> Response:
    """The run's report.html as it is (or rendered), under its own policy: no script, sandboxed,
    framed by this site's report page only."""
    folder = _folder(request, run)
    if isinstance(folder, Response):
        return folder
    body = _report_body(request, session, run, folder)
    if body is None:
        return _bad(request, f"run {run} has no report: it has no test metrics yet", 404)
    headers = {"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-store", "X-Frame-Options": "SAMEORIGIN"}
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


@router.get("/runs/{run}/card")
def card_page(request: Request, run: str, session: Session = Depends(needs("read"))) -> HTMLResponse:
    folder = _folder(request, run)
    if isinstance(folder, Response):
        return folder
    path = _own_file(folder, "model_card.md")
    if path is not None:
        card = path.read_text(encoding="utf-8", errors="replace")
    else:
        try:
            card = _rendered(request, folder, _model_uri(request, session, run, folder))[1]
        except TrustForgeError:
            return _bad(request, f"run {run} has no model card: it has no test metrics yet", 404)
    card = _clean(request, card)
    return render(
        request, "run_card.html", {"title": f"Model card of {run}", "run": run, "card": card, "card_html": evaluate.card_html(card)}
    )
