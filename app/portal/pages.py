"""Render our own pages inside SQLAdmin's layout, so the portal has one menu and one look."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from sqladmin.templating import Jinja2Templates
from starlette.responses import Response

from app.portal.csrf import csrf_token

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


async def render_page(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """Render `name` from app/portal/templates with the CSRF token and the signed-in user."""
    # SQLAdmin's Jinja environment (autoescaped)
    templates: Jinja2Templates = request.app.state.admin.templates
    user = getattr(request.state, "portal_user", None)
    full = {
        "csrf_token": csrf_token(request),
        "admin_username": request.session.get("admin_username"),
        # Pages show the buttons of this role only; the requests are checked regardless.
        "portal_role": user.role if user else None,
        **(context or {}),
    }
    return await templates.TemplateResponse(request, name, full, status_code=status_code)
