"""The dispatcher: put planned deliveries whose send time is near on the `emails` queue."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.contracts import ContractError
from app.db import dispatch as claims
from app.db import jobs as store
from app.db import pacing, suppressions
from app.db.session import session_scope
from app.domain.pacing import Pace, assign_slots, room
from app.domain.suppression import normalised_or_none, skip_detail
from app.domain.vocabulary import skip_text
from app.jobs.email_task import email_task

log = logging.getLogger(__name__)
UNPACED = Pace(rate=None)

# Never enqueue far ahead: Celery holds ETA tasks unacked; RabbitMQ drops such consumers at 30 min.
DISPATCH_LOOKAHEAD = timedelta(seconds=60)
RESWEEP_AFTER = timedelta(minutes=15)  # enqueued but not sent by then: enqueue again
ONCE_HANDOFF_GRACE = timedelta(minutes=2)  # a `once` row still pending after this was lost
# Batches a backlog is dispatched in side by side: one in PostgreSQL while the other publishes.
DISPATCH_LANES = 2
# Paced mail's first slot is this far ahead of the batch's start: time for the claim and the
# publishing, so that no e-mail reaches its worker already late for its slot.
PACED_LEAD = timedelta(seconds=1)


class EmailPublisher(Protocol):
    def publish(
        self,
        tasks: Sequence[tuple[dict[str, Any], float | None]],
        *,
        resolution_s: float = 1.0,
        counted_from: datetime | None = None,
    ) -> None:
        """Put e-mail tasks on the `emails` queue, each with an optional delay in seconds
        (counted from `counted_from`, or from when each is published), in chunks of tasks due
        within the same `resolution_s`."""


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
    *,
    publisher: EmailPublisher,
    now: datetime,
    limit: int = 1000,
    hold_transactional: bool = True,
    pace: Pace = UNPACED,
) -> int:
    """Enqueue deliveries whose send time is near (ETA at most a minute ahead); return how many.

    Publishing happens before the commit: a crash in between re-publishes on the next sweep and the
    e-mail worker's per-delivery state makes the duplicate harmless; the reverse order could lose
    mail. Deliveries enqueued long ago and still not sent are enqueued again for the same reason.
    A backlog (a first batch that came back full) is worked by DISPATCH_LANES batches side by side,
    so one batch's claim in PostgreSQL overlaps another's publishing; `SKIP LOCKED` keeps them
    apart. Under a send rate (`pace`) each e-mail gets a send slot and goes on the queue with
    its delay, and no more are claimed than have slots within the lookahead.
    """
    batch = _Batch(publisher, now, hold_transactional, pace)
    total = batch.run(limit)
    if total == limit:
        with ThreadPoolExecutor(DISPATCH_LANES, thread_name_prefix="dispatch") as lanes:
            running = [lanes.submit(batch.run_until_short, limit) for _ in range(DISPATCH_LANES)]
            total += sum(lane.result() for lane in running)
    if total:
        log.info("dispatched %d e-mail tasks", total)
    return total


@dataclass(frozen=True)
class _Batch:
    publisher: EmailPublisher
    now: datetime
    hold_transactional: bool
    pace: Pace

    def run_until_short(self, limit: int) -> int:
        """Dispatch batch after batch until one comes back short."""
        total = 0
        while True:
            count = self.run(limit)
            total += count
            if count < limit:
                return total

    def run(self, limit: int) -> int:
        """Claim up to `limit` deliveries, publish their tasks, then commit; return how many."""
        now, until = self.now, self.now + DISPATCH_LOOKAHEAD
        with session_scope() as session:
            state = pacing.lock_state(session=session, now=now) if self.pace.limited else None
            if state is not None:
                limit = min(limit, room(self.pace, state, now, until) or 0)
                if not limit:
                    return 0
            rows = claims.claim_dispatchable(
                session=session,
                until=until,
                stale_before=now - RESWEEP_AFTER,
                now=now,
                limit=limit,
            )
            if not rows:
                return 0
            sendable, held = _without_suppressed(session, rows, self.hold_transactional)
            tasks, broken = _tasks_of(sendable)
            send_times = [send_at for _task, send_at in tasks]
            if state is not None:
                earliest = now + PACED_LEAD
                send_times, state = assign_slots(self.pace, state, send_times, earliest)
                pacing.save_state(session=session, state=state)
                for (task, _at), slot in zip(tasks, send_times, strict=True):
                    task["slot"] = slot.isoformat()  # the worker hands it back when late
            delayed = [
                (task, _delay_s(at, now)) for (task, _at), at in zip(tasks, send_times, strict=True)
            ]
            if state is not None:
                # A chunk goes out at once: a second's worth in one would be a burst at its top.
                self.publisher.publish(
                    delayed, resolution_s=self.pace.chunk_span_s, counted_from=now
                )
            else:
                self.publisher.publish(delayed)
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
    rows: Sequence[Any],
) -> tuple[list[tuple[dict[str, Any], datetime]], dict[uuid.UUID, str]]:
    """The e-mail tasks of the rows with their send times, and the rows whose task breaks the
    contract (with why).

    A broken row fails on its own, with the reason stored: it must never roll back the chunk,
    or it would come first again on every sweep and hold up everyone behind it.
    """
    tasks, broken = [], {}
    for row in rows:
        try:
            tasks.append((task_of_row(row), row.send_at))
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
