"""RFC 8058 one-click unsubscribe: POST records the opt-out; GET shows a page with a button."""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from app.core.clock import utcnow
from app.delivery import feedback
from app.domain.tokens import InvalidToken, Unsubscribe, read_unsubscribe_token
from app.domain.vocabulary import CHOOSABLE_KINDS, UNSUBSCRIBABLE_KINDS, one_of
from app.portal.api_models import UNSUBSCRIBE_FORM_OPENAPI, html_page
from app.portal.bodies import BodyTooLarge, read_body

router = APIRouter()

LABELS = {"likes": "like digests", "mailing": "mailings"}
# A one-click form carries a token and a field or two: nothing near this.
UNSUBSCRIBE_BODY_BYTES = 16 * 1024

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: Arial, Helvetica, sans-serif; max-width: 480px; margin: 48px auto;">
<h1 style="font-size: 22px;">{title}</h1>
{content}
</body></html>"""


def public_page(title: str, content: str, status: int = 200) -> HTMLResponse:
    """A page of the public endpoints (unsubscribe, preferences): plain, no portal layout."""
    return HTMLResponse(PAGE.format(title=html.escape(title), content=content), status_code=status)


def _invalid(reason: str) -> HTMLResponse:
    text = f"This unsubscribe link is not valid ({html.escape(reason)}). Nothing was changed."
    return public_page("Link not valid", f"<p>{text}</p>", status=400)


def _read(request: Request, token: str | None) -> Unsubscribe:
    if not token:
        raise InvalidToken("no token")
    found = read_unsubscribe_token(
        secret=request.app.state.settings.secret_key.get_secret_value(), token=token, now=utcnow()
    )
    if found.kind not in UNSUBSCRIBABLE_KINDS:
        raise InvalidToken("not an unsubscribable kind of mail")
    return found


@router.get(
    "/unsubscribe",
    include_in_schema=True,
    response_class=HTMLResponse,
    responses={
        200: html_page("The confirmation page, with its one-click form."),
        400: html_page("The link is not valid: malformed, forged or expired."),
    },
)
def confirm_page(request: Request, token: str | None = None) -> HTMLResponse:
    """Ask before unsubscribing: link scanners follow GETs, so a GET changes nothing."""
    try:
        found = _read(request, token)
    except InvalidToken as exc:
        return _invalid(str(exc))
    action = html.escape(str(request.url.include_query_params(token=token)), quote=True)
    form = (
        f"<p>Stop receiving {LABELS[found.kind]} from us?</p>"
        f'<form method="post" action="{action}">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>'
    )
    return public_page("Unsubscribe", form)


@router.post(
    "/unsubscribe",
    include_in_schema=True,
    response_class=HTMLResponse,
    responses={
        200: html_page("Unsubscribed."),
        400: html_page(
            "The link is not valid (malformed, forged or expired), or the form too large."
        ),
    },
    openapi_extra=UNSUBSCRIBE_FORM_OPENAPI,
)
async def one_click(request: Request, token: str | None = None) -> HTMLResponse:
    """Record the opt-out (mailbox providers POST `List-Unsubscribe=One-Click` here)."""
    if token is None:  # a form may carry it in the body instead of the URL
        try:
            body = await read_body(request, UNSUBSCRIBE_BODY_BYTES)
        except BodyTooLarge:
            return _invalid("the form is too large")
        fields = parse_qs(body.decode("utf-8", "replace"))
        tokens = fields.get("token")
        token = tokens[0] if tokens else None
    try:
        found = _read(request, token)
    except InvalidToken as exc:
        return _invalid(str(exc))
    kind = one_of(found.kind, CHOOSABLE_KINDS, "kind")  # _read refused the others
    await run_in_threadpool(feedback.unsubscribe, user_id=found.user_id, kind=kind)
    text = f"You will no longer receive {LABELS[kind]} from us."
    return public_page("Unsubscribed", f"<p>{html.escape(text)}</p>")


# GET and POST are two routes, so a 405 from the router would name only the first in `Allow`.
OTHER_METHODS = ["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


@router.api_route("/unsubscribe", methods=OTHER_METHODS, include_in_schema=False)
def other_methods() -> Response:
    """405 with the methods /unsubscribe takes."""
    return Response(status_code=405, headers={"Allow": "GET, POST"})
