"""Partitions that wait for an operator: their records set aside, the agent free for the rest.

One agent serves every partition of its topic. A blocked partition (a recreated topic, a renamed
group: docs/fault-model.md) must not hold that agent, or every sibling partition would stop
with it, and the stall watchdog would restart the worker for them again and again. So its
records are parked here, not applied and not skipped, the partition's fetching is paused, and
the agent goes on. A timer tries the parked records again (`batches.release_parked`); once an
operator has reset the partition they are applied in offset order and the partition resumes.
Records of a parked partition that were fetched before the pause join the lot behind the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.domain.vocabulary import EventKind
from app.stream.records import Record

TopicPartition = tuple[str, int]


@dataclass
class ParkedPartition:
    """The records of one blocked partition, in offset order, with their Faust events."""

    kind: EventKind
    records: list[Record] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)


class ParkingLot:
    """The parked partitions of this worker."""

    def __init__(self) -> None:
        self._parked: dict[TopicPartition, ParkedPartition] = {}

    def __contains__(self, tp: object) -> bool:
        return tp in self._parked

    def __len__(self) -> int:
        return len(self._parked)

    def park(
        self, kind: EventKind, records: Iterable[Record], events: Sequence[Any]
    ) -> set[TopicPartition]:
        """Set records aside behind those already parked; return the partitions newly parked."""
        new: set[TopicPartition] = set()
        event_of = {(e.message.topic, e.message.partition, e.message.offset): e for e in events}
        for record in records:
            tp = (record.topic, record.partition)
            if tp not in self._parked:
                self._parked[tp] = ParkedPartition(kind)
                new.add(tp)
            lot = self._parked[tp]
            lot.records.append(record)
            event = event_of.get((record.topic, record.partition, record.offset))
            if event is not None:
                lot.events.append(event)
        return new

    def by_kind(self) -> dict[EventKind, list[TopicPartition]]:
        """The parked partitions of each input topic's kind."""
        found: dict[EventKind, list[TopicPartition]] = {}
        for tp, lot in self._parked.items():
            found.setdefault(lot.kind, []).append(tp)
        return found

    def snapshot(
        self, tps: Iterable[TopicPartition]
    ) -> tuple[list[Record], list[Any], dict[TopicPartition, int]]:
        """The parked records and events of these partitions, and how many records each has."""
        records: list[Record] = []
        events: list[Any] = []
        counts: dict[TopicPartition, int] = {}
        for tp in tps:
            lot = self._parked[tp]
            records += lot.records
            events += lot.events
            counts[tp] = len(lot.records)
        return records, events, counts

    def settle(self, tp: TopicPartition, taken: int, still_blocked: bool) -> bool:
        """Drop the first `taken` records once applied; return whether the partition is free."""
        lot = self._parked[tp]
        if still_blocked:
            return False
        del lot.records[:taken]
        if lot.records:
            return False  # arrived while those were applied: the next try applies them
        del self._parked[tp]
        return True

    def drop(self, tp: TopicPartition) -> int:
        """Forget a partition that is not ours any more; return how many records it held."""
        return len(self._parked.pop(tp).records)
