"""Whether this process is healthy: a process that its supervisor restarts in a loop is not.

`scripts/forever.sh` (what `make run` runs every process under) tells each start how many
times it started within the last `RESTART_WINDOW_S` (`NOTIFY_RECENT_STARTS`). A process that
keeps crashing still answers between crashes; its /healthz says 503 until it has stayed up for
`STABLE_AFTER_S`, so a load balancer or an operator sees the loop instead of a green light.
"""

from __future__ import annotations

import os
import time

RESTART_WINDOW_S = 300
CRASH_LOOP_STARTS = 3  # starts within the window that make a loop
STABLE_AFTER_S = 60.0

_started = time.monotonic()


def crash_loop(recent_starts: int, uptime_s: float) -> str | None:
    """Why this process counts as restarting in a loop, or None."""
    if recent_starts >= CRASH_LOOP_STARTS and uptime_s < STABLE_AFTER_S:
        return (
            f"restarting in a loop: started {recent_starts} times in {RESTART_WINDOW_S} s, "
            f"up {uptime_s:.0f} s"
        )
    return None


def problem() -> str | None:
    """What makes this process unhealthy now, or None."""
    try:
        starts = int(os.environ.get("NOTIFY_RECENT_STARTS", "0"))
    except ValueError:
        starts = 0
    return crash_loop(starts, time.monotonic() - _started)


def report() -> tuple[int, dict[str, str]]:
    """The HTTP status and body of /healthz."""
    why = problem()
    return (200, {"status": "ok"}) if why is None else (503, {"status": "failing", "reason": why})
