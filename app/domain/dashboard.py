"""The figures of the portal's dashboard, shaped for its charts. Pure: no I/O.

Mails per hour are counted by the hour they were due (`send_at`): the one timestamp every
delivery has and an index serves, so the chart costs the same on a large table. Sent means
the provider accepted it and did not report it refused later (the vocabulary's outcome groups).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.domain.vocabulary import DeliveryStatus, OutcomeGroup, outcome_of, statuses_in

HOURS = 24
# The outcomes the chart draws (a cancelled campaign's mail is no traffic).
OUTCOMES: tuple[OutcomeGroup, ...] = ("sent", "failed", "skipped")
CHARTED_STATUSES: tuple[DeliveryStatus, ...] = tuple(
    status for outcome in OUTCOMES for status in statuses_in(outcome)
)


@dataclass(frozen=True, slots=True)
class HourlySeries:
    """One label per hour (oldest first) and, per outcome, one count per hour."""

    hours: list[datetime]
    counts: dict[str, list[int]]

    def as_json(self) -> dict[str, object]:
        return {"hours": [h.isoformat() for h in self.hours], **self.counts}


def hour_floor(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def window_start(now: datetime, hours: int = HOURS) -> datetime:
    """The first hour the chart shows: the current hour is the last of `hours`."""
    return hour_floor(now) - timedelta(hours=hours - 1)


def hourly_series(
    rows: Iterable[tuple[datetime, str, int]], now: datetime, hours: int = HOURS
) -> HourlySeries:
    """Counts per hour and outcome from (hour, delivery status, count) rows; missing hours are 0
    and rows outside the window, or of statuses that are no outcome yet, are left out."""
    first = window_start(now, hours)
    labels = [first + timedelta(hours=i) for i in range(hours)]
    counts: dict[str, list[int]] = {outcome: [0] * hours for outcome in OUTCOMES}
    for hour, status, count in rows:
        outcome = outcome_of(status)
        index = int((hour_floor(hour) - first).total_seconds() // 3600)
        if outcome in counts and 0 <= index < hours:
            counts[outcome][index] += count
    return HourlySeries(labels, counts)


def partition_lags(
    ends: Mapping[str, int], stored: Mapping[tuple[str, int], tuple[int | None, str | None]]
) -> list[dict[str, Any]]:
    """Each partition's lag: Kafka's end offset ("topic:partition" -> end) against the offset
    applied to PostgreSQL ((topic, partition) -> (offset or None, why it is blocked or None))."""
    partitions = []
    for key, end in sorted(ends.items()):
        topic, partition = key.rsplit(":", 1)
        offset, blocked = stored.get((topic, int(partition)), (None, None))
        done = offset if offset is not None else -1
        partitions.append(
            {
                "topic": topic,
                "partition": int(partition),
                "applied": None if done < 0 else done,
                "end": end,
                "lag": max(end - 1 - done, 0),
                "blocked": blocked,
            }
        )
    return partitions
