"""Everything stored about one user, for their timeline (app/domain/timeline.py tells the story).

Each query follows an index on the user (received events, notifications, dead letters by Kafka
key, opt-outs) or on the rows found first (deliveries by notification, provider events by
delivery), and each keeps the newest `limit` rows: a page stays fast on a large database and
for a user with years of likes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.domain.timeline import (
    DeliveryRow,
    EventRow,
    NotificationRow,
    OptOutRow,
    PreferenceRow,
    ProviderEventRow,
    RefusedRow,
    UserRecord,
)

DEFAULT_LIMIT = 500


def find_users(*, session: Session, query: str, limit: int = 20) -> list[uuid.UUID]:
    """Users matching a search box: a user id, or an e-mail address their mail went to."""
    query = query.strip()
    try:
        return [uuid.UUID(query)]
    except ValueError:
        pass
    if "@" not in query:
        return []
    rows = session.execute(
        text(
            "SELECT DISTINCT n.user_id FROM deliveries d"
            " JOIN notifications n USING (notification_id)"
            " WHERE d.email = :email LIMIT :limit"
        ),
        {"email": query, "limit": limit},
    )
    return [row.user_id for row in rows]


def _rows(session: Session, sql: str, params: dict[str, Any]) -> list[Any]:
    return list(session.execute(text(sql), params))


def load_user(*, session: Session, user_id: uuid.UUID, limit: int = DEFAULT_LIMIT) -> UserRecord:
    """The newest `limit` rows of each kind stored about `user_id`."""
    p = {"user": user_id, "key": str(user_id).encode(), "limit": limit}
    record = UserRecord(user_id)
    record.events = _events(session, p)
    record.refused = _refused(session, p)
    record.notifications = _notifications(session, p)
    record.deliveries = _deliveries(session, p)
    record.provider_events = _provider_events(
        session, [d.delivery_id for d in record.deliveries], limit
    )
    record.opt_outs = [
        OptOutRow(r.created_at, r.kind, r.source)
        for r in _rows(
            session, "SELECT created_at, kind, source FROM opt_outs WHERE user_id = :user", p
        )
    ]
    record.preferences = [
        PreferenceRow(r.at, r.kind, r.choice)
        for r in _rows(
            session,
            "SELECT at, kind, choice FROM preference_changes WHERE user_id = :user"
            " ORDER BY at DESC LIMIT :limit",
            p,
        )
    ]
    return record


def _events(session: Session, p: dict[str, Any]) -> list[EventRow]:
    return [
        EventRow(r.received_at, r.kind, r.topic, r.partition, r.offset, r.periodicity, r.content_id)
        for r in _rows(
            session,
            'SELECT received_at, kind, topic, partition, "offset", periodicity, content_id'
            " FROM received_events WHERE user_id = :user"
            " ORDER BY received_at DESC LIMIT :limit",
            p,
        )
    ]


def _refused(session: Session, p: dict[str, Any]) -> list[RefusedRow]:
    return [
        RefusedRow(
            r.created_at, r.source_topic, r.source_partition, r.source_offset, r.reason, r.error
        )
        for r in _rows(
            session,
            "SELECT created_at, source_topic, source_partition, source_offset, reason, error"
            " FROM dead_letters WHERE key = :key ORDER BY created_at DESC LIMIT :limit",
            p,
        )
    ]


def _notifications(session: Session, p: dict[str, Any]) -> list[NotificationRow]:
    return [
        NotificationRow(
            r.notification_id,
            r.created_at,
            r.kind,
            r.periodicity,
            r.status,
            r.content_value,
            r.like_count,
            r.campaign_name,
        )
        for r in _rows(
            session,
            "SELECT n.notification_id, n.created_at, n.kind, n.periodicity, n.status,"
            " m.content_value, n.like_count, c.name AS campaign_name"
            " FROM notifications n JOIN messages m USING (message_id)"
            " LEFT JOIN campaigns c ON c.campaign_id = n.campaign_id"
            " WHERE n.user_id = :user ORDER BY n.created_at DESC LIMIT :limit",
            p,
        )
    ]


def _deliveries(session: Session, p: dict[str, Any]) -> list[DeliveryRow]:
    return [
        DeliveryRow(**r._mapping)
        for r in _rows(
            session,
            "SELECT d.delivery_id, d.notification_id, n.kind, d.period_key, d.created_at,"
            " d.send_at, d.send_reason, d.status, d.email, d.error, d.backend,"
            " d.provider_message_id, d.sent_at, d.updated_at, d.attempts"
            " FROM notifications n JOIN deliveries d USING (notification_id)"
            " WHERE n.user_id = :user ORDER BY d.created_at DESC LIMIT :limit",
            p,
        )
    ]


def _provider_events(
    session: Session, delivery_ids: list[uuid.UUID], limit: int
) -> list[ProviderEventRow]:
    if not delivery_ids:
        return []
    return [
        ProviderEventRow(r.delivery_id, r.at, r.status, r.detail)
        for r in _rows(
            session,
            "SELECT delivery_id, at, status, detail FROM delivery_events"
            " WHERE delivery_id = ANY(CAST(:ids AS uuid[])) ORDER BY at DESC LIMIT :limit",
            {"ids": [str(i) for i in delivery_ids], "limit": limit},
        )
    ]


def prune_received_events(*, session: Session, before: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest received events from before `before`; return how many.

    Event ids grow with time, so the events to delete are the ids below the first one received
    since `before`: found from the low end of the primary key, which stays short once the old
    rows are gone.
    """
    result = session.execute(
        text(
            "DELETE FROM received_events WHERE event_id IN ("
            " SELECT event_id FROM received_events WHERE received_at < :before"
            " AND event_id < COALESCE((SELECT min(event_id) FROM received_events"
            " WHERE received_at >= :before), 9223372036854775807)"
            " ORDER BY event_id LIMIT :limit)"
        ),
        {"before": before, "limit": limit},
    )
    return int(getattr(result, "rowcount", 0) or 0)
