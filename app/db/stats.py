"""Counts for progress displays and gauges: notifications and deliveries by status."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Delivery, Notification


def notification_counts(*, session: Session) -> dict[tuple[str, str], int]:
    """{(kind, status): count} over every notification."""
    rows = session.execute(
        select(Notification.kind, Notification.status, func.count()).group_by(
            Notification.kind, Notification.status
        )
    )
    return {(kind, status): count for kind, status, count in rows}


def delivery_counts(*, session: Session) -> dict[str, int]:
    """{status: count} over every delivery."""
    rows = session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
    return {status: count for status, count in rows}
