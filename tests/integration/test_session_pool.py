"""Pooled connections: one that died is replaced before use, against real PostgreSQL."""

from __future__ import annotations

import time

import psycopg2
import pytest
from sqlalchemy import text

from app.config import Settings
from app.db.session import session_scope

pytestmark = pytest.mark.integration


def _own_url(settings: Settings, name: str) -> str:
    # A URL of its own gives this test an engine (and a pool) of its own.
    return f"{settings.database_url}?application_name={name}"


def _terminate(settings: Settings, pid: int) -> None:
    dsn = settings.database_url.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(dsn) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()


def test_a_connection_killed_while_idle_is_replaced_before_use(db: str, settings: Settings) -> None:
    url = _own_url(settings, "pool-idle-test")
    with session_scope(url) as session:
        first = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    _terminate(settings, first)
    time.sleep(1.0)
    with session_scope(url) as session:  # no error: the dead connection was pinged and replaced
        second = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    assert second != first


def test_a_connection_killed_just_after_use_is_replaced_too(db: str, settings: Settings) -> None:
    # Pinged on every checkout: even a connection used a moment ago is checked, so no statement
    # (of the e-mail worker's record after a send, say) meets a dead connection.
    url = _own_url(settings, "pool-busy-test")
    with session_scope(url) as session:
        first = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    _terminate(settings, first)
    with session_scope(url) as session:
        assert session.execute(text("SELECT pg_backend_pid()")).scalar_one() != first
