"""The jobs' SQL plans exactly the rows `periods.is_due` says are due, for every combination.

Every periodicity x the recipient's chosen periodicity (none, daily, weekly) x notification status
x status of the row's delivery for the period (or none) is one row; one daily run, one weekly run
and one `once` planning later, a row was planned iff the pure rule says so, and for the period of
its planned periodicity.
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
from app.db.models import Delivery, Notification, Preference
from app.db.session import session_scope
from app.domain.periods import delivery_period_key, is_due, planned_periodicity
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
CHOICES: tuple[Periodicity | None, ...] = (None, "daily", "weekly")  # what the page offers
COMBINATIONS = list(
    itertools.product(PERIODICITIES, CHOICES, NOTIFICATION_STATUSES, (None, *DELIVERY_STATUSES))
)
Combination = tuple[Periodicity, Periodicity | None, NotificationStatus, DeliveryStatus | None]


@pytest.fixture
def auth_users() -> list[dict[str, Any]]:
    """Users in UTC who take every kind of mail: only the due rule decides."""
    users = generate_users(len(COMBINATIONS))
    for user in users:
        user["timezone"] = "UTC"
        user["notification_policy"] = {"email": True, "likes": True, "mailing": True}
    return users


def _spec(user: dict[str, Any], combination: Combination, i: int) -> Spec:
    periodicity, chosen, _, _ = combination
    user_id = uuid.UUID(user["user_id"])
    if chosen is None:
        return Spec(user_id, "mailing", periodicity, uuid.uuid4(), f"text {i}")
    # The page offers a choice for like digests: one like, so the digest has something to say.
    return Spec(user_id, "likes", periodicity, uuid.uuid4(), f"text {i}", like_count=1)


def _seed(users: list[dict[str, Any]]) -> dict[uuid.UUID, Combination]:
    specs = [_spec(user, c, i) for i, (user, c) in enumerate(zip(users, COMBINATIONS, strict=True))]
    with session_scope() as session:
        ids = insert_notifications(session, specs)
        deliveries, choices = [], []
        for nid, spec, (periodicity, chosen, status, delivery) in zip(
            ids, specs, COMBINATIONS, strict=True
        ):
            session.execute(
                update(Notification)
                .where(Notification.notification_id == nid)
                .values(status=status, last_update=EARLIER)
            )
            if chosen is not None:
                choices.append({"user_id": spec.user_id, "kind": "likes", "periodicity": chosen})
            if delivery is not None:
                deliveries.append(
                    {
                        "delivery_id": uuid.uuid4(),
                        "notification_id": nid,
                        "period_key": _period_of(periodicity, chosen),
                        "send_at": EARLIER,
                        "status": delivery,
                        "updated_at": EARLIER,
                    }
                )
        session.execute(insert(Preference), choices)
        session.execute(insert(Delivery), deliveries)
    return dict(zip(ids, COMBINATIONS, strict=True))


def _period_of(periodicity: Periodicity, chosen: Periodicity | None) -> str:
    """The key of the period a row is due in: today's, of its planned periodicity."""
    return delivery_period_key(planned_periodicity(periodicity, chosen), SEND_AT, ZoneInfo("UTC"))


def _planned_now() -> dict[uuid.UUID, str]:
    """Rows whose delivery was written by the runs (created or replanned), with its period."""
    with session_scope() as session:
        rows = session.execute(
            # Seeded deliveries keep their old updated_at; a planned one has this run's.
            select(Delivery.notification_id, Delivery.period_key).where(
                Delivery.status == "scheduled", Delivery.updated_at > EARLIER
            )
        )
        return {nid: key for nid, key in rows}


def test_the_jobs_plan_exactly_the_rows_the_rule_calls_due(
    db: str, auth_client: AuthClient, settings: Settings, auth_users: list[dict[str, Any]]
) -> None:
    rows = _seed(auth_users)
    for periodicity in ("daily", "weekly"):
        digests.run_digest(periodicity, auth=auth_client, settings=settings, now=NOW)
    # What the dispatcher's sweep hands over: the rows planned as `once`.
    once = [
        nid for nid, (p, chosen, _, _) in rows.items() if planned_periodicity(p, chosen) == "once"
    ]
    digests.plan_once(once, auth=auth_client, settings=settings, now=NOW)

    expected = {
        nid: _period_of(periodicity, chosen)
        for nid, (periodicity, chosen, status, delivery) in rows.items()
        if is_due(periodicity=periodicity, chosen=chosen, status=status, period_delivery=delivery)
    }
    planned = _planned_now()
    # Both sides are exercised. With no choice, due are 4 `once` rows (pending or failed, with
    # no delivery or a failed one) and 8 each of daily and weekly (any status but queued, same
    # deliveries); with a choice, 8 per producer's periodicity and choice, `once` rows included.
    assert len(expected) == 20 + 8 * 3 * 2 and len(rows) == 195 * 3
    wrongly_planned = sorted((rows[nid] for nid in planned.keys() - expected.keys()), key=str)
    wrongly_left = sorted((rows[nid] for nid in expected.keys() - planned.keys()), key=str)
    assert wrongly_planned == [] and wrongly_left == []
    assert planned == expected  # each in the period of its planned periodicity
