"""The dispatcher: put planned deliveries whose send time is near on the `emails` queue."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.contracts import ContractError
from app.db import jobs as store
from app.db.session import session_scope
from app.jobs import planning

log = logging.getLogger(__name__)

# Never enqueue far ahead: Celery holds ETA tasks unacked; RabbitMQ drops such consumers at 30 min.
DISPATCH_LOOKAHEAD = timedelta(seconds=60)
RESWEEP_AFTER = timedelta(minutes=15)  # enqueued but not sent by then: enqueue again
ONCE_HANDOFF_GRACE = timedelta(minutes=2)  # a `once` row still pending after this was lost


class EmailPublisher(Protocol):
    def publish(self, tasks: Sequence[tuple[dict[str, Any], float | None]]) -> None:
        """Put e-mail tasks on the `emails` queue, each with an optional delay in seconds."""


def task_of_row(row: Any) -> dict[str, Any]:
    """The `emails` queue's message for one delivery row (schemas/email_task.json)."""
    return planning.email_task(
        notification_id=row.notification_id,
        delivery_id=row.delivery_id,
        email=row.email,
        subject=row.subject,
        body_html=row.body_html,
        body_text=row.body_text,
        headers=row.headers,
    )


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


@dataclass(frozen=True)
class Handoff:
    """E-mail tasks marked `enqueued` in a planning transaction, to publish once it commits."""

    tasks: list[tuple[dict[str, Any], float | None]]
    delivery_ids: list[uuid.UUID]

    def __bool__(self) -> bool:
        return bool(self.tasks)


def enqueue_recorded(
    *,
    session: Session,
    plans: Sequence[dict[str, Any]],
    recorded: Sequence[store.RecordedPlan],
    now: datetime,
) -> Handoff:
    """Mark the deliveries just recorded and due now `enqueued`, in the planning transaction.

    This is the dispatcher's work for mail planned to go out at once (a welcome, a `once`
    mailing), done where the rows are already in hand instead of by the next sweep's scan.
    The tasks are published only after the commit (`publish_handoff`): a worker must find the
    row committed and `enqueued` when the task reaches it, or it would skip it.
    """
    plan_of = {plan["notification_id"]: plan for plan in plans}
    due = [
        SimpleNamespace(**plan_of[row.notification_id], delivery_id=row.delivery_id)
        for row in recorded
        if row.status == "scheduled"
        and plan_of[row.notification_id]["send_at"] <= now + DISPATCH_LOOKAHEAD
    ]
    if not due:
        return Handoff([], [])
    tasks, broken = _tasks_of(due, now)
    enqueued = [row.delivery_id for row in due if row.delivery_id not in broken]
    if enqueued:
        store.mark_enqueued(session=session, delivery_ids=enqueued, now=now)
    store.mark_unsendable(session=session, errors=broken, now=now)
    return Handoff(tasks, enqueued)


def publish_handoff(handoff: Handoff, *, publisher: EmailPublisher) -> None:
    """Publish a committed hand-off; if the broker refuses, its rows go back to the sweep.

    Back to `scheduled`, so the dispatcher's next tick (10 s) publishes them again; a task that
    did go out before the failure may still claim its row first, and the claim lets one task
    only send a delivery, so nothing is sent twice. Should PostgreSQL be unreachable too, the rows stay `enqueued` and the resweep
    (RESWEEP_AFTER) publishes them: later, but never lost.
    """
    try:
        publisher.publish(handoff.tasks)
    except Exception:
        log.warning(
            "publishing %d e-mail tasks failed; the dispatcher sends them",
            len(handoff.tasks),
            exc_info=True,
        )
        with session_scope() as session:
            store.unmark_enqueued(session=session, delivery_ids=handoff.delivery_ids)
        return
    log.info("handed %d e-mail tasks to the queue", len(handoff.tasks))


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
            tasks.append((task_of_row(row), _delay_s(row.send_at, now)))
        except ContractError as exc:
            broken[row.delivery_id] = f"the e-mail breaks its task contract: {exc}"[:2000]
            log.error(
                "delivery %s cannot be sent: %s",
                row.delivery_id,
                exc,
                extra={"delivery_id": str(row.delivery_id)},
            )
    return tasks, broken


def lost_once_handoffs(*, now: datetime, limit: int = 1000) -> list[uuid.UUID]:
    """`once` notifications whose immediate hand-off never ran: the dispatcher plans them."""
    with session_scope() as session:
        return store.pending_once_ids(
            session=session, older_than=now - ONCE_HANDOFF_GRACE, limit=limit
        )
