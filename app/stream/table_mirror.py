"""A batch's like counts into the Faust table: the changelog in one go, then the store.

`table[key] = count` sends one changelog record per key through Faust's producer buffer (a
future, a callback and a persisted-offset write per record). At 100,000 keys nearly every event
is a key of its own, and that was 43% of the stream worker's CPU (docs/benchmarks.md). A batch's
keys are written here as Faust would write them, in bulk:

1. every changelog record, in Faust's own encoding (the changelog topic's `prepare_key` and
   `prepare_value`) and to the key's own partition, through one idempotent confluent-kafka
   producer, waiting until Kafka has them all;
2. then each value into the table's store (what `table[key] = count` does besides the send);
3. then the store's persisted changelog offset per partition (what Faust's send callback does),
   so a restart recovers only the records the store lacks.

Changelog first: a worker killed in between leaves the changelog ahead of its store, which
recovery replays; never a store ahead of its changelog. A Kafka outage raises `ChangelogError`,
and the caller waits and writes the batch again (the records are values, not increments: writing
one twice changes nothing).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer
from faust.types import TP

from app.config import Settings
from app.kafka.producer import make_producer

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 30.0


class ChangelogError(Exception):
    """Kafka did not take every changelog record of a batch (an outage: write it again)."""


@dataclass(frozen=True, slots=True)
class ChangelogRecord:
    partition: int
    key: bytes
    value: bytes


class ChangelogWriter(Protocol):
    def write(self, topic: str, records: Sequence[ChangelogRecord]) -> dict[int, int]:
        """Write the records; return the highest offset written per partition."""


class KafkaChangelogWriter:
    """Writes changelog records through one idempotent producer (opened on first use)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    def _open(self) -> Producer:
        if self._producer is None:
            # A table's records stay in their key's partition, in order (idempotence), and a
            # broker outage only delays them: delivery gives up only after `message.timeout.ms`.
            self._producer = make_producer(self.settings, **{"linger.ms": 2})
        return self._producer

    def write(self, topic: str, records: Sequence[ChangelogRecord]) -> dict[int, int]:
        with self._lock:  # one batch at a time: a flush waits for this batch's records only
            return self._write(self._open(), topic, records)

    @staticmethod
    def _write(
        producer: Producer, topic: str, records: Sequence[ChangelogRecord]
    ) -> dict[int, int]:
        offsets: dict[int, int] = {}
        errors: list[str] = []

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is not None:
                errors.append(str(error))
                return
            partition, offset = message.partition(), message.offset()
            if partition is not None and offset is not None:
                offsets[partition] = max(offset, offsets.get(partition, -1))

        for record in records:
            while True:
                try:
                    producer.produce(
                        topic,
                        key=record.key,
                        value=record.value,
                        partition=record.partition,
                        on_delivery=delivered,
                    )
                    break
                except BufferError:
                    producer.poll(0.05)  # the local queue is full: serve delivery reports
        left = producer.flush(FLUSH_TIMEOUT_S)
        if left or errors:
            raise ChangelogError(
                f"{topic}: {len(errors)} of {len(records)} changelog records refused, {left} "
                f"unconfirmed after {FLUSH_TIMEOUT_S:.0f} s: {errors[:3]}"
            )
        return offsets


class Table(Protocol):
    """What of a Faust table the mirror uses (faust.Table has these)."""

    @property
    def data(self) -> Any: ...

    @property
    def changelog_topic(self) -> Any: ...


def changelog_records(
    table: Table, counts: Mapping[bytes, tuple[int, int]]
) -> list[ChangelogRecord]:
    """The changelog records of {key: (partition, count)}, encoded as Faust encodes them."""
    topic = table.changelog_topic
    # A Faust table has its serializers, though TableT does not declare them.
    key_serializer, value_serializer = table.key_serializer, table.value_serializer  # type: ignore[attr-defined]
    records = []
    for key, (partition, count) in counts.items():
        key_bytes, _ = topic.prepare_key(key, key_serializer)
        value_bytes, _ = topic.prepare_value(count, value_serializer)
        records.append(ChangelogRecord(partition, key_bytes, value_bytes))
    return records


def store_counts(
    table: Table,
    counts: Mapping[bytes, tuple[int, int]],
    offsets: Mapping[int, int],
    in_partition: Any,
) -> None:
    """Set each key in the table's store, then record how far the store covers the changelog.

    `in_partition(p)` is a context in which the store writes to partition p (Faust's stores pick
    the partition of a write from the current event).
    """
    by_partition: dict[int, list[tuple[bytes, int]]] = {}
    for key, (partition, count) in counts.items():
        by_partition.setdefault(partition, []).append((key, count))
    store = table.data
    topic = table.changelog_topic.get_topic_name()
    for partition, items in by_partition.items():
        with in_partition(partition):
            for key, count in items:
                store[key] = count
            if partition in offsets:
                store.set_persisted_offset(TP(topic, partition), offsets[partition])
