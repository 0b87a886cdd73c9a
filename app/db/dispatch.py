"""Queries of the dispatcher and of operators' retries: due deliveries claimed onto the `emails`
queue with their mail, unsendable ones failed, finished ones opened to planning again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import Row, Select, Table, func, select, update
from sqlalchemy.orm import Session

from app.db.jobs import CONTENT_COLUMNS
from app.db.models import Delivery, DeliveryContent, Notification
from app.domain.vocabulary import RETRYABLE_DELIVERY_STATUSES

_DISPATCH_COLUMNS = (
    Delivery.delivery_id,
    Delivery.notification_id,
    Delivery.email,
    Delivery.send_at,
)


def deliveries_by_id(*, session: Session, delivery_ids: Sequence[uuid.UUID]) -> list[Delivery]:
    """The deliveries of these ids that exist (an operator's selection)."""
    return list(session.scalars(select(Delivery).where(Delivery.delivery_id.in_(delivery_ids))))


def claim_dispatchable(
    *, session: Session, until: datetime, stale_before: datetime, now: datetime, limit: int
) -> list[Row[*tuple[Any, ...]]]:
    """Mark deliveries `enqueued` and return them: due soon, or enqueued long ago and not sent.

    One `UPDATE … RETURNING` per kind, not a locking SELECT and then an UPDATE: the lock alone
    writes every row once more, and the second statement is a second round trip and plan. The
    caller publishes before it commits, so a crash in between leaves them `scheduled`.
    Two kinds, not one query with an OR: under the OR PostgreSQL can no longer walk the
    (status, send_at) index in order and stop at `limit`, so it fetched and sorted every due
    row to return the first thousand, a cost that grows with the backlog on every sweep.
    Core statements on the session's connection: the ORM's result machinery cost more than the
    statements here.
    """
    due = (
        select(Delivery.delivery_id)
        .where(Delivery.status == "scheduled", Delivery.send_at <= until)
        .order_by(Delivery.send_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = _claim(session, due, now)
    if len(rows) < limit:
        # Rare and in no hurry: their first task was lost, or outlived its worker.
        stale = (
            select(Delivery.delivery_id)
            .where(Delivery.status == "enqueued", Delivery.enqueued_at < stale_before)
            .limit(limit - len(rows))
            .with_for_update(skip_locked=True)
        )
        rows += _claim(session, stale, now)
    return rows


def _claim(session: Session, chosen: Select[Any], now: datetime) -> list[Row[*tuple[Any, ...]]]:
    """`UPDATE deliveries … FROM (picked LEFT JOIN delivery_contents) … RETURNING` both.

    The mail is read, not written: the contents row keeps its one version. A LEFT JOIN, so a
    delivery without one is still claimed, and then fails alone on the task contract.
    """
    picked = chosen.cte("picked")
    table = cast(Table, Delivery.__table__)
    contents = cast(Table, DeliveryContent.__table__)
    mail = (
        select(picked.c.delivery_id, *(contents.c[c] for c in CONTENT_COLUMNS))
        .select_from(picked.outerjoin(contents, contents.c.delivery_id == picked.c.delivery_id))
        .subquery("mail")
    )
    claim = (
        update(table)
        .where(table.c.delivery_id == mail.c.delivery_id)
        .values(status="enqueued", enqueued_at=now, updated_at=now)
        .returning(
            *(table.c[column.key] for column in _DISPATCH_COLUMNS),
            *(mail.c[c] for c in CONTENT_COLUMNS),
        )
    )
    rows = list(session.connection().execute(claim).all())
    rows.sort(key=lambda row: row.send_at)  # RETURNING keeps no order; chunks follow send_at
    return rows


# A delivery given back this many times for coming too late is sent late the next time.
MAX_LATE_RESLOTS = 3


def hand_back_for_slots(
    *,
    session: Session,
    send_ats: dict[uuid.UUID, datetime | None],
    now: datetime,
    late: bool = False,
) -> set[uuid.UUID]:
    """Put paced deliveries the e-mail worker did not send back to `scheduled`, for the
    dispatcher to give them a new send slot; return the ids it took back.

    `send_ats`: delivery id -> the earliest time it may go again (a retry's countdown), or None
    to keep its send time. Only `enqueued` ones: a delivery claimed or finished meanwhile
    belongs to whoever did that. `late`: they came too late for their slot; one given back
    MAX_LATE_RESLOTS times already is not taken (the worker sends it): were the rate more than
    the workers can keep up with, every mail would come late, and go round for ever.
    """
    taken: set[uuid.UUID] = set()
    by_time: dict[datetime | None, list[uuid.UUID]] = {}
    for delivery_id, at in send_ats.items():
        by_time.setdefault(at, []).append(delivery_id)
    for at, ids in by_time.items():
        send_at = Delivery.send_at if at is None else func.greatest(Delivery.send_at, at)
        statement = (
            update(Delivery)
            .where(Delivery.delivery_id.in_(ids), Delivery.status == "enqueued")
            .values(status="scheduled", send_at=send_at, updated_at=now)
            .returning(Delivery.delivery_id)
            .execution_options(synchronize_session=False)
        )
        if late:
            statement = statement.where(Delivery.late_reslots < MAX_LATE_RESLOTS).values(
                late_reslots=Delivery.late_reslots + 1
            )
        taken.update(session.scalars(statement))
    return taken


def mark_unsendable(*, session: Session, errors: dict[uuid.UUID, str], now: datetime) -> None:
    """Fail deliveries whose e-mail cannot go out, each with its reason (and its notification)."""
    _finish(session, errors, now, "failed")


def mark_skipped(*, session: Session, reasons: dict[uuid.UUID, str], now: datetime) -> None:
    """Skip claimed deliveries that may no longer go (their address was suppressed since they
    were planned), each with its reason, as planning would have."""
    _finish(session, reasons, now, "skipped")


def _finish(
    session: Session,
    reasons: dict[uuid.UUID, str],
    now: datetime,
    status: Literal["failed", "skipped"],
) -> None:
    for delivery_id, reason in reasons.items():
        notification_id = session.execute(
            update(Delivery)
            .where(Delivery.delivery_id == delivery_id)
            .values(status=status, error=reason, updated_at=now)
            .returning(Delivery.notification_id)
        ).scalar_one()
        session.execute(
            update(Notification)
            .where(Notification.notification_id == notification_id)
            .values(status=status, last_update=now)
        )


def reopen(
    *,
    session: Session,
    delivery_ids: Sequence[uuid.UUID] | None = None,
    statuses: Sequence[str] = ("failed",),
    since: datetime | None = None,
    error_contains: str | None = None,
    limit: int = 10_000,
) -> list[uuid.UUID]:
    """Make finished-but-unsent deliveries plannable again; return their notification ids.

    The delivery becomes `failed` (a planning run replaces a failed delivery of its period) and
    its notification `pending`, so `send_now` plans it again with today's template and user.
    """
    if not set(statuses) <= set(RETRYABLE_DELIVERY_STATUSES):
        raise ValueError(f"only {', '.join(RETRYABLE_DELIVERY_STATUSES)} deliveries can be retried")
    query = select(Delivery.delivery_id).where(Delivery.status.in_(list(statuses)))
    if delivery_ids is not None:
        query = query.where(Delivery.delivery_id.in_(list(delivery_ids)))
    if since is not None:
        query = query.where(Delivery.updated_at >= since)
    if error_contains:
        query = query.where(Delivery.error.contains(error_contains, autoescape=True))
    ids = list(session.scalars(query.order_by(Delivery.updated_at).limit(limit).with_for_update()))
    if not ids:
        return []
    notification_ids = list(
        session.scalars(
            update(Delivery)
            .where(Delivery.delivery_id.in_(ids))
            .values(
                status="failed",
                error=func.concat("retry requested; was: ", Delivery.error),
                updated_at=func.now(),
            )
            .returning(Delivery.notification_id)
        )
    )
    session.execute(
        update(Notification)
        .where(Notification.notification_id.in_(notification_ids))
        .values(status="pending")
    )
    return notification_ids
