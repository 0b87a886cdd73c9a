"""The portal probed as an attacker would: huge bodies, hidden audit fields, sprayed sign-ins.

Bodies are sent through httpx's ASGI transport from an async generator, so the app receives them
chunk by chunk with no declared length (as a chunked upload arrives), and the generator counts
how much of the body the portal pulled before it answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db.models import AdminUser, AuditEntry
from app.db.session import session_scope
from app.portal.app import create_app
from app.portal.body_guard import MAX_CSV_BYTES, SMALL_FORM_BYTES
from harness.portal import (
    audit_fields,
    concurrent_wrong_passwords,
    form_token,
    log_in,
    login_form_token,
    make_admin_user,
)

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024
TEN_MIB = 10 * 1024 * 1024
FORM = "application/x-www-form-urlencoded"


@dataclass
class Pulled:
    """How many bytes of a streamed body the app read."""

    bytes: int = 0


def _chunk(content_type: str, n: int) -> bytes:
    """One more field of a long form (each under Starlette's 1 MiB per field) or JSON bytes."""
    value = b"a" * (CHUNK - 100)
    if content_type.startswith("multipart/"):
        head = f'--x\r\nContent-Disposition: form-data; name="f{n}"\r\n\r\n'.encode()
        return head + value + b"\r\n"
    if content_type == FORM:
        return f"f{n}=".encode() + value + b"&"
    return value


async def _endless(total: int, pulled: Pulled, content_type: str) -> AsyncIterator[bytes]:
    n = 0
    while pulled.bytes < total:
        chunk = _chunk(content_type, n)
        pulled.bytes += len(chunk)
        n += 1
        yield chunk


async def _signed_in(client: httpx.AsyncClient, username: str, password: str) -> str:
    token = await login_form_token(client)
    data = {"username": username, "password": password, "csrf_token": token}
    answer = await client.post("/login", data=data)
    assert answer.status_code == 303, answer.text[:300]
    page = await client.get("/admin/mailings/new")
    return page.text.split('name="csrf_token" value="')[1].split('"')[0]


def _stream(
    app: FastAPI, path: str, content_type: str, total: int, *, signed_in: bool
) -> tuple[int, int]:
    """POST `total` bytes to `path` with no Content-Length: (status, bytes the app pulled)."""
    username, password = make_admin_user()

    async def run() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            if signed_in:
                await _signed_in(c, username, password)
            pulled = Pulled()
            headers = {"Content-Type": content_type}
            answer = await c.post(
                path, content=_endless(total, pulled, content_type), headers=headers
            )
            return answer.status_code, pulled.bytes

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("family", "path", "content_type", "signed_in", "limit", "total"),
    [
        ("sign-in", "/login", FORM, False, SMALL_FORM_BYTES, TEN_MIB),
        ("public form", "/preferences", FORM, False, SMALL_FORM_BYTES, TEN_MIB),
        ("public form", "/unsubscribe", FORM, False, SMALL_FORM_BYTES, TEN_MIB),
        ("JSON API", "/webhooks/sendgrid", "application/json", False, 2 * 1024 * 1024, TEN_MIB),
        ("SQLAdmin form", "/admin/template/create", FORM, True, 2 * 1024 * 1024, TEN_MIB),
        ("SQLAdmin multipart", "/admin/template/create", "multipart/form-data; boundary=x", True,
         2 * 1024 * 1024, TEN_MIB),
        ("our admin form", "/admin/schedule/1/cron", FORM, True, 2 * 1024 * 1024, TEN_MIB),
        # The campaign form takes a CSV file of up to 20 MiB: 30 MiB is past its limit.
        ("upload form", "/admin/mailings/new", FORM, True, MAX_CSV_BYTES + 256 * 1024,
         3 * TEN_MIB),
    ],
)  # fmt: skip
def test_a_body_with_no_declared_length_is_cut_at_its_routes_limit(
    portal_settings: Settings,
    family: str,
    path: str,
    content_type: str,
    signed_in: bool,
    limit: int,
    total: int,
) -> None:
    status, pulled = _stream(
        create_app(portal_settings), path, content_type, total, signed_in=signed_in
    )
    assert status == 413, f"{family}: {status}"
    assert pulled <= limit + CHUNK, f"{family}: {pulled:,} bytes read for a limit of {limit:,}"


def test_a_declared_length_over_the_limit_is_refused_unread(anonymous: TestClient) -> None:
    answer = anonymous.post(
        "/login", content=b"x" * (SMALL_FORM_BYTES + 1), headers={"Content-Type": FORM}
    )
    assert answer.status_code == 413 and "16,384 bytes" in answer.text


def test_a_nul_split_across_two_chunks_is_found(portal_settings: Settings) -> None:
    app = create_app(portal_settings)

    async def run() -> int:
        async def body() -> AsyncIterator[bytes]:
            yield b"username=ann%0"
            yield b"0&password=x"

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            answer = await c.post("/login", content=body(), headers={"Content-Type": FORM})
            return answer.status_code

    assert asyncio.run(run()) == 400


# --- the audit log -------------------------------------------------------------------------------


def _entries_after(audit_id: int) -> list[AuditEntry]:
    with session_scope() as session:
        query = select(AuditEntry).where(AuditEntry.audit_id > audit_id)
        return list(session.scalars(query.order_by(AuditEntry.audit_id)))


def _last_audit_id() -> int:
    with session_scope() as session:
        return session.scalar(select(func.coalesce(func.max(AuditEntry.audit_id), 0))) or 0


def test_a_long_first_field_cannot_hide_the_fields_after_it(client: TestClient) -> None:
    peer_name, _password = make_admin_user(role="viewer")
    with session_scope() as session:
        peer = session.scalar(
            select(AdminUser.admin_user_id).where(AdminUser.username == peer_name)
        )
    before = _last_audit_id()
    token = form_token(client, "/admin/mailings/new")
    form = {"pad": "p" * 64 * 1024, "username": peer_name, "role": "admin", "csrf_token": token}
    client.post(f"/admin/admin-user/edit/{peer}", data=form)
    [entry] = [e for e in _entries_after(before) if e.target.startswith("/admin/admin-user/edit")]
    fields = audit_fields(entry)
    assert fields["role"] == "admin"
    assert len(fields["pad"]) == 300 and "csrf_token" not in fields


def test_a_request_that_ends_in_an_unhandled_error_is_recorded(portal_settings: Settings) -> None:
    app = create_app(portal_settings)

    @app.post("/boom")
    async def boom(request: Request) -> None:
        await request.form()
        raise RuntimeError("a handler's bug, after it read the form")

    before = _last_audit_id()
    with TestClient(app, raise_server_exceptions=False) as client:
        log_in(client, *make_admin_user())
        assert client.post("/boom", data={"what": "x"}).status_code == 500
    [entry] = [e for e in _entries_after(before) if e.target == "/boom"]
    assert entry.outcome == 500 and (entry.detail or {})["fields"] == {"what": "x"}


def test_a_refused_oversized_body_is_recorded_with_the_refusal(client: TestClient) -> None:
    before = _last_audit_id()
    token = form_token(client, "/admin/mailings/new")
    # Forty fields of 64 KiB: each under the parser's own 1 MiB, together over the 2 MiB limit.
    data = {"csrf_token": token, **{f"f{n}": "x" * CHUNK for n in range(40)}}
    assert client.post("/admin/schedule/1/cron", data=data).status_code == 413
    [entry] = [e for e in _entries_after(before) if e.target == "/admin/schedule/1/cron"]
    assert entry.outcome == 413


def test_a_long_or_mistyped_username_is_a_plain_failure_and_not_on_record(
    anonymous: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    before = _last_audit_id()
    typed = "correct-horse-battery-staple-" + "x" * 80  # 109 characters, a password by its look
    caplog.set_level(logging.INFO)
    token = form_token(anonymous, "/login")
    answer = anonymous.post(
        "/login", data={"username": typed, "password": "x", "csrf_token": token}
    )
    assert answer.status_code == 400
    [entry] = [e for e in _entries_after(before) if e.action == "login_failed"]
    assert entry.actor is None and typed not in str(entry.detail)
    assert typed not in caplog.text


# --- sign-in limits --------------------------------------------------------------------------


def _attempts(app: FastAPI, username: str, clients: list[str]) -> list[int]:
    """One wrong password from each client address in turn (the browser's cookie carried)."""

    async def run() -> list[int]:
        statuses, cookies = [], httpx.Cookies()
        for address in clients:
            transport = httpx.ASGITransport(app=app, client=(address, 40000))
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver", cookies=cookies
            ) as c:
                token = await login_form_token(c)
                data = {"username": username, "password": "wrong", "csrf_token": token}
                statuses.append((await c.post("/login", data=data)).status_code)
                cookies = c.cookies
        return statuses

    return asyncio.run(run())


def test_addresses_rotating_inside_one_ipv6_64_share_one_limit(portal_settings: Settings) -> None:
    settings = portal_settings.model_copy(
        update={
            "portal_login_client_limits": "5 per minute",
            "portal_login_user_limits": "1000/hour",
        }
    )
    app = create_app(settings)
    spray = [f"2001:db8:1:2::{n:x}" for n in range(1, 9)]
    statuses = [
        status
        for n, address in enumerate(spray)
        for status in _attempts(app, make_admin_user()[0] + str(n), [address])
    ]
    assert statuses == [400] * 5 + [429] * 3, statuses
    # Another /64 has a window of its own.
    assert _attempts(app, "someone", ["2001:db8:1:3::1"]) == [400]


def test_the_client_is_the_rightmost_hop_no_trusted_proxy_wrote(portal_settings: Settings) -> None:
    app = create_app(portal_settings)  # trusted: 127.0.0.1, the transport's own address
    before = _last_audit_id()

    async def run() -> int:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            token = await login_form_token(c)
            data = {"username": "nobody", "password": "x", "csrf_token": token}
            # The client wrote the first hop; the proxy appended the address it saw.
            headers = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
            return (await c.post("/login", data=data, headers=headers)).status_code

    assert asyncio.run(run()) == 400
    [entry] = [e for e in _entries_after(before) if e.action == "login_failed"]
    assert entry.client == "203.0.113.9"


def test_trusting_every_proxy_is_refused() -> None:
    with pytest.raises(ValueError, match="PORTAL_TRUSTED_PROXIES"):
        Settings(dev_mode=True, portal_trusted_proxies="*")


def test_concurrent_guesses_get_only_the_windows_attempts(portal_settings: Settings) -> None:
    settings = portal_settings.model_copy(update={"portal_max_waiting_logins": 64})
    username, _password = make_admin_user()
    app = create_app(settings)

    statuses = concurrent_wrong_passwords(app, username, 40)
    # The default window is 5 per minute: five passwords checked, the rest locked.
    assert statuses.count(400) == 5 and statuses.count(429) == 35, sorted(statuses)


# --- sessions ---------------------------------------------------------------------------------


def test_head_on_the_logout_link_ends_nothing(client: TestClient) -> None:
    assert client.head("/admin/logout").status_code == 200
    assert client.get("/admin/mailings", follow_redirects=False).status_code == 200


def test_a_session_in_constant_use_ends_at_its_lifetime(portal_settings: Settings) -> None:
    settings = portal_settings.model_copy(update={"portal_session_max_age_s": 2})
    with TestClient(create_app(settings)) as client:
        log_in(client, *make_admin_user())
        token = form_token(client, "/admin/mailings/new")
        until = time.monotonic() + 3
        statuses = []
        while time.monotonic() < until:
            # A refused schedule change leaves a notice in the session: the cookie is signed
            # anew, as every change to the session does.
            client.post("/admin/schedule/999999/cron", data={"csrf_token": token})
            statuses.append(client.get("/admin/mailings", follow_redirects=False).status_code)
            time.sleep(0.2)
    assert statuses[0] == 200 and statuses[-1] == 303, statuses


# --- settings --------------------------------------------------------------------------------


def test_secrets_are_never_echoed_in_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "short-but-secret-key"
    monkeypatch.setenv("SECRET_KEY", key)
    with pytest.raises(ValueError) as refused:
        Settings(dev_mode=False, auth_api_token="a-real-token-" + "t" * 30)
    message = str(refused.value)
    # No input at all: pydantic shows the settings' inputs abbreviated, the first ones' start
    # included (the key's, or a DATABASE_URL's with its password).
    assert "SECRET_KEY needs at least" in message and key[:8] not in message
    assert "input_value" not in message
