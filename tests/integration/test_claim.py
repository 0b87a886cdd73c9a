"""The claim and the record of a send, against PostgreSQL, under races and opt-outs."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import OperationalError

from app.config import get_settings
from app.core.clock import utcnow
from app.db import sends
from app.db.models import Delivery, Notification, OptOut
from app.db.session import connection_scope, session_scope
from app.delivery.sending import _record_sent, claim_for_sending
from harness.delivery import deliveries, seed


def _notifications() -> dict[uuid.UUID, Notification]:
    with session_scope() as session:
        return {n.notification_id: n for n in session.query(Notification)}


def test_two_workers_racing_for_each_delivery_claim_it_exactly_once(db: str) -> None:
    settings = get_settings()
    planned = seed(settings, utcnow(), ["likes", "mailing", "welcome"] * 10)
    rows = deliveries()
    results: dict[uuid.UUID, list[str]] = {}

    def race(delivery_id: uuid.UUID) -> list[str]:
        start = threading.Barrier(2)

        def one() -> str:
            start.wait()
            notification_id = rows[delivery_id].notification_id
            return claim_for_sending(delivery_id, notification_id, settings).state

        with ThreadPoolExecutor(2) as pool:
            return sorted(f.result() for f in [pool.submit(one), pool.submit(one)])

    for delivery_id, _user, _kind in planned:
        results[delivery_id] = race(delivery_id)
    assert set(map(tuple, results.values())) == {("busy", "claimed")}
    after = deliveries()
    assert {(d.status, d.attempts) for d in after.values()} == {("sending", 1)}


def test_the_one_statement_claim_leaves_opted_out_and_busy_deliveries_to_the_locked_look(
    db: str,
) -> None:
    settings = get_settings()
    [(mailing, user, _), (welcome, welcome_user, _), (sending, _u, _k)] = seed(
        settings, utcnow(), ["mailing", "welcome", "mailing"]
    )
    rows = deliveries()
    with session_scope() as session:
        session.add(OptOut(user_id=user.user_id, kind="mailing", source="test"))
        session.add(OptOut(user_id=welcome_user.user_id, kind="welcome", source="test"))
        session.execute(
            update(Delivery).where(Delivery.delivery_id == sending).values(status="sending")
        )
    with connection_scope(autocommit=True) as connection:
        found = {
            d: sends.claim_waiting(
                session=connection, delivery_id=d, notification_id=rows[d].notification_id
            )
            for d in (mailing, welcome, sending)
        }
    # A welcome mail is transactional: an opt-out does not hold it back.
    assert found[mailing] is None and found[sending] is None
    welcome_claim = found[welcome]
    assert welcome_claim is not None and welcome_claim.attempt == 1
    assert [
        claim_for_sending(d, rows[d].notification_id, settings).state
        for d in (
            mailing,
            sending,
        )
    ] == ["opted_out", "busy"]
    after = deliveries()
    assert (after[mailing].status, after[mailing].error) == ("skipped", "opted out")
    assert after[sending].status == "sending" and after[sending].attempts == 0


def test_recording_a_send_updates_delivery_and_notification_once(db: str) -> None:
    settings = get_settings()
    [(delivery_id, _user, _kind)] = seed(settings, utcnow(), ["likes"], like_count=3)
    row = deliveries()[delivery_id]
    claim = claim_for_sending(delivery_id, row.notification_id, settings)
    # Two likes arrive while the digest is out: they stay counted for the next one.
    with session_scope() as session:
        session.execute(
            update(Notification)
            .where(Notification.notification_id == row.notification_id)
            .values(like_count=Notification.like_count + 2)
        )

    def record(attempt: int | None) -> bool:
        with connection_scope(autocommit=True) as connection:
            return sends.mark_sent(
                session=connection,
                delivery_id=delivery_id,
                attempt=attempt,
                provider_message_id="m-1",
                now=utcnow(),
                backend="sendgrid",
            )

    assert record(claim.attempt + 1) is False  # a claim that is not current records nothing
    notification = _notifications()[row.notification_id]
    assert notification.status != "sent" and notification.like_count == 5
    assert record(claim.attempt) is True
    assert record(claim.attempt) is False  # recorded once
    delivery = deliveries()[delivery_id]
    notification = _notifications()[row.notification_id]
    assert (delivery.status, delivery.provider_message_id, delivery.backend) == (
        "sent",
        "m-1",
        "sendgrid",
    )
    assert (notification.status, notification.like_count) == ("sent", 2)


def _kill_autocommit_pool_connection(settings) -> None:
    """Terminate the (one idle) pooled autocommit connection, as a server restart would."""
    with connection_scope(autocommit=True) as connection:
        pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with connection_scope() as admin:
        admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


def test_a_dead_autocommit_connection_costs_a_retry_never_a_send_or_a_record(db: str) -> None:
    settings = get_settings()
    [(first, _u1, _k1), (second, _u2, _k2)] = seed(settings, utcnow(), ["mailing", "mailing"])
    rows = deliveries()
    _kill_autocommit_pool_connection(settings)
    # Not pinged first: the claim fails before any send, and the task is retried for it
    # (send_email retries OperationalError); the retry gets a new connection.
    with pytest.raises(OperationalError):
        claim_for_sending(first, rows[first].notification_id, settings)
    assert deliveries()[first].status == "scheduled"
    claim = claim_for_sending(first, rows[first].notification_id, settings)
    assert claim.state == "claimed"

    # The record of an accepted send retries in its own loop.
    _kill_autocommit_pool_connection(settings)
    accepted = {"attempt": claim.attempt, "provider_message_id": "m-1", "backend": "sendgrid"}
    assert _record_sent(first, accepted, utcnow()).result == "sent"
    assert deliveries()[first].status == "sent"
    assert claim_for_sending(second, rows[second].notification_id, settings).state == "claimed"
