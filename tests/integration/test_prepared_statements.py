"""Statements prepared once per connection (app/db/prepared.py), against real PostgreSQL."""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from app.config import Settings
from app.db.prepared import PreparedStatement
from app.db.session import connection_scope

pytestmark = pytest.mark.integration

ECHO = PreparedStatement(
    "notify_test_echo",
    "SELECT u, n * :factor AS scaled FROM unnest(:ids, :numbers) AS v(u, n) ORDER BY n",
    {"ids": "uuid[]", "numbers": "int[]", "factor": "int"},
)


def _own_url(settings: Settings, name: str) -> str:
    return f"{settings.database_url}?application_name={name}"


def _prepared_here(connection: Connection) -> list[str]:
    rows = connection.execute(text("SELECT name FROM pg_prepared_statements"))
    return [row.name for row in rows]


def test_a_statement_is_prepared_once_and_run_by_name(db: str, settings: Settings) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    with connection_scope(_own_url(settings, "prepared-once"), autocommit=True) as connection:
        first = ECHO.run(
            connection, {"ids": [str(i) for i in ids], "numbers": [3, 1, 2], "factor": 10}
        )
        second = ECHO.run(connection, {"ids": [], "numbers": [], "factor": 1})
        assert _prepared_here(connection) == ["notify_test_echo"]
        plans = connection.execute(
            text("SELECT generic_plans + custom_plans FROM pg_prepared_statements")
        ).scalar_one()
    assert [(row.u, row.scaled) for row in first] == [(ids[1], 10), (ids[2], 20), (ids[0], 30)]
    assert list(second) == []
    assert plans == 2  # one statement, run twice, never prepared twice


def test_a_connection_that_already_holds_it_is_not_asked_to_prepare_again(
    db: str, settings: Settings
) -> None:
    url = _own_url(settings, "prepared-forgotten")
    with connection_scope(url, autocommit=True) as connection:
        ECHO.run(connection, {"ids": [], "numbers": [], "factor": 1})
        connection.connection.info.clear()  # what we know is lost; the server still has it
        rows = ECHO.run(connection, {"ids": [str(uuid.uuid4())], "numbers": [4], "factor": 2})
    assert [row.scaled for row in rows] == [8]


def test_a_reconnect_prepares_it_again(db: str, settings: Settings) -> None:
    url = _own_url(settings, "prepared-reconnect")
    with connection_scope(url, autocommit=True) as connection:
        ECHO.run(connection, {"ids": [], "numbers": [], "factor": 1})
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    dsn = settings.database_url.replace("postgresql+psycopg2://", "postgresql://")
    with psycopg2.connect(dsn) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
    admin.close()
    with (
        connection_scope(url, autocommit=True) as connection,
        pytest.raises(DBAPIError) as lost,
    ):
        ECHO.run(connection, {"ids": [], "numbers": [], "factor": 1})
    assert lost.value.connection_invalidated  # the dead connection, once
    with connection_scope(url, autocommit=True) as connection:
        rows = ECHO.run(connection, {"ids": [str(uuid.uuid4())], "numbers": [5], "factor": 3})
        assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    assert [row.scaled for row in rows] == [15]


def test_binds_and_types_must_agree() -> None:
    with pytest.raises(ValueError, match="binds"):
        PreparedStatement("notify_test_bad", "SELECT :a, :b", {"a": "int"})
