"""Who did what in the portal: every sign-in, and every change or send, with its outcome.

Every write request of a signed-in user is recorded by `AuditMiddleware`, refused ones and
those that end in an error too, with the form fields it sent: every field, secrets left out, each
name and value cut on its own, so no long field can push another out of the record. That covers
SQLAdmin's forms and ours alike, and a new form is audited without anyone remembering to. The
entry is written before the response leaves, so what a user was told happened is on record.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import audit
from app.db.session import session_scope
from app.domain.bounds import clip_text
from app.portal.body_guard import RequestRefused
from app.portal.roles import READ_METHODS, PortalUser

# Never stored: the CSRF token and anything that looks like a password.
SECRET_FIELDS = frozenset({"csrf_token", "password", "password_confirm"})
MAX_NAME_CHARS = 100
MAX_VALUE_CHARS = 300
# As many fields as Starlette's parser gives the handlers: a form it refuses, they never saw.
MAX_FIELDS = 1000
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def record(
    request: Request,
    action: str,
    target: str,
    outcome: int,
    *,
    actor: str | None,
    detail: dict[str, object] | None = None,
) -> None:
    """Write one audit entry (for what no middleware sees, e.g. sign-ins)."""
    client = request.client.host if request.client else None
    await run_in_threadpool(_write, actor, action, target, outcome, client, detail)


async def form_detail(content_type: str, body: bytes) -> dict[str, object] | None:
    """The fields of a form (urlencoded or multipart) as {name: value}: secrets dropped, long
    values cut, an uploaded file as its name and size. Other bodies: their type and size."""
    kind = clip_text(content_type, MAX_NAME_CHARS)
    if not content_type.startswith(FORM_TYPES):
        return {"content_type": kind, "bytes": len(body)} if body else None
    try:
        form = await _parse_form(content_type, body)
    except Exception:  # noqa: BLE001 - not a form after all: the handler could not read it either
        head = clip_text(body[:MAX_VALUE_CHARS].decode("utf-8", "replace"), MAX_VALUE_CHARS)
        return {"content_type": kind, "bytes": len(body), "unparsed": True, "head": head}
    fields: dict[str, Any] = {}
    for raw_name, value in form.multi_items():
        if raw_name in SECRET_FIELDS:
            continue
        name = clip_text(raw_name, MAX_NAME_CHARS)
        if isinstance(value, UploadFile):
            text = f"<file {clip_text(value.filename or '', MAX_NAME_CHARS)!r}, {value.size} bytes>"
        else:
            text = clip_text(value, MAX_VALUE_CHARS)
        fields[name] = text if name not in fields else f"{fields[name]}, {text}"
    return {"fields": fields} if fields else None


async def _parse_form(content_type: str, body: bytes) -> FormData:
    # Starlette's own parser, over the bytes the handler already read.
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"content-type", content_type.encode())],
    }
    request = Request(scope, replay)
    try:
        return await request.form(max_fields=MAX_FIELDS)
    finally:
        await request.close()


class AuditMiddleware:
    """Records every write request of a signed-in user (runs inside the login check).

    The body is kept whole as the handler reads it: the body guard outside has bounded it to the
    route's limit. A request that ends in an exception instead of an answer is recorded with the
    status it ends in (500, or the body guard's refusal).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user: PortalUser | None = scope.get("state", {}).get("portal_user")
        if scope["type"] != "http" or user is None or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        refused: list[RequestRefused] = []  # the body guard's answer replaces the handler's
        recorded = False

        async def capturing() -> Message:
            try:
                message = await receive()
            except RequestRefused as exc:
                refused.append(exc)
                raise
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        async def recording(message: Message) -> None:
            nonlocal recorded
            if message["type"] == "http.response.start" and not recorded:
                recorded = True
                status = refused[0].status if refused else int(message["status"])
                await self._write(scope, user, status, b"".join(chunks))
            await send(message)

        try:
            await self.app(scope, capturing, recording)
        except Exception as exc:
            if not recorded:
                status = exc.status if isinstance(exc, RequestRefused) else 500
                recorded = True
                await self._write(scope, user, status, b"".join(chunks))
            raise

    @staticmethod
    async def _write(scope: Scope, user: PortalUser, status: int, body: bytes) -> None:
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        target = scope["path"] + (f"?{query}" if query else "")
        client = scope["client"][0] if scope.get("client") else None
        detail = await form_detail(content_type, body)
        await run_in_threadpool(
            _write, user.username, scope["method"], target, status, client, detail
        )


def _write(
    actor: str | None,
    action: str,
    target: str,
    outcome: int,
    client: str | None,
    detail: dict[str, object] | None,
) -> None:
    with session_scope() as session:
        audit.add(
            session=session,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            client=client,
            detail=detail,
        )
