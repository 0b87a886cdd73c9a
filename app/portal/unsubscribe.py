"""RFC 8058 one-click unsubscribe: POST records the opt-out; GET shows a page with a button."""

from __future__ import annotations

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
from app.portal.recipient_pages import message_page, recipient_page

router = APIRouter()

LABELS = {"likes": "like digests", "mailing": "mailings"}
# A one-click form carries a token and a field or two: nothing near this.
UNSUBSCRIBE_BODY_BYTES = 16 * 1024


def _invalid(reason: str) -> HTMLResponse:
    text = f"This unsubscribe link is not valid ({reason}). Nothing was changed."
    return message_page("Link not valid", text, status=400, tone="bad")


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
    action = str(request.url.include_query_params(token=token))
    return recipient_page(
        "unsubscribe.html", title="Unsubscribe", label=LABELS[found.kind], action=action
    )


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
    return message_page("Unsubscribed", text, tone="ok")


# GET and POST are two routes, so a 405 from the router would name only the first in `Allow`.
OTHER_METHODS = ["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"]


@router.api_route("/unsubscribe", methods=OTHER_METHODS, include_in_schema=False)
def other_methods() -> Response:
    """405 with the methods /unsubscribe takes."""
    return Response(status_code=405, headers={"Allow": "GET, POST"})
