"""Period keys (calendar day, ISO week) in the user's zone, and the rule for when a row is due."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, get_args
from zoneinfo import ZoneInfo

Periodicity = Literal["once", "daily", "weekly"]
Status = Literal["pending", "queued", "sent", "failed", "skipped"]

PERIODICITIES: frozenset[str] = frozenset(get_args(Periodicity))
STATUSES: frozenset[str] = frozenset(get_args(Status))


def _require_aware(value: datetime, name: str) -> None:
    # A naive datetime has no instant: guessing its zone would shift periods by hours.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def period_key(periodicity: str, local_day: date) -> str:
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


def delivery_period_key(periodicity: str, now_utc: datetime, tz: ZoneInfo) -> str:
    """Return the key of the period that contains an instant, as seen in the user's zone."""
    _require_aware(now_utc, "now_utc")
    return period_key(periodicity, now_utc.astimezone(tz).date())


def is_due(
    *,
    periodicity: str,
    status: str,
    last_update: datetime | None,
    now_utc: datetime,
    tz: ZoneInfo,
) -> bool:
    """Say whether a row needs a send: not done in the current period, or its last try failed."""
    if periodicity not in PERIODICITIES:
        raise ValueError(f"unknown periodicity {periodicity!r}")
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    _require_aware(now_utc, "now_utc")
    if status in ("pending", "failed"):
        return True
    if status == "queued":
        # A delivery is in flight; the dispatcher re-sweeps it if it never finishes.
        return False
    if periodicity == "once":
        return False
    if last_update is None:
        return True
    _require_aware(last_update, "last_update")
    current = delivery_period_key(periodicity, now_utc, tz)
    return delivery_period_key(periodicity, last_update, tz) != current
