"""The drift pages: the windows that `trustforge monitor` and servers tested for each registry
model, read from the workspace's drift history (`trustforge.monitor.read_drift_history`).

The list shows the models with a history; a model's page plots, per feature, the deciding
test's p-value (or, for PSI and Wasserstein, its statistic) against its threshold over the
recorded windows (uPlot, from static/drift.js), and lists the windows with their decision.
Only checked model names reach the history reader, which builds file names from them alone.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse

from trustforge.monitor import drift_history_models, history_dir, read_drift_history
from trustforge.registry import check_name
from trustforge.ui._render import paging, render
from trustforge.ui._session import Session, in_thread, needs

__all__ = ["router"]

router = APIRouter()

_SUMMARY_WINDOWS = 200  # windows read per model for the list page


def _folder(request: Request):
    return history_dir(request.app.state.settings.home)


def _summaries(folder) -> list[dict[str, Any]]:
    out = []
    for found in drift_history_models(folder):
        history = read_drift_history(folder, found["name"], _SUMMARY_WINDOWS)
        windows = history["windows"]
        if not windows:
            continue
        last = windows[-1]
        out.append(
            {
                "name": found["name"],
                "shown": len(windows),
                "drifted": sum(1 for w in windows if w.get("drift")),
                "last_time": _when(last.get("time")),
                "last_model": str(last.get("model") or "-"),
                "last_drift": bool(last.get("drift")),
                "last_drifted": [str(x) for x in (last.get("drifted") or [])][:6],
            }
        )
    return out


def _when(iso: Any) -> str:
    if not isinstance(iso, str) or not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso[:25]


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _chart_data(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """What drift.js plots: per feature, the deciding figure and its threshold, window by window."""
    features: dict[str, dict[str, Any]] = {}
    n = len(windows)
    for i, w in enumerate(windows):
        for name, r in (w.get("features") or {}).items():
            if not isinstance(r, dict):
                continue
            f = features.setdefault(
                str(name),
                {
                    "test": None,
                    "kind": r.get("kind"),
                    "p_value": [None] * n,
                    "statistic": [None] * n,
                    "threshold": [None] * n,
                    "drift": [0] * n,
                },
            )
            f["test"] = r.get("test") or f["test"]
            f["p_value"][i] = _num(r.get("p_value"))
            f["statistic"][i] = _num(r.get("statistic"))
            f["threshold"][i] = _num(r.get("threshold"))
            f["drift"][i] = 1 if r.get("drift") else 0
    for f in features.values():
        # A p-value test is plotted as its p-value (drift below the threshold); PSI and
        # Wasserstein as their statistic (drift above it).
        f["measure"] = "p_value" if any(v is not None for v in f["p_value"]) else "statistic"
    return {
        "x": list(range(1, n + 1)),
        "times": [_when(w.get("time")) for w in windows],
        "features": features,
    }


def _describe(r: dict[str, Any]) -> str:
    test = r.get("test") or "?"
    if r.get("p_value") is not None and r.get("threshold") is not None:
        return f"{test} p={r['p_value']:.2g} < {r['threshold']:.2g}"
    if r.get("statistic") is not None and r.get("threshold") is not None:
        return f"{test} {r['statistic']:.3g} ≥ {r['threshold']:.3g}"
    return test


@router.get("/drift")
async def drift_page(request: Request, session: Session = Depends(needs("read"))) -> HTMLResponse:
    rows = await in_thread(_summaries, _folder(request))
    return render(request, "drift.html", {"title": "Drift", "rows": rows, "window_count": _SUMMARY_WINDOWS})


@router.get("/drift/{name}")
async def drift_model_page(
    request: Request,
    name: str = Path(..., max_length=200),
    session: Session = Depends(needs("read")),
    limit: int = Query(500, ge=10, le=5000),
    page: int = Query(1, ge=1, le=1_000_000),
    per: int = Query(50, ge=10, le=200),
) -> HTMLResponse:
    check_name(name)  # RegistryError: a 400 page naming the model name; only checked names reach the reader
    history = await in_thread(read_drift_history, _folder(request), name, limit)
    windows = history["windows"]
    newest = list(reversed(windows))
    at = paging(len(newest), page, per)
    pages, page = at["pages"], at["page"]
    table = []
    for offset, w in enumerate(newest[(page - 1) * per : page * per]):
        feats = w.get("features") or {}
        drifted = [f"{k} ({_describe(feats[k])})" for k in (w.get("drifted") or []) if isinstance(feats.get(k), dict)]
        table.append(
            {
                "seq": len(windows) - (page - 1) * per - offset,
                "time": _when(w.get("time")),
                "model": str(w.get("model") or "-"),
                "source": str(w.get("source") or "-"),
                "window": w.get("window"),
                "rows": w.get("rows"),
                "partial": bool(w.get("partial")),
                "drift": bool(w.get("drift")),
                "drifted": drifted,
                "tested": len(feats),
            }
        )
    ctx = {
        "title": f"Drift of {name}",
        "name": name,
        "count": len(windows),
        "total": history["total"],
        "skipped": history["skipped"],
        "drifted": sum(1 for w in windows if w.get("drift")),
        "limit": limit,
        "table": table,
        "paging": {"page": page, "pages": pages, "per": per},
        "chart": _chart_data(windows),
    }
    return render(request, "drift_model.html", ctx)
