"""The global send rate's one row in PostgreSQL: read under a lock, written after slots are
handed out (app/domain/pacing.py), and what the dashboard and campaigns read to estimate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db.models import Delivery, SendPacing
from app.domain.pacing import PacingState

_ROW = 1


def _fresh(now: datetime) -> PacingState:
    return PacingState(next_slot=now, day=now.date(), day_count=0)


def lock_state(*, session: Session, now: datetime) -> PacingState:
    """The pacing state, locked until the transaction ends: one dispatcher hands out slots at
    a time, whichever process it runs in."""
    session.execute(
        insert(SendPacing)
        .values(id=_ROW, next_slot=now, day=now.date(), day_count=0)
        .on_conflict_do_nothing(index_elements=["id"])
    )
    row = session.execute(
        select(SendPacing.next_slot, SendPacing.day, SendPacing.day_count)
        .where(SendPacing.id == _ROW)
        .with_for_update()
    ).one()
    return PacingState(next_slot=row.next_slot, day=row.day, day_count=row.day_count)


def save_state(*, session: Session, state: PacingState) -> None:
    """Store the state after slots were handed out (the row is locked by `lock_state`)."""
    row = session.get(SendPacing, _ROW)
    assert row is not None, "lock_state creates the row"
    row.next_slot, row.day, row.day_count = state.next_slot, state.day, state.day_count


def read_state(*, session: Session, now: datetime) -> PacingState:
    """The pacing state as it is, not locked (a fresh one before sending was first paced)."""
    row = session.execute(
        select(SendPacing.next_slot, SendPacing.day, SendPacing.day_count).where(
            SendPacing.id == _ROW
        )
    ).one_or_none()
    if row is None:
        return _fresh(now)
    return PacingState(next_slot=row.next_slot, day=row.day, day_count=row.day_count)


def due_unslotted(*, session: Session, now: datetime, until: datetime | None = None) -> int:
    """Deliveries due by `now` (or by `until`) that have no send slot yet: still `scheduled`."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.status == "scheduled", Delivery.send_at <= (until or now))
        )
        or 0
    )
