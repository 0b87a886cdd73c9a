"""Frequency caps: at most N mails in any window of a given length, per user. Pure.

`FREQUENCY_CAP="3/1d,10/7d"`: no user gets more than 3 non-transactional mails in any 24 hours,
nor more than 10 in any 7 days. A mail that would break a cap is held to the earliest time none
is broken (or skipped, if its campaign says so). What counts is every mail of the user that went
or is planned to go: a window is judged on send times, past and planned alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}
_CAP = re.compile(r"(\d+)\s*/\s*(\d*)\s*([mhd])")
# Never look further for a free slot than this: a cap that cannot be met (0/1d) skips instead.
MAX_HOLD = timedelta(days=60)


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `count` mails in any `window`."""

    count: int
    window: timedelta

    def __str__(self) -> str:
        days, rest = divmod(self.window, timedelta(days=1))
        if not rest:
            return f"{self.count}/{days}d"
        hours, rest = divmod(self.window, timedelta(hours=1))
        return f"{self.count}/{hours}h" if not rest else f"{self.count}/{self.window}"


def parse_caps(text: str) -> tuple[Cap, ...]:
    """`3/1d,10/7d` (units m, h, d; `3/d` is `3/1d`) as caps; empty for none; ValueError else."""
    caps = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = _CAP.fullmatch(part)
        if match is None:
            raise ValueError(f"{part!r} is not a cap: use N/<length><m|h|d>, e.g. 3/1d")
        count, length, unit = int(match[1]), int(match[2] or 1), match[3]
        if length == 0:
            raise ValueError(f"{part!r}: a window has a length")
        caps.append(Cap(count, length * _UNITS[unit]))
    return tuple(caps)


def breaks_a_cap(at: datetime, others: Sequence[datetime], caps: Iterable[Cap]) -> Cap | None:
    """The first cap a mail at `at` would break, given the user's other send times; None if none.

    Every window that holds `at` is looked at, the ones ending after it too (a mail planned for
    tomorrow counts against today's): the fullest window holding `at` ends at `at` or at one of
    the other send times.
    """
    for cap in caps:
        ends = [at, *(t for t in others if at < t < at + cap.window)]
        for end in ends:
            held = 1 + sum(1 for t in others if end - cap.window < t <= end)
            if held > cap.count:
                return cap
    return None


def next_free_slot(
    at: datetime, others: Sequence[datetime], caps: Sequence[Cap]
) -> datetime | None:
    """The earliest time at or after `at` a mail breaks no cap; None if not within MAX_HOLD.

    A cap stops being broken only when a mail leaves a window: the candidates are `at` and each
    other send time plus each cap's window.
    """
    candidates = sorted(
        {at, *(t + cap.window for t in others for cap in caps if t + cap.window > at)}
    )
    for candidate in candidates:
        if candidate - at > MAX_HOLD:
            return None
        if breaks_a_cap(candidate, others, caps) is None:
            return candidate
    return None
