"""The dashboard's reads: deliveries per hour and status, dead letters by reason, applied offsets.

Each follows an index (deliveries: status + send_at; dead letters: status + created_at), so
the dashboard costs the same on a large database.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db import stream_offsets
from app.domain.dashboard import CHARTED_STATUSES


def deliveries_by_hour(
    *, session: Session, since: datetime, until: datetime
) -> list[tuple[datetime, str, int]]:
    """(hour in UTC, status, count) of the deliveries due in [since, until)."""
    rows = session.execute(
        text(
            "SELECT date_trunc('hour', send_at AT TIME ZONE 'UTC') AS hour, status, count(*) AS n"
            " FROM deliveries WHERE status = ANY(CAST(:statuses AS text[]))"
            " AND send_at >= :since AND send_at < :until GROUP BY 1, 2"
        ),
        {"statuses": list(CHARTED_STATUSES), "since": since, "until": until},
    )
    return [(row.hour.replace(tzinfo=UTC), row.status, row.n) for row in rows]


def dead_letters_by_reason(*, session: Session) -> list[tuple[str, int]]:
    """Dead letters waiting for a replay, by reason, most first."""
    rows = session.execute(
        text(
            "SELECT reason, count(*) AS n FROM dead_letters WHERE status = 'dead'"
            " GROUP BY reason ORDER BY n DESC, reason"
        )
    )
    return [(row.reason, row.n) for row in rows]


def applied_offsets(*, session: Session, group_id: str) -> list[stream_offsets.OffsetRow]:
    """The stream's applied offset per input partition (and why one is blocked)."""
    return stream_offsets.list_offsets(session=session, group_id=group_id)
