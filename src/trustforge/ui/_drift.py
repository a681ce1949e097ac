"""The drift pages of the dashboard (to be built)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from trustforge.ui._render import render
from trustforge.ui._session import Session, needs

router = APIRouter()


@router.get("/drift")
def drift_page(request: Request, session: Session = Depends(needs("read"))) -> HTMLResponse:
    return render(request, "placeholder.html", {"title": "Drift"})
