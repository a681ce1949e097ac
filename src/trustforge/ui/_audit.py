"""The audit pages of the dashboard (to be built)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from trustforge.ui._render import render
from trustforge.ui._session import Session, needs

router = APIRouter()


@router.get("/audit")
def audit_page(request: Request, session: Session = Depends(needs("audit_verify"))) -> HTMLResponse:
    return render(request, "placeholder.html", {"title": "Audit"})
