"""The portal's FastAPI app factory."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from typing import TypeVar

from cachetools import TTLCache, cached
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.config import Settings, get_settings
from app.core import health
from app.core.metrics import DeadLetterCollector, StatusCollector
from app.db import dead_letters, stats
from app.db.session import session_scope
from app.portal import preferences, recipient_pages, unsubscribe, webhooks
from app.portal.admin import install_admin
from app.portal.body_guard import BodyGuard

T = TypeVar("T")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the portal app; routes read the settings from `app.state.settings`."""
    app = FastAPI(title="notify portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings or get_settings()
    app.include_router(webhooks.router)
    app.include_router(unsubscribe.router)
    app.include_router(preferences.router)
    app.include_router(recipient_pages.router)

    @app.get("/healthz", include_in_schema=True)
    def healthz(response: Response) -> dict[str, str]:
        response.status_code, body = health.report()
        return body

    status_gauges = CollectorRegistry(auto_describe=False)
    # Anyone may scrape: the gauges' queries run at most once per PORTAL_METRICS_CACHE_S.
    ttl = app.state.settings.portal_metrics_cache_s
    status_gauges.register(StatusCollector(_at_most_every(ttl, _read_status_counts)))
    status_gauges.register(DeadLetterCollector(_at_most_every(ttl, _read_dead_letter_counts)))

    @app.get(
        "/metrics",
        include_in_schema=True,
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    def prometheus_metrics() -> Response:
        body = generate_latest(REGISTRY) + generate_latest(status_gauges)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    install_admin(app, app.state.settings)  # admin UI at /admin, login, CSRF defences
    # Before anything reads the request (the CSRF check, the audit log, the handlers).
    app.add_middleware(BodyGuard, max_body_bytes=app.state.settings.portal_max_body_bytes)
    # Added last, so it is the outermost middleware: the login redirects and CSRF refusals of
    # the middlewares above get the headers too.
    app.add_middleware(SecurityHeaders)
    # The client address every check and record uses: the rightmost X-Forwarded-For hop that is
    # not a trusted proxy (here, not in uvicorn's options, so no FORWARDED_ALLOW_IPS=* applies).
    proxies = [p.strip() for p in app.state.settings.portal_trusted_proxies.split(",") if p.strip()]
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
    return app


# On every response: no framing of the portal (clickjacking), no MIME sniffing, and no Referer
# to other sites (an unsubscribe page's URL carries its token). Not `no-referrer`: under it a
# browser sends `Origin: null` with the portal's own forms, which the CSRF check refuses.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
# Scripts only from the portal itself, or inline with this response's nonce; nothing at all
# from other sites. The mail previews are srcdoc iframes, which inherit this policy: a remote
# image or stylesheet in a mail (a tracking pixel) is not fetched, so it cannot reveal that
# an admin looked. Inline styles stay allowed: SQLAdmin's pages and ours use style attributes.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS and the content security policy to every HTTP
    response of the portal; the policy's nonce is in `request.state.csp_nonce` for templates."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(16)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                headers.setdefault(
                    "Content-Security-Policy", CONTENT_SECURITY_POLICY.format(nonce=nonce)
                )
            await send(message)

        await self.app(scope, receive, with_headers)


def _at_most_every(ttl_s: float, read: Callable[[], T]) -> Callable[[], T]:
    """`read`, its answer reused for `ttl_s` seconds (0: read on every call)."""
    if ttl_s <= 0:
        return read
    return cached(TTLCache(maxsize=1, ttl=ttl_s), lock=threading.Lock())(read)


def _read_status_counts() -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    with session_scope() as session:
        return stats.notification_counts(session=session), stats.delivery_counts(session=session)


def _read_dead_letter_counts() -> dict[tuple[str, str], int]:
    with session_scope() as session:
        return dead_letters.counts(session=session)
