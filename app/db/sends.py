"""Queries of the e-mail worker and the provider webhook: claim a send, record what came of it.

One module, though long: the claim, the records and the sweep share the statements and the rule
that `attempts` is the owner's token, and they hold that rule only together.

A delivery moves scheduled|enqueued -> sending (claimed: one worker owns the provider call) ->
sent | enqueued (retry) | failed; provider events then move sent -> delivered, deferred, bounced,
dropped or spam. `attempts` counts claims and doubles as the owner's token: an outcome is only
recorded by the worker whose claim is current.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import (
    CursorResult,
    Result,
    String,
    Table,
    Update,
    bindparam,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db.models import Delivery, DeliveryEvent, Notification, OptOut
from app.domain.vocabulary import (
    CLAIMABLE_DELIVERY_STATUSES,
    TRANSACTIONAL_KINDS,
    DeliveryStatus,
    Kind,
    NotificationStatus,
    skip_text,
)

# Every query here is Core: the e-mail worker runs them on a plain connection (no ORM session
# to set up per send), the webhook inside its session.
Executor = Session | Connection

# Core tables, not ORM entities: an ORM-enabled UPDATE evaluates its criteria against the session
# for `synchronize_session`, which cost the e-mail worker more CPU than the SQL itself.
# (`__table__` is typed as any FromClause; a model declared with __tablename__ has a Table.)
deliveries = cast(Table, Delivery.__table__)
notifications = cast(Table, Notification.__table__)
opt_outs = cast(Table, OptOut.__table__)
delivery_events = cast(Table, DeliveryEvent.__table__)

# Which statuses a provider event may move a delivery out of (events arrive out of order).
EVENT_SOURCES: dict[str, frozenset[str]] = {
    "delivered": frozenset({"sending", "sent", "deferred"}),
    "deferred": frozenset({"sending", "sent"}),
    "bounced": frozenset({"sending", "sent", "deferred", "delivered"}),
    "dropped": frozenset({"sending", "sent", "deferred"}),
    "spam": frozenset({"sending", "sent", "deferred", "delivered"}),
}


# The statements of one send (claim, then record), built once: every e-mail runs them, and building
# a statement and its cache key again per call was a sixth of the e-mail worker's CPU.
_CLAIM_ROW = (
    select(
        deliveries.c.status,
        deliveries.c.attempts,
        deliveries.c.deferrals,
        func.extract("epoch", func.now() - deliveries.c.updated_at).label("age_s"),
        notifications.c.kind,
        notifications.c.user_id,
    )
    .join(notifications, notifications.c.notification_id == deliveries.c.notification_id)
    .where(
        deliveries.c.delivery_id == bindparam("b_delivery"),
        deliveries.c.notification_id == bindparam("b_notification"),
    )
    .with_for_update(of=deliveries)
)
_OPTED_OUT = select(opt_outs.c.kind).where(
    opt_outs.c.user_id == bindparam("b_user"), opt_outs.c.kind == bindparam("b_kind")
)
# The common claim in one statement: a waiting delivery whose user has not opted out of its
# kind. Whatever else it may be (busy, abandoned in 'sending', done, opted out, missing) falls
# back to the locked look of _CLAIM_ROW, which tells which. A worker that loses the race for
# the same row waits on its lock, sees 'sending' and falls back too.
_CLAIM_WAITING = (
    update(deliveries)
    .where(
        deliveries.c.delivery_id == bindparam("b_delivery"),
        deliveries.c.notification_id == bindparam("b_notification"),
        deliveries.c.status.in_(CLAIMABLE_DELIVERY_STATUSES),
        notifications.c.notification_id == deliveries.c.notification_id,
        or_(
            notifications.c.kind.in_(sorted(TRANSACTIONAL_KINDS)),
            ~exists().where(
                opt_outs.c.user_id == notifications.c.user_id,
                opt_outs.c.kind == notifications.c.kind,
            ),
        ),
    )
    .values(status="sending", attempts=deliveries.c.attempts + 1, updated_at=func.now())
    .returning(deliveries.c.attempts, deliveries.c.deferrals)
)
_START_SENDING = (
    update(deliveries)
    .where(deliveries.c.delivery_id == bindparam("b_delivery"))
    .values(status="sending", attempts=bindparam("b_attempt"), updated_at=func.now())
)
_SENT_VALUES: dict[str, Any] = {
    "status": bindparam("b_status"),
    "sent_at": bindparam("b_now"),
    "error": None,
    "updated_at": func.now(),
    "provider_message_id": func.coalesce(
        bindparam("b_message_id", type_=String), deliveries.c.provider_message_id
    ),
    "backend": func.coalesce(bindparam("b_backend", type_=String), deliveries.c.backend),
}
_MARK_SENT_ANY = (
    update(deliveries)
    .where(deliveries.c.delivery_id == bindparam("b_delivery"), deliveries.c.status == "sending")
    .values(**_SENT_VALUES)
    .returning(deliveries.c.notification_id, deliveries.c.reported_count)
)
# The claim's own record: its row may also have been swept back to 'enqueued' while PostgreSQL
# was out of this worker's reach, and not claimed again since (attempts unchanged), so the
# send is recorded and the re-sweep finds it done instead of sending it a second time.
_MARK_SENT = (
    update(deliveries)
    .where(
        deliveries.c.delivery_id == bindparam("b_delivery"),
        deliveries.c.status.in_(("sending", "enqueued")),
        deliveries.c.attempts == bindparam("b_attempt"),
    )
    .values(**_SENT_VALUES)
    .returning(deliveries.c.notification_id, deliveries.c.reported_count)
)


def _with_notification_sent(mark: Update) -> Update:
    """One statement recording the send on the delivery and on its notification.

    The delivery's update is a data-modifying CTE: its notification is updated only if it
    matched (the claim was current), in one round trip and one statement for PostgreSQL.
    """
    marked = mark.cte("marked")
    return (
        update(notifications)
        .where(notifications.c.notification_id == marked.c.notification_id)
        .values(
            status="sent",
            last_update=bindparam("b_now"),
            like_count=func.greatest(notifications.c.like_count - marked.c.reported_count, 0),
        )
        .returning(notifications.c.notification_id)
    )


_RECORD_SENT_ANY = _with_notification_sent(_MARK_SENT_ANY)
_RECORD_SENT = _with_notification_sent(_MARK_SENT)

ClaimState = Literal["claimed", "busy", "done", "missing", "opted_out"]


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to "may I send this delivery now?"."""

    state: ClaimState
    status: DeliveryStatus | None = (
        None  # the delivery's status before the claim (None: it was waiting)
    )
    attempt: int = 0  # the claim's number (deliveries.attempts after it)
    wait_s: float = 0.0  # busy: how long until another worker's claim counts as abandoned
    deferrals: int = 0  # earlier claims that ended in a provider outage (not real attempts)

    @property
    def reclaimed(self) -> bool:
        """Whether this claim took over a send abandoned in 'sending' (a possible duplicate)."""
        return self.state == "claimed" and self.status == "sending"


def claim_waiting(
    *, session: Executor, delivery_id: uuid.UUID, notification_id: uuid.UUID
) -> Claim | None:
    """Claim a waiting delivery in one statement; None if it is not simply waiting.

    Needs no transaction of its own (one statement), so it may run on an autocommit connection.
    """
    row = session.execute(
        _CLAIM_WAITING, {"b_delivery": delivery_id, "b_notification": notification_id}
    ).one_or_none()
    if row is None:
        return None
    return Claim("claimed", None, row.attempts, deferrals=row.deferrals)


def claim(
    *,
    session: Executor,
    delivery_id: uuid.UUID,
    notification_id: uuid.UUID,
    stale_after_s: float,
    max_attempts: int | None = None,
) -> Claim:
    """Claim a delivery for sending, unless it is done, opted out, or another worker holds it.

    Runs in a transaction: the fallback look holds the delivery's row lock until it decides.
    """
    waiting = claim_waiting(
        session=session, delivery_id=delivery_id, notification_id=notification_id
    )
    if waiting is not None:
        return waiting
    row = session.execute(
        _CLAIM_ROW, {"b_delivery": delivery_id, "b_notification": notification_id}
    ).one_or_none()
    if row is None:
        return Claim("missing")
    age_s = float(row.age_s)
    if row.status == "sending" and age_s < stale_after_s:
        return Claim("busy", row.status, row.attempts, wait_s=stale_after_s - age_s)
    if row.status not in CLAIMABLE_DELIVERY_STATUSES and row.status != "sending":
        return Claim("done", row.status, row.attempts)
    used = row.attempts - row.deferrals
    if row.status == "sending" and max_attempts is not None and used >= max_attempts:
        # Abandoned in the provider call on every one of its attempts: not sent again.
        error = f"abandoned while sending, {max_attempts} attempts used: not sent again"
        session.execute(
            _delivery(delivery_id).values(status="failed", error=error, updated_at=func.now())
        )
        _notification(session, notification_id, status="failed")
        return Claim("done", "failed", row.attempts)
    # Opt-outs are checked again at send time: the user may have left since planning.
    if row.kind not in TRANSACTIONAL_KINDS and _opted_out(session, row.user_id, row.kind):
        session.execute(
            _delivery(delivery_id).values(
                status="skipped", error=skip_text("opted out"), updated_at=func.now()
            )
        )
        _notification(session, notification_id, status="skipped")
        return Claim("opted_out", row.status, row.attempts)
    attempt = row.attempts + 1
    session.execute(_START_SENDING, {"b_delivery": delivery_id, "b_attempt": attempt})
    return Claim("claimed", row.status, attempt, deferrals=row.deferrals)


def _opted_out(session: Executor, user_id: uuid.UUID, kind: Kind) -> bool:
    return session.execute(_OPTED_OUT, {"b_user": user_id, "b_kind": kind}).first() is not None


def _delivery(delivery_id: uuid.UUID) -> Update:
    return update(deliveries).where(deliveries.c.delivery_id == delivery_id)


def _notification(
    session: Executor,
    notification_id: uuid.UUID,
    *,
    status: NotificationStatus,
    now: datetime | None = None,
) -> None:
    values = {"status": status, "last_update": now if now is not None else func.now()}
    session.execute(
        update(notifications)
        .where(notifications.c.notification_id == notification_id)
        .values(**values)
    )


def _owned(delivery_id: uuid.UUID, attempt: int | None) -> Update:
    stmt = _delivery(delivery_id).where(deliveries.c.status == "sending")
    return stmt if attempt is None else stmt.where(deliveries.c.attempts == attempt)


def mark_sent(
    *,
    session: Executor,
    delivery_id: uuid.UUID,
    attempt: int | None,
    provider_message_id: str | None,
    now: datetime,
    status: DeliveryStatus = "sent",
    backend: str | None = None,
) -> bool:
    """Record an accepted send, once: the notification is sent and its reported likes subtracted.

    Likes that arrived while the digest was out stay counted for the next one, hence the
    subtraction instead of a reset. Returns False when the claim was not current any more.
    """
    params = {
        "b_delivery": delivery_id,
        "b_attempt": attempt,
        "b_status": status,
        "b_now": now,
        "b_message_id": provider_message_id,
        "b_backend": backend,
    }
    statement = _RECORD_SENT_ANY if attempt is None else _RECORD_SENT
    return session.execute(statement, params).one_or_none() is not None


def release_for_retry(
    *,
    session: Executor,
    delivery_id: uuid.UUID,
    attempt: int,
    error: str,
    now: datetime,
    outage: bool = False,
) -> bool:
    """Hand a claimed delivery back to the queue after a transient failure.

    An outage (throttling, the provider down) is counted as a deferral, not as an attempt.
    """
    deferrals = deliveries.c.deferrals + (1 if outage else 0)
    result = session.execute(
        _owned(delivery_id, attempt).values(
            status="enqueued",
            enqueued_at=now,
            error=error,
            updated_at=func.now(),
            deferrals=deferrals,
        )
    )
    # Session.execute types its result as a plain Result; an UPDATE's is a CursorResult.
    return cast(CursorResult[Any], result).rowcount == 1


def note_unconfirmed(
    *, session: Executor, delivery_id: uuid.UUID, attempt: int, error: str
) -> bool:
    """Say why a claimed delivery waits in 'sending'; its claim's age keeps counting."""
    result = session.execute(_owned(delivery_id, attempt).values(error=error))
    return cast(CursorResult[Any], result).rowcount == 1


def mark_failed(
    *, session: Executor, delivery_id: uuid.UUID, attempt: int, error: str, now: datetime
) -> bool:
    """Give up on a claimed delivery; its notification is due again in the next period run."""
    row = session.execute(
        _owned(delivery_id, attempt)
        .values(status="failed", error=error, updated_at=func.now())
        .returning(deliveries.c.notification_id)
    ).one_or_none()
    if row is None:
        return False
    _notification(session, row.notification_id, status="failed", now=now)
    return True


def mark_notification(
    *, session: Executor, notification_id: uuid.UUID, status: NotificationStatus, now: datetime
) -> None:
    """Record the outcome of a task that names no delivery (the seed's minimal e-mail task)."""
    _notification(session, notification_id, status=status, now=now)


@dataclass(frozen=True, slots=True)
class EventTarget:
    """The delivery a provider event is about: whose, to which address, and whether the event
    changed its status."""

    user_id: uuid.UUID
    email: str | None
    changed: bool


def apply_provider_event(
    *,
    session: Executor,
    delivery_id: uuid.UUID,
    status: DeliveryStatus | None,
    error: str | None,
    now: datetime,
) -> EventTarget | None:
    """Apply one provider event to its delivery; return whose and to which address it was, and
    whether its status changed (None: no delivery of ours).

    An event for a delivery still in 'sending' proves the provider accepted it (the worker died
    before recording that): it is recorded as sent first, so no redelivered task sends it again.
    """
    row = session.execute(
        select(deliveries.c.status, deliveries.c.email, notifications.c.user_id)
        .join(notifications, notifications.c.notification_id == deliveries.c.notification_id)
        .where(deliveries.c.delivery_id == delivery_id)
        .with_for_update(of=deliveries)
    ).one_or_none()
    if row is None:
        return None
    if status is None or row.status not in EVENT_SOURCES[status]:
        return EventTarget(row.user_id, row.email, changed=False)
    if row.status == "sending":
        mark_sent(
            session=session,
            delivery_id=delivery_id,
            attempt=None,
            provider_message_id=None,
            now=now,
            status=status,
        )
    values: dict[str, Any] = {"status": status, "updated_at": func.now()}
    if error:
        values["error"] = error[:2000]
    session.execute(_delivery(delivery_id).values(**values))
    session.execute(
        insert(delivery_events).values(
            delivery_id=delivery_id, status=status, detail=error[:2000] if error else None
        )
    )
    return EventTarget(row.user_id, row.email, changed=True)


def add_opt_outs(
    *, session: Executor, user_id: uuid.UUID, kinds: Iterable[str], source: str
) -> int:
    """Turn kinds of mail off for a user; return how many were newly turned off."""
    rows = [{"user_id": user_id, "kind": kind, "source": source} for kind in kinds]
    if not rows:
        return 0
    result: Result[Any] = session.execute(
        insert(opt_outs).values(rows).on_conflict_do_nothing().returning(literal_column("1"))
    )
    return len(result.all())


def release_stale_sending(
    *,
    session: Executor,
    stale_after_s: float,
    max_attempts: int | None = None,
    resweep_after_s: float | None = None,
    grace_s: float = 0.0,
) -> int:
    """Hand deliveries abandoned in 'sending' back to the dispatcher's re-sweep; return how many.

    Their task message normally comes back by itself (late acks); this covers a lost message.
    They are re-swept `grace_s` from now at the earliest (`enqueued_at` no earlier than
    `resweep_after_s - grace_s` ago): the sweep cannot tell a dead worker from one whose send
    was accepted but could not be recorded (PostgreSQL away longer than `stale_after_s`, for any
    length of time); the live one records it meanwhile, its claim's attempt still current, and
    the re-sweep finds it sent.
    One that was abandoned `max_attempts` times (counted attempts, not deferrals) is failed
    instead: a send that kills its worker every time must not be sent again forever.
    """
    stale = (
        deliveries.c.status == "sending",
        deliveries.c.updated_at < func.now() - _seconds(stale_after_s),
    )
    enqueued_at: Any = func.coalesce(deliveries.c.enqueued_at, deliveries.c.created_at)
    if resweep_after_s is not None and grace_s > 0:
        not_before = func.now() - _seconds(max(resweep_after_s - grace_s, 0.0))
        enqueued_at = func.greatest(enqueued_at, not_before)
    given_up = 0
    if max_attempts is not None:
        exhausted = deliveries.c.attempts - deliveries.c.deferrals >= max_attempts
        failed = session.execute(
            update(deliveries)
            .where(*stale, exhausted)
            .values(
                status="failed",
                error=f"abandoned while sending, {max_attempts} attempts used: not sent again",
                updated_at=func.now(),
            )
            .returning(deliveries.c.notification_id)
        ).all()
        for row in failed:
            _notification(session, row.notification_id, status="failed")
        given_up = len(failed)
    result = session.execute(
        update(deliveries)
        .where(*stale)
        .values(
            status="enqueued",
            enqueued_at=enqueued_at,
            error="released: abandoned while sending",
            updated_at=func.now(),
        )
    )
    return cast(CursorResult[Any], result).rowcount + given_up


def _seconds(seconds: float) -> Any:
    return func.make_interval(0, 0, 0, 0, 0, 0, seconds)
