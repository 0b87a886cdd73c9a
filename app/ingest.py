"""Apply a batch of raw input records to PostgreSQL: one transaction, offsets included (no Faust).

Kafka delivers at least once. The transaction that writes a batch's rows also raises the stored
offset of each topic-partition, and records at or below the stored offset are skipped, so a replay
after any crash neither loses nor double-counts an event (DESIGN.md "Exactly-once effect").

The consumer may also deliver too little: around a rebalance faust-streaming drops and acks
records fetched under the previous group generation, so its committed Kafka offset can pass
records no batch ever saw. Applying a later record would then raise the stored offset past them
for good. So a batch that starts beyond the stored offset + 1, or has a hole, first reads the
missing records from Kafka itself (`fill_gaps`) and applies them in offset order.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from app.contracts import ContractError, Event, EventKind, decode_event
from app.db import ingest_store
from app.db.ingest_store import LikeDelta, TextItem
from app.db.session import session_scope

log = logging.getLogger(__name__)

NOTIFICATION_KIND: dict[str, str] = {
    "user_registered": "welcome",
    "comment_liked": "likes",
    "mailing": "mailing",
}
TEMPLATE_OF_KIND = {"user_registered": "welcome", "mailing": "mailing"}
# Rows whose `once` mail has not gone out yet; anything else was planned or sent already.
UNSENT = ("pending", "failed")


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as it came off the wire (transport-neutral)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record we could not accept, with the reason."""

    record: Record
    error: str
    reason: str

    def headers(self) -> list[tuple[str, bytes]]:
        """The dead-letter topic's headers (DESIGN.md), plus a short machine-readable reason."""
        return [
            ("error", self.error.encode()),
            ("reason", self.reason.encode()),
            ("source_topic", self.record.topic.encode()),
            ("source_partition", str(self.record.partition).encode()),
            ("source_offset", str(self.record.offset).encode()),
        ]


@dataclass
class BatchResult:
    """What one batch did: counts, dead letters, hand-offs, and like counts to mirror."""

    kind: EventKind
    applied: int = 0
    replayed: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    send_now: list[uuid.UUID] = field(default_factory=list)
    # Faust table key -> (source partition, count stored in PostgreSQL).
    like_counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Records the consumer skipped, read back from Kafka and applied with this batch.
    recovered: int = 0


DeadLetterSink = Callable[[Sequence[DeadLetter]], None]


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
    stored: Mapping[tuple[str, int], int], offsets: Iterable[tuple[str, int, int]]
) -> list[Gap]:
    """The holes between each partition's stored offset and the fresh offsets of a batch.

    A partition with no stored offset has none: this database starts where the consumer group
    stands (a new database must not replay, and mail, the topic's whole history).
    """
    by_partition: dict[tuple[str, int], list[int]] = {}
    for topic, partition, offset in offsets:
        if stored.get((topic, partition), -1) >= 0:
            by_partition.setdefault((topic, partition), []).append(offset)
    gaps = []
    for (topic, partition), found in sorted(by_partition.items()):
        expected = stored[(topic, partition)] + 1
        for offset in sorted(set(found)):
            if offset > expected:
                gaps.append(Gap(topic, partition, expected, offset))
            expected = offset + 1
    return gaps


def table_key(user_id: uuid.UUID, content_id: uuid.UUID) -> str:
    """The like table's key of a (user, content) pair."""
    return f"{user_id}:{content_id}"


def reason_of(error: str) -> str:
    """Classify a contract error message into a short, bounded reason (a metric label)."""
    if "empty message" in error:
        return "empty"
    if "bytes is over the" in error:
        return "too_large"
    if "not JSON" in error:
        return "not_json"
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
            dead.append(DeadLetter(record, str(exc), reason_of(str(exc))))
    return accepted, dead


def apply_batch(
    kind: EventKind,
    records: Sequence[Record],
    *,
    group_id: str,
    max_bytes: int,
    before_commit: DeadLetterSink | None = None,
    fill_gaps: GapFiller | None = None,
) -> BatchResult:
    """Apply the records not applied yet in one transaction; return what was done.

    `before_commit` receives the batch's new dead letters inside the transaction: once it
    returns they are safely elsewhere, and a crash before the commit only repeats them.
    `fill_gaps` reads skipped records back from Kafka (see the module's docstring).
    """
    result = BatchResult(kind)
    with session_scope() as session:
        stored = ingest_store.lock_offsets(
            session=session, group_id=group_id, partitions={(r.topic, r.partition) for r in records}
        )
        fresh: dict[tuple[str, int, int], Record] = {}
        replayed: list[Record] = []
        for record in records:
            if record.offset > stored[(record.topic, record.partition)]:
                fresh.setdefault((record.topic, record.partition, record.offset), record)
            else:
                replayed.append(record)
        if fill_gaps is not None:
            result.recovered = _fill_gaps(fresh, stored, fill_gaps)
        ordered = [fresh[position] for position in sorted(fresh)]  # the last text must win
        accepted, result.dead_letters = decode_records(kind, ordered, max_bytes=max_bytes)
        result.applied, result.replayed = len(accepted), len(replayed)
        _APPLY[kind](session, accepted, result)
        if kind == "comment_liked" and replayed:
            _mirror_replayed_likes(session, replayed, result, max_bytes=max_bytes)
        top: dict[tuple[str, int], int] = {}
        for topic, partition, offset in fresh:
            top[(topic, partition)] = max(offset, top.get((topic, partition), -1))
        ingest_store.save_offsets(session=session, group_id=group_id, offsets=top)
        if result.dead_letters and before_commit is not None:
            before_commit(result.dead_letters)
    if replayed:
        log.info("%s: skipped %d replayed records", kind, len(replayed))
    return result


def _fill_gaps(
    fresh: dict[tuple[str, int, int], Record],
    stored: Mapping[tuple[str, int], int],
    fill_gaps: GapFiller,
) -> int:
    recovered = 0
    for gap in find_gaps(stored, fresh):
        records = [r for r in fill_gaps(gap) if gap.start <= r.offset < gap.end]
        for record in records:
            fresh[(record.topic, record.partition, record.offset)] = record
        recovered += len(records)
        if records:
            log.warning("%s[%d]: read back %d records the consumer skipped at offsets [%d, %d)",
                        gap.topic, gap.partition, len(records), gap.start, gap.end,
                        extra={"topic": gap.topic, "partition": gap.partition})  # fmt: skip
    return recovered


def _apply_likes(
    session: Session, accepted: list[tuple[Record, Event]], result: BatchResult
) -> None:
    totals: dict[tuple[uuid.UUID, uuid.UUID], list] = {}
    partition_of: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for record, event in accepted:
        key = (event.user_id, event.content_id)
        assert event.content_id is not None  # the schema requires a uuid content id for likes
        entry = totals.setdefault(key, [0, event.periodicity, event.content_value])
        entry[0] += 1
        entry[1] = event.periodicity  # the latest event's periodicity wins
        partition_of[key] = record.partition
    deltas = [LikeDelta(u, c, n, p, v) for (u, c), (n, p, v) in totals.items()]
    counts = ingest_store.add_likes(session=session, likes=deltas)
    for (user_id, content_id), count in counts.items():
        result.like_counts[table_key(user_id, content_id)] = (
            partition_of[(user_id, content_id)],
            count,
        )


def _mirror_replayed_likes(
    session: Session, replayed: list[Record], result: BatchResult, *, max_bytes: int
) -> None:
    # Their effect is already in PostgreSQL, but the crash may have lost the table update.
    partition_of: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for record, event in decode_records("comment_liked", replayed, max_bytes=max_bytes)[0]:
        assert event.content_id is not None
        partition_of[(event.user_id, event.content_id)] = record.partition
    for (user_id, content_id), count in ingest_store.get_like_counts(
        session=session, keys=partition_of
    ).items():
        key = table_key(user_id, content_id)
        result.like_counts.setdefault(key, (partition_of[(user_id, content_id)], count))


def _latest_texts(accepted: list[tuple[Record, Event]]) -> list[TextItem]:
    latest: dict[tuple[uuid.UUID, uuid.UUID | None], TextItem] = {}
    for _record, event in accepted:  # records come in offset order per partition: last wins
        latest[(event.user_id, event.content_id)] = TextItem(
            event.user_id, event.content_id, event.periodicity, event.content_value
        )
    return list(latest.values())


def _apply_texts(
    session: Session, accepted: list[tuple[Record, Event]], result: BatchResult
) -> None:
    kind = result.kind
    written = ingest_store.upsert_texts(
        session=session,
        kind=NOTIFICATION_KIND[kind],
        template_name=TEMPLATE_OF_KIND[kind],
        items=_latest_texts(accepted),
    )
    # Welcome mail is transactional: it goes now whatever the periodicity. A mailing goes now
    # when it is `once`; a replaced `once` mailing that was already planned or sent keeps its
    # status, so the new text is stored but not mailed a second time (README "Stream ingestion").
    result.send_now = [
        row.notification_id
        for row in written
        if row.status in UNSENT and (kind == "user_registered" or row.periodicity == "once")
    ]


_APPLY: dict[str, Callable[[Session, list[tuple[Record, Event]], BatchResult], None]] = {
    "user_registered": _apply_texts,
    "comment_liked": _apply_likes,
    "mailing": _apply_texts,
}


# A stalled stream worker exits with this code (EX_SOFTWARE) for its supervisor to restart it.
STALL_EXIT_CODE = 70


def lagging_partitions(
    applied: Mapping[tuple[str, int], int], end_offsets: Mapping[tuple[str, int], int]
) -> list[tuple[str, int]]:
    """Partitions whose log holds events past the highest offset applied to PostgreSQL.

    The last offset of a log may be a transaction marker that no consumer ever sees, so one
    offset beyond the applied one does not count as waiting.
    """
    return sorted(tp for tp, end in end_offsets.items() if end - 2 > applied.get(tp, -1))


@dataclass
class StallDetector:
    """Finds partitions that hold unapplied events while their applied offset stays put.

    Each look passes the end offsets of the partitions this worker owns and the applied offsets.
    A partition counts as stalled once it has been lagging, at one unchanged applied offset, for
    longer than `timeout` seconds; a newly owned partition starts its clock at its first look.
    Progress is judged per partition: one stuck partition is found while the others move.
    """

    timeout: float
    _since: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)

    def look(
        self,
        applied: Mapping[tuple[str, int], int],
        end_offsets: Mapping[tuple[str, int], int],
        now: float,
    ) -> list[tuple[str, int]]:
        """Record this look; return the stalled partitions (sorted)."""
        lagging = set(lagging_partitions(applied, end_offsets))
        stalled = []
        for tp in list(self._since):
            if tp not in lagging:
                del self._since[tp]
        for tp in sorted(lagging):
            offset = applied.get(tp, -1)
            seen = self._since.get(tp)
            if seen is None or seen[0] != offset:
                self._since[tp] = (offset, now)
            elif now - seen[1] > self.timeout:
                stalled.append(tp)
        return stalled

    def waiting_for(self, now: float) -> float:
        """How long the longest-waiting lagging partition has been stuck."""
        return max((now - since for _, since in self._since.values()), default=0.0)


def applied_offsets(group_id: str) -> dict[tuple[str, int], int]:
    """The highest offset applied to PostgreSQL per topic-partition of this group."""
    with session_scope() as session:
        return ingest_store.applied_offsets(session=session, group_id=group_id)
