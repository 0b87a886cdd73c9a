"""The jobs' SQL plans exactly the rows `periods.is_due` says are due, for every combination.

Every periodicity x notification status x status of the row's delivery for the period (or none)
is one row; one daily run, one weekly run and one `once` planning later, a row was planned iff
the pure rule says so.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, update

from app.auth.client import AuthClient
from app.auth.dev_server import generate_users
from app.config import Settings
from app.db.models import Delivery, Notification
from app.db.session import session_scope
from app.domain.periods import delivery_period_key, is_due
from app.domain.vocabulary import (
    DELIVERY_STATUSES,
    NOTIFICATION_STATUSES,
    PERIODICITIES,
    DeliveryStatus,
    NotificationStatus,
    Periodicity,
)
from app.jobs import digests
from harness.rows import Spec, insert_notifications

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 25, 0, 5, tzinfo=UTC)  # a Wednesday; 09:00 UTC is today's send time
SEND_AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
EARLIER = datetime(2026, 11, 1, tzinfo=UTC)
COMBINATIONS = list(
    itertools.product(PERIODICITIES, NOTIFICATION_STATUSES, (None, *DELIVERY_STATUSES))
)


@pytest.fixture
def auth_users() -> list[dict[str, Any]]:
    """Users in UTC who take every kind of mail: only the due rule decides."""
    users = generate_users(len(COMBINATIONS))
    for user in users:
        user["timezone"] = "UTC"
        user["notification_policy"] = {"email": True, "likes": True, "mailing": True}
    return users


def _seed(
    users: list[dict[str, Any]],
) -> dict[uuid.UUID, tuple[Periodicity, NotificationStatus, DeliveryStatus | None]]:
    specs = [
        Spec(uuid.UUID(user["user_id"]), "mailing", periodicity, uuid.uuid4(), f"text {i}")
        for i, (user, (periodicity, _, _)) in enumerate(zip(users, COMBINATIONS, strict=True))
    ]
    with session_scope() as session:
        ids = insert_notifications(session, specs)
        deliveries = []
        for nid, (periodicity, status, delivery) in zip(ids, COMBINATIONS, strict=True):
            session.execute(
                update(Notification)
                .where(Notification.notification_id == nid)
                .values(status=status, last_update=EARLIER)
            )
            if delivery is not None:
                deliveries.append(
                    {
                        "delivery_id": uuid.uuid4(),
                        "notification_id": nid,
                        "period_key": delivery_period_key(periodicity, SEND_AT, ZoneInfo("UTC")),
                        "send_at": EARLIER,
                        "status": delivery,
                        "updated_at": EARLIER,
                    }
                )
        session.execute(insert(Delivery), deliveries)
    return dict(zip(ids, COMBINATIONS, strict=True))


def _planned_now() -> set[uuid.UUID]:
    """Rows whose delivery for this period was written by the runs (created or replanned)."""
    with session_scope() as session:
        rows = session.execute(
            # Seeded deliveries keep their old updated_at; a planned one has this run's.
            select(Delivery.notification_id).where(
                Delivery.status == "scheduled", Delivery.updated_at > EARLIER
            )
        )
        return {nid for (nid,) in rows}


def test_the_jobs_plan_exactly_the_rows_the_rule_calls_due(
    db: str, auth_client: AuthClient, settings: Settings, auth_users: list[dict[str, Any]]
) -> None:
    rows = _seed(auth_users)
    for periodicity in ("daily", "weekly"):
        digests.run_digest(periodicity, auth=auth_client, settings=settings, now=NOW)
    once = [nid for nid, (periodicity, _, _) in rows.items() if periodicity == "once"]
    digests.plan_once(once, auth=auth_client, settings=settings, now=NOW)

    expected = {
        nid
        for nid, (periodicity, status, delivery) in rows.items()
        if is_due(periodicity=periodicity, status=status, period_delivery=delivery)
    }
    planned = _planned_now()
    # Both sides are exercised: due are 4 `once` rows (pending or failed, with no delivery or a
    # failed one) and 8 each of daily and weekly (any status but queued, same deliveries).
    assert len(expected) == 20 and len(rows) == 195
    wrongly_planned = sorted((rows[nid] for nid in planned - expected), key=str)
    wrongly_left = sorted((rows[nid] for nid in expected - planned), key=str)
    assert wrongly_planned == [] and wrongly_left == []
