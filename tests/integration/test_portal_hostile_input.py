"""Hostile input the scanners sent the portal: answered 400 or 404, never a 500."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from harness.portal import form_token


@pytest.mark.parametrize(
    "path",
    [
        "/admin/dead-letter/list?reason=%00",
        "/admin/dead-letter/list?source_topic=a%00b&status=dead",
        "/admin/template/list?search=%00",
        "/admin/delivery/list?status=%00",
        "/admin/audit-entry/list?search=x%00",
    ],
)
def test_a_nul_in_a_filter_or_search_is_a_400(client: TestClient, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 400 and "NUL" in answer.text


def test_a_nul_in_a_form_is_a_400(client: TestClient) -> None:
    form = {"name": "nul", "subject": "a\x00b", "body_html": "x", "body_text": "x", "save": "Save"}
    multipart = client.post("/admin/template/create", data=form, files={"f": ("f", b"", "x/y")})
    assert multipart.status_code == 400
    token = form_token(client, "/login")
    login = client.post("/login", data={"username": "a\x00", "password": "x", "csrf_token": token})
    assert login.status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/admin/template/details/not-a-uuid",
        "/admin/template/edit/not-a-uuid",
        "/admin/admin-user/details/1",
        "/admin/audit-entry/details/not-a-number",
        "/admin/dead-letter/details/x",
    ],
)
def test_a_malformed_id_is_a_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404
