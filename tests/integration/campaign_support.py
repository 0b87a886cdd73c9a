"""Campaign test helpers: read a mailing topic; write what the stream and e-mail workers would."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError
from sqlalchemy import insert, update

from app.db.models import Delivery, Notification
from app.db.session import session_scope
from harness.rows import Spec, insert_notifications


def consume(bootstrap: str, topic: str, expected: int, *, deadline_s: float = 30.0) -> list:
    """Read `topic` from the start until `expected` messages came, then check for one more."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + deadline_s
    try:
        while len(got) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            got.append(msg)
        extra = consumer.poll(1.0)
        assert extra is None or extra.error(), "more messages than expected on the topic"
    finally:
        consumer.close()
    return got


def simulate_stream(campaign_id: uuid.UUID, user_ids: list[uuid.UUID], *, link: bool) -> list:
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
    rows = [
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
