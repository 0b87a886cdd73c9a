"""What waited for Auth goes when it is back: planned in full batches, not task by task.

While Auth's circuit is open, every `send_now` task is parked (app/core/circuits.py): hundreds
of small tasks, one per stream batch, each holding a few notifications. When a probe closes the
circuit, the jobs worker it ran in asks for every `once` notification still waiting to be
planned, in tasks of one Auth lookup each (AUTH_BATCH_LIMIT). A parked task that then comes
back to this process finds its notifications among those asked for, and ends without
planning them a second time in a batch of its own; one that comes back to another jobs
worker plans its own (planning is idempotent, so either way each mail is planned once).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from app.jobs import dispatch as dispatcher

log = logging.getLogger(__name__)

# Notifications asked for at once when Auth is back (an outage of hours at a high rate leaves
# the rest to the dispatcher's re-sweep of lost hand-offs).
RELEASED_AT_ONCE = 50_000
# How long a released notification is remembered: parked tasks come back within a probe
# interval or two; the re-sweep covers the rest.
REMEMBERED = dispatcher.ONCE_HANDOFF_GRACE

_lock = threading.Lock()
_released: dict[str, float] = {}  # notification id -> when it was asked for (monotonic)


def release_waiting(now: datetime, request: Callable[[Sequence[uuid.UUID]], None]) -> int:
    """Ask (through `request`) for every `once` notification still waiting to be planned."""
    waiting = dispatcher.lost_once_handoffs(now=now, limit=RELEASED_AT_ONCE, grace=timedelta(0))
    if not waiting:
        return 0
    request(waiting)
    at = time.monotonic()
    with _lock:
        _forget_old(at)
        _released.update(dict.fromkeys(map(str, waiting), at))
    log.warning("Auth is back: planning the %d notifications that waited for it", len(waiting))
    return len(waiting)


def already_released(notification_ids: Iterable[str]) -> bool:
    """Whether each of these was asked for again when Auth came back (so this task may end)."""
    ids = list(notification_ids)
    with _lock:
        _forget_old(time.monotonic())
        return bool(ids) and all(i in _released for i in ids)


def _forget_old(now: float) -> None:
    horizon = now - REMEMBERED.total_seconds()
    for key in [k for k, at in _released.items() if at < horizon]:
        del _released[key]
