"""What the daily job deletes: received events past TIMELINE_RETENTION_DAYS, a chunk at a time."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from app.config import Settings
from app.db import timeline as timeline_store
from app.db.session import session_scope

log = logging.getLogger(__name__)

PRUNE_CHUNK = 10_000


def prune_timeline(*, settings: Settings, now: datetime) -> int:
    """Drop received events older than TIMELINE_RETENTION_DAYS, a chunk per transaction."""
    before = now - timedelta(days=settings.timeline_retention_days)
    total = 0
    while True:
        with session_scope() as session:
            deleted = timeline_store.prune_received_events(
                session=session, before=before, limit=PRUNE_CHUNK
            )
        total += deleted
        if deleted < PRUNE_CHUNK:
            break
    if total:
        log.info("received events before %s deleted: %d", before.isoformat(), total)
    return total
