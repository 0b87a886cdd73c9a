"""Period keys (calendar day, ISO week) in the user's zone, and the rule for when a row is due."""

from __future__ import annotations

from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from app.domain.vocabulary import (
    DELIVERY_STATUSES,
    NOTIFICATION_STATUSES,
    PERIODICITIES,
    DeliveryStatus,
    NotificationStatus,
    Periodicity,
)


def _require_aware(value: datetime, name: str) -> None:
    # A naive datetime has no instant: guessing its zone would shift periods by hours.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def period_key(periodicity: Periodicity, local_day: date) -> str:
    """Return the key of a local day's period: "once", "2026-11-25" or "2026-W48"."""
    if periodicity == "once":
        return "once"
    if periodicity == "daily":
        return local_day.isoformat()
    if periodicity == "weekly":
        # The ISO year, not the calendar year: 2027-01-01 belongs to 2026-W53.
        iso = local_day.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"
    raise ValueError(f"unknown periodicity {periodicity!r}")


def delivery_period_key(periodicity: Periodicity, now_utc: datetime, tz: ZoneInfo) -> str:
    """Return the key of the period that contains an instant, as seen in the user's zone."""
    _require_aware(now_utc, "now_utc")
    return period_key(periodicity, now_utc.astimezone(tz).date())


# The due rule. The jobs' queries (app/db/jobs.py) apply it with these same constants, in SQL, on
# the planned periodicity (a COALESCE of the preference and the row's): a row's delivery for a
# period is unique (notification, period key), so concurrent runs agree.
#
# A notification whose delivery is under way is never picked; the dispatcher re-sweeps it.
IN_FLIGHT_STATUSES: Final[tuple[NotificationStatus, ...]] = ("queued",)
# A `once` notification is planned while its mail has not gone out (it waits, or its try failed).
ONCE_DUE_STATUSES: Final[tuple[NotificationStatus, ...]] = ("pending", "failed")
# A period that has a delivery is done, unless that delivery failed: then it is planned again.
REPLANNED_DELIVERY_STATUSES: Final[tuple[DeliveryStatus, ...]] = ("failed",)


def planned_periodicity(producer: Periodicity, chosen: Periodicity | None) -> Periodicity:
    """The periodicity a row is planned by: the recipient's choice on the preference page comes
    ahead of the producer's."""
    return chosen if chosen is not None else producer


def is_due(
    *,
    periodicity: Periodicity,
    status: NotificationStatus,
    period_delivery: str | None,
    chosen: Periodicity | None = None,
) -> bool:
    """Say whether a row gets a delivery planned for a period of its planned periodicity.

    `periodicity` is the producer's, `chosen` the recipient's (None when they never chose): the
    row belongs to the run of `planned_periodicity(periodicity, chosen)`. `period_delivery` is
    the status of the row's delivery for that period (the period of the planned send time, in
    the user's zone: `delivery_period_key`), or None when it has none.
    """
    if chosen is not None and chosen not in PERIODICITIES:
        raise ValueError(f"unknown chosen periodicity {chosen!r}")
    if periodicity not in PERIODICITIES:
        raise ValueError(f"unknown periodicity {periodicity!r}")
    if status not in NOTIFICATION_STATUSES:
        raise ValueError(f"unknown status {status!r}")
    if period_delivery is not None and period_delivery not in DELIVERY_STATUSES:
        raise ValueError(f"unknown delivery status {period_delivery!r}")
    if status in IN_FLIGHT_STATUSES:
        return False
    if planned_periodicity(periodicity, chosen) == "once" and status not in ONCE_DUE_STATUSES:
        return False
    return period_delivery is None or period_delivery in REPLANNED_DELIVERY_STATUSES
