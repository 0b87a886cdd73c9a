"""Who did what in the portal: every sign-in, and every change or send, with its outcome.

Every write request of a signed-in user is recorded by `AuditMiddleware`, refused ones too,
with the form fields it sent (secrets left out, long values cut): that covers SQLAdmin's forms
and ours alike, and a new form is audited without anyone remembering to. The entry is written
before the response leaves, so what a user was told happened is on record.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.db import audit
from app.db.session import session_scope
from app.portal.roles import READ_METHODS, PortalUser

# Never stored: the CSRF token and anything that looks like a password.
SECRET_FIELDS = frozenset({"csrf_token", "password", "password_confirm"})
MAX_CAPTURED_BYTES = 64 * 1024
MAX_VALUE_CHARS = 300
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
    if not content_type.startswith(FORM_TYPES):
        return {"content_type": content_type[:100], "bytes": len(body)} if body else None
    try:
        form = await _parse_form(content_type, body)
    except Exception:  # noqa: BLE001 - a body cut at the capture limit, or not a form after all
        return {"content_type": content_type[:100], "bytes": len(body), "unparsed": True}
    fields: dict[str, Any] = {}
    for name, value in form.multi_items():
        if name in SECRET_FIELDS:
            continue
        if isinstance(value, UploadFile):
            text = f"<file {value.filename!r}, {value.size} bytes>"
        else:
            text = value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "…"
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
        return await request.form(max_files=100, max_fields=10_000)
    finally:
        await request.close()


class AuditMiddleware:
    """Records every write request of a signed-in user (runs inside the login check)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user: PortalUser | None = scope.get("state", {}).get("portal_user")
        if scope["type"] != "http" or user is None or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        body = bytearray()

        async def capturing() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(body) < MAX_CAPTURED_BYTES:
                body.extend(message.get("body", b"")[: MAX_CAPTURED_BYTES - len(body)])
            return message

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                await self._write(scope, user, int(message["status"]), bytes(body))
            await send(message)

        await self.app(scope, capturing, recording)

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
