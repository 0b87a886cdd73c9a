"""Portal sign-in: scrypt password hashes, throttled logins, sessions started and ended.

What every later request checks (the session still good, the role enough) is
app/portal/session_guard.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
import uuid
from typing import NamedTuple

from anyio import CapacityLimiter
from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.config import Settings
from app.db import admin_users
from app.portal.audit import record
from app.portal.csrf import rotate_token, verified_form
from app.portal.database import DatabaseDep
from app.portal.login_throttle import LoginThrottle
from app.portal.pages import render_page
from app.portal.session_guard import SESSION_NAME, SESSION_STARTED, SESSION_USER, SESSION_VERSION

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


class Credentials(NamedTuple):
    """Who signed in, and the session version their session starts under."""

    user_id: uuid.UUID
    username: str
    session_version: int


class SignIn(NamedTuple):
    """What a sign-in found: the credentials when they hold, and whether the name is a user's."""

    credentials: Credentials | None
    known_user: bool


def authenticate(*, session: Session, username: str, password: str) -> SignIn:
    """The active user with these credentials, if any, and whether `username` names a user."""
    user = admin_users.get_by_username(session=session, username=username)
    stored = user.password_hash if user else _DUMMY_HASH
    ok = verify_password(password, stored) and user is not None and user.is_active
    if not ok or user is None:
        return SignIn(None, user is not None)
    return SignIn(Credentials(user.admin_user_id, user.username, user.session_version), True)


def _safe_next(target: str | None) -> str:
    # Only paths on this site: "//host" or "https://..." would make an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin/"


def client_address(request: Request) -> str:
    """The client's address as the server sees it (uvicorn resolves trusted proxy headers)."""
    return request.client.host if request.client else "unknown"


router = APIRouter()


@router.get("/login", include_in_schema=False)
async def login_page(request: Request, next: str = "/admin/") -> Response:
    """Show the login form."""
    return await render_page(request, "portal/login.html", {"next": _safe_next(next)})


@router.post("/login", include_in_schema=False)
async def login(
    request: Request, db: DatabaseDep, form: FormData = Depends(verified_form)
) -> Response:
    """Check the credentials, unless this name or address is locked; start a fresh session."""
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")))
    guard: LoginGuard = request.app.state.login_guard
    client = client_address(request)
    context = {"next": target, "username": username}

    wait = guard.throttle.attempt(username, client)
    if wait > 0:
        known = await db.run(admin_users.get_by_username, username=username) is not None
        await record(request, "login_locked", "/login", 429, actor=username if known else None)
        minutes = max(1, math.ceil(wait / 60))
        context["error"] = f"Too many failed sign-ins. Try again in {minutes} min."
        response = await render_page(request, "portal/login.html", context, status_code=429)
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if not guard.admit():
        context["error"] = "The portal is busy signing others in. Try again in a moment."
        response = await render_page(request, "portal/login.html", context, status_code=503)
        response.headers["Retry-After"] = "5"
        return response
    try:
        sign_in = await db.run(
            authenticate, username=username, password=password, limiter=guard.hashing
        )
    finally:
        guard.release()
    found = sign_in.credentials
    if found is None:
        guard.throttle.failed(client)
        # A user's name is recorded (whose account is under attack); a name that is nobody's
        # is not: it is often a password typed into the wrong field.
        await record(
            request, "login_failed", "/login", 400, actor=username if sign_in.known_user else None
        )
        context["error"] = "Invalid username or password."
        return await render_page(request, "portal/login.html", context, status_code=400)
    guard.throttle.succeeded(username)
    request.session.clear()
    request.session[SESSION_USER], request.session[SESSION_NAME] = str(found[0]), found[1]
    request.session[SESSION_VERSION] = found.session_version
    request.session[SESSION_STARTED] = int(time.time())
    rotate_token(request)
    await record(request, "login", "/login", 303, actor=found.username)
    return RedirectResponse(target, status_code=303)


@router.api_route("/admin/logout", methods=["GET", "HEAD"], include_in_schema=False)
async def logout_page(request: Request) -> Response:
    """SQLAdmin's logout link lands here: a GET (or HEAD) changes nothing, the button posts the
    form. Never SQLAdmin's own logout, which clears the cookie but ends no session."""
    return await render_page(request, "portal/logout.html", {})


@router.post("/logout", include_in_schema=False)
async def logout(
    request: Request, db: DatabaseDep, _form: FormData = Depends(verified_form)
) -> Response:
    """End every session of this user, the copies of this cookie included."""
    user_id = request.session.get(SESSION_USER)
    if user_id:
        await db.run(admin_users.end_sessions, admin_user_id=uuid.UUID(user_id))
        request.state.session_check.forget(user_id)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


class LoginGuard:
    """Login throttling and the bound on concurrent password hashing, one per portal app."""

    def __init__(self, settings: Settings) -> None:
        self.throttle = LoginThrottle(
            per_user=settings.portal_login_user_limits,
            per_client=settings.portal_login_client_limits,
            storage_uri=settings.portal_login_limits_storage,
        )
        self.hashing = CapacityLimiter(settings.portal_max_concurrent_hashes)
        self._room = settings.portal_max_concurrent_hashes + settings.portal_max_waiting_logins
        self._admitted = 0

    def admit(self) -> bool:
        """Take a place among the sign-ins hashing or waiting to; False when all are taken.

        Checked and taken with no await in between, so concurrent requests cannot all pass.
        """
        if self._admitted >= self._room:
            return False
        self._admitted += 1
        return True

    def release(self) -> None:
        self._admitted -= 1
