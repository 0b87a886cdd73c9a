"""What comes back from recipients and the provider: delivery events, spam reports, unsubscribes."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.config import Settings
from app.db import sends, suppressions
from app.db.session import session_scope
from app.delivery.mail.base import PermanentSendError
from app.delivery.mail.sendgrid_events import ProviderEvent
from app.domain.suppression import AddressInvalid
from app.domain.vocabulary import UNSUBSCRIBABLE_KINDS, Kind

log = logging.getLogger(__name__)


def apply_provider_events(
    events: Iterable[ProviderEvent], *, now: datetime, settings: Settings
) -> Counter[str]:
    """Record a batch of provider events in one transaction; count what was done.

    An unsubscribe or spam report turns off all non-transactional mail of that user; a hard
    bounce, spam report or block suppresses the address, and soft bounces do once they add up.
    """
    done: Counter[str] = Counter()
    with session_scope() as session:
        for event in events:
            target = sends.apply_provider_event(
                session=session,
                delivery_id=event.delivery_id,
                status=event.status,
                error=event.error,
                now=now,
            )
            if target is None:
                done["unknown"] += 1
                continue
            done[event.status or "none"] += target.changed
            if event.opt_out:
                done["opted_out"] += sends.add_opt_outs(
                    session=session,
                    user_id=target.user_id,
                    kinds=sorted(UNSUBSCRIBABLE_KINDS),
                    source="sendgrid",
                )
            if target.email:
                done["suppressed"] += _suppress_for(session, event, target.email, now, settings)
    log.info("provider events applied: %s", dict(done))
    return done


def _suppress_for(
    session: Session, event: ProviderEvent, address: str, now: datetime, settings: Settings
) -> bool:
    """What the event says about the address, recorded; whether it suppressed it just now."""
    try:
        if event.suppression is not None:
            return suppressions.suppress(
                session=session,
                address=address,
                reason=event.suppression,
                at=now,
                source="sendgrid",
                detail=event.error,
            )
        if event.soft_bounce:
            return suppressions.record_soft_bounce(
                session=session,
                address=address,
                delivery_id=event.delivery_id,
                at=now,
                detail=event.error,
                threshold=settings.suppress_after_soft_bounces,
                window=timedelta(days=settings.soft_bounce_window_days),
            )
    except AddressInvalid:  # a delivery's address that is none: nothing to suppress under it
        log.warning("delivery %s: its address cannot be suppressed", event.delivery_id)
    return False


def suppress_refused_addresses(
    refusals: Sequence[tuple[str | None, BaseException]], *, now: datetime, source: str
) -> int:
    """Suppress each address the provider refused as such (`invalid address`), after its
    delivery was recorded failed; return how many were new.

    A database outage here costs only the suppression: the next mail to the address is refused
    the same way and suppresses it then.
    """
    refused = [
        (address, str(exc))
        for address, exc in refusals
        if address and isinstance(exc, PermanentSendError) and exc.address_refused
    ]
    if not refused:
        return 0
    added = 0
    try:
        with session_scope() as session:
            for address, error in refused:
                try:
                    added += suppressions.suppress(
                        session=session,
                        address=address,
                        reason="invalid address",
                        at=now,
                        source=source,
                        detail=error,
                    )
                except AddressInvalid:
                    continue
    except Exception as exc:  # noqa: BLE001 - the deliveries are recorded; this only follows
        log.warning("could not suppress %d refused addresses: %r", len(refused), exc)
        return 0
    log.info("addresses refused by the provider suppressed: %d new of %d", added, len(refused))
    return added


def unsubscribe(*, user_id: uuid.UUID, kind: Kind, source: str = "link") -> bool:
    """Turn one kind of mail off for a user; return whether it was on until now."""
    if kind not in UNSUBSCRIBABLE_KINDS:
        raise ValueError(f"{kind!r} mail cannot be unsubscribed from")
    with session_scope() as session:
        added = sends.add_opt_outs(session=session, user_id=user_id, kinds=[kind], source=source)
    log.info("user %s unsubscribed from %s (%s)", user_id, kind, source)
    return added == 1
