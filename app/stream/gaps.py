"""Gaps: offsets the consumer skipped between a partition's stored offset and a batch.

Around a rebalance faust-streaming drops and acks records fetched under the previous group
generation, so its committed Kafka offset can pass records no batch ever saw. A batch that starts
beyond the stored offset + 1, or has a hole, first reads the missing records back from Kafka
(docs/stream-semantics.md "Nothing skipped").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from app.stream.records import Record

log = logging.getLogger(__name__)
TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Gap:
    """Offsets [start, end) of one partition that no batch has carried yet."""

    topic: str
    partition: int
    start: int
    end: int


# Reads the records of a gap from Kafka (fewer when offsets hold transaction markers).
GapFiller = Callable[[Gap], Sequence[Record]]


def find_gaps(
    stored: Mapping[TopicPartition, int | None], offsets: Iterable[tuple[str, int, int]]
) -> list[Gap]:
    """The holes between each partition's stored offset and the fresh offsets of a batch.

    A partition with no stored offset (None) has none: this database starts where the consumer
    group stands (a new database must not replay, and mail, the topic's whole history).
    """
    by_partition: dict[TopicPartition, list[int]] = {}
    for topic, partition, offset in offsets:
        if stored.get((topic, partition)) is not None:
            by_partition.setdefault((topic, partition), []).append(offset)
    gaps = []
    for (topic, partition), found in sorted(by_partition.items()):
        start = stored[(topic, partition)]
        assert start is not None  # by_partition holds only partitions with a stored offset
        expected = start + 1
        for offset in sorted(set(found)):
            if offset > expected:
                gaps.append(Gap(topic, partition, expected, offset))
            expected = offset + 1
    return gaps


def fill(
    fresh: dict[tuple[str, int, int], Record],
    stored: Mapping[TopicPartition, int | None],
    fill_gaps: GapFiller,
) -> int:
    """Add the records of every gap of `fresh` (read by `fill_gaps`); return how many."""
    recovered = 0
    for gap in find_gaps(stored, fresh):
        records = [r for r in fill_gaps(gap) if gap.start <= r.offset < gap.end]
        for record in records:
            fresh[(record.topic, record.partition, record.offset)] = record
        recovered += len(records)
        if records:
            log.warning(
                "%s[%d]: read back %d records the consumer skipped at offsets [%d, %d)",
                gap.topic,
                gap.partition,
                len(records),
                gap.start,
                gap.end,
                extra={"topic": gap.topic, "partition": gap.partition},
            )
    return recovered
