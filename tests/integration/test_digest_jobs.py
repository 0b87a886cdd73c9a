"""The daily/weekly jobs and the dispatcher against real PostgreSQL, RabbitMQ and the Auth API."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.auth.client import AuthUnavailable
from app.auth.dev_server import DevAuthHandler, DevAuthServer
from app.config import Settings
from app.contracts import load_schema
from app.db.models import Campaign, Delivery, Notification, Template
from app.db.session import session_scope
from app.jobs import digests, dispatch
from app.jobs.celery_app import EMAILS_QUEUE, SEND_EMAILS, celery_app
from app.jobs.handoff import CeleryEmailPublisher
from harness.auth import client_for, serve_in_thread
from harness.rows import Spec, insert_notifications

NOW = datetime(2026, 11, 25, 0, 5, tzinfo=UTC)  # the daily job's usual moment

# Worked out by hand for NOW, SEND_HOUR_LOCAL=9, QUIET_HOURS=22:00-08:00: the next 09:00 local.
EXPECTED_SEND_AT = {
    "UTC": datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
    "Europe/London": datetime(2026, 11, 25, 9, 0, tzinfo=UTC),  # GMT
    "Europe/Berlin": datetime(2026, 11, 25, 8, 0, tzinfo=UTC),  # 01:05 CET now
    "America/New_York": datetime(2026, 11, 25, 14, 0, tzinfo=UTC),  # 19:05 EST on the 24th
    "America/Los_Angeles": datetime(2026, 11, 25, 17, 0, tzinfo=UTC),  # 16:05 PST on the 24th
    "America/St_Johns": datetime(2026, 11, 25, 12, 30, tzinfo=UTC),  # -03:30
    "Asia/Kathmandu": datetime(2026, 11, 25, 3, 15, tzinfo=UTC),  # +05:45, 05:50 now
    "Asia/Kolkata": datetime(2026, 11, 25, 3, 30, tzinfo=UTC),  # +05:30, 05:35 now
    "Asia/Tokyo": datetime(2026, 11, 26, 0, 0, tzinfo=UTC),  # 09:05 now: tomorrow's 09:00
    "Australia/Sydney": datetime(2026, 11, 25, 22, 0, tzinfo=UTC),  # AEDT 11:05 now: tomorrow
    "Pacific/Kiritimati": datetime(2026, 11, 25, 19, 0, tzinfo=UTC),  # +14, 14:05 now: tomorrow
    "Pacific/Pago_Pago": datetime(2026, 11, 25, 20, 0, tzinfo=UTC),  # -11, 13:05 on the 24th
}
NEXT_DAY_ZONES = {"Asia/Tokyo", "Australia/Sydney", "Pacific/Kiritimati"}

UNKNOWN_USERS = [uuid.UUID(int=i + 1) for i in range(20)]


def _specs(users: list[dict[str, Any]]) -> list[Spec]:
    """1,000 rows: likes (some with nothing to report), mailings, welcomes, 20 unknown users."""
    everyone = [uuid.UUID(u["user_id"]) for u in users] + UNKNOWN_USERS
    specs = []
    for i in range(1000):
        user = everyone[i % len(everyone)]
        slot = i % 10
        if slot <= 3:
            spec = Spec(user, "likes", "daily", uuid.uuid4(), f"comment {i}", like_count=i % 4)
        elif slot == 4:
            spec = Spec(user, "likes", "weekly", uuid.uuid4(), f"comment {i}", like_count=2)
        elif slot in (5, 6):
            spec = Spec(user, "mailing", "daily", uuid.uuid4(), f"Daily <news> {i}")
        elif slot == 7:
            spec = Spec(user, "mailing", "weekly", uuid.uuid4(), f"Weekly news {i}")
        elif slot == 8:
            spec = Spec(user, "mailing", "once", uuid.uuid4(), f"Once {i}")
        else:
            spec = Spec(everyone[i // 10], "welcome", "once", None, "https://auth.example/c?t=1")
        specs.append(spec)
    return specs


def _expected(spec: Spec, users: dict[uuid.UUID, dict[str, Any]]) -> tuple[str, str | None]:
    """(delivery status, error) the daily job must record for a daily row that is due."""
    user = users.get(spec.user_id)
    if user is None:
        return "skipped", "unknown user"
    policy = user["notification_policy"]
    if not policy["email"]:
        return "skipped", "email disabled"
    if not policy[spec.kind]:
        return "skipped", f"{spec.kind} disabled"
    return "scheduled", None


def _seed(users: list[dict[str, Any]]) -> dict[uuid.UUID, Spec]:
    specs = _specs(users)
    with session_scope() as session:
        ids = insert_notifications(session, specs)
    return dict(zip(ids, specs, strict=True))


def _due_daily(rows: dict[uuid.UUID, Spec]) -> dict[uuid.UUID, Spec]:
    return {
        nid: s
        for nid, s in rows.items()
        if s.periodicity == "daily" and not (s.kind == "likes" and s.like_count == 0)
    }


def _deliveries() -> dict[uuid.UUID, Delivery]:
    with session_scope() as session:
        query = select(Delivery).options(selectinload(Delivery.content))
        return {d.notification_id: d for d in session.scalars(query)}


def _notification_status() -> dict[uuid.UUID, str]:
    with session_scope() as session:
        rows = session.execute(select(Notification.notification_id, Notification.status))
        return {nid: status for nid, status in rows}


@pytest.fixture
def emails_queue(settings: Settings):
    """The real `emails` queue, emptied; yields a function that drains it."""
    queue = Queue(
        EMAILS_QUEUE, Exchange(EMAILS_QUEUE, "direct", durable=True), EMAILS_QUEUE, durable=True
    )
    with Connection(settings.celery_broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()

        def drain() -> list[Any]:
            messages = []
            while (message := bound.get(no_ack=True)) is not None:
                messages.append(message)
            return messages

        yield drain
        bound.purge()


def test_daily_job_plans_exactly_the_due_rows(
    db: str,
    auth_client,
    auth_users,
    settings: Settings,
    emails_queue,
) -> None:
    rows = _seed(auth_users)
    users = {uuid.UUID(u["user_id"]): u for u in auth_users}
    due = _due_daily(rows)

    report = digests.run_digest(
        "daily", auth=auth_client, settings=settings, now=NOW, chunk_size=200
    )

    deliveries = _deliveries()
    assert set(deliveries) == set(due)
    assert report.picked == len(due)
    statuses = _notification_status()
    expected_counts: dict[str, int] = {}
    for nid, spec in due.items():
        delivery = deliveries[nid]
        status, error = _expected(spec, users)
        expected_counts[status] = expected_counts.get(status, 0) + 1
        assert (delivery.status, delivery.error) == (status, error), spec
        assert statuses[nid] == {"scheduled": "queued", "skipped": "skipped"}[status]
        user = users.get(spec.user_id)
        zone = user["timezone"] if user else "UTC"
        assert delivery.send_at == EXPECTED_SEND_AT[zone], zone
        assert delivery.period_key == ("2026-11-26" if zone in NEXT_DAY_ZONES else "2026-11-25")
        if status == "scheduled":
            assert user is not None
            assert delivery.email == user["email"]
            assert delivery.content is not None
            assert delivery.content.subject is not None
            assert user["name"] in delivery.content.subject
            assert delivery.content.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert delivery.content.headers["List-Unsubscribe"].startswith("<http")
            assert delivery.reported_count == (spec.like_count if spec.kind == "likes" else 0)
            if spec.kind == "mailing":  # user text is escaped in HTML, literal in text
                assert delivery.content.body_html is not None
                assert delivery.content.body_text is not None
                assert "Daily &lt;news&gt;" in delivery.content.body_html
                assert "Daily <news>" in delivery.content.body_text
    assert report.by_status == expected_counts
    assert {"scheduled", "skipped"} <= set(expected_counts)
    # Rows of other periodicities, and likes with nothing to report, were not touched.
    for nid in set(rows) - set(due):
        assert statuses[nid] == "pending"

    # Running again in the same period changes nothing.
    again = digests.run_digest("daily", auth=auth_client, settings=settings, now=NOW)
    assert again.by_status == {}
    assert len(_deliveries()) == len(due)

    # The dispatcher enqueues exactly what is due by 08:01:30 UTC: Kathmandu, Kolkata, Berlin.
    publisher = CeleryEmailPublisher(celery_app)
    dispatch_at = datetime(2026, 11, 25, 8, 0, 30, tzinfo=UTC)
    due_now = {
        d.delivery_id: d
        for d in deliveries.values()
        if d.status == "scheduled" and d.send_at <= datetime(2026, 11, 25, 8, 1, 30, tzinfo=UTC)
    }
    assert due_now
    assert dispatch.dispatch_due(publisher=publisher, now=dispatch_at) == len(due_now)
    messages = emails_queue()
    schema = jsonschema.Draft202012Validator(
        load_schema("email_task"), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    seen = []
    for message in messages:
        assert message.headers["task"] == SEND_EMAILS
        assert message.headers["eta"] is None  # already due
        (chunk,), _kwargs, _embed = message.decode()
        assert 1 <= len(chunk) <= settings.email_chunk_size
        for payload in chunk:
            schema.validate(payload)
            delivery = due_now[uuid.UUID(payload["delivery_id"])]
            assert payload["notification_id"] == str(delivery.notification_id)
            assert delivery.content is not None
            assert (payload["email"], payload["subject"], payload["body"]) == (
                delivery.email,
                delivery.content.subject,
                delivery.content.body_html,
            )
            seen.append(delivery.delivery_id)
    assert set(seen) == set(due_now) and len(seen) == len(due_now)
    assert dispatch.dispatch_due(publisher=publisher, now=dispatch_at) == 0
    assert emails_queue() == []

    # Near 09:00 UTC the London and UTC deliveries go out with a short ETA; the ones enqueued an
    # hour ago were never sent (no worker runs here), so they are enqueued again.
    nine = {
        d.delivery_id
        for d in deliveries.values()
        if d.status == "scheduled" and d.send_at == datetime(2026, 11, 25, 9, tzinfo=UTC)
    }
    before_nine = datetime(2026, 11, 25, 8, 59, 30, tzinfo=UTC)
    assert dispatch.dispatch_due(publisher=publisher, now=before_nine) == len(nine) + len(due_now)
    messages = emails_queue()
    eta = {
        uuid.UUID(payload["delivery_id"]): m.headers["eta"]
        for m in messages
        for payload in m.decode()[0][0]
    }
    assert set(eta) == nine | set(due_now)
    assert sum(len(m.decode()[0][0]) for m in messages) == len(eta)
    # 30 s ahead of the service's clock, sent as a countdown on the worker's real clock.
    real_now = datetime.now(UTC)
    for delivery_id in nine:
        delay = datetime.fromisoformat(eta[delivery_id]) - real_now
        assert timedelta(seconds=20) < delay <= timedelta(seconds=30)
    assert {eta[d] for d in due_now} == {None}


def test_two_daily_jobs_at_once_produce_no_duplicates(
    db: str,
    auth_client,
    auth_users,
    settings: Settings,
) -> None:
    rows = _seed(auth_users)
    due = _due_daily(rows)
    barrier = threading.Barrier(2)
    reports: list[digests.JobReport] = []

    def run() -> None:
        barrier.wait()
        reports.append(
            digests.run_digest("daily", auth=auth_client, settings=settings, now=NOW, chunk_size=25)
        )

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reports) == 2
    with session_scope() as session:
        pairs = session.execute(select(Delivery.notification_id, Delivery.period_key)).all()
    assert len(pairs) == len(set(pairs)) == len(due)
    recorded = [sum(r.by_status.values()) for r in reports]
    assert sum(recorded) == len(due)  # each row planned by exactly one of the two runs
    assert all(r.picked > 0 for r in reports)


class _FailingAfter(DevAuthHandler):
    """The outside Auth service answering 503 once `server.fail_after` batches have been served."""

    def do_POST(self) -> None:
        fail_after = getattr(self.server, "fail_after", None)
        if fail_after is not None and len(self.server.batch_sizes) >= fail_after:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self._answer(503, {"error": "down for maintenance"})
            return
        super().do_POST()


def test_auth_outage_loses_nothing_and_the_next_run_completes(
    db: str,
    auth_users,
    settings: Settings,
) -> None:
    rows = _seed(auth_users)
    due = _due_daily(rows)
    server = DevAuthServer(
        ("127.0.0.1", 0), auth_users, settings.auth_api_token.get_secret_value(), _FailingAfter
    )
    server.fail_after = 1  # type: ignore[attr-defined]
    serve_in_thread(server)
    client = client_for(server, settings)
    try:
        with pytest.raises(AuthUnavailable):
            digests.run_digest("daily", auth=client, settings=settings, now=NOW, chunk_size=100)
        first = _deliveries()
        assert 0 < len(first) <= 100  # the first chunk only; the failed chunk rolled back
        statuses = _notification_status()
        assert all(statuses[nid] == "pending" for nid in set(due) - set(first))

        server.fail_after = None  # type: ignore[attr-defined]
        report = digests.run_digest("daily", auth=client, settings=settings, now=NOW)
        assert sum(report.by_status.values()) == len(due) - len(first)
        final = _deliveries()
        assert set(final) == set(due)
        assert all(final[nid].delivery_id == d.delivery_id for nid, d in first.items())
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_weekly_job_plans_weekly_rows_by_iso_week(
    db: str,
    auth_client,
    auth_users,
    settings: Settings,
) -> None:
    rows = _seed(auth_users)
    monday = datetime(2026, 12, 28, 0, 10, tzinfo=UTC)  # ISO 2026-W53
    report = digests.run_digest("weekly", auth=auth_client, settings=settings, now=monday)
    deliveries = _deliveries()
    weekly = {nid for nid, s in rows.items() if s.periodicity == "weekly"}
    assert set(deliveries) == weekly
    assert report.picked == len(weekly)
    # Kiritimati, Tokyo and Sydney are past 09:00 on Monday: Tuesday, still week 53.
    assert {d.period_key for d in deliveries.values()} == {"2026-W53"}


def test_once_rows_whose_hand_off_was_lost_are_found(db: str, auth_users) -> None:
    user = uuid.UUID(auth_users[0]["user_id"])
    with session_scope() as session:
        old, fresh = insert_notifications(
            session,
            [
                Spec(user, "welcome", "once", None, "https://x"),
                Spec(user, "mailing", "once", uuid.uuid4(), "hi"),
            ],
        )
        session.get_one(Notification, old).created_at = datetime(2026, 1, 1, tzinfo=UTC)
    assert dispatch.lost_once_handoffs(now=datetime.now(UTC)) == [old]
    assert fresh not in dispatch.lost_once_handoffs(now=datetime.now(UTC))


def test_failed_once_rows_are_not_swept_again(db: str, auth_users) -> None:
    user = uuid.UUID(auth_users[0]["user_id"])
    with session_scope() as session:
        (nid,) = insert_notifications(session, [Spec(user, "welcome", "once", None, "https://x")])
        row = session.get_one(Notification, nid)
        row.created_at = datetime(2026, 1, 1, tzinfo=UTC)
        row.status, row.last_update = "failed", datetime(2026, 1, 1, tzinfo=UTC)
    assert dispatch.lost_once_handoffs(now=datetime.now(UTC)) == []


def test_mailings_of_a_cancelled_campaign_are_not_planned(
    db: str,
    auth_client,
    auth_users,
    settings: Settings,
) -> None:
    users = [uuid.UUID(u["user_id"]) for u in auth_users[:4]]
    with session_scope() as session:
        template_id = session.scalars(
            select(Template.template_id).where(Template.name == "mailing")
        ).one()
        live, cancelled = (
            Campaign(name=n, template_id=template_id, periodicity="daily", status=s)
            for n, s in (("live", "published"), ("stopped", "cancelled"))
        )
        session.add_all([live, cancelled])
        session.flush()
        ids = insert_notifications(
            session,
            [
                Spec(users[0], "mailing", "daily", live.campaign_id, "a"),
                Spec(users[1], "mailing", "daily", cancelled.campaign_id, "b"),
                Spec(users[2], "mailing", "once", cancelled.campaign_id, "c"),
            ],
        )
    report = digests.run_digest("daily", auth=auth_client, settings=settings, now=NOW)
    assert report.picked == 1
    assert set(_deliveries()) == {ids[0]}
    assert digests.plan_once([ids[2]], auth=auth_client, settings=settings, now=NOW) == {}
