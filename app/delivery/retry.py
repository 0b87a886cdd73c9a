"""Operators retry deliveries that failed (or were skipped) once the cause is fixed.

The CLI (`notify deliveries retry`) and the portal's Deliveries action call this. A retry plans
the notification again through the jobs worker (`send_now`), so it picks up a fixed template or
Auth record; the e-mail worker's per-delivery state still sends each delivery at most once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from app.db import dispatch
from app.db.session import session_scope
from app.jobs.celery_app import celery_app
from app.jobs.handoff import request_send_now

log = logging.getLogger(__name__)


def retry_deliveries(
    *,
    delivery_ids: Sequence[uuid.UUID] | None = None,
    statuses: Sequence[str] = ("failed",),
    since: datetime | None = None,
    error_contains: str | None = None,
) -> int:
    """Plan the selected deliveries' notifications again; return how many were reopened."""
    with session_scope() as session:
        notification_ids = dispatch.reopen(
            session=session,
            delivery_ids=delivery_ids,
            statuses=statuses,
            since=since,
            error_contains=error_contains,
        )
    if notification_ids:
        # After the commit: a lost hand-off is found again by the dispatcher's sweep.
        request_send_now(celery_app, notification_ids)
        log.warning("retry requested for %d deliveries", len(notification_ids))
    return len(notification_ids)
