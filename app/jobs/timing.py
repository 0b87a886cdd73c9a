"""When a delivery goes out, and why then: pure, over the zone, the send hour and quiet hours.

The reason is what the user's timeline shows ("daily digest at the send hour 09:00 in
Europe/Berlin, moved out of quiet hours ..."); planning stores it with the delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from app.domain import periods, sendtime
from app.domain.frequency import Cap, breaks_a_cap, next_free_slot
from app.domain.vocabulary import Periodicity


class Schedule(NamedTuple):
    """What decides a delivery's time besides the zone: its kind of mail and campaign schedule."""

    transactional: bool
    periodicity: Periodicity
    campaign_send_at: datetime | None
    campaign_local_date: date | None
    campaign_local_hour: int | None


# A run plans thousands of users of a few hundred zones at one `now`: their timing repeats.
@lru_cache(maxsize=4096)
def delivery_time(
    schedule: Schedule,
    tz: ZoneInfo,
    quiet: tuple[time, time] | None,
    send_hour: int,
    now: datetime,
) -> tuple[datetime, str, str]:
    """When a delivery goes out, why then (the user's timeline shows it), and its period's key."""
    send_at, reason = _send_at(schedule, tz, quiet, send_hour, now)
    return (
        send_at,
        reason,
        periods.period_key(schedule.periodicity, sendtime.local_day(send_at, tz)),
    )


def _send_at(
    schedule: Schedule,
    tz: ZoneInfo,
    quiet: tuple[time, time] | None,
    hour: int,
    now: datetime,
) -> tuple[datetime, str]:
    if schedule.transactional:
        return sendtime.transactional_send_time(now), "transactional: at once, whatever the hour"
    if schedule.periodicity == "once" and _campaign_time(schedule, tz) is not None:
        return _scheduled_campaign_at(schedule, tz, quiet, now)
    if schedule.periodicity == "once":
        at = sendtime.earliest_send_time(now_utc=now, tz=tz, quiet=quiet)
        if quiet is None or not sendtime.in_quiet_hours(now.astimezone(tz).time(), quiet):
            return at, f"at once: {local_time(now, tz)} is outside quiet hours"
        return at, (
            f"held for quiet hours: {local_time(now, tz)} is inside "
            f"{quiet_text(quiet)}, so at {local_time(at, tz)}"
        )
    at = sendtime.send_time(now_utc=now, tz=tz, send_hour=hour, quiet=quiet)
    reason = f"{schedule.periodicity} digest at the send hour {hour:02d}:00 in {tz.key}"
    if quiet is not None and at != sendtime.send_time(
        now_utc=now, tz=tz, send_hour=hour, quiet=None
    ):
        reason += f", moved out of quiet hours {quiet_text(quiet)} to {local_time(at, tz)}"
    return at, reason


def _campaign_time(schedule: Schedule, tz: ZoneInfo) -> datetime | None:
    """The instant a scheduled campaign names for this recipient, or None (not scheduled)."""
    if schedule.campaign_send_at is not None:
        return schedule.campaign_send_at
    if schedule.campaign_local_date is not None and schedule.campaign_local_hour is not None:
        return sendtime.local_instant(
            schedule.campaign_local_date, time(schedule.campaign_local_hour), tz
        )
    return None


def _scheduled_campaign_at(
    schedule: Schedule, tz: ZoneInfo, quiet: tuple[time, time] | None, now: datetime
) -> tuple[datetime, str]:
    """A scheduled campaign's mail: at its time (out of quiet hours), or at once once past."""
    target = _campaign_time(schedule, tz)
    assert target is not None
    if schedule.campaign_local_hour is not None:
        asked = f"the campaign's {schedule.campaign_local_hour:02d}:00 local time"
    else:
        asked = "the campaign's send time"
    if target <= now:
        at = sendtime.earliest_send_time(now_utc=now, tz=tz, quiet=quiet)
        return at, f"{asked} ({local_time(target, tz)}) had passed when planned: as soon as allowed"
    at = sendtime.earliest_send_time(now_utc=target, tz=tz, quiet=quiet)
    reason = f"{asked}: {local_time(target, tz)}"
    if quiet is not None and at != target:
        reason += f", moved out of quiet hours {quiet_text(quiet)} to {local_time(at, tz)}"
    return at, reason


class CapHold(NamedTuple):
    """When a mail over a frequency cap goes instead, why, and the key of that time's period."""

    send_at: datetime
    reason: str
    period_key: str
    cap: Cap  # the one the planned time would have broken


def cap_hold(
    at: datetime,
    others: Sequence[datetime],
    caps: Sequence[Cap],
    tz: ZoneInfo,
    quiet: tuple[time, time] | None,
    periodicity: Periodicity,
) -> CapHold | Cap | None:
    """None if a mail at `at` breaks no cap; else when it may go (out of quiet hours too), or
    the cap it breaks when no time within frequency.MAX_HOLD is free."""
    broken = breaks_a_cap(at, others, caps)
    if broken is None:
        return None
    slot = at
    for _ in range(_SETTLING_ROUNDS):
        free = next_free_slot(slot, others, caps)
        if free is None:
            return broken
        allowed = sendtime.earliest_send_time(now_utc=free, tz=tz, quiet=quiet)
        if allowed - free < timedelta(seconds=1):  # outside quiet hours (to the whole second)
            reason = f"held by the frequency cap {broken}: at {local_time(allowed, tz)}"
            key = periods.period_key(periodicity, sendtime.local_day(allowed, tz))
            return CapHold(allowed, reason, key, broken)
        slot = allowed  # the free time was in quiet hours: look again from their end
    return broken


# Each round moves the slot past a quiet night or a full window; real schedules settle in two.
_SETTLING_ROUNDS = 8


def local_time(instant: datetime, tz: ZoneInfo) -> str:
    """An instant as the user's wall clock shows it, with the zone's name."""
    return f"{instant.astimezone(tz):%Y-%m-%d %H:%M} {tz.key}"


def quiet_text(quiet: tuple[time, time]) -> str:
    return f"{quiet[0]:%H:%M}-{quiet[1]:%H:%M}"
