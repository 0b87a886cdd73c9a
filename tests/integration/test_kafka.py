"""Apache Kafka (KRaft, local): admin, produce/consume in a group, transactions."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient

from app.config import Settings
from app.kafka.admin import ensure_topics
from app.kafka.connection import client_config
from harness.kafka import read_topic, value_of


@pytest.fixture
def topic(settings: Settings) -> Iterator[str]:
    name = f"test.kafka.{uuid.uuid4().hex[:12]}"
    assert ensure_topics(settings, [name], partitions=4) == [name]
    yield name
    AdminClient(client_config(settings)).delete_topics([name])


def test_topic_has_four_partitions(settings: Settings, topic: str) -> None:
    admin = AdminClient(client_config(settings))
    metadata = admin.list_topics(topic, timeout=10).topics[topic]
    assert metadata.error is None
    assert sorted(metadata.partitions) == [0, 1, 2, 3]
    # Creating it again is a no-op, not an error.
    assert ensure_topics(settings, [topic], partitions=4) == []


def test_produce_and_consume_1000_in_a_group(settings: Settings, topic: str) -> None:
    producer = Producer({**client_config(settings), "enable.idempotence": True})
    reports: list[KafkaError | None] = []
    sent = {f"msg-{i}".encode(): f"user-{i % 50}".encode() for i in range(1000)}
    for value, key in sent.items():
        producer.produce(
            topic, value=value, key=key, on_delivery=lambda err, _m: reports.append(err)
        )
    assert producer.flush(30) == 0
    assert len(reports) == 1000 and not any(reports)

    got = [(m.partition(), m.key(), m.value()) for m in read_topic(settings, topic, 1000)]
    assert {value: key for _, key, value in got} == sent
    assert {partition for partition, _, _ in got} == {0, 1, 2, 3}
    # Same key, same partition: per-user order holds.
    partition_of_key: dict[bytes | None, set[int | None]] = {}
    for partition, got_key, _ in got:
        partition_of_key.setdefault(got_key, set()).add(partition)
    assert all(len(parts) == 1 for parts in partition_of_key.values())


def test_transactions_commit_and_abort(settings: Settings, topic: str) -> None:
    producer = Producer(
        {
            **client_config(settings),
            "transactional.id": f"test-tx-{uuid.uuid4().hex[:8]}",
        }
    )
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    producer.begin_transaction()
    for i in range(10):
        producer.produce(topic, key=b"k", value=f"aborted-{i}".encode())
    # Flush first so the aborted records really reach the log (abort alone purges unsent ones).
    assert producer.flush(30) == 0
    producer.abort_transaction(30)

    # Exactly the committed ten: an aborted record read as committed would be one too many.
    committed = [value_of(m) for m in read_topic(settings, topic, 10)]
    assert sorted(committed) == sorted(f"committed-{i}".encode() for i in range(10))

    everything = [
        value_of(m) for m in read_topic(settings, topic, 20, isolation="read_uncommitted")
    ]
    assert sum(v.startswith(b"aborted-") for v in everything) == 10
