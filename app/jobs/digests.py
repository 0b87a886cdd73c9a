"""The periodic jobs and the dispatcher, as plain functions (the Celery tasks only call them)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from app.auth.client import AuthClient, UserLookup
from app.config import Settings
from app.contracts import ContractError
from app.db import jobs as store
from app.db.session import session_scope
from app.jobs import planning
from app.jobs.planning import Candidate, plan_delivery

log = logging.getLogger(__name__)

# Never enqueue far ahead: Celery holds ETA tasks unacked; RabbitMQ drops such consumers at 30 min.
DISPATCH_LOOKAHEAD = timedelta(seconds=60)
RESWEEP_AFTER = timedelta(minutes=15)  # enqueued but not sent by then: enqueue again
ONCE_HANDOFF_GRACE = timedelta(minutes=2)  # a `once` row still pending after this was lost


class EmailPublisher(Protocol):
    def publish(self, tasks: Sequence[tuple[dict[str, Any], float | None]]) -> None:
        """Put e-mail tasks on the `emails` queue, each with an optional delay in seconds."""


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
    chunk_size: int = 500,
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


def email_task(row: Any) -> dict[str, Any]:
    """The `emails` queue's message for one delivery row (schemas/email_task.json)."""
    return planning.email_task(
        notification_id=row.notification_id, delivery_id=row.delivery_id, email=row.email,
        subject=row.subject, body_html=row.body_html, body_text=row.body_text,
        headers=row.headers,
    )  # fmt: skip


def _delay_s(send_at: datetime, now: datetime) -> float | None:
    """Seconds until `send_at` (None when due): at most DISPATCH_LOOKAHEAD."""
    delay = (send_at - now).total_seconds()
    return delay if delay > 0 else None


def dispatch_due(*, publisher: EmailPublisher, now: datetime, limit: int = 1000) -> int:
    """Enqueue deliveries whose send time is near (ETA at most a minute ahead); return how many.

    Publishing happens before the commit: a crash in between re-publishes on the next sweep and the
    e-mail worker's per-delivery state makes the duplicate harmless; the reverse order could lose
    mail. Deliveries enqueued long ago and still not sent are enqueued again for the same reason.
    """
    total = 0
    while True:
        with session_scope() as session:
            rows = store.lock_dispatchable(
                session=session,
                until=now + DISPATCH_LOOKAHEAD,
                stale_before=now - RESWEEP_AFTER,
                limit=limit,
            )
            if not rows:
                break
            tasks, broken = _tasks_of(rows, now)
            publisher.publish(tasks)
            store.mark_enqueued(
                session=session,
                delivery_ids=[row.delivery_id for row in rows if row.delivery_id not in broken],
                now=now,
            )
            store.mark_unsendable(session=session, errors=broken, now=now)
        total += len(rows)
        if len(rows) < limit:
            break
    if total:
        log.info("dispatched %d e-mail tasks", total)
    return total


def _tasks_of(
    rows: Sequence[Any], now: datetime
) -> tuple[list[tuple[dict[str, Any], float | None]], dict[uuid.UUID, str]]:
    """The e-mail tasks of the rows, and the rows whose task breaks the contract (with why).

    A broken row fails on its own, with the reason stored: it must never roll back the chunk,
    or it would come first again on every sweep and hold up everyone behind it.
    """
    tasks, broken = [], {}
    for row in rows:
        try:
            tasks.append((email_task(row), _delay_s(row.send_at, now)))
        except ContractError as exc:
            broken[row.delivery_id] = f"the e-mail breaks its task contract: {exc}"[:2000]
            log.error("delivery %s cannot be sent: %s", row.delivery_id, exc,
                      extra={"delivery_id": str(row.delivery_id)})  # fmt: skip
    return tasks, broken


def lost_once_handoffs(*, now: datetime, limit: int = 1000) -> list[uuid.UUID]:
    """`once` notifications whose immediate hand-off never ran: the dispatcher plans them."""
    with session_scope() as session:
        return store.pending_once_ids(
            session=session, older_than=now - ONCE_HANDOFF_GRACE, limit=limit
        )
