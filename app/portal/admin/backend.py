"""SQLAdmin's authentication backend over the portal's own session and login page."""

from __future__ import annotations

from sqladmin.authentication import AuthenticationBackend
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.portal.session_guard import SESSION_USER


class PortalAuthBackend(AuthenticationBackend):
    """Trust the portal session; LoginRequiredMiddleware has already checked it per request."""

    def __init__(self) -> None:
        # No session middleware of SQLAdmin's own: the app-wide one owns the cookie.
        self.middlewares = []

    async def login(self, request: Request) -> Response | bool:
        return RedirectResponse("/login", status_code=303)

    async def logout(self, request: Request) -> Response | bool:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def authenticate(self, request: Request) -> Response | bool:
        return bool(request.session.get(SESSION_USER))

    async def get_user_id(self, request: Request) -> str | None:
        return request.session.get(SESSION_USER)
