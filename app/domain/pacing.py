"""The global send rate: send slots handed out so the whole fleet keeps to it. Pure.

`EMAIL_MAX_RATE` is mails per second across every e-mail worker. The dispatcher, the one place
that puts mail on the queue, gives each e-mail a slot `1/rate` after the previous one and
publishes it with that delay, so the workers need no shared lock: they send what comes due.
`EMAIL_WARMUP="2026-12-10:1000/d,+50%/d"` also limits mails per UTC day for a new sending
domain: 1,000 on its first day, 50 % more each day after (`+500/d` adds a fixed number).
The last slot handed out and the day's count live in one PostgreSQL row (`send_pacing`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

_WARMUP = re.compile(
    r"(\d{4}-\d{2}-\d{2})\s*:\s*(\d+)\s*/\s*d\s*(?:,\s*\+\s*(\d+(?:\.\d+)?)\s*(%?)\s*/\s*d)?"
)
# A warm-up's quota stops growing here: far past any provider plan, and no float overflow.
MAX_DAILY_QUOTA = 10**9
# Paced mail goes on the queue in chunks due within the same span, each sent side by side at
# the span's end, so a second can see one chunk more than the rate: spans of one slot (1/rate),
# never under 20 ms (a chunk per 20 ms is plenty for any worker) nor over 100 ms.
SHORTEST_SPAN_S, LONGEST_SPAN_S = 0.02, 0.1
# A backlog that a warm-up would take longer than this to drain has no estimate.
MAX_DRAIN_DAYS = 400


@dataclass(frozen=True, slots=True)
class Warmup:
    """A daily quota that starts at `first_day` on `start` and grows each day after."""

    start: date
    first_day: int
    growth: float = 0.0  # +50%/d: 0.5
    step: int = 0  # +500/d: 500

    def quota(self, day: date) -> int:
        """Mails allowed on `day` (days before the start have the first day's quota)."""
        days = max(0, (day - self.start).days)
        if self.growth:
            grown = self.first_day * (1 + self.growth) ** min(days, 1000)
        else:
            grown = self.first_day + self.step * days
        return int(min(grown, MAX_DAILY_QUOTA))

    def __str__(self) -> str:
        rise = f"+{self.growth:.0%}/d" if self.growth else f"+{self.step}/d" if self.step else ""
        return f"{self.start}:{self.first_day}/d" + (f",{rise}" if rise else "")


def parse_warmup(text: str) -> Warmup | None:
    """`2026-12-10:1000/d,+50%/d` (or `,+500/d`, or no rise) as a Warmup; None when empty."""
    text = text.strip()
    if not text:
        return None
    match = _WARMUP.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a warm-up: use YYYY-MM-DD:N/d with an optional ,+P%/d or ,+N/d"
        )
    start, first, rise, percent = match[1], int(match[2]), match[3], match[4]
    if first == 0:
        raise ValueError(f"{text!r}: a warm-up's first day sends at least one mail")
    growth = float(rise) / 100 if rise and percent else 0.0
    step = int(float(rise)) if rise and not percent else 0
    return Warmup(date.fromisoformat(start), first, growth, step)


@dataclass(frozen=True, slots=True)
class Pace:
    """What limits sending: a rate (mails/s, None for none) and a warm-up (None for none)."""

    rate: float | None
    warmup: Warmup | None = None

    @property
    def limited(self) -> bool:
        return self.rate is not None or self.warmup is not None

    @property
    def chunk_span_s(self) -> float:
        """How long a span of slots one chunk of the queue holds: one slot at most, as long
        as that is 20 to 100 ms, so the burst a chunk is stays within 2 % of the rate."""
        if self.rate is None:
            return LONGEST_SPAN_S
        return min(LONGEST_SPAN_S, max(SHORTEST_SPAN_S, 1 / self.rate))

    def describe(self, today: date) -> str:
        """The limit in force, as the dashboard says it."""
        parts = []
        if self.rate is not None:
            parts.append(f"{self.rate:g} mails/s")
        if self.warmup is not None:
            parts.append(f"warm-up: {self.warmup.quota(today):,} mails today ({self.warmup})")
        return ", ".join(parts) or "unlimited"


@dataclass(frozen=True, slots=True)
class PacingState:
    """The next free slot, and how many slots the day `day` (UTC) has handed out."""

    next_slot: datetime
    day: date
    day_count: int = 0


def _midnight_after(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def room(pace: Pace, state: PacingState, now: datetime, until: datetime) -> int | None:
    """How many mails may be given slots before `until`; None when nothing limits it.

    The dispatcher claims no more than this, so no e-mail waits on the queue long past `until`.
    """
    if not pace.limited:
        return None
    start = max(state.next_slot, now)
    counts: list[int] = []
    if pace.rate is not None:
        seconds = (until - start).total_seconds()
        counts.append(0 if seconds < 0 else math.floor(seconds * pace.rate) + 1)
    if pace.warmup is not None:
        day = start.date()
        used = state.day_count if state.day == day else 0
        left = max(0, pace.warmup.quota(day) - used)
        if _midnight_after(day) <= until:  # the next day's quota is within reach too
            left += pace.warmup.quota(day + timedelta(days=1))
        counts.append(left)
    return min(counts)


def assign_slots(
    pace: Pace, state: PacingState, send_ats: Sequence[datetime], now: datetime
) -> tuple[list[datetime], PacingState]:
    """A send slot for each send time, in their order, and the state after them.

    A slot is never before the mail's own send time nor before `now`; consecutive slots are
    `1/rate` apart; a day whose warm-up quota is spent moves the rest to the next day.
    """
    gap = timedelta(seconds=1 / pace.rate) if pace.rate else timedelta(0)
    slots = []
    for send_at in send_ats:
        slot = max(send_at, now, state.next_slot)
        if slot.date() != state.day:
            state = replace(state, day=slot.date(), day_count=0)
        if pace.warmup is not None:
            while state.day_count >= pace.warmup.quota(state.day):
                slot = max(slot, _midnight_after(state.day))
                state = replace(state, day=slot.date(), day_count=0)
        slots.append(slot)
        state = replace(state, next_slot=slot + gap, day_count=state.day_count + 1)
    return slots, state


def drain_seconds(pace: Pace, state: PacingState, waiting: int, now: datetime) -> float | None:
    """Seconds until `waiting` due mails not yet given slots are out, after those that have
    slots; None when nothing limits sending (the workers' speed decides)."""
    if not pace.limited:
        return None
    gap = 1 / pace.rate if pace.rate else 0.0
    at = max(state.next_slot, now)
    if waiting == 0:
        return (at - now).total_seconds()
    day, used = at.date(), state.day_count if state.day == at.date() else 0
    for _day in range(MAX_DRAIN_DAYS):
        left = pace.warmup.quota(day) - used if pace.warmup is not None else waiting
        going = min(waiting, max(left, 0))
        if going:
            last = at + timedelta(seconds=(going - 1) * gap)
            waiting -= going
            if not waiting:
                return (last - now).total_seconds()
            at = last + timedelta(seconds=gap)
        at = max(at, _midnight_after(day))
        day, used = at.date(), 0
    return None


def expected_done(
    pace: Pace, state: PacingState, last_send_at: datetime, ahead: int, now: datetime
) -> datetime | None:
    """When mail whose last send time is `last_send_at` should be out: not before that time,
    nor before the `ahead` due mails without a slot (its own among them) have drained at the
    rate. None when a warm-up puts it further than MAX_DRAIN_DAYS away."""
    drain = drain_seconds(pace, state, ahead, now)
    if drain is None:
        return max(last_send_at, now) if not pace.limited else None
    return max(last_send_at, now + timedelta(seconds=drain))


def describe_drain(seconds: float | None, limited: bool) -> str:
    """A drain time as the dashboard says it: "now", "about 20 s", "about 4 min", "about 3 h"."""
    if seconds is None:
        return "more than a year" if limited else "as fast as the workers go (no send rate)"
    if seconds < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"about {round(seconds / size)} {unit}"
    return f"about {round(seconds)} s"
