"""The portal's dashboard against the real stack: its figures are what PostgreSQL, Kafka,
RabbitMQ and the workers' /metrics say, and what it cannot reach it says it cannot."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from fastapi.testclient import TestClient
from kombu.connection import Connection
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from sqlalchemy import text

from app.config import Settings
from app.db import planning_shards
from app.db.session import session_scope
from app.jobs.celery_app import EMAILS_QUEUE
from app.jobs.schedule import seed_schedule
from app.kafka.admin import end_offsets, ensure_topics
from app.kafka.connection import client_config
from app.portal.app import create_app
from harness.kafka import produce
from harness.portal import log_in, make_admin_user
from harness.rows import Spec, insert_notifications
from harness.stream import email_queue
from harness.waiting import free_port


@pytest.fixture
def topics(settings: Settings) -> Iterator[dict[str, str]]:
    """Input topics of this test alone (2 partitions each)."""
    prefix = f"dash-{uuid.uuid4().hex[:8]}"
    names = {
        "topic_user_registered": f"{prefix}.user_registered",
        "topic_comment_liked": f"{prefix}.comment_liked",
        "topic_mailing": f"{prefix}.mailing",
    }
    ensure_topics(settings, names.values(), partitions=2)
    yield names
    AdminClient(client_config(settings)).delete_topics(list(names.values()))


@pytest.fixture
def jobs_metrics() -> Iterator[str]:
    """A worker's /metrics: Auth's circuit open, the provider's half-open (the real exporter)."""
    registry = CollectorRegistry()
    state = Gauge("notify_circuit_state", "circuit", ["dependency"], registry=registry)
    state.labels("auth").set(2)
    state.labels("mail:sendgrid").set(1)
    parked = Counter("notify_circuit_parked", "parked", ["dependency"], registry=registry)
    parked.labels("auth").inc(7)
    Gauge("notify_email_failover", "failover", registry=registry).set(0)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"http://127.0.0.1:{port}/metrics"
    server.shutdown()
    thread.join(5)


def _seed_deliveries(now: datetime) -> None:
    """Deliveries due 0, 1 and 30 hours ago, with known statuses."""
    plan = [
        (0, "sent"),
        (0, "delivered"),
        (0, "skipped"),
        (1, "failed"),
        (1, "bounced"),
        (1, "scheduled"),
        (30, "sent"),
    ]
    with session_scope() as session:
        ids = insert_notifications(
            session, [Spec(uuid.uuid4(), "mailing", "daily", uuid.uuid4(), "x") for _ in plan]
        )
        for notification_id, (hours_ago, status) in zip(ids, plan, strict=True):
            session.execute(
                text(
                    "INSERT INTO deliveries (delivery_id, notification_id, period_key, send_at,"
                    " status) VALUES (gen_random_uuid(), :n, 'p', :at, :s)"
                ),
                {"n": notification_id, "at": now - timedelta(hours=hours_ago), "s": status},
            )
        session.execute(
            text(
                "INSERT INTO dead_letters (group_id, source_topic, source_partition, source_offset,"
                " reason, error, replay_token) VALUES"
                " ('g', 't', 0, 1, 'not_json', 'x', gen_random_uuid()),"
                " ('g', 't', 0, 2, 'not_json', 'x', gen_random_uuid()),"
                " ('g', 't', 0, 3, 'schema', 'x', gen_random_uuid())"
            )
        )


def _seed_planning_run(now: datetime) -> None:
    """A daily run of 3 shards: one done, one failed, one still queued."""
    run_id = uuid.uuid4()
    with session_scope() as session:
        planning_shards.create_run(
            session=session, run_id=run_id, periodicity="daily", shards=3, expected=120
        )
        planning_shards.start_shard(session=session, run_id=run_id, shard=0, now=now)
        planning_shards.add_progress(
            session=session,
            run_id=run_id,
            shard=0,
            picked=40,
            counts={"scheduled": 30, "skipped": 7, "failed": 3},
        )
        planning_shards.finish_shard(session=session, run_id=run_id, shard=0, now=now)
        planning_shards.finish_shard(session=session, run_id=run_id, shard=1, now=now, error="boom")


def test_the_dashboard_shows_what_the_stack_says(
    db: str,
    settings: Settings,
    topics: dict[str, str],
    jobs_metrics: str,
) -> None:
    now = datetime.now(UTC)
    _seed_deliveries(now)
    _seed_planning_run(now)
    seed_schedule()
    # 5 registrations on one partition of the private topic, 2 of them applied.
    registered = topics["topic_user_registered"]
    produce(settings, [(registered, "k", b"{}") for _ in range(5)])
    partition = next(p for (_, p), end in end_offsets(settings, [registered]).items() if end)
    app_id = f"dash-app-{uuid.uuid4().hex[:6]}"
    with session_scope() as session:
        session.execute(
            text(
                'INSERT INTO stream_offsets (group_id, topic, partition, "offset")'
                " VALUES (:g, :t, :p, 1)"
            ),
            {"g": app_id, "t": registered, "p": partition},
        )
    portal = settings.model_copy(
        update={
            **topics,
            "faust_app_id": app_id,
            "dashboard_metrics_urls": f"{jobs_metrics},http://127.0.0.1:1/metrics,file:///etc/passwd",
        }
    )
    with TestClient(create_app(portal)) as client:
        log_in(client, *make_admin_user(role="viewer"))
        with Connection(settings.celery_broker_url) as conn:
            queue = email_queue(EMAILS_QUEUE)(conn.default_channel)
            queue.declare()
            queue.purge()
            producer = conn.Producer()
            for _ in range(3):
                producer.publish({"x": 1}, routing_key=EMAILS_QUEUE, exchange=EMAILS_QUEUE)
            figures: dict[str, Any] = client.get("/admin/api/dashboard").json()
            queue.purge()

    hourly = figures["hourly"]
    assert len(hourly["hours"]) == 24
    # Bounced is failed (the vocabulary's outcome groups); the delivery of 30 hours ago is out.
    assert (sum(hourly["sent"]), sum(hourly["failed"]), sum(hourly["skipped"])) == (2, 2, 1)
    assert (hourly["sent"][-1], hourly["sent"][-2], hourly["failed"][-2]) == (2, 0, 2)
    assert figures["dead_letters"] == [
        {"reason": "not_json", "count": 2},
        {"reason": "schema", "count": 1},
    ]
    assert figures["queues"]["ok"] and figures["queues"]["value"]["emails"] == 3
    circuits = figures["circuits"]["value"]
    assert circuits["dependencies"] == [
        {"name": "auth", "state": "open", "parked": 7},
        {"name": "mail:sendgrid", "state": "half-open", "parked": 0},
    ]
    assert circuits["provider"] == "primary"
    assert len(circuits["unreachable"]) == 2
    assert circuits["unreachable"][0].startswith("http://127.0.0.1:1/metrics: ")
    assert circuits["unreachable"][1] == "file:///etc/passwd: not an http(s) URL"  # never read
    lag = {(p["topic"], p["partition"]): p for p in figures["lag"]["partitions"]}
    assert lag[(registered, partition)] == {
        "topic": registered,
        "partition": partition,
        "applied": 1,
        "end": 5,
        "lag": 3,
        "blocked": None,
    }
    assert len(lag) == 6  # 3 topics x 2 partitions, the others empty
    assert sum(p["lag"] for p in lag.values()) == 3
    assert {b["name"] for b in figures["beat"]} >= {"daily-digest", "weekly-digest", "dispatch"}
    daily = next(b for b in figures["beat"] if b["name"] == "daily-digest")
    assert datetime.fromisoformat(daily["next_run"]) > now
    [run] = figures["planning"]
    assert (run["periodicity"], run["shards"], run["shards_done"], run["shards_failed"]) == (
        "daily",
        3,
        1,
        1,
    )
    assert (run["picked"], run["scheduled"], run["skipped"], run["failed"]) == (40, 30, 7, 3)


def test_the_home_page_draws_the_figures_with_the_served_chart_library(
    db: str, settings: Settings
) -> None:
    with TestClient(create_app(settings)) as client:
        log_in(client, *make_admin_user(role="viewer"))
        home = client.get("/admin/")
        head = client.head("/admin/")
        chart = client.get("/admin/assets/chart.umd.min.js")
        script = client.get("/admin/assets/dashboard.js")
        missing = client.get("/admin/assets/..%2Fdashboard.py")
    assert home.status_code == 200
    assert head.status_code == 200 and head.text == ""  # not SQLAdmin's index, without figures
    for needed in ('id="chart-hourly"', 'id="dashboard-data"', "/admin/assets/chart.umd.min.js"):
        assert needed in home.text
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]
    assert script.status_code == 200 and "/admin/api/dashboard" in script.text
    assert missing.status_code == 404


def test_the_dashboard_needs_a_sign_in(db: str, settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        response = client.get("/admin/api/dashboard", follow_redirects=False)
    assert response.status_code in (302, 303, 401)
