"""Statements prepared once per connection (app/db/prepared.py), against real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg2
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from app.config import Settings
from app.db import chunk_sends
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


def _deliveries_in_flight(connection: Connection, count: int) -> None:
    """`count` welcome deliveries put in flight after their statistics were taken.

    What a large dispatch does between two autoanalyze runs: the statistics still say almost
    nothing is 'enqueued' or 'sending' while most of the table is.
    """
    connection.execute(
        text(
            """
            WITH m AS (
                INSERT INTO messages (message_id, content_value, template_id)
                SELECT gen_random_uuid(), 'x', t.template_id
                  FROM generate_series(1, :count), (SELECT template_id FROM templates LIMIT 1) t
                RETURNING message_id
            ), n AS (
                INSERT INTO notifications (notification_id, user_id, message_id, periodicity, kind)
                SELECT gen_random_uuid(), gen_random_uuid(), message_id, 'once', 'welcome' FROM m
                RETURNING notification_id
            )
            INSERT INTO deliveries (delivery_id, notification_id, period_key, send_at, status)
            SELECT gen_random_uuid(), notification_id, 'once', now(),
                   'sent'
              FROM n
            """
        ),
        {"count": count},
    )
    connection.exec_driver_sql("ANALYZE deliveries")
    connection.exec_driver_sql(
        "UPDATE deliveries"
        " SET status = CASE WHEN random() < 0.05 THEN 'sending' ELSE 'enqueued' END"
    )


@pytest.mark.parametrize(
    ("statement", "values"),
    [
        (
            chunk_sends._RECORD_CHUNK,
            {
                "ids": [str(uuid.uuid4())],
                "attempts": [1],
                "statuses": ["sent"],
                "errors": [None],
                "message_ids": [None],
                "backends": [None],
                "outages": [False],
                "now": datetime.now(UTC),
            },
        ),
        (
            chunk_sends._CLAIM_CHUNK,
            {
                "ids": [str(uuid.uuid4())],
                "notification_ids": [str(uuid.uuid4())],
                "claimable": ["enqueued"],
                "transactional": ["welcome"],
            },
        ),
    ],
    ids=["record", "claim"],
)
def test_the_e_mail_worker_finds_its_deliveries_by_key_whatever_the_plan(
    db: str, settings: Settings, statement: PreparedStatement, values: dict[str, object]
) -> None:
    # The generic plan is what a prepared statement settles on. Through the status index a wave
    # would read every delivery in flight, a cost that grows with the backlog.
    with connection_scope(_own_url(settings, "prepared-plan"), autocommit=True) as connection:
        _deliveries_in_flight(connection, 5000)
        connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
        statement.run(connection, values)
        explain = statement._execute.replace("EXECUTE", "EXPLAIN (COSTS OFF) EXECUTE", 1)
        plan = "\n".join(row[0] for row in connection.exec_driver_sql(explain, values))
    assert "ix_deliveries_status_send_at" not in plan, plan
    assert "Index Scan using pk_deliveries" in plan or "uq_deliveries_period" in plan, plan
