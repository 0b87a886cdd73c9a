"""Every portal response carries the security headers, whatever answered it."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.portal.app import SECURITY_HEADERS, create_app
from harness.portal import form_token, log_in, mailing_template_id, make_admin_user


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
    policy = answer.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, path


def _nonce(script_src: str) -> str:
    match = re.search(r"'nonce-([^']+)'", script_src)
    assert match is not None, script_src
    return match.group(1)


def _directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_the_policy_allows_no_remote_content_and_inline_scripts_only_with_its_nonce(
    anonymous: TestClient,
) -> None:
    log_in(anonymous, *make_admin_user())
    first = anonymous.get("/admin/mailings/new")
    second = anonymous.get("/admin/mailings/new")
    policies = [_directives(r.headers["Content-Security-Policy"]) for r in (first, second)]
    for policy in policies:
        assert policy["img-src"] == "'self' data:"  # previews: no tracking pixels
        assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
        assert "'unsafe-inline'" not in policy["script-src"]
        assert "http" not in " ".join(policy.values())
    nonces = [_nonce(p["script-src"]) for p in policies]
    assert nonces[0] != nonces[1]  # a new nonce per response


def test_every_inline_script_of_a_page_carries_the_responses_nonce(client: TestClient) -> None:
    created = client.post(
        "/admin/mailings/new",
        data={
            "name": "csp",
            "template_id": mailing_template_id(),
            "content_value": "x",
            "periodicity": "once",
            "audience": "8c1b5d4e-0d6f-4a53-9d55-4a0f8d3b1e11",
            "csrf_token": form_token(client),
        },
        follow_redirects=False,
    )
    page = client.get(created.headers["location"])
    nonce = _nonce(page.headers["Content-Security-Policy"])
    scripts = re.findall(r"<script([^>]*)>", page.text)
    inline = [attrs for attrs in scripts if "src=" not in attrs]
    assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline)
    assert not re.search(r"\son[a-z]+=", page.text)  # no inline event handlers either
