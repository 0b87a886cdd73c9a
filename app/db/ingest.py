"""Writes of the stream ingest: like counters, created/replaced texts (offsets: stream_offsets).

Keyword-only with an explicit session; every statement takes a whole batch (arrays through
`unnest`), so a batch costs a handful of round trips whatever its size.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from app.db.templates import get_template_by_name
from app.domain.vocabulary import TEMPLATE_OF_KIND, EventKind, Kind, NotificationStatus, Periodicity

LikeKey = tuple[uuid.UUID, uuid.UUID]


@dataclass(frozen=True, slots=True)
class LikeDelta:
    """Likes of one (user, content) key in one batch, already added up."""

    user_id: uuid.UUID
    content_id: uuid.UUID
    count: int
    periodicity: Periodicity
    content_value: str


@dataclass(frozen=True, slots=True)
class TextItem:
    """The latest text of one (kind, user, content) key in one batch."""

    user_id: uuid.UUID
    content_id: uuid.UUID | None
    periodicity: Periodicity
    content_value: str


@dataclass(frozen=True, slots=True)
class Upserted:
    """A notification written by `upsert_texts`: its id, periodicity and current status."""

    notification_id: uuid.UUID
    user_id: uuid.UUID
    content_id: uuid.UUID | None
    periodicity: Periodicity
    status: NotificationStatus
    created: bool


@dataclass(frozen=True, slots=True)
class Received:
    """An applied event by its Kafka position, for the user's timeline."""

    user_id: uuid.UUID
    topic: str
    partition: int
    offset: int
    content_id: uuid.UUID | None
    periodicity: Periodicity


def _ids(values: Iterable[uuid.UUID | None]) -> list[str | None]:
    # psycopg2 adapts lists to arrays; uuids travel as text and are cast in SQL.
    return [str(v) if v is not None else None for v in values]


_ADD_LIKES = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:users AS uuid[]), CAST(:contents AS uuid[]),
                             CAST(:counts AS int[]), CAST(:periods AS text[]),
                             CAST(:texts AS text[]), CAST(:messages AS uuid[]))
        AS v(user_id, content_id, n, periodicity, content_value, message_id)
    ), new_messages AS (
        INSERT INTO messages (message_id, content_id, content_value, template_id)
        SELECT v.message_id, v.content_id, v.content_value, CAST(:template_id AS uuid) FROM v
        WHERE NOT EXISTS (
            SELECT 1 FROM notifications n
            WHERE n.kind = 'likes' AND n.user_id = v.user_id AND n.content_id = v.content_id)
    )
    INSERT INTO notifications
        (notification_id, user_id, message_id, periodicity, status, kind, content_id, like_count)
    SELECT gen_random_uuid(), v.user_id, v.message_id, v.periodicity, 'pending', 'likes',
           v.content_id, v.n
    FROM v
    ON CONFLICT ON CONSTRAINT uq_notifications_key DO UPDATE
        SET like_count = notifications.like_count + excluded.like_count
    RETURNING user_id, content_id, like_count
    """
)


def add_likes(*, session: Session, likes: Sequence[LikeDelta]) -> dict[LikeKey, int]:
    """Add each key's likes to its counter (creating the row); return the counts now stored.

    One statement: the message of a new key is inserted in a CTE, so a key that already has a
    notification never gets an orphan message. Keys must be unique within `likes`.
    """
    if not likes:
        return {}
    template = get_template_by_name(session=session, name=TEMPLATE_OF_KIND["likes"])
    rows = session.execute(
        _ADD_LIKES,
        {
            "template_id": str(template.template_id),
            "users": _ids(d.user_id for d in likes),
            "contents": _ids(d.content_id for d in likes),
            "counts": [d.count for d in likes],
            "periods": [d.periodicity for d in likes],
            "texts": [d.content_value for d in likes],
            "messages": _ids(uuid.uuid4() for _ in likes),
        },
    )
    return {(row.user_id, row.content_id): row.like_count for row in rows}


def all_like_counts(*, session: Session) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """Every like counter: (user, content, count). For rebuilding the table, a rare event."""
    rows = session.execute(
        text(
            "SELECT user_id, content_id, like_count FROM notifications"
            " WHERE kind = 'likes' AND content_id IS NOT NULL"
        )
    )
    return [(row.user_id, row.content_id, row.like_count) for row in rows]


def get_like_counts(*, session: Session, keys: Iterable[LikeKey]) -> dict[LikeKey, int]:
    """The stored like counts of these keys (keys without a row are left out)."""
    keys = list(set(keys))
    if not keys:
        return {}
    rows = session.execute(
        text(
            "SELECT n.user_id, n.content_id, n.like_count FROM notifications n"
            " JOIN unnest(CAST(:users AS uuid[]), CAST(:contents AS uuid[])) AS v(u, c)"
            " ON n.user_id = v.u AND n.content_id = v.c WHERE n.kind = 'likes'"
        ),
        {"users": _ids(u for u, _ in keys), "contents": _ids(c for _, c in keys)},
    )
    return {(row.user_id, row.content_id): row.like_count for row in rows}


def upsert_texts(
    *, session: Session, kind: Kind, template_name: str, items: Sequence[TextItem]
) -> list[Upserted]:
    """Create each key's notification, or replace its text and periodicity; status is kept.

    A mailing whose content id names a campaign of ours uses the campaign's template and is
    linked to it; anything else uses `template_name`. Keys must be unique within `items`.
    """
    if not items:
        return []
    existing = {
        (row.user_id, row.content_id): row
        for row in session.execute(
            text(
                "SELECT notification_id, message_id, status, user_id, content_id"
                " FROM notifications WHERE kind = :kind AND user_id = ANY(CAST(:users AS uuid[]))"
                " ORDER BY notification_id FOR UPDATE"
            ),
            {"kind": kind, "users": _ids({i.user_id for i in items})},
        )
    }
    old = [
        (i, existing[(i.user_id, i.content_id)])
        for i in items
        if (i.user_id, i.content_id) in existing
    ]
    new = [i for i in items if (i.user_id, i.content_id) not in existing]
    if old:
        session.execute(
            text(
                "UPDATE messages m SET content_value = v.t"
                " FROM unnest(CAST(:ids AS uuid[]), CAST(:texts AS text[])) AS v(id, t)"
                " WHERE m.message_id = v.id"
            ),
            {"ids": _ids(r.message_id for _, r in old), "texts": [i.content_value for i, _ in old]},
        )
        session.execute(
            text(
                "UPDATE notifications n SET periodicity = v.p"
                " FROM unnest(CAST(:ids AS uuid[]), CAST(:periods AS text[])) AS v(id, p)"
                " WHERE n.notification_id = v.id AND n.periodicity <> v.p"
            ),
            {
                "ids": _ids(r.notification_id for _, r in old),
                "periods": [i.periodicity for i, _ in old],
            },
        )
    created = [(i, uuid.uuid4(), uuid.uuid4()) for i in new]
    if created:
        _insert_texts(session, kind, template_name, created)
    return [
        *(
            Upserted(r.notification_id, i.user_id, i.content_id, i.periodicity, r.status, False)
            for i, r in old
        ),
        *(
            Upserted(nid, i.user_id, i.content_id, i.periodicity, "pending", True)
            for i, nid, _ in created
        ),
    ]


def _insert_texts(
    session: Session,
    kind: Kind,
    template_name: str,
    created: Sequence[tuple[TextItem, uuid.UUID, uuid.UUID]],
) -> None:
    template = get_template_by_name(session=session, name=template_name)
    session.execute(
        text(
            """
            WITH v AS (
                SELECT * FROM unnest(CAST(:nids AS uuid[]), CAST(:mids AS uuid[]),
                                     CAST(:users AS uuid[]), CAST(:contents AS uuid[]),
                                     CAST(:periods AS text[]), CAST(:texts AS text[]))
                AS v(nid, mid, user_id, content_id, periodicity, content_value)
            ), new_messages AS (
                INSERT INTO messages (message_id, content_id, content_value, template_id)
                SELECT v.mid, v.content_id, v.content_value,
                       COALESCE(c.template_id, CAST(:template_id AS uuid))
                FROM v LEFT JOIN campaigns c ON :kind = 'mailing' AND c.campaign_id = v.content_id
            )
            INSERT INTO notifications
                (notification_id, user_id, message_id, periodicity, status, kind, content_id,
                 campaign_id)
            SELECT v.nid, v.user_id, v.mid, v.periodicity, 'pending', :kind, v.content_id,
                   c.campaign_id
            FROM v LEFT JOIN campaigns c ON :kind = 'mailing' AND c.campaign_id = v.content_id
            """
        ),
        {
            "kind": kind,
            "template_id": str(template.template_id),
            "nids": _ids(nid for _, nid, _ in created),
            "mids": _ids(mid for _, _, mid in created),
            "users": _ids(i.user_id for i, _, _ in created),
            "contents": _ids(i.content_id for i, _, _ in created),
            "periods": [i.periodicity for i, _, _ in created],
            "texts": [i.content_value for i, _, _ in created],
        },
    )


def record_received(*, session: Session, kind: EventKind, events: Sequence[Received]) -> None:
    """Log a batch's applied events of one kind (one statement: the timeline's first lines)."""
    if not events:
        return
    session.execute(
        text(
            'INSERT INTO received_events (user_id, kind, topic, partition, "offset", content_id,'
            " periodicity)"
            " SELECT v.user_id, :kind, v.topic, v.partition, v.off, v.content_id, v.periodicity"
            " FROM unnest(CAST(:users AS uuid[]), CAST(:topics AS text[]), CAST(:parts AS int[]),"
            "             CAST(:offsets AS bigint[]), CAST(:contents AS uuid[]),"
            "             CAST(:periods AS text[]))"
            " AS v(user_id, topic, partition, off, content_id, periodicity)"
        ),
        {
            "kind": kind,
            "users": _ids(e.user_id for e in events),
            "topics": [e.topic for e in events],
            "parts": [e.partition for e in events],
            "offsets": [e.offset for e in events],
            "contents": _ids(e.content_id for e in events),
            "periods": [e.periodicity for e in events],
        },
    )
