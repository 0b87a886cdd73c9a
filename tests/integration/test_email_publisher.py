"""The dispatcher's publisher puts on `emails` exactly the message Celery's send_task would."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kombu.connection import Connection
from kombu.entity import Queue
from kombu.message import Message

from app.config import Settings
from app.jobs.celery_app import EMAILS_QUEUE, SEND_EMAILS, celery_app
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
        SEND_EMAILS,
        args=[[payload]],
        argsrepr=f"[1 e-mails, first delivery {payload['delivery_id']}]",
        kwargsrepr="{}",
        countdown=30.0,
        queue=EMAILS_QUEUE,
        routing_key=EMAILS_QUEUE,
    )
    CeleryEmailPublisher(celery_app).publish([(payload, 30.0)])
    theirs, ours = _take(settings, emails, 2)

    assert ours.payload == theirs.payload == [[[payload]], {}, ours.payload[2]]
    assert {k: v for k, v in ours.headers.items() if k not in PER_MESSAGE} == {
        k: v for k, v in theirs.headers.items() if k not in PER_MESSAGE
    }
    assert ours.headers["task"] == SEND_EMAILS and ours.headers["root_id"] == ours.headers["id"]
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


def test_due_tasks_go_in_chunks_with_no_eta_whole_and_in_order(
    settings: Settings, emails: Queue
) -> None:
    payloads = [_payload() for _ in range(120)]
    CeleryEmailPublisher(celery_app, chunk_size=50).publish([(p, None) for p in payloads])
    taken = _take(settings, emails, 3)
    assert [len(m.payload[0][0]) for m in taken] == [50, 50, 20]
    assert [p for m in taken for p in m.payload[0][0]] == payloads
    assert {m.headers["eta"] for m in taken} == {None}
    assert len({m.headers["id"] for m in taken}) == 3


def test_a_chunk_holds_tasks_due_in_the_same_second_and_none_goes_early(
    settings: Settings, emails: Queue
) -> None:
    a, b, c, d = (_payload() for _ in range(4))
    CeleryEmailPublisher(celery_app).publish([(a, None), (b, 0.2), (c, 0.9), (d, 1.5)])
    taken = _take(settings, emails, 3)
    now = datetime.now(UTC)
    assert [m.payload[0][0] for m in taken] == [[a], [b, c], [d]]
    assert taken[0].headers["eta"] is None
    ahead = [(datetime.fromisoformat(m.headers["eta"]) - now).total_seconds() for m in taken[1:]]
    assert 0 < ahead[0] <= 1.0 and 1.0 < ahead[1] <= 2.0


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
    assert [m.payload[0][0] for m in taken] == [[first], [second]]
