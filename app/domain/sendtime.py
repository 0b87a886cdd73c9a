"""When mail goes out: the user's IANA zone, local send hour, quiet hours and DST edges."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# IANA names use only these characters; anything else never reaches the file system.
_ZONE_NAME = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
_MAX_ZONE_NAME = 64
# A quiet window moves a time to its end; a DST gap can swallow that end, so allow a few hops.
_MAX_QUIET_HOPS = 4


@lru_cache(maxsize=1024)
def _lookup(name: str) -> ZoneInfo | None:
    """Load a zone by IANA name, or None; failures are cached too (they cost a file lookup)."""
    if len(name) > _MAX_ZONE_NAME or not _ZONE_NAME.fullmatch(name):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # Not found, not a TZif file, a directory such as "Europe", ...
        return None


def resolve_zone(name: str | None, default: str = "UTC") -> tuple[ZoneInfo, bool]:
    """Return the zone for an IANA name and whether it fell back to `default` (caller logs that)."""
    zone = _lookup(name.strip()) if isinstance(name, str) else None
    if zone is not None:
        return zone, False
    fallback = _lookup(default)
    if fallback is None:
        # A bad default is a configuration error, not a user's bad data.
        raise ValueError(f"default time zone {default!r} is not a known IANA name")
    return fallback, True


def in_quiet_hours(local: time, window: tuple[time, time] | None) -> bool:
    """Say whether a local wall time falls in [start, end); the window may span midnight."""
    if window is None:
        return False
    start, end = (t.replace(tzinfo=None) for t in window)
    at = local.replace(tzinfo=None)
    if start == end:
        return False
    if start < end:
        return start <= at < end
    return at >= start or at < end


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def _offset_at(timestamp: int, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(timestamp, tz).utcoffset()


def _gap_end(naive: datetime, tz: ZoneInfo) -> datetime:
    """Return the first valid instant after the DST gap that swallows a local wall time."""
    # In a gap fold=1 applies the later offset and fold=0 the earlier one, so the transition
    # lies in (early, late]; find it by bisection on whole seconds (transitions are whole seconds).
    early = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    late = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if early >= late:
        return late
    lo, hi = math.floor(early.timestamp()), math.ceil(late.timestamp())
    offset_before = _offset_at(lo, tz)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(mid, tz) == offset_before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall time on a day in a zone (past a DST gap; the first of a fold)."""
    return _local_instant(day, at, tz)


def _local_instant(day: date, at: time, tz: ZoneInfo, fold: int = 0) -> datetime:
    """Return the UTC instant of a local wall time: a gap moves past it, fold picks an overlap."""
    naive = datetime.combine(day, at.replace(tzinfo=None, fold=0))
    instant = naive.replace(tzinfo=tz, fold=fold).astimezone(UTC)
    # A wall time that does not round-trip does not exist locally (spring-forward gap).
    if instant.astimezone(tz).replace(tzinfo=None) == naive:
        return instant
    return _gap_end(naive, tz)


def _next_occurrence(after: datetime, at: time, tz: ZoneInfo) -> datetime:
    """Return the first instant strictly after `after` whose local wall time is `at`."""
    day = after.astimezone(tz).date()
    for offset_days in range(3):
        for fold in (0, 1):  # an ambiguous wall time occurs twice; take the next one
            instant = _local_instant(day + timedelta(days=offset_days), at, tz, fold)
            if instant > after:
                return instant
    raise AssertionError("a wall time occurs within two days")  # pragma: no cover


def _ceil_second(value: datetime) -> datetime:
    if value.microsecond:
        return value.replace(microsecond=0) + timedelta(seconds=1)
    return value


def _outside_quiet(instant: datetime, tz: ZoneInfo, quiet: tuple[time, time] | None) -> datetime:
    """Move an instant inside the quiet window to the window's next end (local)."""
    for _ in range(_MAX_QUIET_HOPS):
        if quiet is None or not in_quiet_hours(instant.astimezone(tz).time(), quiet):
            return instant
        # Rounded up so that dropping microseconds never lands back inside the window.
        instant = _ceil_second(_next_occurrence(instant, quiet[1], tz))
    return instant


# A run plans every user of a zone at the same `now`: the answer is the same for all of them.
@lru_cache(maxsize=4096)
def send_time(
    *, now_utc: datetime, tz: ZoneInfo, send_hour: int, quiet: tuple[time, time] | None
) -> datetime:
    """Return when to send a digest (aware UTC, whole seconds): the next local send hour.

    Today's send hour if it is still ahead, else tomorrow's: a digest planned after the send hour
    waits for the next one rather than arriving in the evening. Then out of quiet hours.
    """
    _require_aware(now_utc, "now_utc")
    if not 0 <= send_hour <= 23:
        raise ValueError(f"send_hour must be 0..23, got {send_hour!r}")
    now = now_utc.astimezone(UTC).replace(microsecond=0)
    today = now.astimezone(tz).date()
    target = _local_instant(today, time(send_hour), tz)
    if target <= now:
        target = _local_instant(today + timedelta(days=1), time(send_hour), tz)
    return _outside_quiet(target, tz, quiet).replace(microsecond=0)


def earliest_send_time(
    *, now_utc: datetime, tz: ZoneInfo, quiet: tuple[time, time] | None
) -> datetime:
    """Return now, or the end of the user's quiet hours if now is inside them (aware UTC)."""
    _require_aware(now_utc, "now_utc")
    now = _ceil_second(now_utc.astimezone(UTC))
    return _outside_quiet(now, tz, quiet).replace(microsecond=0)


def local_day(instant: datetime, tz: ZoneInfo) -> date:
    """Return the user's calendar day at `instant`."""
    _require_aware(instant, "instant")
    return instant.astimezone(tz).date()


def transactional_send_time(now_utc: datetime) -> datetime:
    """Return now (aware UTC, whole seconds): transactional mail ignores send and quiet hours."""
    _require_aware(now_utc, "now_utc")
    return now_utc.astimezone(UTC).replace(microsecond=0)
