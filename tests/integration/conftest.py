"""Integration tier: every test here talks to the real local services."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text

from app.auth.client import AuthClient
from app.auth.dev_server import DevAuthServer, generate_users
from app.config import Settings
from app.db import migrate
from app.db.session import dispose_engines, session_scope
from app.portal.template_files import load_default_templates
from harness.auth import client_for, serve_in_thread
from harness.smtp import SmtpSink
from harness.waiting import free_port

MUTABLE_TABLES = (
    "deliveries",
    "notifications",
    "messages",
    "campaigns",
    "opt_outs",
    "stream_offsets",
    "dead_letters",
    "dead_letter_replays",
    "received_events",
    "preferences",
    "preference_changes",
    "planning_shards",
    "suppressions",
    "soft_bounces",
    "send_pacing",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def db(settings: Settings) -> Iterator[str]:
    """The test database at head, emptied of rows, with the default templates loaded."""
    migrate.upgrade("heads", settings.database_url)
    with session_scope() as session:
        session.execute(text(f"TRUNCATE {', '.join(MUTABLE_TABLES)} CASCADE"))
        load_default_templates(session=session)
    yield settings.database_url
    dispose_engines()


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, SmtpSink]]:
    """A real SMTP server (aiosmtpd) on a free local port."""
    sink = SmtpSink()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, sink
    controller.stop()


@pytest.fixture
def auth_users() -> list[dict[str, Any]]:
    return generate_users(300)


@pytest.fixture
def auth_server(auth_users: list[dict[str, Any]], settings: Settings) -> Iterator[DevAuthServer]:
    """The dev Auth server (the Auth contract over real HTTP) on a free port."""
    server = DevAuthServer(("127.0.0.1", 0), auth_users, settings.auth_api_token.get_secret_value())
    serve_in_thread(server)
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def auth_client(auth_server: DevAuthServer, settings: Settings) -> Iterator[AuthClient]:
    client = client_for(auth_server, settings)
    yield client
    client.close()
