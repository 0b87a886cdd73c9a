"""Plan deliveries in bulk: the daily and weekly digests, and the `once` rows handed off to us.

Plain functions: the Celery tasks in app/tasks.py only call them with real clients and the time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.auth.client import AuthClient, UserLookup
from app.config import Settings
from app.contracts import AUTH_BATCH_LIMIT
from app.db import jobs as store
from app.db import timeline as timeline_store
from app.db.session import session_scope
from app.jobs.planning import Candidate, plan_delivery

log = logging.getLogger(__name__)


@dataclass
class JobReport:
    periodicity: str
    chunks: int = 0
    picked: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: str) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plan_chunk(
    rows: Sequence[Any],
    users: UserLookup,
    opted_out: dict[uuid.UUID, frozenset[str]],
    *,
    now: datetime,
    settings: Settings,
) -> list[dict[str, Any]]:
    return [
        plan_delivery(
            Candidate(**row._mapping),
            users.found.get(row.user_id),
            opted_out=opted_out.get(row.user_id, frozenset()),
            now=now,
            settings=settings,
            user_problem=users.invalid.get(row.user_id),
        ).as_row()
        for row in rows
    ]


def run_digest(
    periodicity: str,
    *,
    auth: AuthClient,
    settings: Settings,
    now: datetime,
    chunk_size: int = AUTH_BATCH_LIMIT,
) -> JobReport:
    """Plan this period's delivery of every due row of `periodicity`, chunk by chunk.

    Each chunk is one transaction that holds its rows (FOR UPDATE SKIP LOCKED), so concurrent
    runs split the work. An Auth outage (AuthUnavailable) rolls the chunk back and stops the run:
    the rows stay due for the next one.
    """
    report = JobReport(periodicity)
    after_id: uuid.UUID | None = None
    while True:
        with session_scope() as session:
            rows = store.lock_digest_candidates(
                session=session, periodicity=periodicity, after_id=after_id, limit=chunk_size
            )
            if not rows:
                break
            after_id = rows[-1].notification_id
            user_ids = {row.user_id for row in rows}
            users = auth.get_users(user_ids)
            opted_out = store.opted_out_kinds(session=session, user_ids=user_ids)
            plans = _plan_chunk(rows, users, opted_out, now=now, settings=settings)
            for _notification_id, status in store.record_plans(
                session=session, plans=plans, now=now
            ):
                report.count(status)
        report.chunks += 1
        report.picked += len(rows)
    log.info("%s digest planned: %s", periodicity, report.by_status, extra=report.as_dict())
    return report


def plan_once(
    notification_ids: Sequence[uuid.UUID], *, auth: AuthClient, settings: Settings, now: datetime
) -> dict[uuid.UUID, str]:
    """Plan the deliveries of `once` notifications (one Auth batch call); return their statuses.

    Rows that are not due (already planned, or of a cancelled campaign) are left out.
    """
    with session_scope() as session:
        rows = store.lock_once_candidates(session=session, notification_ids=notification_ids)
        if not rows:
            return {}
        user_ids = {row.user_id for row in rows}
        users = auth.get_users(user_ids)
        opted_out = store.opted_out_kinds(session=session, user_ids=user_ids)
        plans = _plan_chunk(rows, users, opted_out, now=now, settings=settings)
        return dict(store.record_plans(session=session, plans=plans, now=now))


PRUNE_CHUNK = 10_000


def prune_timeline(*, settings: Settings, now: datetime) -> int:
    """Drop received events older than TIMELINE_RETENTION_DAYS, a chunk per transaction."""
    before = now - timedelta(days=settings.timeline_retention_days)
    total = 0
    while True:
        with session_scope() as session:
            deleted = timeline_store.prune_received_events(
                session=session, before=before, limit=PRUNE_CHUNK
            )
        total += deleted
        if deleted < PRUNE_CHUNK:
            break
    if total:
        log.info("received events before %s deleted: %d", before.isoformat(), total)
    return total
