"""CSRF defences: refuse cross-site unsafe requests (Origin / Fetch Metadata), tokens in our forms.

SQLAdmin renders its forms without a token, so the middleware is what protects them (OWASP's
origin and Fetch-Metadata defences, with SameSite=Lax session cookies); forms of our own carry a
per-session token as well.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import HTTPException, Request
from starlette.datastructures import FormData, Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SAME_SITE_FETCH = frozenset({"same-origin", "none"})  # "none": typed in, bookmarked
TOKEN_FIELD = "csrf_token"
TOKEN_HEADER = "x-csrf-token"
_SESSION_KEY = "csrf"


def origin_of(url: str) -> str:
    """scheme://host[:port] of a URL, lower-cased."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class OriginCheckMiddleware:
    """Refuse unsafe methods sent from another site; `exempt` paths take cross-site posts."""

    def __init__(
        self, app: ASGIApp, *, trusted_origins: frozenset[str], exempt: tuple[str, ...]
    ) -> None:
        self.app = app
        self.trusted_origins = trusted_origins
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.exempt):
            await self.app(scope, receive, send)
            return
        reason = self._refusal(scope)
        if reason:
            response = PlainTextResponse(f"Cross-site request refused: {reason}", status_code=403)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> str | None:
        headers = Headers(scope=scope)
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in SAME_SITE_FETCH:
            return f"Sec-Fetch-Site is {fetch_site}"
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}".lower()
        allowed = self.trusted_origins | {own}
        origin = headers.get("origin")
        if origin is not None:
            return None if origin.lower() in allowed else f"Origin {origin} is not this site"
        referer = headers.get("referer")
        if referer and origin_of(referer) not in allowed:
            return "Referer is another site"
        # Neither header: not a browser (browsers send Origin on every cross-origin POST).
        return None


def csrf_token(request: Request) -> str:
    """This session's form token (created on first use)."""
    token = request.session.get(_SESSION_KEY)
    if not token:
        token = request.session[_SESSION_KEY] = secrets.token_urlsafe(32)
    return str(token)


def rotate_token(request: Request) -> None:
    """Give the session a fresh token (at login, so a token seen before login is useless)."""
    request.session[_SESSION_KEY] = secrets.token_urlsafe(32)


async def verified_form(request: Request) -> FormData:
    """The request's form, once its CSRF token matched the session's; 403 otherwise."""
    form = await request.form()
    sent = form.get(TOKEN_FIELD) or request.headers.get(TOKEN_HEADER) or ""
    expected = request.session.get(_SESSION_KEY) or ""
    if not (isinstance(sent, str) and expected and hmac.compare_digest(sent, expected)):
        raise HTTPException(
            status_code=403,
            detail="The form's security token is missing or out of date: reload the page.",
        )
    return form
