"""Portal login: scrypt password hashes, signed session cookies, login/logout, login required."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
import uuid
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.db import admin_users
from app.db.session import session_scope
from app.portal.csrf import rotate_token, verified_form
from app.portal.pages import render_page

SESSION_USER = "admin_user_id"
SESSION_NAME = "admin_username"
# Routes anyone may reach: provider webhooks, unsubscribe links in mail, login, health, and the
# Prometheus scrape (counts only, no personal data).
PUBLIC_PATHS = frozenset({"/login", "/healthz", "/metrics", "/unsubscribe"})
PUBLIC_PREFIXES = ("/webhooks/",)
API_PREFIX = "/admin/api/"

# scrypt at n=2**14, r=8 (16 MiB, ~50 ms here): OWASP's minimum parameters for scrypt.
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32


def hash_password(password: str) -> str:
    """A salted scrypt hash: `scrypt$n$r$p$salt$hash` (base64)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True if `password` matches the stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


# Compared against when the user does not exist, so the answer takes as long either way.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def authenticate(username: str, password: str) -> tuple[uuid.UUID, str] | None:
    """(id, username) of the active user with these credentials, or None."""
    with session_scope() as session:
        user = admin_users.get_by_username(session=session, username=username)
        stored = user.password_hash if user else _DUMMY_HASH
        ok = verify_password(password, stored) and user is not None and user.is_active
        return (user.admin_user_id, user.username) if ok and user else None


def _safe_next(target: str | None) -> str:
    # Only paths on this site: "//host" or "https://..." would make an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin/"


router = APIRouter()


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str = "/admin/") -> Response:
    """Show the login form."""
    return await render_page(request, "portal/login.html", {"next": _safe_next(next)})


@router.post("/login", include_in_schema=False)
async def login(request: Request, form: FormData = Depends(verified_form)) -> Response:
    """Check the credentials; start a fresh session on success."""
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")))
    found = await run_in_threadpool(authenticate, username.strip(), password)
    if found is None:
        context = {"next": target, "error": "Invalid username or password.", "username": username}
        return await render_page(request, "portal/login.html", context, status_code=400)
    request.session.clear()
    request.session[SESSION_USER], request.session[SESSION_NAME] = str(found[0]), found[1]
    rotate_token(request)
    return RedirectResponse(target, status_code=303)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, _form: FormData = Depends(verified_form)) -> Response:
    """End the session."""
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


class LoginRequiredMiddleware:
    """Every route but the public ones needs a logged-in, still active admin user."""

    def __init__(self, app: ASGIApp, *, recheck_s: float = 10.0) -> None:
        self.app = app
        self.recheck_s = recheck_s
        self._active_until: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/admin/login":  # SQLAdmin's own login page: ours is /login
            await RedirectResponse("/login", status_code=303)(scope, receive, send)
            return
        user_id = scope["session"].get(SESSION_USER)
        if user_id:
            if await self._active(user_id):
                await self.app(scope, receive, send)
                return
            scope["session"].clear()  # a deactivated (or deleted) user's session ends here
        # An anonymous session keeps its login-form token: the browser's own requests (e.g.
        # /favicon.ico) land here between showing the login form and posting it.
        await self._refuse(scope)(scope, receive, send)

    @staticmethod
    def _public(path: str) -> bool:
        return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)

    async def _active(self, user_id: str) -> bool:
        # A deactivated user loses access within `recheck_s`, without a query per request.
        if self._active_until.get(user_id, 0.0) > time.monotonic():
            return True
        try:
            key = uuid.UUID(user_id)
        except ValueError:
            return False
        active = await run_in_threadpool(_is_active, key)
        if active:
            self._active_until[user_id] = time.monotonic() + self.recheck_s
        return active

    @staticmethod
    def _refuse(scope: Scope) -> Response:
        path = scope["path"]
        if scope["method"] in ("GET", "HEAD") and not path.startswith(API_PREFIX):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return JSONResponse({"detail": "login required"}, status_code=401)


def _is_active(admin_user_id: uuid.UUID) -> bool:
    with session_scope() as session:
        return admin_users.is_active(session=session, admin_user_id=admin_user_id)
