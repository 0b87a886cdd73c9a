"""Rows for tests and benchmarks: notifications with their messages, inserted in bulk."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.db.models import Message, Notification, Template
from app.domain.vocabulary import TEMPLATE_OF_KIND, Kind, Periodicity


@dataclass(frozen=True)
class Spec:
    user_id: uuid.UUID
    kind: Kind
    periodicity: Periodicity
    content_id: uuid.UUID | None = None
    content_value: str = ""
    like_count: int = 0
    notification_id: uuid.UUID | None = None


def insert_notifications(session: Session, specs: list[Spec]) -> list[uuid.UUID]:
    """Insert one message and one pending notification per spec; return the notification ids."""
    templates = dict(session.execute(select(Template.name, Template.template_id)).all())
    messages: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    for spec in specs:
        message_id = uuid.uuid4()
        messages.append(
            {
                "message_id": message_id,
                "content_id": spec.content_id,
                "content_value": spec.content_value,
                "template_id": templates[TEMPLATE_OF_KIND[spec.kind]],
            }
        )
        notifications.append(
            {
                "notification_id": spec.notification_id or uuid.uuid4(),
                "user_id": spec.user_id,
                "message_id": message_id,
                "periodicity": spec.periodicity,
                "status": "pending",
                "kind": spec.kind,
                "content_id": spec.content_id,
                "like_count": spec.like_count,
            }
        )
    for start in range(0, len(specs), 5000):
        session.execute(insert(Message), messages[start : start + 5000])
        session.execute(insert(Notification), notifications[start : start + 5000])
    return [n["notification_id"] for n in notifications]
