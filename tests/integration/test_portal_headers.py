"""Every portal response carries the security headers, whatever answered it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.portal.app import SECURITY_HEADERS, create_app


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/unsubscribe?token=not-a-token"),
        ("POST", "/webhooks/sendgrid"),
        ("GET", "/admin/login"),
        ("GET", "/admin/"),  # a redirect to the login
        ("GET", "/no-such-page"),
    ],
)
def test_security_headers_on_every_response(
    db: str, settings: Settings, method: str, path: str
) -> None:
    client = TestClient(create_app(settings), follow_redirects=False)
    answer = client.request(method, path)
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, (path, answer.status_code, name)
