"""Stall detection for stream workers: partitions whose applied offset stopped moving (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# A stalled stream worker exits with this code (EX_SOFTWARE) for its supervisor to restart it.
STALL_EXIT_CODE = 70


def lagging_partitions(
    applied: Mapping[tuple[str, int], int], end_offsets: Mapping[tuple[str, int], int]
) -> list[tuple[str, int]]:
    """Partitions whose log holds events past the highest offset applied to PostgreSQL.

    The last offset of a log may be a transaction marker that no consumer ever sees, so one
    offset beyond the applied one does not count as waiting.
    """
    return sorted(tp for tp, end in end_offsets.items() if end - 2 > applied.get(tp, -1))


@dataclass
class StallDetector:
    """Finds partitions that hold unapplied events while their applied offset stays put.

    Each look passes the end offsets of the partitions this worker owns and the applied offsets.
    A partition counts as stalled once it has been lagging, at one unchanged applied offset, for
    longer than `timeout` seconds; a newly owned partition starts its clock at its first look.
    Progress is judged per partition: one stuck partition is found while the others move.
    """

    timeout: float
    _since: dict[tuple[str, int], tuple[int, float]] = field(default_factory=dict)

    def look(
        self,
        applied: Mapping[tuple[str, int], int],
        end_offsets: Mapping[tuple[str, int], int],
        now: float,
    ) -> list[tuple[str, int]]:
        """Record this look; return the stalled partitions (sorted)."""
        lagging = set(lagging_partitions(applied, end_offsets))
        stalled = []
        for tp in list(self._since):
            if tp not in lagging:
                del self._since[tp]
        for tp in sorted(lagging):
            offset = applied.get(tp, -1)
            seen = self._since.get(tp)
            if seen is None or seen[0] != offset:
                self._since[tp] = (offset, now)
            elif now - seen[1] > self.timeout:
                stalled.append(tp)
        return stalled

    def forget(self) -> None:
        """Start every clock again: a look failed (PostgreSQL or Kafka down), and time spent in
        an outage says nothing about the consumer; the batch is waiting for the outage."""
        self._since.clear()

    def waiting_for(self, now: float) -> float:
        """How long the longest-waiting lagging partition has been stuck."""
        return max((now - since for _, since in self._since.values()), default=0.0)
