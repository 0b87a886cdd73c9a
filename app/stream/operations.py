"""Operator actions on the stream: replay dead letters, reset a partition's stored offset.

The CLI (`notify dead-letters`, `notify offsets`) and the portal call these; Kafka comes in as a
producer, an admin client and a consumer used only to read watermarks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypedDict

from confluent_kafka import (
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from app.config import Settings
from app.db import dead_letters, stream_offsets
from app.db.dead_letters import REPLAY_HEADER, StoredDeadLetter
from app.db.session import session_scope
from app.db.stream_offsets import OffsetRow
from app.kafka.connection import client_config
from app.kafka.producer import make_producer

log = logging.getLogger(__name__)

ResetTarget = Literal["start", "end", "stored"]


class _Placement(TypedDict, total=False):
    """Where a replayed event goes: no partition lets the producer's partitioner choose."""

    partition: int


@dataclass
class ReplayReport:
    """What a replay re-published, and what the broker refused (those stay `dead`)."""

    selected: int = 0
    published: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


def replay_dead_letters(
    settings: Settings,
    *,
    reason: str | None = None,
    since: datetime | None = None,
    ids: Sequence[int] | None = None,
    limit: int | None = None,
) -> ReplayReport:
    """Re-publish the original key and bytes of dead letters to their source topic and partition.

    Each copy carries its dead letter's replay token, so the ingest applies the event once
    even if a crash between the publish and the commit below made the next replay repeat it.
    A replayed letter is marked `replayed`: a second replay leaves it alone.
    """
    report = ReplayReport()
    producer = make_producer(settings)
    with session_scope() as session:
        letters = dead_letters.select(
            session=session,
            group_id=settings.faust_app_id,
            status="dead",
            reason=reason,
            since=since,
            ids=ids,
            limit=limit,
            for_update=True,
        )
        report.selected = len(letters)
        partitions = _partition_counts(producer, {d.source_topic for d in letters})
        for letter in letters:
            _produce(producer, letter, partitions.get(letter.source_topic, 0), report)
        producer.flush(60)
        dead_letters.mark_replayed(session=session, ids=report.published)
    if report.failed:
        log.warning(
            "replay: %d dead letters not published: %s",
            len(report.failed),
            sorted(set(report.failed.values()))[:5],
        )
    return report


def _partition_counts(producer: Producer, topics: set[str]) -> dict[str, int]:
    if not topics:
        return {}
    metadata = producer.list_topics(timeout=10)
    return {t: len(metadata.topics[t].partitions) for t in topics if t in metadata.topics}


def _produce(
    producer: Producer, letter: StoredDeadLetter, partitions: int, report: ReplayReport
) -> None:
    def on_delivery(error: KafkaError | None, _message: Message) -> None:
        if error is None:
            report.published.append(letter.dead_letter_id)
        else:
            report.failed[letter.dead_letter_id] = str(error)

    # Back to the partition it came from, so it keeps its place among its key's events; a topic
    # that now has fewer partitions gets it by key.
    where: _Placement = (
        {"partition": letter.source_partition} if letter.source_partition < partitions else {}
    )
    while True:
        try:
            producer.produce(
                letter.source_topic,
                key=letter.key,
                value=letter.value,
                headers=[(REPLAY_HEADER, str(letter.replay_token).encode())],
                on_delivery=on_delivery,
                **where,
            )
            return
        except BufferError:
            producer.poll(0.05)


@dataclass(frozen=True, slots=True)
class PartitionReset:
    """One partition's stored offset before and after a reset."""

    topic: str
    partition: int
    before: int | None
    after: int
    blocked_reason: str | None


def reset_offsets(
    settings: Settings,
    *,
    topic: str,
    to: ResetTarget,
    partitions: Sequence[int] = (),
    group_id: str | None = None,
    from_group: str | None = None,
) -> list[PartitionReset]:
    """Set where the stream worker goes on in `topic` and unblock its partitions.

    `start`: apply the whole log as it is now (a recreated topic's new events). `end`: skip what
    the log holds now. `stored`: keep the stored offsets (or take `from_group`'s, after a
    rename of FAUST_APP_ID) and accept the topic as it is; partitions with none are left alone.
    """
    group_id = group_id or settings.faust_app_id
    admin = AdminClient(client_config(settings))
    description = admin.describe_topics(TopicCollection([topic]), request_timeout=10)[topic]
    found = description.result()
    topic_id = str(found.topic_id) or None
    chosen = sorted(partitions) or [p.id for p in found.partitions]
    watermarks = _watermarks(settings, topic, chosen)
    resets = []
    with session_scope() as session:
        rows = {
            (r.group_id, r.partition): r
            for r in stream_offsets.list_offsets(session=session)
            if r.topic == topic
        }
        for partition in chosen:
            mine = rows.get((group_id, partition))
            source = rows.get((from_group or group_id, partition))
            offset = _target_offset(to, watermarks[partition], source)
            if offset is None:
                continue  # never applied there: it has no blocked history to keep
            stream_offsets.reset_partition(
                session=session,
                group_id=group_id,
                topic=topic,
                partition=partition,
                offset=offset,
                topic_id=topic_id,
            )
            resets.append(
                PartitionReset(
                    topic,
                    partition,
                    mine.offset if mine else None,
                    offset,
                    mine.blocked_reason if mine else None,
                )
            )
    if not resets:
        raise LookupError(f"group {from_group or group_id} has no stored offset for {topic}")
    moved = [(r.partition, r.before, r.after) for r in resets]
    log.warning("offsets of %s reset to %s for group %s: %s", topic, to, group_id, moved)
    return resets


def _target_offset(
    to: ResetTarget, watermarks: tuple[int, int], stored: OffsetRow | None
) -> int | None:
    """The offset a reset stores: before the log's first record, at its last, or as stored."""
    low, high = watermarks
    if to == "start":
        return low - 1
    if to == "end":
        return high - 1
    return stored.offset if stored is not None else None


def _watermarks(
    settings: Settings, topic: str, partitions: Sequence[int]
) -> dict[int, tuple[int, int]]:
    group = f"{settings.faust_app_id}-admin-{uuid.uuid4().hex[:8]}"  # reads, never commits
    reader = Consumer({**client_config(settings), "group.id": group})
    try:
        return {p: reader.get_watermark_offsets(TopicPartition(topic, p), 10) for p in partitions}
    finally:
        reader.close()
