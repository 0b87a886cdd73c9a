"""The dispatcher's publisher puts on `emails` exactly the message Celery's send_task would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from kombu import Connection, Queue
from kombu.message import Message

from app.config import Settings
from app.jobs.celery_app import EMAILS_QUEUE, SEND_EMAIL, celery_app
from app.jobs.handoff import CeleryEmailPublisher
from harness.delivery import purge_emails_queue

# Differ between any two messages: the task's id (and the root id, which is it), and the ETA.
PER_MESSAGE = {"id", "root_id", "eta"}


@pytest.fixture
def emails(settings: Settings) -> Iterator[Queue]:
    purge_emails_queue(settings)
    yield celery_app.amqp.queues[EMAILS_QUEUE]
    purge_emails_queue(settings)


def _take(settings: Settings, queue: Queue, count: int) -> list[Message]:
    with Connection(settings.celery_broker_url, connect_timeout=10) as reader:
        bound = queue(reader.default_channel)
        taken: list[Message] = []
        deadline = time.monotonic() + 10  # publishes are not confirmed: give them time to land
        while len(taken) < count and time.monotonic() < deadline:
            message = bound.get(no_ack=True)
            if message is not None:
                taken.append(message)
        extra = bound.get(no_ack=True)
        assert extra is None, extra.payload
    return taken


def _payload() -> dict[str, object]:
    return {
        "notification_id": str(uuid.uuid4()),
        "delivery_id": str(uuid.uuid4()),
        "email": "ann@example.com",
        "subject": "Hello",
        "body": "<p>Hello</p>",
        "text": "Hello",
        "headers": {},
    }


def test_the_message_is_the_one_send_task_publishes(settings: Settings, emails: Queue) -> None:
    payload = _payload()
    celery_app.send_task(
        SEND_EMAIL,
        args=[payload],
        argsrepr=f"[delivery {payload['delivery_id']}]",
        kwargsrepr="{}",
        countdown=30.0,
        queue=EMAILS_QUEUE,
        routing_key=EMAILS_QUEUE,
    )
    CeleryEmailPublisher(celery_app).publish([(payload, 30.0)])
    theirs, ours = _take(settings, emails, 2)

    assert ours.payload == theirs.payload == [[payload], {}, ours.payload[2]]
    assert {k: v for k, v in ours.headers.items() if k not in PER_MESSAGE} == {
        k: v for k, v in theirs.headers.items() if k not in PER_MESSAGE
    }
    assert ours.headers["task"] == SEND_EMAIL and ours.headers["root_id"] == ours.headers["id"]
    eta_gap = datetime.fromisoformat(ours.headers["eta"]) - datetime.fromisoformat(
        theirs.headers["eta"]
    )
    assert abs(eta_gap.total_seconds()) < 5
    for field in ("delivery_mode", "priority", "reply_to"):
        assert ours.properties.get(field) == theirs.properties.get(field), field
    assert ours.properties["correlation_id"] == ours.headers["id"]
    assert (ours.content_type, ours.content_encoding) == (
        theirs.content_type,
        theirs.content_encoding,
    )
    assert ours.delivery_info["routing_key"] == theirs.delivery_info["routing_key"] == EMAILS_QUEUE


def test_a_due_task_has_no_eta_and_a_chunk_arrives_whole_and_in_order(
    settings: Settings, emails: Queue
) -> None:
    payloads = [_payload() for _ in range(300)]
    CeleryEmailPublisher(celery_app).publish([(p, None) for p in payloads])
    taken = _take(settings, emails, len(payloads))
    assert [m.payload[0][0] for m in taken] == payloads
    assert {m.headers["eta"] for m in taken} == {None}
    assert len({m.headers["id"] for m in taken}) == len(payloads)


def test_a_broker_connection_lost_between_chunks_is_reopened(
    settings: Settings, emails: Queue
) -> None:
    publisher = CeleryEmailPublisher(celery_app)
    first, second = _payload(), _payload()
    publisher.publish([(first, None)])
    # Kill the pooled connection's socket under it, as a broker restart would.
    with celery_app.producer_or_acquire() as producer:
        producer.connection.connection.sock.close()
    publisher.publish([(second, None)])
    taken = _take(settings, emails, 2)
    assert [m.payload[0][0] for m in taken] == [first, second]
