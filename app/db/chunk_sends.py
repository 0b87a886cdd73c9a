"""The e-mail worker's statements for a chunk: claim many deliveries at once, record many outcomes.

The rules are those of `app/db/sends.py` (a claim bumps `attempts`, which is the owner's token;
an outcome counts only for the current claim), for a whole chunk in one round trip each. What a
chunk claim does not get (busy, abandoned in 'sending', done, opted out, missing) is looked at
one delivery at a time by `sends.claim`, which tells which.

Plain SQL over arrays (`unnest`), prepared once per connection (`app/db/prepared.py`): one
statement whatever the chunk's size, which PostgreSQL plans once, not for every wave.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy.engine import Connection

from app.db.prepared import PreparedStatement
from app.domain.vocabulary import CLAIMABLE_DELIVERY_STATUSES, TRANSACTIONAL_KINDS

_CLAIM_CHUNK = PreparedStatement(
    "notify_claim_chunk",
    """
    UPDATE deliveries AS d
       SET status = 'sending', attempts = d.attempts + 1, updated_at = now()
      FROM notifications AS n,
           unnest(CAST(:ids AS uuid[]), CAST(:notification_ids AS uuid[]))
             AS t(delivery_id, notification_id)
     WHERE d.delivery_id = t.delivery_id
       AND d.notification_id = t.notification_id
       AND n.notification_id = d.notification_id
       AND coalesce(d.status, '') = ANY(CAST(:claimable AS text[]))  -- by key (see below)
       AND (n.kind = ANY(CAST(:transactional AS text[]))
            OR NOT EXISTS (SELECT 1 FROM opt_outs AS o
                            WHERE o.user_id = n.user_id AND o.kind = n.kind))
    RETURNING d.delivery_id, d.attempts, d.deferrals
    """,
    {
        "ids": "uuid[]",
        "notification_ids": "uuid[]",
        "claimable": "text[]",
        "transactional": "text[]",
    },
)

# Every outcome of a chunk in one statement: the deliveries whose claim is current, then their
# notifications (sent: its reported likes subtracted; failed: due again next period). A send the
# sweep handed back to 'enqueued' while we were away, and not claimed since, is still recorded as
# sent (as `sends.mark_sent` does); nothing else is recorded over a claim that is not ours.
# 'sending' stays 'sending' (a send the provider may have taken) and keeps its claim's age.
_RECORD_CHUNK = PreparedStatement(
    "notify_record_chunk",
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:ids AS uuid[]), CAST(:attempts AS int[]), CAST(:statuses AS text[]),
            CAST(:errors AS text[]), CAST(:message_ids AS text[]), CAST(:backends AS text[]),
            CAST(:outages AS boolean[])
        ) AS v(delivery_id, attempt, status, error, message_id, backend, outage)
    ), marked AS (
        UPDATE deliveries AS d
           SET status = v.status,
               error = v.error,
               sent_at = CASE WHEN v.status = 'sent' THEN CAST(:now AS timestamptz)
                              ELSE d.sent_at END,
               enqueued_at = CASE WHEN v.status = 'enqueued' THEN CAST(:now AS timestamptz)
                                  ELSE d.enqueued_at END,
               deferrals = d.deferrals + CASE WHEN v.outage THEN 1 ELSE 0 END,
               provider_message_id = COALESCE(v.message_id, d.provider_message_id),
               backend = COALESCE(v.backend, d.backend),
               updated_at = CASE WHEN v.status = 'sending' THEN d.updated_at ELSE now() END
          FROM v
         WHERE d.delivery_id = v.delivery_id
           AND d.attempts = v.attempt
           -- coalesce() on a NOT NULL column: no index answers it, so the deliveries are found
           -- by key. On the bare column PostgreSQL could scan every row in 'sending' or
           -- 'enqueued' through the status index for each wave, which grows with the backlog.
           AND (coalesce(d.status, '') = 'sending'
                OR (v.status = 'sent' AND coalesce(d.status, '') = 'enqueued'))
        RETURNING d.delivery_id, d.notification_id, v.status AS status, d.reported_count
    ), noted AS (
        UPDATE notifications AS n
           SET status = m.status,
               last_update = CAST(:now AS timestamptz),
               like_count = CASE WHEN m.status = 'sent'
                                 THEN greatest(n.like_count - m.reported_count, 0)
                                 ELSE n.like_count END
          FROM marked AS m
         WHERE n.notification_id = m.notification_id AND m.status IN ('sent', 'failed')
    )
    SELECT delivery_id FROM marked
    """,
    {
        "ids": "uuid[]",
        "attempts": "int[]",
        "statuses": "text[]",
        "errors": "text[]",
        "message_ids": "text[]",
        "backends": "text[]",
        "outages": "boolean[]",
        "now": "timestamptz",
    },
)

RecordedStatus = Literal["sent", "enqueued", "failed", "sending"]


@dataclass(frozen=True, slots=True)
class ChunkClaim:
    """A delivery the chunk claim took: its claim's number and earlier outage deferrals."""

    attempt: int
    deferrals: int


@dataclass(frozen=True, slots=True)
class Record:
    """One outcome to record for the claim `attempt` of `delivery_id`.

    sent (with the provider's id and the backend), enqueued (handed back for a retry; `outage`
    counts it as a deferral, not an attempt), failed, or sending (left claimed, `error` saying why).
    """

    delivery_id: uuid.UUID
    attempt: int
    status: RecordedStatus
    error: str | None = None
    provider_message_id: str | None = None
    backend: str | None = None
    outage: bool = False


def claim_chunk(
    connection: Connection, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]
) -> dict[uuid.UUID, ChunkClaim]:
    """Claim every waiting, not opted-out delivery of (delivery_id, notification_id) `pairs`.

    One statement, so it may run on an autocommit connection.
    """
    if not pairs:
        return {}
    rows = _CLAIM_CHUNK.run(
        connection,
        {
            "ids": [str(d) for d, _n in pairs],
            "notification_ids": [str(n) for _d, n in pairs],
            "claimable": list(CLAIMABLE_DELIVERY_STATUSES),
            "transactional": sorted(TRANSACTIONAL_KINDS),
        },
    )
    return {row.delivery_id: ChunkClaim(row.attempts, row.deferrals) for row in rows}


def record_chunk(
    connection: Connection, records: Sequence[Record], now: datetime
) -> set[uuid.UUID]:
    """Record the outcomes whose claims are current; return the deliveries that were recorded.

    One statement, so it may run on an autocommit connection.
    """
    if not records:
        return set()
    rows = _RECORD_CHUNK.run(
        connection,
        {
            "ids": [str(r.delivery_id) for r in records],
            "attempts": [r.attempt for r in records],
            "statuses": [r.status for r in records],
            "errors": [r.error for r in records],
            "message_ids": [r.provider_message_id for r in records],
            "backends": [r.backend for r in records],
            "outages": [r.outage for r in records],
            "now": now,
        },
    )
    return {row.delivery_id for row in rows}
