"""Publish many keyed messages to Kafka and count the broker's delivery reports."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from app.config import Settings
from app.kafka.connection import client_config

log = logging.getLogger(__name__)

# Idempotence keeps retried batches from landing twice; lz4 and a short linger fill batches.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 200_000,
    # Kafka's standard partitioner (Java clients, aiokafka): a user id names the same partition
    # for us, for other producers and for Faust's table_route (docs/stream-semantics.md).
    "partitioner": "murmur2_random",
}


@dataclass(slots=True)
class PublishReport:
    """What the broker acknowledged: delivered and failed counts, the first errors seen."""

    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        """Count one delivery report (called from `poll`/`flush` on the producing thread)."""
        if error is None:
            self.delivered += 1
            return
        self.failed += 1
        if len(self.errors) < 10:
            self.errors.append(str(error))


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """An idempotent producer for our own events."""
    return Producer({**client_config(settings), **PRODUCER_DEFAULTS, **overrides})


def publish_all(
    producer: Producer,
    topic: str,
    messages: Iterable[tuple[bytes, bytes]],
    *,
    flush_timeout_s: float = 60.0,
) -> PublishReport:
    """Produce every (key, value) and wait for their delivery reports."""
    report = PublishReport()
    produced = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=report.on_delivery)
                break
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                producer.poll(0.05)
        produced += 1
        if produced % 1000 == 0:
            producer.poll(0)
    left = producer.flush(flush_timeout_s)
    unreported = produced - report.delivered - report.failed
    if left or unreported:
        report.failed += unreported
        report.errors.append(f"{unreported} messages without a delivery report after flush")
    if report.failed:
        log.warning("kafka publish to %s: %d failed: %s", topic, report.failed, report.errors)
    return report
