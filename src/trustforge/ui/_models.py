"""The models pages: registered models, their versions with lineage and verification, and the
alias and tag changes a deployer (aliases) or trainer (tags) may make.

Reading goes through `Registry.list_models` / `list_versions` as the signed-in principal. The
list page reads the database only (four queries whatever the number of versions). The version
page verifies each version it shows with `Registry.verify_version` (the registry binding, then
decryption, signature, every file's digest and the manifest, as loading does, without building
the model): that reads and decrypts whole packages, so results are kept in `app.state` under the
version, its recorded manifest digest and the stored files' sizes and modification times, and a
reload does not redo them while the files stay as they were. Versions not reached within the
page's time budget say "not checked yet" (a reload goes on), never "verified".
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.exceptions import HTTPException

from trustforge.errors import IntegrityError, RegistryError, SecurityError
from trustforge.registry import ModelVersion, check_alias, check_name, check_tag_key
from trustforge.ui._render import paging, render
from trustforge.ui._session import Session, check_csrf, in_thread, needs, read_form

__all__ = ["router", "VerifyCache"]

router = APIRouter()

VERIFY_BUDGET_S = 4.0  # verification work one page view may do; the rest waits for a reload
_RUN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")  # what a run folder name may look like

# The flash message after a change (`?done=KEY&alias=..&version=..&key=..`): fixed texts, shown
# only while what they say is true of the versions on the page, so a crafted link can put neither
# words of its own nor a false confirmation under TrustForge's header.
DONE = {
    "alias-set": "@{alias} now points at version {version}.",
    "alias-removed": "@{alias} removed.",
    "tag-set": "Version {version}: tag {key} set.",
}


class VerifyCache:
    """Verification results by (name, version, recorded digest, stored files' stamp); bounded, thread-safe."""

    def __init__(self, max_entries: int = 20_000):
        self._lock = threading.Lock()
        self._items: dict[tuple, dict[str, Any]] = {}
        self.max_entries = max_entries

    def get(self, key: tuple) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: tuple, value: dict[str, Any]) -> None:
        with self._lock:
            if len(self._items) >= self.max_entries:
                self._items.pop(next(iter(self._items)))  # the oldest
            self._items[key] = value


def _cache(request: Request) -> VerifyCache:
    cache = getattr(request.app.state, "verify_cache", None)
    if cache is None:
        cache = request.app.state.verify_cache = VerifyCache()
    return cache


def _stamp(mv: ModelVersion) -> tuple:
    """The stored files as the file system describes them (name, size, mtime, inode): any
    rewrite of a file changes it, so a cached result never outlives the files it checked."""
    try:
        with os.scandir(mv.path) as it:
            return tuple(sorted((e.name, s.st_size, s.st_mtime_ns, s.st_ino) for e in it for s in [e.stat(follow_symlinks=False)]))
    except OSError:
        return ("missing",)


def _verify(registry: Any, mv: ModelVersion) -> dict[str, Any]:
    try:
        report = registry.verify_version(mv.name, mv.version)
    except IntegrityError as exc:
        return {"state": "failed", "reason": str(exc)[:400], "at": _now()}
    except SecurityError:
        return {"state": "failed", "reason": "the package cannot be opened with this workspace's keys", "at": _now()}
    except RegistryError as exc:  # deleted between the listing and the check
        return {"state": "failed", "reason": str(exc)[:400], "at": _now()}
    return {"state": "verified", "files": report["files"], "encrypted": report["encrypted"], "at": _now()}


def _verify_shown(registry: Any, cache: VerifyCache, shown: list[ModelVersion], budget_s: float) -> dict[int, dict[str, Any]]:
    """Version → verification state of the versions on the page: from the cache, or checked
    now while the budget lasts; "pending" for the rest."""
    started = time.monotonic()
    out: dict[int, dict[str, Any]] = {}
    for mv in shown:
        key = (mv.name, mv.version, mv.package_digest, _stamp(mv))
        found = cache.get(key)
        if found is None:
            if time.monotonic() - started > budget_s:
                out[mv.version] = {"state": "pending"}
                continue
            found = _verify(registry, mv)
            cache.put(key, found)
        out[mv.version] = found
    return out


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _when(iso: str | None) -> str:
    """An ISO-8601 time as `YYYY-MM-DD HH:MM UTC` (what a reader scans), or "-"."""
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso[:25]


def _valid(check: Any, text: str | None) -> bool:
    try:
        check(text)
    except RegistryError:
        return False
    return True


def _done(versions: list[ModelVersion], done: str | None, alias: str | None, version: int | None, key: str | None) -> str:
    """The flash message of `done` (a key of DONE), or "" when its parameters are not true now."""
    by_version = {mv.version: mv for mv in versions}
    mv = by_version.get(version) if version is not None else None
    if done == "alias-set" and mv is not None and alias in mv.aliases:
        return DONE[done].format(alias=alias, version=version)
    if done == "alias-removed" and _valid(check_alias, alias) and not any(alias in m.aliases for m in versions):
        return DONE[done].format(alias=alias)
    if done == "tag-set" and mv is not None and key in (mv.tags or {}):
        return DONE[done].format(version=version, key=key)
    return ""


def _run_link(request: Request, run: str | None) -> str | None:
    """The run's name when its folder exists under the workspace's runs folder (no link, no traversal)."""
    if not run or not _RUN.fullmatch(run) or ".." in run:
        return None
    folder = request.app.state.settings.runs_dir / run
    return run if folder.is_dir() and not folder.is_symlink() else None


@router.get("/models")
async def models_page(
    request: Request,
    session: Session = Depends(needs("read")),
    q: str = Query("", max_length=64),
    page: int = Query(1, ge=1, le=1_000_000),
    per: int = Query(50, ge=10, le=200),
) -> HTMLResponse:
    registry = request.app.state.registry.acting_as(session.principal)
    models = await in_thread(registry.list_models)
    needle = q.strip().lower()
    if needle:
        models = [m for m in models if needle in m["name"].lower() or any(needle in a.lower() for a in m["aliases"])]
    pager = paging(len(models), page, per)
    rows = [{**m, "changed": _when(m.get("updated_at") or m.get("created_at"))} for m in models[pager["start"] : pager["start"] + per]]
    ctx = {"title": "Models", "rows": rows, "q": q, "paging": pager}
    return render(request, "models.html", ctx)


@router.get("/models/{name}")
async def model_page(
    request: Request,
    name: str = Path(..., max_length=200),
    session: Session = Depends(needs("read")),
    page: int = Query(1, ge=1, le=1_000_000),
    per: int = Query(50, ge=10, le=200),
    done: str | None = Query(None, max_length=32),
    alias: str | None = Query(None, max_length=200),
    version: int | None = Query(None, ge=1, le=999_999_999),
    key: str | None = Query(None, max_length=200),
    tag: int | None = Query(None, ge=1, le=999_999_999),
) -> HTMLResponse:
    check_name(name)  # RegistryError: a 400 page naming the model name and what is wrong
    registry = request.app.state.registry.acting_as(session.principal)
    versions = await in_thread(registry.list_versions, name)
    if not versions:
        raise HTTPException(404, f"model name {name!r}: no such model (or it has no versions)")
    if tag is not None and tag not in {mv.version for mv in versions}:
        raise HTTPException(404, f"tag: model {name!r} has no version {tag}")
    newest_first = list(reversed(versions))
    pager = paging(len(newest_first), page, per)
    shown = newest_first[pager["start"] : pager["start"] + per]
    checks = await in_thread(_verify_shown, registry, _cache(request), shown, VERIFY_BUDGET_S)
    rows = [
        {
            "mv": mv,
            "created": _when(mv.created_at),
            "run": _run_link(request, mv.run),
            "check": checks[mv.version],
        }
        for mv in shown
    ]
    aliases = sorted(((a, mv.version) for mv in versions for a in mv.aliases), key=lambda t: t[0])
    ctx = {
        "title": f"Model {name}",
        "name": name,
        "rows": rows,
        "aliases": aliases,
        "all_versions": [mv.version for mv in newest_first],
        "latest": newest_first[0].version,
        "tag_version": tag or newest_first[0].version,
        "paging": pager,
        "done": _done(versions, done, alias, version, key),
        "pending": sum(1 for r in rows if r["check"]["state"] == "pending"),
        "failed": sum(1 for r in rows if r["check"]["state"] == "failed"),
    }
    return render(request, "model.html", ctx)


def _form_version(form: dict[str, str]) -> int:
    raw = form.get("version", "").strip()
    if not raw.isascii() or not raw.isdigit() or raw.startswith("0") or len(raw) > 9:
        raise RegistryError(f"version must be a positive integer; got {raw[:20]!r}")
    return int(raw)


def _back(name: str, done: str, **params: str | int) -> RedirectResponse:
    """Back to the model's page, with the flash message `done` (a key of DONE) and its parameters."""
    return RedirectResponse(f"/models/{name}?" + urlencode({"done": done, **params}), status_code=303)


@router.post("/models/{name}/aliases")
async def set_alias(
    request: Request, name: str = Path(..., max_length=200), session: Session = Depends(needs("alias"))
) -> RedirectResponse:
    form = await read_form(request)
    check_csrf(request, session, form)
    check_name(name)
    alias = check_alias(form.get("alias", "").strip())
    version = _form_version(form)
    registry = request.app.state.registry.acting_as(session.principal)
    await in_thread(registry.set_alias, name, alias, version)
    return _back(name, "alias-set", alias=alias, version=version)


@router.post("/models/{name}/aliases/{alias}/delete")
async def delete_alias(
    request: Request,
    name: str = Path(..., max_length=200),
    alias: str = Path(..., max_length=200),
    session: Session = Depends(needs("alias")),
) -> RedirectResponse:
    form = await read_form(request)
    check_csrf(request, session, form)
    check_name(name)
    check_alias(alias)
    registry = request.app.state.registry.acting_as(session.principal)
    await in_thread(registry.delete_alias, name, alias)
    return _back(name, "alias-removed", alias=alias)


@router.post("/models/{name}/versions/{version}/tags")
async def set_tag(
    request: Request,
    name: str = Path(..., max_length=200),
    version: int = Path(..., ge=1, le=999_999_999),
    session: Session = Depends(needs("tag")),
) -> RedirectResponse:
    form = await read_form(request)
    check_csrf(request, session, form)
    check_name(name)
    key = check_tag_key(form.get("key", "").strip())
    value = form.get("value", "")
    registry = request.app.state.registry.acting_as(session.principal)
    await in_thread(registry.set_tag, name, version, key, value)
    return _back(name, "tag-set", version=version, key=key)
