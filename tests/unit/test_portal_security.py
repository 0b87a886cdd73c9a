"""Portal security pieces: scrypt hashes, safe redirects, the cross-site request check."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from app.portal.auth import _safe_next, hash_password, verify_password
from app.portal.csrf import OriginCheckMiddleware


def test_hashes_are_salted_and_verify() -> None:
    first, second = hash_password("pw-1234567"), hash_password("pw-1234567")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("pw-1234567", first) and verify_password("pw-1234567", second)
    assert not verify_password("pw-1234568", first)
    assert not verify_password("pw-1234567", "md5$abc")
    assert not verify_password("pw-1234567", "garbage")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/admin/mailings", "/admin/mailings"),
        ("//evil.example", "/admin/"),
        ("https://evil.example", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("", "/admin/"),
    ],
)
def test_login_redirects_stay_on_this_site(target: str, expected: str) -> None:
    assert _safe_next(target) == expected


def _status(method: str, path: str, headers: dict[str, str]) -> int:
    sent: list[int] = []

    async def app(scope, receive, send) -> None:
        sent.append(200)

    async def send(message) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    middleware = OriginCheckMiddleware(
        app, trusted_origins=frozenset({"https://notify.example.com"}), exempt=("/webhooks",)
    )
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "portal:8000", **headers}.items()]
    scope = {"type": "http", "method": method, "path": path, "headers": raw, "scheme": "http"}
    asyncio.run(middleware(scope, receive, send))
    return sent[0]


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("GET", "/admin/", {"origin": "https://evil.example"}, 200),
        ("POST", "/admin/x", {}, 200),  # not a browser
        ("POST", "/admin/x", {"origin": "http://portal:8000"}, 200),
        ("POST", "/admin/x", {"origin": "https://notify.example.com"}, 200),
        ("POST", "/admin/x", {"origin": "https://evil.example"}, 403),
        ("DELETE", "/admin/x", {"sec-fetch-site": "cross-site"}, 403),
        ("POST", "/admin/x", {"sec-fetch-site": "same-site"}, 403),
        (
            "POST",
            "/admin/x",
            {"sec-fetch-site": "same-origin", "origin": "http://portal:8000"},
            200,
        ),
        ("POST", "/admin/x", {"referer": "https://evil.example/a"}, 403),
        ("POST", "/webhooks/sendgrid", {"origin": "https://sendgrid.example"}, 200),
        ("POST", "/webhooksx", {"origin": "https://evil.example"}, 403),
    ],
)
def test_origin_check(method: str, path: str, headers: dict[str, str], status: int) -> None:
    assert _status(method, path, headers) == status
