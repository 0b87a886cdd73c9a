"""Paced mail in the e-mail worker (EMAIL_MAX_RATE): what would go out off its send slot goes
back to the dispatcher for a new one instead.

The dispatcher gives each paced e-mail a slot (`slot` in its task) and the whole fleet keeps to
the rate only while mail goes at its slot. A chunk that reaches a worker long after its slot (a
worker restarted and RabbitMQ redelivered a minute of mail, a worker fell behind) would go out
in a burst together with the mail that is on time; so would retries on their own countdowns and
mail parked through an outage. All of them become `scheduled` again, and the dispatcher slots
them behind what is already queued. No lock is shared by the workers: only the dispatcher,
one transaction at a time, hands out slots.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from app.db import dispatch as claims
from app.db.session import session_scope

log = logging.getLogger(__name__)

# Later than this past its slot, an e-mail goes back for a new one. A second can then see at
# most this share of a second's mail more than the rate (5 %), plus one chunk's span (2 %).
LATE_AFTER = timedelta(seconds=0.05)


def slot_of(item: Any) -> datetime | None:
    """The send slot of a task item, None for unpaced (or unreadable) ones."""
    if not isinstance(item, dict) or not isinstance(item.get("slot"), str):
        return None
    try:
        return datetime.fromisoformat(item["slot"])
    except ValueError:
        return None


def is_paced(items: Sequence[Any]) -> bool:
    return any(slot_of(item) is not None for item in items)


def _id(item: Any) -> uuid.UUID:
    found = _delivery_id(item)
    assert found is not None, "split_late keeps only items with a delivery id as late"
    return found


def _delivery_id(item: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(item["delivery_id"]))
    except (KeyError, TypeError, ValueError):
        return None


def split_late(items: Sequence[Any], now: datetime) -> tuple[list[Any], list[Any]]:
    """The items still on time (unpaced ones too) and the paced ones too late for their slot."""
    on_time, late = [], []
    for item in items:
        slot, delivery_id = slot_of(item), _delivery_id(item)
        if slot is not None and delivery_id is not None and now - slot > LATE_AFTER:
            late.append(item)
        else:
            on_time.append(item)
    return on_time, late


def hold_late(items: Sequence[Any], now: datetime) -> tuple[list[Any], int]:
    """The items to send now, and how many late ones went back for new slots.

    A late item still `enqueued` goes back; one that is not (a dead worker's claim, or sent
    already) is the chunk's as ever: only the chunk's rules can settle it, and such are a
    wave's worth at most. Nor does one that came late MAX_LATE_RESLOTS times already: it is
    sent late rather than go round for ever behind a rate the workers cannot keep.
    """
    on_time, late = split_late(items, now)
    if not late:
        return on_time, 0
    taken = hand_back({_id(item): None for item in late}, now, late=True)
    return on_time + [item for item in late if _id(item) not in taken], len(taken)


def split_retries(
    retry: Sequence[tuple[dict[str, Any], float]], now: datetime
) -> tuple[list[tuple[dict[str, Any], float]], dict[uuid.UUID, datetime | None]]:
    """Retries to publish on their countdowns (unpaced), and paced ones for new slots, each
    with the earliest time it may go."""
    published: list[tuple[dict[str, Any], float]] = []
    back: dict[uuid.UUID, datetime | None] = {}
    for item, countdown in retry:
        delivery_id = _delivery_id(item)
        if slot_of(item) is not None and delivery_id is not None:
            back[delivery_id] = now + timedelta(seconds=max(countdown, 0.0))
        else:
            published.append((item, countdown))
    return published, back


def hand_back(
    send_ats: dict[uuid.UUID, datetime | None], now: datetime, *, late: bool = False
) -> set[uuid.UUID]:
    """Paced deliveries back to the dispatcher (app/db/dispatch.hand_back_for_slots); the ids
    it took back."""
    if not send_ats:
        return set()
    with session_scope() as session:
        taken = claims.hand_back_for_slots(session=session, send_ats=send_ats, now=now, late=late)
    log.info("%d paced e-mails handed back for new send slots", len(taken))
    return taken
