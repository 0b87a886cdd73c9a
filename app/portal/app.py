"""The portal's FastAPI app factory."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings, get_settings
from app.core.metrics import DeadLetterCollector, StatusCollector
from app.db import dead_letters, stats
from app.db.session import session_scope
from app.portal import unsubscribe, webhooks
from app.portal.admin import install_admin


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the portal app; routes read the settings from `app.state.settings`."""
    app = FastAPI(title="notify portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings or get_settings()
    app.include_router(webhooks.router)
    app.include_router(unsubscribe.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    status_gauges = CollectorRegistry(auto_describe=False)
    status_gauges.register(StatusCollector(_read_status_counts))
    status_gauges.register(DeadLetterCollector(_read_dead_letter_counts))

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        body = generate_latest(REGISTRY) + generate_latest(status_gauges)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    install_admin(app, app.state.settings)  # admin UI at /admin, login, CSRF defences
    # Added last, so it is the outermost middleware: the login redirects and CSRF refusals of
    # the middlewares above get the headers too.
    app.add_middleware(SecurityHeaders)
    return app


# On every response: no framing of the portal (clickjacking), no MIME sniffing, and no Referer
# to other sites (an unsubscribe page's URL carries its token). Not `no-referrer`: under it a
# browser sends `Origin: null` with the portal's own forms, which the CSRF check refuses.
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS to every HTTP response of the portal."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def _read_status_counts() -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    with session_scope() as session:
        return stats.notification_counts(session=session), stats.delivery_counts(session=session)


def _read_dead_letter_counts() -> dict[tuple[str, str], int]:
    with session_scope() as session:
        return dead_letters.counts(session=session)
