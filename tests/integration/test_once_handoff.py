"""`once` mail goes from planning straight to the `emails` queue, with no sweep in between.

Real PostgreSQL, RabbitMQ and the dev Auth API. A broker that refuses the hand-off costs a delay
(the dispatcher's next sweep), never a lost or a second e-mail.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from kombu import Connection, Exchange, Queue
from sqlalchemy import select

from app.config import Settings
from app.db.models import Campaign, Delivery, Template
from app.db.session import session_scope
from app.jobs import digests, dispatch
from app.jobs.celery_app import EMAILS_QUEUE, celery_app
from app.jobs.handoff import CeleryEmailPublisher
from harness.rows import Spec, insert_notifications
from harness.waiting import free_port


@pytest.fixture
def emails_queue(settings: Settings):
    """The real `emails` queue, emptied; yields a function returning the delivery ids on it."""
    queue = Queue(
        EMAILS_QUEUE, Exchange(EMAILS_QUEUE, "direct", durable=True), EMAILS_QUEUE, durable=True
    )
    with Connection(settings.celery_broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()

        def drain() -> list[uuid.UUID]:
            ids = []
            while (message := bound.get(no_ack=True)) is not None:
                (chunk,), _kwargs, _embed = message.decode()
                ids += [uuid.UUID(payload["delivery_id"]) for payload in chunk]
            return ids

        yield drain
        bound.purge()


def _deliveries() -> dict[uuid.UUID, Delivery]:
    with session_scope() as session:
        return {d.notification_id: d for d in session.scalars(select(Delivery))}


def _welcomes(users: list[dict[str, Any]], count: int, unknown: int = 0) -> list[uuid.UUID]:
    """`count` welcome rows of known users, and `unknown` of users Auth has never heard of."""
    user_ids = [uuid.UUID(users[i % len(users)]["user_id"]) for i in range(count)]
    user_ids += [uuid.UUID(int=i + 1) for i in range(unknown)]
    specs = [
        Spec(user_id, "welcome", "once", None, f"https://c/{i}")
        for i, user_id in enumerate(user_ids)
    ]
    with session_scope() as session:
        return insert_notifications(session, specs)


def _unreachable_broker() -> Celery:
    """A Celery app whose broker is a port nobody listens on, and that does not retry."""
    app = Celery("unreachable", broker=f"amqp://guest:guest@127.0.0.1:{free_port()}//")
    app.conf.update(
        task_queues=celery_app.conf.task_queues,
        task_publish_retry_policy={"max_retries": 0},
        broker_connection_timeout=1,
    )
    return app


def test_welcomes_are_on_the_queue_when_planning_returns(
    db: str, auth_client, auth_users, settings: Settings, emails_queue
) -> None:
    ids = _welcomes(auth_users, 120, unknown=5)
    now = datetime.now(UTC)

    statuses = digests.plan_once(
        ids,
        auth=auth_client,
        settings=settings,
        now=now,
        publisher=CeleryEmailPublisher(celery_app),
    )

    deliveries = _deliveries()
    sendable = {d.delivery_id for d in deliveries.values() if d.status == "enqueued"}
    # Welcome mail goes to every known user; the unknown ones are skipped, and not handed over.
    assert list(statuses.values()).count("skipped") == 5
    assert len(sendable) == list(statuses.values()).count("scheduled") == 120
    assert {d.status for d in deliveries.values()} == {"enqueued", "skipped"}
    assert all(d.enqueued_at == now for d in deliveries.values() if d.status == "enqueued")
    on_queue = emails_queue()
    assert sorted(on_queue) == sorted(sendable)
    # Nothing is left for the sweep: it publishes no second copy.
    assert dispatch.dispatch_due(publisher=CeleryEmailPublisher(celery_app), now=now) == 0
    assert emails_queue() == []


def test_a_once_mailing_for_later_waits_for_the_dispatcher(
    db: str, auth_client, auth_users, settings: Settings, emails_queue
) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(hours=2)
    user = next(
        uuid.UUID(u["user_id"])
        for u in auth_users
        if u["notification_policy"]["email"] and u["notification_policy"]["mailing"]
    )
    with session_scope() as session:
        template_id = session.scalars(
            select(Template.template_id).where(Template.name == "mailing")
        ).one()
        campaign = Campaign(
            name="later",
            template_id=template_id,
            periodicity="once",
            status="published",
            send_at=later,
        )
        session.add(campaign)
        session.flush()
        (nid,) = insert_notifications(
            session, [Spec(user, "mailing", "once", campaign.campaign_id, "news")]
        )

    statuses = digests.plan_once(
        [nid],
        auth=auth_client,
        settings=settings,
        now=now,
        publisher=CeleryEmailPublisher(celery_app),
    )

    assert statuses == {nid: "scheduled"}
    delivery = _deliveries()[nid]
    # At the campaign's time, or later if that falls in the user's quiet hours.
    assert delivery.status == "scheduled" and delivery.send_at >= later
    assert emails_queue() == []
    publisher = CeleryEmailPublisher(celery_app)
    due = delivery.send_at - timedelta(seconds=30)
    assert dispatch.dispatch_due(publisher=publisher, now=due) == 1
    assert emails_queue() == [delivery.delivery_id]


def test_a_refused_hand_off_goes_to_the_sweep_and_is_sent_once(
    db: str, auth_client, auth_users, settings: Settings, emails_queue
) -> None:
    ids = _welcomes(auth_users, 30)
    now = datetime.now(UTC)

    statuses = digests.plan_once(
        ids,
        auth=auth_client,
        settings=settings,
        now=now,
        publisher=CeleryEmailPublisher(_unreachable_broker()),
    )

    # Planned and committed, but back to `scheduled`: nothing was lost with the broker.
    deliveries = _deliveries()
    scheduled = {d.delivery_id for d in deliveries.values() if d.status == "scheduled"}
    assert len(scheduled) == list(statuses.values()).count("scheduled") > 0
    assert all(d.enqueued_at is None for d in deliveries.values())
    assert emails_queue() == []
    publisher = CeleryEmailPublisher(celery_app)
    assert dispatch.dispatch_due(publisher=publisher, now=now) == len(scheduled)
    assert sorted(emails_queue()) == sorted(scheduled)
    assert dispatch.dispatch_due(publisher=publisher, now=now) == 0
