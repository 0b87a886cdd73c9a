"""Suppressed addresses in PostgreSQL: record, count soft bounces, look up a chunk's, list, lift.

Every address is stored normalised (app/domain/suppression.normalise_address); the callers pass
what they have, and these functions normalise it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, delete, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from app.db.models import SoftBounce, SuppressedAddress
from app.domain.suppression import (
    AddressInvalid,
    Suppression,
    clip_detail,
    normalise_address,
    soft_bounces_suppress,
)
from app.domain.vocabulary import SUPPRESSION_REASONS, SuppressionReason, one_of

suppressions = cast(Table, SuppressedAddress.__table__)
_SUPPRESSED_AMONG = (
    "SELECT address, reason, detail, source, first_event_at, last_event_at"
    " FROM suppressions WHERE address = ANY(%(wanted)s)"
)
soft_bounces = cast(Table, SoftBounce.__table__)


def suppress(
    *,
    session: Session,
    address: str,
    reason: SuppressionReason,
    at: datetime,
    source: str,
    detail: str | None = None,
) -> bool:
    """Suppress an address (again): the latest reason and detail win, the first event stays.
    Return whether it was not suppressed until now."""
    row = {
        "address": normalise_address(address),
        "reason": reason,
        "detail": clip_detail(detail),
        "source": source[:40],
        "first_event_at": at,
        "last_event_at": at,
    }
    statement = insert(suppressions).values(row)
    inserted: bool = session.execute(
        statement.on_conflict_do_update(
            index_elements=[suppressions.c.address],
            set_={
                "reason": statement.excluded.reason,
                "detail": statement.excluded.detail,
                "source": statement.excluded.source,
                "last_event_at": func.greatest(
                    suppressions.c.last_event_at, statement.excluded.last_event_at
                ),
            },
        ).returning(literal_column("xmax = 0"))  # PostgreSQL: 0 on a row just inserted
    ).scalar_one()
    return inserted


def record_soft_bounce(
    *,
    session: Session,
    address: str,
    delivery_id: uuid.UUID,
    at: datetime,
    detail: str | None,
    threshold: int,
    window: timedelta,
) -> bool:
    """Count one delivery refused for a while; suppress the address when the soft bounces in
    the window reach `threshold`. Return whether this one suppressed it."""
    normalised = normalise_address(address)
    session.execute(
        insert(soft_bounces)
        .values(address=normalised, delivery_id=delivery_id, at=at, detail=clip_detail(detail))
        .on_conflict_do_nothing()
    )
    count = session.scalar(
        select(func.count())
        .select_from(soft_bounces)
        .where(soft_bounces.c.address == normalised, soft_bounces.c.at > at - window)
    )
    if not soft_bounces_suppress(int(count or 0), threshold):
        return False
    if suppressed_among(session=session, addresses=[normalised]):
        return False
    return suppress(
        session=session,
        address=normalised,
        reason="soft bounces",
        at=at,
        source="soft bounces",
        detail=f"{count} soft bounces in {window.days} days; last: {detail or 'no detail'}",
    )


def suppressed_among(*, session: Session, addresses: Iterable[str]) -> dict[str, Suppression]:
    """The suppressions of these addresses (one query), by normalised address."""
    wanted = set()
    for address in addresses:
        try:
            wanted.add(normalise_address(address))
        except AddressInvalid:
            continue  # not an address: nothing can be suppressed under it
    if not wanted:
        return {}
    # Plain SQL with one array parameter: a planning chunk asks for a thousand addresses, and
    # built by SQLAlchemy with an IN list the lookup cost twice as much.
    rows = session.connection().exec_driver_sql(_SUPPRESSED_AMONG, {"wanted": sorted(wanted)})
    return {row.address: _suppression(row) for row in rows}


def lift(*, session: Session, address: str) -> Suppression | None:
    """Remove an address's suppression (and its soft bounces); the one lifted, if any."""
    normalised = normalise_address(address)
    session.execute(delete(soft_bounces).where(soft_bounces.c.address == normalised))
    row = session.execute(
        delete(suppressions).where(suppressions.c.address == normalised).returning(suppressions)
    ).one_or_none()
    return _suppression(row) if row is not None else None


def search(
    *, session: Session, query: str = "", reason: str | None = None, limit: int = 200
) -> list[Suppression]:
    """Suppressions whose address contains `query` (or every one), newest event first."""
    statement = select(suppressions).order_by(
        suppressions.c.last_event_at.desc(), suppressions.c.address
    )
    if query.strip():
        pattern = "%" + _like_escaped(query.strip().lower()) + "%"
        statement = statement.where(
            or_(
                suppressions.c.address.like(pattern, escape="\\"),
                suppressions.c.detail.ilike(pattern, escape="\\"),
            )
        )
    if reason:
        statement = statement.where(suppressions.c.reason == reason)
    return [_suppression(row) for row in session.execute(statement.limit(limit))]


def count(*, session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(suppressions)) or 0)


def _like_escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _suppression(row: Any) -> Suppression:
    return Suppression(
        address=row.address,
        reason=one_of(row.reason, SUPPRESSION_REASONS, "reason"),
        first_event_at=row.first_event_at,
        last_event_at=row.last_event_at,
        detail=row.detail,
        source=row.source,
    )


def suppress_many(
    *,
    session: Session,
    rows: Sequence[tuple[str, SuppressionReason, str | None]],
    at: datetime,
    source: str,
) -> int:
    """Suppress each (address, reason, detail) of an import; return how many were new."""
    return sum(
        suppress(session=session, address=a, reason=r, at=at, source=source, detail=d)
        for a, r, d in rows
    )
