"""The recipients' preference center: how often they hear from us, per kind of mail.

Every non-transactional mail links here with a signed token (next to the one-click unsubscribe).
GET shows the current choices (link scanners follow GETs: a GET changes nothing); POST, with the
token in the form, saves them. A change applies from the next period the jobs plan.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.core.clock import utcnow
from app.db import preferences as store
from app.domain.preferences import CHOICES, LABELS, PREFERENCES_TOKEN_KIND, check_choice
from app.domain.tokens import InvalidToken, read_unsubscribe_token
from app.portal.bodies import BodyTooLarge, read_body
from app.portal.database import DatabaseDep
from app.portal.recipient_pages import message_page, recipient_page

router = APIRouter()
PAGE_PATH = "/preferences"  # the links app.jobs.links.preferences_url makes
FORM_BYTES = 16 * 1024
CHOICE_LABELS = {"daily": "Daily", "weekly": "Weekly", "off": "Off", "on": "On"}


def _user_of(request: Request, token: str | None) -> uuid.UUID:
    if not token:
        raise InvalidToken("no token")
    found = read_unsubscribe_token(
        secret=request.app.state.settings.secret_key.get_secret_value(), token=token, now=utcnow()
    )
    if found.kind != PREFERENCES_TOKEN_KIND:
        raise InvalidToken("not a preference link")
    return found.user_id


def _invalid(reason: str) -> HTMLResponse:
    text = f"This preference link is not valid ({reason}). Nothing was changed."
    return message_page("Link not valid", text, status=400, tone="bad")


def _form(token: str, current: dict[str, str], saved: str = "") -> HTMLResponse:
    groups = [
        {
            "kind": kind,
            "label": LABELS[kind],
            "choices": [
                {"value": c, "label": CHOICE_LABELS[c], "checked": current[kind] == c}
                for c in choices
            ],
        }
        for kind, choices in CHOICES.items()
    ]
    return recipient_page(
        "preferences.html",
        title="Your e-mail preferences",
        action=PAGE_PATH,
        token=token,
        groups=groups,
        saved=saved,
    )


@router.get(PAGE_PATH, include_in_schema=False, response_class=HTMLResponse)
async def page(request: Request, db: DatabaseDep, token: str | None = None) -> HTMLResponse:
    """The recipient's current choices, in a form."""
    try:
        user_id = _user_of(request, token)
    except InvalidToken as exc:
        return _invalid(str(exc))
    assert token is not None
    current = await db.run(store.current, user_id=user_id)
    return _form(token, current)


@router.post(PAGE_PATH, include_in_schema=False, response_class=HTMLResponse)
async def save(request: Request, db: DatabaseDep) -> HTMLResponse:
    """Save the choices of the form (the token in it says whose)."""
    try:
        body = await read_body(request, FORM_BYTES)
    except BodyTooLarge:
        return _invalid("the form is too large")
    fields = parse_qs(body.decode("utf-8", "replace"))
    token = (fields.get("token") or [""])[0]
    try:
        user_id = _user_of(request, token)
        given = {kind: (fields.get(kind) or [""])[0] for kind in CHOICES if kind in fields}
        chosen = {check_choice(kind, choice): choice for kind, choice in given.items()}
    except (InvalidToken, ValueError) as exc:
        return _invalid(str(exc))
    changed = await db.run(store.choose_all, user_id=user_id, chosen=chosen)
    current = await db.run(store.current, user_id=user_id)
    saved = (
        "Saved: from the next mail on, we follow these choices." if changed else "Nothing changed."
    )
    return _form(token, current, saved)
