"""Templates in the portal: checked in the sandbox on save, previewed with sample or real users."""

from __future__ import annotations

import html
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.dev_server import DevAuthServer
from app.config import Settings
from app.db.models import Template
from app.db.session import session_scope
from app.portal.app import create_app
from harness.portal import log_in, make_admin_user
from harness.waiting import server_url

GOOD = {
    "subject": "Hello {{ name }}",
    "body_html": "<p>{{ content_value }}</p>",
    "body_text": "{{ content_value }}",
}


def _create(client: TestClient, **fields: str) -> Any:
    data = {"name": f"t-{uuid.uuid4().hex[:8]}", **GOOD, **fields, "save": "Save"}
    return client.post("/admin/template/create", data=data, follow_redirects=False), data["name"]


def _stored(name: str) -> Template | None:
    with session_scope() as session:
        return session.scalar(select(Template).where(Template.name == name))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"body_html": "<p>{% if %}</p>"}, "template syntax error"),
        ({"subject": "Hi {{ name"}, "template syntax error"),
        ({"body_html": "{{ ''.__class__.__mro__ }}"}, "unsafe"),
        ({"body_text": "{{ content_value.__class__.__subclasses__() }}"}, "unsafe"),
        ({"body_html": "{{ no_such_variable }}"}, "is undefined"),
        ({"subject": "two{{ '\\n' }}lines"}, "single line"),
        # What the compiler itself raises, not a TemplateError: once a 500.
        ({"body_html": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"}, "RecursionError"),
        ({"body_html": "{{ " + "1" * 5000 + " }}"}, "cannot be compiled: ValueError"),
    ],
)
def test_a_broken_or_escaping_template_is_refused_with_a_readable_message(
    client: TestClient, fields: dict[str, str], reason: str
) -> None:
    response, name = _create(client, **fields)
    assert response.status_code == 400
    text = html.unescape(response.text)
    assert "Template not saved." in text and reason in text
    assert _stored(name) is None


def test_an_edit_that_breaks_the_template_is_refused(client: TestClient) -> None:
    created, name = _create(client)
    assert created.status_code == 302
    template = _stored(name)
    assert template is not None
    data = {"name": name, **GOOD, "body_html": "{{ ''.__class__ }}", "save": "Save"}
    response = client.post(f"/admin/template/edit/{template.template_id}", data=data)
    assert response.status_code == 400 and "unsafe" in html.unescape(response.text)
    stored = _stored(name)
    assert stored is not None
    assert stored.body_html == GOOD["body_html"]


def test_a_saved_template_shows_its_preview_with_sample_variables(client: TestClient) -> None:
    created, name = _create(client, body_html="<p>{{ content_value }}</p><p>for {{ email }}</p>")
    assert created.status_code == 302
    page = client.get(created.headers["location"])
    assert page.status_code == 200
    assert "Hello Ann Example" in page.text
    # The HTML body sits in a sandboxed iframe's srcdoc, its markup escaped once more.
    assert 'sandbox=""' in page.text and "ann@example.com" in page.text
    assert "&lt;b&gt;with markup" in html.unescape(page.text)  # content_value stays escaped


@pytest.fixture
def preview_client(
    db: str, portal_settings: Settings, auth_server: DevAuthServer
) -> Iterator[TestClient]:
    settings = portal_settings.model_copy(update={"auth_api_url": server_url(auth_server)})
    with TestClient(create_app(settings)) as client:
        log_in(client, *make_admin_user())
        yield client


def test_preview_with_a_real_user_from_the_auth_api(
    preview_client: TestClient, auth_users: list[dict[str, Any]]
) -> None:
    created, _name = _create(preview_client)
    user = auth_users[0]
    page = preview_client.get(created.headers["location"], params={"user_id": user["user_id"]})
    assert page.status_code == 200
    assert f"Hello {html.escape(user['name'])}" in page.text
    unknown = preview_client.get(created.headers["location"], params={"user_id": str(uuid.uuid4())})
    assert "does not know user" in unknown.text and "Hello Ann Example" in unknown.text
    garbage = preview_client.get(created.headers["location"], params={"user_id": "nope"})
    assert "is not a user id" in html.unescape(garbage.text)


@pytest.mark.parametrize("name", ["welcome", "mailing", "likes_digest"])
def test_a_built_in_template_cannot_be_renamed_or_deleted(client: TestClient, name: str) -> None:
    template = _stored(name)
    assert template is not None
    data = {
        "name": f"{name}-old",
        "subject": template.subject,
        "body_html": template.body_html,
        "body_text": template.body_text,
        "save": "Save",
    }
    renamed = client.post(f"/admin/template/edit/{template.template_id}", data=data)
    assert renamed.status_code == 400
    assert "is a built-in template" in html.unescape(renamed.text)
    # SQLAdmin's delete route asks check_can_delete, which says no for a built-in template.
    deleted = client.delete("/admin/template/delete", params={"pks": str(template.template_id)})
    assert deleted.status_code == 403
    assert _stored(name) is not None and _stored(f"{name}-old") is None
    # Its text can still be edited.
    data["name"] = name
    edited = client.post(
        f"/admin/template/edit/{template.template_id}", data=data, follow_redirects=False
    )
    assert edited.status_code == 302


def test_a_template_too_costly_to_render_is_refused_at_save(client: TestClient) -> None:
    response, name = _create(client, body_html="{{ 'a' * 10**10 }}")
    assert response.status_code == 400 and "over the limit" in html.unescape(response.text)
    zero, name2 = _create(client, body_html="<p>{{ 100 // count }}</p>")
    assert zero.status_code == 400 and "count=0" in html.unescape(zero.text)
    assert _stored(name) is None and _stored(name2) is None
