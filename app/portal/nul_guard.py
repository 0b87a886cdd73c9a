"""Requests carrying a NUL character are refused with 400 before anything reads them.

PostgreSQL's text cannot hold NUL, so a `%00` in a list filter, a search box or a form field would
reach the database and fail there (a 500). No value of ours may contain one: the portal refuses
the request instead, naming why.
"""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Public endpoints that read their bodies under a size limit of their own (app/portal/bodies.py)
# and store nothing of a request but what they validate: they answer for a NUL themselves, in
# their documented formats, and their bodies are not read ahead here.
ANSWER_FOR_THEMSELVES = ("/webhooks/", "/unsubscribe")
FORM_NUL = {
    "application/x-www-form-urlencoded": b"%00",
    "multipart/form-data": b"\x00",
}


def _has_nul(query: bytes) -> bool:
    return b"%00" in query or b"\x00" in query


class RefuseNul:
    """ASGI middleware: 400 for a NUL in the query string or in a form's body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ANSWER_FOR_THEMSELVES):
            await self.app(scope, receive, send)
            return
        if _has_nul(scope.get("query_string", b"")):
            await self._refuse(scope, receive, send)
            return
        marker = self._form_marker(scope)
        if marker is None:
            await self.app(scope, receive, send)
            return
        # A form is read whole anyway (Starlette's parser): read it here first, then replay it.
        messages: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if marker in body:
            await self._refuse(scope, receive, send)
            return
        replay = iter(messages)

        async def replayed() -> Message:
            return next(replay, None) or await receive()

        await self.app(scope, replayed, send)

    @staticmethod
    def _form_marker(scope: Scope) -> bytes | None:
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip()
        return FORM_NUL.get(content_type.lower())

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        answer = PlainTextResponse("A NUL character is not allowed in a request.", status_code=400)
        await answer(scope, receive, send)
