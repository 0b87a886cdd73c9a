"""The dispatcher: put planned deliveries whose send time is near on the `emails` queue."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.contracts import ContractError
from app.db import dispatch as claims
from app.db import jobs as store
from app.db import suppressions
from app.db.session import session_scope
from app.domain.suppression import normalised_or_none, skip_detail
from app.domain.vocabulary import skip_text
from app.jobs.email_task import email_task

log = logging.getLogger(__name__)

# Never enqueue far ahead: Celery holds ETA tasks unacked; RabbitMQ drops such consumers at 30 min.
DISPATCH_LOOKAHEAD = timedelta(seconds=60)
RESWEEP_AFTER = timedelta(minutes=15)  # enqueued but not sent by then: enqueue again
ONCE_HANDOFF_GRACE = timedelta(minutes=2)  # a `once` row still pending after this was lost
# Batches a backlog is dispatched in side by side: one in PostgreSQL while the other publishes.
DISPATCH_LANES = 2


class EmailPublisher(Protocol):
    def publish(self, tasks: Sequence[tuple[dict[str, Any], float | None]]) -> None:
        """Put e-mail tasks on the `emails` queue, each with an optional delay in seconds."""


def task_of_row(row: Any) -> dict[str, Any]:
    """The `emails` queue's message for one delivery row (schemas/email_task.json)."""
    return email_task(
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


def dispatch_due(
    *, publisher: EmailPublisher, now: datetime, limit: int = 1000, hold_transactional: bool = True
) -> int:
    """Enqueue deliveries whose send time is near (ETA at most a minute ahead); return how many.

    Publishing happens before the commit: a crash in between re-publishes on the next sweep and the
    e-mail worker's per-delivery state makes the duplicate harmless; the reverse order could lose
    mail. Deliveries enqueued long ago and still not sent are enqueued again for the same reason.
    A backlog (a first batch that came back full) is worked by DISPATCH_LANES batches side by side,
    so one batch's claim in PostgreSQL overlaps another's publishing; `SKIP LOCKED` keeps them
    apart.
    """
    total = _dispatch_batch(publisher, now, limit, hold_transactional)
    if total == limit:
        with ThreadPoolExecutor(DISPATCH_LANES, thread_name_prefix="dispatch") as lanes:
            running = [
                lanes.submit(_dispatch_lane, publisher, now, limit, hold_transactional)
                for _ in range(DISPATCH_LANES)
            ]
            total += sum(lane.result() for lane in running)
    if total:
        log.info("dispatched %d e-mail tasks", total)
    return total


def _dispatch_lane(
    publisher: EmailPublisher, now: datetime, limit: int, hold_transactional: bool
) -> int:
    """Dispatch batch after batch until one comes back short."""
    total = 0
    while True:
        count = _dispatch_batch(publisher, now, limit, hold_transactional)
        total += count
        if count < limit:
            return total


def _dispatch_batch(
    publisher: EmailPublisher, now: datetime, limit: int, hold_transactional: bool
) -> int:
    """Claim up to `limit` deliveries, publish their tasks, then commit; return how many."""
    with session_scope() as session:
        rows = claims.claim_dispatchable(
            session=session,
            until=now + DISPATCH_LOOKAHEAD,
            stale_before=now - RESWEEP_AFTER,
            now=now,
            limit=limit,
        )
        if not rows:
            return 0
        sendable, held = _without_suppressed(session, rows, hold_transactional)
        tasks, broken = _tasks_of(sendable, now)
        publisher.publish(tasks)
        claims.mark_unsendable(session=session, errors=broken, now=now)
        claims.mark_skipped(session=session, reasons=held, now=now)
    return len(rows)


def _without_suppressed(
    session: Session, rows: Sequence[Any], hold_transactional: bool
) -> tuple[list[Any], dict[uuid.UUID, str]]:
    """The rows still to send, and those whose address was suppressed after they were planned
    (a bounce between planning and the send time), each with its skip reason."""
    found = suppressions.suppressed_among(session=session, addresses=[r.email for r in rows])
    if not found:
        return list(rows), {}
    sendable, held = [], {}
    for row in rows:
        suppression = found.get(normalised_or_none(row.email) or "")
        # Planning gives bulk mail a List-Unsubscribe header and transactional mail none.
        exempt = not hold_transactional and "List-Unsubscribe" not in (row.headers or {})
        if suppression is None or exempt:
            sendable.append(row)
        else:
            held[row.delivery_id] = skip_text("address suppressed", skip_detail(suppression))
    return sendable, held


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


def lost_once_handoffs(
    *, now: datetime, limit: int = 1000, grace: timedelta = ONCE_HANDOFF_GRACE
) -> list[uuid.UUID]:
    """`once` notifications whose immediate hand-off never ran: the dispatcher plans them.

    With no grace: every `once` notification still waiting to be planned, e.g. behind an
    outage of Auth that has just ended.
    """
    with session_scope() as session:
        return store.pending_once_ids(session=session, older_than=now - grace, limit=limit)
