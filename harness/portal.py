"""Fixtures and helpers of the admin portal tests: users, logged-in clients, mailing topics.

Its fixtures (`*_fixture`, under their short names) are registered in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.db.admin_users import create_or_replace
from app.db.models import AuditEntry, Template
from app.db.session import session_scope
from app.domain.vocabulary import PortalRole
from app.kafka.admin import ensure_topics
from app.kafka.connection import client_config
from app.portal.app import create_app
from app.portal.auth import hash_password

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_admin_user(
    password: str = "s3cret-passw0rd", role: PortalRole = "admin"
) -> tuple[str, str]:
    """A fresh portal user (unique name, since admin_users is shared by the test run)."""
    username = f"{role}-{secrets.token_hex(4)}"
    with session_scope() as session:
        create_or_replace(
            session=session, username=username, password_hash=hash_password(password), role=role
        )
    return username, password


def served_settings(client: TestClient) -> Settings:
    """The settings of the portal a test client talks to (its app is typed as any ASGI app)."""
    assert isinstance(client.app, FastAPI)
    settings: Settings = client.app.state.settings
    return settings


def audit_fields(entry: AuditEntry) -> dict[str, Any]:
    """The form fields an audit entry recorded (its detail is typed as any JSON object)."""
    assert entry.detail is not None, entry.target
    fields = entry.detail["fields"]
    assert isinstance(fields, dict), fields
    return fields


def form_token(client: TestClient, page: str = "/admin/mailings/new") -> str:
    """The CSRF token rendered in one of our forms."""
    response = client.get(page)
    assert response.status_code == 200, response.text[:300]
    match = _TOKEN.search(response.text)
    assert match, f"no csrf token on {page}"
    return match.group(1)


async def login_form_token(client: httpx.AsyncClient) -> str:
    """The CSRF token of the login form, for a client of the app's ASGI transport."""
    page = await client.get("/login")
    match = _TOKEN.search(page.text)
    assert match, "no csrf token on /login"
    return match.group(1)


def concurrent_wrong_passwords(app: FastAPI, username: str, attempts: int) -> list[int]:
    """The statuses of `attempts` wrong passwords for `username`, all sent at once."""

    async def flood() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            token = await login_form_token(c)
            data = {"username": username, "password": "wrong", "csrf_token": token}
            answers = await asyncio.gather(*(c.post("/login", data=data) for _ in range(attempts)))
            return [a.status_code for a in answers]

    return asyncio.run(flood())


def log_in(client: TestClient, username: str, password: str) -> None:
    """Sign in through the login form; fails the test if the portal refuses."""
    token = _TOKEN.search(client.get("/login").text)
    assert token
    data = {"username": username, "password": password, "csrf_token": token.group(1)}
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 303, response.text[:300]


@pytest.fixture(name="mailing_topic")
def mailing_topic_fixture(settings: Settings) -> Iterator[str]:
    """A mailing topic of this test alone."""
    name = f"test.mailing.{uuid.uuid4().hex[:12]}"
    ensure_topics(settings, [name], partitions=2)
    yield name
    AdminClient(client_config(settings)).delete_topics([name])


@pytest.fixture(name="portal_settings")
def portal_settings_fixture(settings: Settings, mailing_topic: str) -> Settings:
    return settings.model_copy(update={"topic_mailing": mailing_topic})


@pytest.fixture(name="anonymous")
def anonymous_fixture(db: str, portal_settings: Settings) -> Iterator[TestClient]:
    """A client of a fresh portal app, not signed in."""
    with TestClient(create_app(portal_settings)) as client:
        yield client


@pytest.fixture(name="client")
def client_fixture(anonymous: TestClient) -> TestClient:
    """A client signed in as a fresh admin user."""
    log_in(anonymous, *make_admin_user())
    return anonymous


def mailing_template_id() -> str:
    """The id of the default `mailing` template."""
    with session_scope() as session:
        return str(session.scalar(select(Template.template_id).where(Template.name == "mailing")))


def signed_in(settings: Settings, role: PortalRole) -> tuple[TestClient, str]:
    """A client of a fresh portal app, signed in as a fresh user of `role`; and its name."""
    username, password = make_admin_user(role=role)
    client = TestClient(create_app(settings))
    log_in(client, username, password)
    return client, username
