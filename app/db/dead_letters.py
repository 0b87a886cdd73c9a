"""Dead letters in PostgreSQL: written with the batch that refused them, listed, replayed once.

Keyword-only with an explicit session. A dead letter is written in the same transaction as the
offsets that pass its event, so each refused event has exactly one row (docs/fault-model.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.domain.vocabulary import DeadLetterStatus

# Header that a replayed event carries: its dead letter's replay token.
REPLAY_HEADER = "notify-replay-token"


@dataclass(frozen=True, slots=True)
class NewDeadLetter:
    """A refused event as the ingest transaction records it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error: str
    replay_token: uuid.UUID


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A dead letter as operators see it and replays read it."""

    dead_letter_id: int
    group_id: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    error: str
    replay_token: uuid.UUID
    status: DeadLetterStatus
    replay_count: int
    created_at: datetime
    replayed_at: datetime | None


def record(*, session: Session, group_id: str, letters: Sequence[NewDeadLetter]) -> None:
    """Store the batch's dead letters (one row per source position: a replayed batch adds none)."""
    if not letters:
        return
    session.execute(
        text(
            "INSERT INTO dead_letters (group_id, source_topic, source_partition, source_offset,"
            " key, value, reason, error, replay_token)"
            " VALUES (:g, :topic, :partition, :offset, :key, :value, :reason, :error, :token)"
            " ON CONFLICT ON CONSTRAINT uq_dead_letters_source DO NOTHING"
        ),
        [
            {
                "g": group_id,
                "topic": d.topic,
                "partition": d.partition,
                "offset": d.offset,
                "key": d.key,
                "value": d.value,
                "reason": d.reason,
                "error": d.error,
                "token": d.replay_token,
            }
            for d in letters
        ],
    )


def claimed_tokens(*, session: Session, tokens: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The replay tokens whose event a replayed copy has already applied."""
    tokens = list(set(tokens))
    if not tokens:
        return set()
    rows = session.execute(
        text(
            "SELECT replay_token FROM dead_letter_replays"
            " WHERE replay_token = ANY(CAST(:tokens AS uuid[]))"
        ),
        {"tokens": [str(t) for t in tokens]},
    )
    return {row.replay_token for row in rows}


def claim_tokens(*, session: Session, applied: Sequence[tuple[uuid.UUID, str, int, int]]) -> None:
    """Record that the replayed events with these tokens were applied (token, topic, part, off)."""
    if not applied:
        return
    session.execute(
        text(
            'INSERT INTO dead_letter_replays (replay_token, topic, partition, "offset")'
            " VALUES (:token, :topic, :partition, :offset) ON CONFLICT DO NOTHING"
        ),
        [{"token": t, "topic": topic, "partition": p, "offset": o} for t, topic, p, o in applied],
    )


_COLUMNS = (
    "dead_letter_id, group_id, source_topic, source_partition, source_offset, key, value, reason,"
    " error, replay_token, status, replay_count, created_at, replayed_at"
)


def select(
    *,
    session: Session,
    group_id: str | None = None,
    status: DeadLetterStatus | None = "dead",
    reason: str | None = None,
    since: datetime | None = None,
    ids: Sequence[int] | None = None,
    limit: int | None = None,
    for_update: bool = False,
) -> list[StoredDeadLetter]:
    """Dead letters, oldest first, filtered; `for_update` locks them (skipping locked ones)."""
    rows = session.execute(
        text(
            f"SELECT {_COLUMNS} FROM dead_letters"  # nosec B608  # only the constants _COLUMNS and FOR UPDATE; values are bound
            " WHERE (CAST(:group AS text) IS NULL OR group_id = :group)"
            " AND (CAST(:status AS text) IS NULL OR status = :status)"
            " AND (CAST(:reason AS text) IS NULL OR reason = :reason)"
            " AND (CAST(:since AS timestamptz) IS NULL OR created_at >= :since)"
            " AND (CAST(:ids AS bigint[]) IS NULL OR dead_letter_id = ANY(CAST(:ids AS bigint[])))"
            " ORDER BY created_at, dead_letter_id LIMIT :limit"
            + (" FOR UPDATE SKIP LOCKED" if for_update else "")
        ),
        {
            "group": group_id,
            "status": status,
            "reason": reason,
            "since": since,
            "ids": list(ids) if ids is not None else None,
            "limit": limit,
        },
    )
    return [_stored(row) for row in rows]


def _stored(row: Any) -> StoredDeadLetter:
    # psycopg2 returns bytea as memoryview; keep bytes for the producer and for comparisons.
    values: list[Any] = [bytes(v) if isinstance(v, memoryview) else v for v in row]
    return StoredDeadLetter(*values)


def mark_replayed(*, session: Session, ids: Sequence[int]) -> None:
    """Mark dead letters as re-published, so a later replay leaves them alone."""
    if not ids:
        return
    session.execute(
        text(
            "UPDATE dead_letters SET status = 'replayed', replayed_at = now(),"
            " replay_count = replay_count + 1 WHERE dead_letter_id = ANY(CAST(:ids AS bigint[]))"
        ),
        {"ids": list(ids)},
    )


def counts(*, session: Session) -> dict[tuple[str, str], int]:
    """Dead letters per (reason, status), for the portal's gauges."""
    rows = session.execute(
        text("SELECT reason, status, count(*) AS n FROM dead_letters GROUP BY reason, status")
    )
    return {(row.reason, row.status): row.n for row in rows}
