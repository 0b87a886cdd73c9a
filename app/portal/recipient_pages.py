"""The recipients' pages (unsubscribe, preferences): a small layout and stylesheet of their own,
outside the portal's frame, autoescaped Jinja, nothing fetched from elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from app.portal.pages import TEMPLATES_DIR

router = APIRouter()
STYLESHEET_PATH = "/recipient.css"
STYLESHEET = Path(__file__).resolve().parent / "assets" / "recipient.css"
_templates = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR / "public"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)


def recipient_page(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """`template` of templates/public/ (it extends their base.html), as an HTML response."""
    return HTMLResponse(_templates.get_template(template).render(**context), status_code=status)


def message_page(title: str, text: str, status: int = 200, tone: str = "") -> HTMLResponse:
    """A page that says one thing: `tone` is "ok", "bad" or "" (plain)."""
    return recipient_page("message.html", status, title=title, text=text, tone=tone)


@router.get(STYLESHEET_PATH, include_in_schema=False)
def stylesheet() -> FileResponse:
    return FileResponse(
        STYLESHEET, media_type="text/css", headers={"Cache-Control": "max-age=3600"}
    )
