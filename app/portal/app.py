"""The portal's FastAPI app factory."""

from __future__ import annotations

from fastapi import FastAPI

from app.config import Settings, get_settings
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

    install_admin(app, app.state.settings)  # admin UI at /admin, login, CSRF defences
    return app
