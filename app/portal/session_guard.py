"""What every portal request is checked for after sign-in: a live session of an active user
(revocable, bounded in age), and a role that allows the request. Public routes pass as they are.
"""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote

from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.db import admin_users
from app.db.session import session_scope
from app.portal.roles import PortalUser, least_role, may

SESSION_USER = "admin_user_id"
SESSION_NAME = "admin_username"
SESSION_VERSION = "admin_session_version"
SESSION_STARTED = "admin_session_started"  # epoch seconds of the sign-in
# Routes anyone may reach: provider webhooks, unsubscribe links in mail, login, health, and the
# Prometheus scrape (counts only, no personal data).
PUBLIC_PATHS = frozenset(
    {"/login", "/healthz", "/metrics", "/unsubscribe", "/preferences", "/recipient.css"}
)
PUBLIC_PREFIXES = ("/webhooks/",)
API_PREFIX = "/admin/api/"


class SessionCheck:
    """Whether a session is still good: its user active, its version the user's current one.

    The answer is kept for `recheck_s`, so a request costs no query; within one portal process
    a logout ends the user's sessions at once (`forget`), elsewhere (a password set with the
    CLI, a second portal process) within `recheck_s`.
    """

    def __init__(self, *, recheck_s: float = 10.0) -> None:
        self.recheck_s = recheck_s
        self._known: dict[str, tuple[admin_users.SessionState, float]] = {}

    async def current(self, user_id: str, version: object) -> admin_users.SessionState | None:
        known = self._known.get(user_id)
        if known is None or known[1] <= time.monotonic():
            try:
                key = uuid.UUID(user_id)
            except ValueError:
                return None
            state = await run_in_threadpool(_session_state, key)
            if state is None:
                self._known.pop(user_id, None)
                return None
            known = (state, time.monotonic() + self.recheck_s)
            self._known[user_id] = known
        return known[0] if known[0].session_version == version else None

    def forget(self, user_id: str) -> None:
        self._known.pop(user_id, None)


class LoginRequiredMiddleware:
    """Every route but the public ones needs a live session of an active user, who is put in
    `request.state.portal_user`.

    A session lives at most `lifetime_s` from its sign-in, however busy: the cookie is signed
    again on every response, so its own expiry only ends an idle one.
    """

    def __init__(self, app: ASGIApp, *, check: SessionCheck, lifetime_s: float) -> None:
        self.app = app
        self.check = check
        self.lifetime_s = lifetime_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/admin/login":  # SQLAdmin's own login page: ours is /login
            await RedirectResponse("/login", status_code=303)(scope, receive, send)
            return
        session = scope["session"]
        user_id = session.get(SESSION_USER)
        started = session.get(SESSION_STARTED)
        fresh = isinstance(started, int) and time.time() - started < self.lifetime_s
        state = None
        if user_id and fresh:
            state = await self.check.current(user_id, session.get(SESSION_VERSION))
        if state is None:
            if user_id:
                session.clear()  # ended (logout, new password, too old), deactivated or deleted
            # An anonymous session keeps its login-form token: the browser's own requests (e.g.
            # /favicon.ico) land here between showing the login form and posting it.
            await self._refuse(scope)(scope, receive, send)
            return
        # In the scope's state, so SQLAdmin's mounted app (another `request.app`) sees them too.
        scope.setdefault("state", {}).update(
            portal_user=PortalUser(user_id, state.username, state.role), session_check=self.check
        )
        await self.app(scope, receive, send)

    @staticmethod
    def _public(path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

    @staticmethod
    def _refuse(scope: Scope) -> Response:
        path = scope["path"]
        if scope["method"] in ("GET", "HEAD") and not path.startswith(API_PREFIX):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return JSONResponse({"detail": "login required"}, status_code=401)


class RoleRequiredMiddleware:
    """A signed-in user's request runs only if their role allows it (`roles.least_role`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user: PortalUser | None = scope.get("state", {}).get("portal_user")
        if scope["type"] == "http" and user is not None:
            needed = least_role(scope["method"], scope["path"])
            if not may(user.role, needed):
                detail = f"this needs the {needed} role; you are a {user.role}"
                await JSONResponse({"detail": detail}, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _session_state(admin_user_id: uuid.UUID) -> admin_users.SessionState | None:
    with session_scope() as session:
        return admin_users.session_state(session=session, admin_user_id=admin_user_id)
