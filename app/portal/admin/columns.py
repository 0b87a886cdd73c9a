"""What the admin views share: column formatters, filter choices, the way to a confirmation."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response


def choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


def when(model: Any, attr: Any) -> str:
    value = getattr(model, attr if isinstance(attr, str) else attr.key)
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def to_confirmation(request: Request, page: str) -> Response:
    # SQLAdmin runs list actions as GETs, which a cross-site link could trigger: an action with
    # effects only leads to our page, which asks, and acts on a POST with a form token.
    ids = request.query_params.get("pks", "")
    return RedirectResponse(f"{page}?ids={quote(ids, safe=',')}", status_code=302)


def error_code(model: Any, _attr: Any) -> Markup | str:
    return Markup("<code>{}</code>").format(model.error[:200]) if model.error else ""
