"""Produce to and read back from the real Kafka in tests and benches: one way of each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaError, Message

from app.config import Settings
from app.kafka.connection import client_config
from app.kafka.producer import make_producer
from app.stream.records import Record


def produce(
    settings: Settings, items: Iterable[tuple[str, str | bytes | None, bytes | None]]
) -> int:
    """Produce (topic, key, value) items in order, as a producer team would; return how many.

    Our own producer settings (idempotent, Kafka's murmur2 partitioner), waiting for room when
    the local queue is full, and every message acknowledged before returning.
    """
    producer = make_producer(settings, **{"linger.ms": 20})
    count = 0
    for topic, key, value in items:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
    assert producer.flush(60) == 0, "messages left unacknowledged after 60 s"
    return count


def read_topic(
    settings: Settings,
    topic: str,
    expected: int,
    *,
    timeout: float = 60,
    isolation: str = "read_committed",
) -> list[Message]:
    """Read a topic from the beginning in a fresh group: exactly `expected` messages, no more.

    Fails when fewer arrive within `timeout`, or when one more shows up within a second after.
    """
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"test-read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error:
                assert error.code() == KafkaError._PARTITION_EOF, error
                continue
            got.append(message)
        extra = consumer.poll(1.0)
        assert extra is None or extra.error(), f"{topic}: more messages than {expected}"
    finally:
        consumer.close()
    assert len(got) == expected, f"{topic}: {len(got)} messages, expected {expected}"
    return got


def record_of(message: Message) -> Record:
    """A consumed message as the stream worker's ingest takes it (topic, partition, offset, key,
    value)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    # Typed optional for a message not yet produced; a consumed one has all three.
    assert topic is not None and partition is not None and offset is not None, message
    return Record(topic, partition, offset, message.key(), message.value())


def value_of(message: Message) -> bytes:
    """A consumed message's value (typed optional: a tombstone has none)."""
    value = message.value()
    assert value is not None, f"a message without a value at offset {message.offset()}"
    return value


def headers_of(message: Message) -> dict[str, bytes]:
    """A consumed message's headers by name (none: empty); every header we write has a value."""
    headers = message.headers() or []
    found: dict[str, bytes] = {}
    for name, value in headers.items() if isinstance(headers, dict) else headers:
        assert isinstance(value, bytes), f"header {name!r}: {value!r}"
        found[name] = value
    return found
