"""Planning shards: a digest run split into key ranges that any jobs worker can plan.

Notification ids are random (uuid4), so equal slices of the id space hold about equal numbers of
rows. A shard is a half-open range [low, high) of ids: its rows are found through the primary
key's index and no row is in two shards. A shard delivered twice, or run again after a crash,
plans nothing twice: its chunks lock their rows (FOR UPDATE SKIP LOCKED) and a row planned for
this period is no longer due.

Pure functions: no clock, no database.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass

_ID_SPACE = 1 << 128


@dataclass(frozen=True, slots=True)
class KeyRange:
    """Notification ids from `low` (inclusive) to `high` (exclusive); None is open-ended."""

    low: uuid.UUID | None = None
    high: uuid.UUID | None = None

    def __contains__(self, notification_id: object) -> bool:
        if not isinstance(notification_id, uuid.UUID):
            return False
        above = self.low is None or notification_id >= self.low
        below = self.high is None or notification_id < self.high
        return above and below


EVERY_ID = KeyRange()


def shard_range(shard: int, shards: int) -> KeyRange:
    """The `shard`-th of `shards` equal slices of the id space (0-based); together they cover it."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} of {shards}")
    low = None if shard == 0 else uuid.UUID(int=_ID_SPACE * shard // shards)
    high = None if shard == shards - 1 else uuid.UUID(int=_ID_SPACE * (shard + 1) // shards)
    return KeyRange(low, high)


def shard_count(rows: int, *, rows_per_shard: int, max_shards: int) -> int:
    """How many shards to plan `rows` rows in: one per `rows_per_shard`, at least 1, at most max."""
    if rows <= 0:
        return 1
    return max(1, min(max_shards, math.ceil(rows / max(1, rows_per_shard))))
