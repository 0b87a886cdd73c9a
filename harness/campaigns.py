"""Campaign test helpers: read a mailing topic; write what the stream and e-mail workers would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, update

from app.db.models import Delivery, Notification
from app.db.session import session_scope
from harness.rows import Spec, insert_notifications


def simulate_stream(
    campaign_id: uuid.UUID, user_ids: list[uuid.UUID], *, link: bool
) -> list[uuid.UUID]:
    """Insert the mailing notifications the stream worker makes from the campaign's events."""
    specs = [
        Spec(
            user_id=u, kind="mailing", periodicity="once", content_id=campaign_id, content_value="x"
        )
        for u in user_ids
    ]
    with session_scope() as session:
        ids = insert_notifications(session, specs)
        if link:
            session.execute(
                update(Notification)
                .where(Notification.notification_id.in_(ids))
                .values(campaign_id=campaign_id)
            )
    return ids


def simulate_deliveries(statuses: dict[uuid.UUID, str]) -> dict[uuid.UUID, uuid.UUID]:
    """Insert one delivery per notification with the given status; return their ids."""
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [
        {
            "delivery_id": uuid.uuid4(),
            "notification_id": nid,
            "period_key": "once",
            "send_at": now,
            "status": status,
            "email": "u@example.com",
            "attempts": 1 if status != "scheduled" else 0,
            "provider_message_id": "pm-1" if status == "sent" else None,
            "error": "550 mailbox unavailable" if status == "failed" else None,
        }
        for nid, status in statuses.items()
    ]
    with session_scope() as session:
        session.execute(insert(Delivery), rows)
    return {row["notification_id"]: row["delivery_id"] for row in rows}
