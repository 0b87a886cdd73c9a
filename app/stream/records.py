"""The records of one batch, decoded or refused, and what became of the batch.

Transport-neutral: the stream agents, the gap reader, tests and benches all build `Record`s.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.contracts import ContractError, Event, decode_event, storable_text
from app.db.dead_letters import REPLAY_HEADER
from app.db.stream_offsets import PartitionState, TopicPartition
from app.domain.vocabulary import EventKind

log = logging.getLogger(__name__)

# Bounds what a dead letter's error adds to its Kafka record and its row.
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as it came off the wire (transport-neutral)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    def replay_token(self) -> uuid.UUID | None:
        """The dead letter this record replays, when it carries a well-formed replay header."""
        for name, value in self.headers:
            if name == REPLAY_HEADER:
                try:
                    return uuid.UUID(value.decode("ascii"))
                except (ValueError, UnicodeDecodeError, AttributeError):
                    return None
        return None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record we could not accept, with the reason."""

    record: Record
    error: str
    reason: str
    replay_token: uuid.UUID = field(default_factory=uuid.uuid4)

    def headers(self) -> list[tuple[str, bytes]]:
        """The dead-letter topic's headers: the error, a short reason, the source position."""
        return [
            ("error", self.error[:MAX_ERROR_CHARS].encode("utf-8", "replace")),
            ("reason", self.reason.encode()),
            ("source_topic", self.record.topic.encode()),
            ("source_partition", str(self.record.partition).encode()),
            ("source_offset", str(self.record.offset).encode()),
        ]


@dataclass
class BatchResult:
    """What one batch did: counts, dead letters, hand-offs, like counts, held records."""

    kind: EventKind
    applied: int = 0
    replayed: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    send_now: list[uuid.UUID] = field(default_factory=list)
    # Faust table key -> (source partition, count stored in PostgreSQL).
    like_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Records the consumer skipped, read back from Kafka and applied with this batch.
    recovered: int = 0
    # Replayed copies of dead letters whose event an earlier copy applied already.
    duplicate_replays: int = 0
    # Partitions that wait for an operator, with the reason, and their records (not applied).
    blocked: dict[TopicPartition, str] = field(default_factory=dict)
    held: list[Record] = field(default_factory=list)


DeadLetterSink = Callable[[Sequence[DeadLetter]], None]
# The Kafka topic id of each named topic (None where the broker has none to tell).
TopicIds = Callable[[Iterable[str]], Mapping[str, str | None]]
# Kafka's end offset (the next offset to be written) of each (topic, partition).
EndOffsets = Callable[[list[tuple[str, int]]], Mapping[tuple[str, int], int]]


def reason_of(error: str) -> str:
    """Classify a contract error message into a short, bounded reason (a metric label)."""
    if "empty message" in error:
        return "empty"
    if "bytes is over the" in error:
        return "too_large"
    if "not JSON" in error:
        return "not_json"
    if "cannot be decoded" in error:
        return "undecodable"
    if "cannot be stored" in error:
        return "bad_text"
    if "must be uuid" in error:
        return "bad_uuid"
    if ".periodicity must be one of" in error:
        return "bad_periodicity"
    return "schema"


def decode_records(
    kind: EventKind, records: Sequence[Record], *, max_bytes: int
) -> tuple[list[tuple[Record, Event]], list[DeadLetter]]:
    """Split records into accepted events and dead letters."""
    accepted: list[tuple[Record, Event]] = []
    dead: list[DeadLetter] = []
    for record in records:
        try:
            accepted.append((record, decode_event(kind, record.value, max_bytes=max_bytes)))
        except ContractError as exc:
            error = storable_text(str(exc))[:MAX_ERROR_CHARS]
            dead.append(dead_letter(record, error, reason_of(error)))
    return accepted, dead


def dead_letter(record: Record, error: str, reason: str) -> DeadLetter:
    # A replay that fails again keeps its event's token: one token per event across replays.
    return DeadLetter(record, error, reason, record.replay_token() or uuid.uuid4())


def split_fresh(
    records: Sequence[Record], states: Mapping[TopicPartition, PartitionState]
) -> tuple[dict[tuple[str, int, int], Record], list[Record]]:
    """The records past their partition's stored offset (by position), and those at or below
    it (replayed); records of a partition without a state (blocked) are in neither."""
    fresh: dict[tuple[str, int, int], Record] = {}
    replayed: list[Record] = []
    for record in records:
        state = states.get((record.topic, record.partition))
        if state is None:
            continue  # blocked: held for later
        if state.offset is None or record.offset > state.offset:
            fresh.setdefault((record.topic, record.partition, record.offset), record)
        else:
            replayed.append(record)
    return fresh, replayed


def top_offsets(fresh: Iterable[tuple[str, int, int]]) -> dict[TopicPartition, int]:
    """The highest offset of each partition among these positions."""
    top: dict[TopicPartition, int] = {}
    for topic, partition, offset in fresh:
        top[(topic, partition)] = max(offset, top.get((topic, partition), -1))
    return top
