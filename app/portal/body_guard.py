"""Every request body read under a size limit, and a NUL in a form refused, before any handler.

A body is what an anonymous client controls most cheaply: sent without a `Content-Length`
(chunked), it can be as long as the client likes. So a declared length over the route's limit is
answered 413 when something first reads the body, before a byte is taken, and an undeclared one
is counted as it is read: the moment it passes the limit, the request ends in a 413, whichever
handler or parser was reading it (nothing has acted on a form that is not whole). A route that
never reads its body answers as it would. Nothing is buffered here: the body flows through to
the handler chunk by chunk.

PostgreSQL's text cannot hold NUL, so a `%00` in a list filter, a search box or a form field would
reach the database and fail there (a 500). The portal refuses such a request with a 400 naming
why: the query string is checked at once, a form's body chunk by chunk as it passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Public forms are a handful of short fields: sign-in, sign-out, the preference and one-click
# unsubscribe forms. Everything else (admin forms, templates, the JSON API, provider webhooks)
# gets PORTAL_MAX_BODY_BYTES.
SMALL_FORM_PATHS = frozenset({"/login", "/logout", "/preferences", "/unsubscribe"})
SMALL_FORM_BYTES = 16 * 1024
# A campaign's audience may come as a CSV file of up to MAX_CSV_BYTES, beside the form's fields.
MAX_CSV_BYTES = 20 * 1024 * 1024
UPLOAD_PATHS = {"/admin/mailings/new": MAX_CSV_BYTES + 256 * 1024}
# Public endpoints that answer for a NUL themselves, in their documented formats (the webhook's
# JSON, the unsubscribe page): their bodies are limited here, not searched.
ANSWER_FOR_THEMSELVES = ("/webhooks/", "/unsubscribe")
NUL_REFUSED = "A NUL character is not allowed in a request."
FORM_NUL = {
    "application/x-www-form-urlencoded": b"%00",
    "multipart/form-data": b"\x00",
}


def body_limit(path: str, default: int) -> int:
    """The most bytes a request to `path` may send."""
    if path in SMALL_FORM_PATHS:
        return SMALL_FORM_BYTES
    return UPLOAD_PATHS.get(path, default)


def _has_nul(query: bytes) -> bool:
    return b"%00" in query or b"\x00" in query


class RequestRefused(Exception):
    """Raised into whoever reads the body: the request ends with this status and reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(slots=True)
class _Reading:
    """What a request's body has shown so far."""

    limit: int
    marker: bytes | None
    size: int = 0
    tail: bytes = b""  # the last bytes seen, so a marker split across two chunks is found

    def check(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise RequestRefused(413, f"The request body is over {self.limit:,} bytes.")
        if self.marker is not None and chunk:
            window = self.tail + chunk
            if self.marker in window:
                raise RequestRefused(400, NUL_REFUSED)
            self.tail = window[-(len(self.marker) - 1) :] if len(self.marker) > 1 else b""


class BodyGuard:
    """ASGI middleware: the body limit of every route, and no NUL in a query or a form."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        searched = not path.startswith(ANSWER_FOR_THEMSELVES)
        if searched and _has_nul(scope.get("query_string", b"")):
            await _answer(scope, receive, send, RequestRefused(400, NUL_REFUSED))
            return
        headers = dict(scope.get("headers") or [])
        reading = _Reading(
            limit=body_limit(path, self.max_body_bytes),
            marker=_form_marker(headers) if searched else None,
        )
        declared = headers.get(b"content-length", b"").strip()
        # A declared length over the limit is refused at the first read, before a byte is
        # taken: the middlewares inside (the audit log) see the refusal as any other.
        too_long = declared.isdigit() and int(declared) > reading.limit
        refused: list[RequestRefused] = []
        started = False

        async def counted() -> Message:
            if too_long and not refused:
                refused.append(
                    RequestRefused(413, f"The request body is over {reading.limit:,} bytes.")
                )
            if refused:  # a reader that swallowed the refusal and reads on gets no more
                raise refused[0]
            message = await receive()
            if message["type"] == "http.request":
                try:
                    reading.check(message.get("body", b""))
                except RequestRefused as exc:
                    refused.append(exc)
                    raise
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if refused:  # the handler answered its parser's error: the refusal is the answer
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except Exception:  # noqa: BLE001 - whatever a reader made of the refusal, it stands
            if not refused:
                raise
        if refused and not started:
            await _answer(scope, receive, send, refused[0])


def _form_marker(headers: dict[bytes, bytes]) -> bytes | None:
    content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
    return FORM_NUL.get(content_type.lower())


async def _answer(scope: Scope, receive: Receive, send: Send, refusal: RequestRefused) -> None:
    # The rest of the body is never read: the server closes the connection after this answer.
    answer = PlainTextResponse(refusal.reason, status_code=refusal.status)
    answer.headers["Connection"] = "close"
    await answer(scope, receive, send)
