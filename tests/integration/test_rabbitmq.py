"""RabbitMQ (local): a durable queue round trip through kombu."""

from __future__ import annotations

import uuid

from kombu.connection import Connection
from kombu.entity import Exchange, Queue

from app.config import Settings


def test_durable_queue_round_trip(settings: Settings) -> None:
    name = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    exchange = Exchange(name, type="direct", durable=True)
    queue = Queue(name, exchange, routing_key=name, durable=True)
    payload = {"notification_id": str(uuid.uuid4()), "email": "ann@example.com"}

    with Connection(settings.celery_broker_url, connect_timeout=10) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        try:
            with conn.Producer(serializer="json") as producer:
                producer.publish(
                    payload, exchange=exchange, routing_key=name, delivery_mode="persistent"
                )

            # A second connection reads it, as a different process would.
            with Connection(settings.celery_broker_url, connect_timeout=10) as reader:
                message = queue(reader.default_channel).get(no_ack=False)
                assert message is not None
                assert message.payload == payload
                assert message.properties["delivery_mode"] == 2
                assert message.content_type == "application/json"
                message.ack()
                assert queue(reader.default_channel).get() is None

            # Durable: declaring passively finds it with its flags.
            _, count, _ = bound.queue_declare(passive=True)
            assert count == 0
            assert bound.durable
        finally:
            bound.delete()
