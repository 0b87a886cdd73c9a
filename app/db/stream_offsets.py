"""The stream's position per consumer group and topic-partition, and its blocked partitions.

Keyword-only with an explicit session. The ingest transaction locks a batch's rows first
(`lock_offsets`) and raises them last (`save_offsets`); the operator's `notify offsets`
commands read and reset them here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class PartitionState:
    """What PostgreSQL holds for one topic-partition of a group (see models.StreamOffset)."""

    offset: int | None
    topic_id: str | None
    blocked_reason: str | None


def lock_offsets(
    *, session: Session, group_id: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, PartitionState]:
    """Lock and return the state of each topic-partition (offset None: no position yet).

    The rows are created first so the lock always has a row to hold: two workers that both
    believe they own a partition during a rebalance then apply its batches one after the other.
    """
    tps = sorted(set(partitions))  # one lock order everywhere: no deadlocks between workers
    if not tps:
        return {}
    params = {"g": group_id, "topics": [t for t, _ in tps], "parts": [p for _, p in tps]}
    session.execute(
        text(
            'INSERT INTO stream_offsets (group_id, topic, partition, "offset")'
            " SELECT :g, t, p, NULL FROM unnest(CAST(:topics AS text[]), CAST(:parts AS int[]))"
            " AS v(t, p) ORDER BY t, p ON CONFLICT DO NOTHING"
        ),
        params,
    )
    rows = session.execute(
        text(
            'SELECT s.topic, s.partition, s."offset", s.topic_id, s.blocked_reason'
            " FROM stream_offsets s"
            " JOIN unnest(CAST(:topics AS text[]), CAST(:parts AS int[])) AS v(t, p)"
            " ON s.topic = v.t AND s.partition = v.p WHERE s.group_id = :g"
            " ORDER BY s.topic, s.partition FOR UPDATE OF s"
        ),
        params,
    )
    return {
        (row.topic, row.partition): PartitionState(row.offset, row.topic_id, row.blocked_reason)
        for row in rows
    }


def offsets_of_other_groups(
    *, session: Session, group_id: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, list[tuple[str, int]]]:
    """Per topic-partition, the (group, offset) of every other group that applied it."""
    tps = sorted(set(partitions))
    if not tps:
        return {}
    rows = session.execute(
        text(
            'SELECT s.group_id, s.topic, s.partition, s."offset" FROM stream_offsets s'
            " JOIN unnest(CAST(:topics AS text[]), CAST(:parts AS int[])) AS v(t, p)"
            " ON s.topic = v.t AND s.partition = v.p"
            ' WHERE s.group_id <> :g AND s."offset" IS NOT NULL ORDER BY s.group_id'
        ),
        {"g": group_id, "topics": [t for t, _ in tps], "parts": [p for _, p in tps]},
    )
    found: dict[TopicPartition, list[tuple[str, int]]] = {}
    for row in rows:
        found.setdefault((row.topic, row.partition), []).append((row.group_id, row.offset))
    return found


def block_partitions(
    *, session: Session, group_id: str, reasons: Mapping[TopicPartition, str]
) -> None:
    """Stop applying these partitions until an operator resets them (`notify offsets reset`)."""
    for (topic, partition), reason in sorted(reasons.items()):
        session.execute(
            text(
                "UPDATE stream_offsets SET blocked_reason = :r, blocked_at = now()"
                " WHERE group_id = :g AND topic = :t AND partition = :p"
            ),
            {"g": group_id, "t": topic, "p": partition, "r": reason},
        )


def positions(
    *, session: Session, group_id: str
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, str]]:
    """This group's applied offset per topic-partition (-1: none yet), and the blocked ones."""
    rows = session.execute(
        text(
            'SELECT topic, partition, coalesce("offset", -1) AS "offset", blocked_reason'
            " FROM stream_offsets WHERE group_id = :g"
        ),
        {"g": group_id},
    ).all()
    applied = {(row.topic, row.partition): row.offset for row in rows}
    blocked = {(r.topic, r.partition): r.blocked_reason for r in rows if r.blocked_reason}
    return applied, blocked


def save_offsets(
    *,
    session: Session,
    group_id: str,
    offsets: Mapping[TopicPartition, int],
    topic_ids: Mapping[str, str | None] | None = None,
) -> None:
    """Raise the stored offset of each topic-partition to the given one (never lower it).

    The first save of a partition also records the id of the topic its offsets belong to.
    """
    if not offsets:
        return
    items = sorted(offsets.items())
    ids = topic_ids or {}
    session.execute(
        text(
            'UPDATE stream_offsets s SET "offset" = v.o, updated_at = now(),'
            " topic_id = coalesce(s.topic_id, v.i)"
            " FROM unnest(CAST(:topics AS text[]), CAST(:parts AS int[]), CAST(:offs AS bigint[]),"
            " CAST(:ids AS text[])) AS v(t, p, o, i)"
            " WHERE s.group_id = :g AND s.topic = v.t AND s.partition = v.p"
            ' AND coalesce(s."offset", -1) < v.o'
        ),
        {
            "g": group_id,
            "topics": [t for (t, _), _ in items],
            "parts": [p for (_, p), _ in items],
            "offs": [o for _, o in items],
            "ids": [ids.get(t) for (t, _), _ in items],
        },
    )


@dataclass(frozen=True, slots=True)
class OffsetRow:
    """One row of `notify offsets list`."""

    group_id: str
    topic: str
    partition: int
    offset: int | None
    topic_id: str | None
    blocked_reason: str | None


def list_offsets(*, session: Session, group_id: str | None = None) -> list[OffsetRow]:
    """Every stored position (of one group, or of all), blocked partitions included."""
    rows = session.execute(
        text(
            'SELECT group_id, topic, partition, "offset", topic_id, blocked_reason'
            " FROM stream_offsets WHERE CAST(:g AS text) IS NULL OR group_id = :g"
            " ORDER BY group_id, topic, partition"
        ),
        {"g": group_id},
    )
    return [OffsetRow(*row) for row in rows]


def reset_partition(
    *,
    session: Session,
    group_id: str,
    topic: str,
    partition: int,
    offset: int,
    topic_id: str | None,
) -> None:
    """Set a partition's applied offset and topic id and unblock it (an operator's decision)."""
    session.execute(
        text(
            'INSERT INTO stream_offsets (group_id, topic, partition, "offset", topic_id)'
            " VALUES (:g, :t, :p, :o, :i) ON CONFLICT (group_id, topic, partition) DO UPDATE"
            ' SET "offset" = excluded."offset", topic_id = excluded.topic_id,'
            " blocked_reason = NULL, blocked_at = NULL, updated_at = now()"
        ),
        {"g": group_id, "t": topic, "p": partition, "o": offset, "i": topic_id},
    )
