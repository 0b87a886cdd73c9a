"""Kafka reads the stream worker makes with clients of its own, never through Faust's consumer.

Topic ids (a recreated topic has a new one), the records of a gap, and end offsets for the
watchdog: a stalled Faust consumer must not stall the checks that are there to notice it.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from app.kafka.connection import client_config
from app.stream import gaps, ingest
from app.stream.faust_app import settings


def headers_of(headers: Any) -> tuple[tuple[str, bytes], ...]:
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, dict) else headers
    return tuple((str(k), v if isinstance(v, bytes) else b"") for k, v in items)


@cache
def _admin() -> AdminClient:
    return AdminClient(client_config(settings))


def topic_ids(names: Any) -> dict[str, str | None]:
    """The Kafka topic id of each topic, asked fresh (a recreated topic has a new one)."""
    names = sorted(set(names))
    futures = _admin().describe_topics(TopicCollection(names), request_timeout=10)
    return {name: str(future.result().topic_id) or None for name, future in futures.items()}


GAP_READ_TIMEOUT_S = 30.0


def read_gap(gap: gaps.Gap) -> list[ingest.Record]:
    """The records at offsets [start, end) of one partition, read with a client of our own.

    Gaps are rare (a rebalance, a crash), so a short-lived consumer per gap is cheap enough, and
    unshared: agents of different topics may read gaps at once from their executor threads.
    """
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"{settings.faust_app_id}-gaps",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",  # a gap below the log's start: read what is left
        }
    )
    records: list[ingest.Record] = []
    deadline = time.monotonic() + GAP_READ_TIMEOUT_S
    try:
        consumer.assign([TopicPartition(gap.topic, gap.partition, gap.start)])
        while True:
            message = consumer.poll(1.0)
            if message is None:
                # A timeout is an outage (retried): it counts from the last record read, so a
                # long gap is read however long it takes.
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {gap} from Kafka")
                continue
            deadline = time.monotonic() + GAP_READ_TIMEOUT_S
            error = message.error()
            if error:
                if error.code() == KafkaError._PARTITION_EOF:
                    return records
                raise KafkaException(error)
            offset = message.offset()
            assert offset is not None  # only a message not yet produced lacks one
            if offset >= gap.end:
                return records
            records.append(
                ingest.Record(
                    gap.topic,
                    gap.partition,
                    offset,
                    message.key(),
                    message.value(),
                    headers_of(message.headers()),
                )
            )
            if offset == gap.end - 1:
                return records
    finally:
        consumer.close()


@cache
def _offsets_reader() -> Consumer:
    return Consumer(
        {
            **client_config(settings),
            "group.id": f"{settings.faust_app_id}-watchdog",
        }
    )


def end_offsets(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Kafka's end offset of each partition, asked with a client of its own."""
    reader = _offsets_reader()
    return {
        (topic, partition): reader.get_watermark_offsets(TopicPartition(topic, partition), 10)[1]
        for topic, partition in partitions
    }
