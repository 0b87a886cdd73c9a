"""What comes back from recipients and the provider: delivery events, spam reports, unsubscribes."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from app.db import sends
from app.db.session import session_scope
from app.delivery.mail.sendgrid_events import ProviderEvent
from app.domain.vocabulary import UNSUBSCRIBABLE_KINDS, Kind

log = logging.getLogger(__name__)


def apply_provider_events(events: Iterable[ProviderEvent], *, now: datetime) -> Counter[str]:
    """Record a batch of provider events in one transaction; count what was done.

    An unsubscribe or spam report turns off all non-transactional mail of that user.
    """
    done: Counter[str] = Counter()
    with session_scope() as session:
        for event in events:
            user_id, changed = sends.apply_provider_event(
                session=session,
                delivery_id=event.delivery_id,
                status=event.status,
                error=event.error,
                now=now,
            )
            if user_id is None:
                done["unknown"] += 1
                continue
            done[event.status or "none"] += changed
            if event.opt_out:
                done["opted_out"] += sends.add_opt_outs(
                    session=session,
                    user_id=user_id,
                    kinds=sorted(UNSUBSCRIBABLE_KINDS),
                    source="sendgrid",
                )
    log.info("provider events applied: %s", dict(done))
    return done


def unsubscribe(*, user_id: uuid.UUID, kind: Kind, source: str = "link") -> bool:
    """Turn one kind of mail off for a user; return whether it was on until now."""
    if kind not in UNSUBSCRIBABLE_KINDS:
        raise ValueError(f"{kind!r} mail cannot be unsubscribed from")
    with session_scope() as session:
        added = sends.add_opt_outs(session=session, user_id=user_id, kinds=[kind], source=source)
    log.info("user %s unsubscribed from %s (%s)", user_id, kind, source)
    return added == 1
