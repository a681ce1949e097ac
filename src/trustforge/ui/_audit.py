"""The audit page: the log, newest first, paged and filtered in the database by actor, action
and outcome, with refusals highlighted, and the result of verifying the chain.

Verifying reads every entry (and checks one signature per checkpoint), so its result is kept
per process with the time it was taken and shown with that time; the page verifies on the
first visit and whenever an admin asks for it again (`?verify=1`). One verification runs at a
time: asking again while one runs waits for it rather than starting a second.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from trustforge.secure import AuditReport
from trustforge.ui._render import paging, render
from trustforge.ui._session import Session, in_thread, needs

router = APIRouter()

OUTCOMES = ("ok", "denied", "error")
_MAX_CHOICES = 1000  # distinct actors/actions offered in a filter
_CHOICES_TTL_S = 60.0
_DETAILS_SHOWN = 400  # characters of an entry's details shown in the table
_verify_lock = threading.Lock()


@dataclass(frozen=True)
class Verified:
    """One verification of the chain: its report, when it was taken and how many entries the log
    held then (so the page can say how many were written since)."""

    report: AuditReport
    at: str  # UTC, "YYYY-MM-DD HH:MM:SS"
    total: int


class BadFilter(Exception):
    """A filter value that the log does not hold (400, naming the field)."""


def _verify(audit, state, force: bool) -> Verified:
    with _verify_lock:
        cached: Verified | None = getattr(state, "audit_verified", None)
        if cached is not None and not force:
            return cached
        total = audit.count()
        report = audit.verify()
        result = Verified(report, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"), total)
        state.audit_verified = result
        return result


def _choices(audit, state, field: str) -> list[str]:
    """The values of `field` to filter by, read at most once a minute: a DISTINCT over the whole
    log costs about 0.1 s per 100,000 entries, too much for every page view."""
    if field == "outcome":
        return list(OUTCOMES)
    cache = getattr(state, "audit_choices", None)
    if cache is None:
        cache = state.audit_choices = {}
    now = time.monotonic()
    hit = cache.get(field)
    if hit is not None and now - hit[0] < _CHOICES_TTL_S:
        return list(hit[1])
    values = audit.values(field, limit=_MAX_CHOICES)
    cache[field] = (now, values)
    return list(values)


def _check_choice(audit, state, field: str, value: str | None) -> tuple[str | None, list[str]]:
    """(the filter value, or None for any; the values to choose from, the chosen one included).

    Raises:
        BadFilter: a value that no entry holds.
    """
    choices = _choices(audit, state, field)
    if value is None or value == "":
        return None, choices
    if value in choices:
        return value, choices
    # Written since the values were read, or past the limit of those offered: look for it directly.
    if field != "outcome" and audit.count(**{field: value}) > 0:
        return value, sorted([*choices, value])
    raise BadFilter(f"{field}: choose one of the values in the list (no entry has the one given)")


def _read(audit, state, actor, action, outcome, page: int, per: int, force: bool) -> dict:
    actor, actors = _check_choice(audit, state, "actor", actor)
    action, actions = _check_choice(audit, state, "action", action)
    outcome, _ = _check_choice(audit, state, "outcome", outcome)
    total = audit.count(actor=actor, action=action, outcome=outcome)
    at = paging(total, page, per)
    pages, page = at["pages"], at["page"]
    rows = audit.entries(limit=per, offset=(page - 1) * per, actor=actor, action=action, outcome=outcome)
    verified = _verify(audit, state, force)
    return {
        "rows": [_row(r) for r in rows],
        "total": total,
        "page": page,
        "pages": pages,
        "per": per,
        "actor": actor or "",
        "action": action or "",
        "outcome": outcome or "",
        "actors": actors,
        "actions": actions,
        "outcomes": OUTCOMES,
        "verified": verified,
        "now_total": audit.count(),
    }


# Plain words beside the action codes of the log, naming what was attempted (the outcome column
# says whether it was allowed); a code not listed is shown as it is.
ACTION_LABELS = {
    "read": "read",
    "register": "model registration",
    "load": "model load",
    "alias": "alias change",
    "tag": "version tag",
    "delete": "deletion",
    "gc": "storage clean-up",
    "keys": "key management",
    "users": "user management",
    "authenticate": "token sign-in",
    "audit_verify": "audit log check",
    "audit_upgrade": "audit log upgrade",
    "audit_adopt": "audit log adoption",
    "backup": "backup or restore",
    "export": "export",
    "mask": "masking",
    "unmask": "unmasking",
    "ui_signin": "dashboard sign-in",
    "ui_signout": "dashboard sign-out",
    "serve_rate_limited": "rate limit",
    "serve_probe_alert": "probing alert",
}


def _details_text(details) -> str:
    """An entry's details as `key: value` lines (values that are not text as compact JSON)."""
    if isinstance(details, dict):
        lines = []
        for key in sorted(details):
            value = details[key]
            if not isinstance(value, str):
                value = json.dumps(value, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)
            lines.append(f"{key}: {value}")
        return "\n".join(lines)
    if isinstance(details, str):
        return details
    return json.dumps(details, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)


def _row(entry: dict) -> dict:
    details = _details_text(entry["details"])
    if details in ("{}", "", "null"):
        details = ""
    elif len(details) > _DETAILS_SHOWN:
        details = details[: _DETAILS_SHOWN - 1] + "…"
    return {
        "seq": entry["seq"],
        "time": str(entry["time"])[:19].replace("T", " "),
        "actor": entry["actor"],
        "action": entry["action"],
        "action_label": ACTION_LABELS.get(entry["action"], ""),
        "object": entry["object"],
        "outcome": entry["outcome"],
        "details": details,
    }


def _link(ctx: dict, **changes) -> str:
    """/audit with the current filters and paging, some changed (empty values left out)."""
    params = {"actor": ctx["actor"], "action": ctx["action"], "outcome": ctx["outcome"], "per": ctx["per"], "page": ctx["page"]}
    params.update(changes)
    if params["per"] == 50:
        params.pop("per")
    if params.get("page") == 1:
        params.pop("page")
    return "/audit" + ("?" + urlencode({k: v for k, v in params.items() if v not in ("", None)}) if any(params.values()) else "")


@router.get("/audit")
async def audit_page(
    request: Request,
    page: int = Query(1, ge=1, le=10_000_000),
    per: int = Query(50, ge=10, le=200),
    actor: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=64),
    outcome: str | None = Query(None, max_length=16),
    verify: int = Query(0, ge=0, le=1),
    session: Session = Depends(needs("audit_verify")),
) -> HTMLResponse:
    """The audit log (needs `audit_verify`, admins only)."""
    audit = request.app.state.audit
    try:
        ctx = await in_thread(_read, audit, request.app.state, actor, action, outcome, page, per, bool(verify))
    except BadFilter as exc:
        return render(request, "error.html", {"title": "Bad request", "message": str(exc)}, 400)
    ctx["first"] = (ctx["page"] - 1) * per + 1
    ctx["prev_link"] = _link(ctx, page=ctx["page"] - 1) if ctx["page"] > 1 else ""
    ctx["next_link"] = _link(ctx, page=ctx["page"] + 1) if ctx["page"] < ctx["pages"] else ""
    ctx["verify_link"] = _link(ctx, verify=1)
    ctx["filtered"] = bool(ctx["actor"] or ctx["action"] or ctx["outcome"])
    return render(request, "audit.html", {"title": "Audit", **ctx})
