"""A user's story built through the real functions: the timeline tests (page, command, browser)
all tell this one. No tests here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text

from app.auth.client import AuthClient
from app.config import Settings
from app.db.session import session_scope
from app.delivery import feedback
from app.delivery.mail.outbox_backend import OutboxBackend
from app.delivery.mail.sendgrid_events import ProviderEvent
from app.delivery.sending import deliver
from app.domain.vocabulary import EventKind
from app.jobs.digests import plan_once, run_digest
from app.jobs.dispatch import task_of_row
from app.stream.ingest import Record, apply_batch
from harness.stream import event

GROUP = "timeline-test"


@dataclass(frozen=True)
class Story:
    user: dict[str, Any]
    zone: str

    @property
    def user_id(self) -> str:
        return str(self.user["user_id"])


def _apply(kind: EventKind, user_id: str, value: bytes, offset: int) -> None:
    # Topics of this user's story alone: offsets applied by an earlier story never hide these.
    record = Record(f"timeline-{user_id}.{kind}", 0, offset, user_id.encode(), value)
    apply_batch(kind, [record], group_id=GROUP, max_bytes=65536)


def _notification_id(kind: str, user_id: str) -> uuid.UUID:
    with session_scope() as session:
        found: uuid.UUID = session.execute(
            text(
                "SELECT notification_id FROM notifications WHERE kind = :k AND user_id = :u"
                " ORDER BY created_at DESC LIMIT 1"
            ),
            {"k": kind, "u": user_id},
        ).scalar_one()
        return found


def _send(notification_id: uuid.UUID, settings: Settings, outbox: Path) -> uuid.UUID:
    """The e-mail worker's send of this notification's delivery, to the outbox."""
    with session_scope() as session:
        row = session.execute(
            text(
                "SELECT * FROM deliveries LEFT JOIN delivery_contents USING (delivery_id)"
                " WHERE notification_id = :n"
            ),
            {"n": notification_id},
        ).one()
    task = task_of_row(row)  # what the dispatcher puts on the `emails` queue
    backend = OutboxBackend(outbox, sender=settings.email_from)
    outcome = deliver(task, backend=backend, settings=settings, now=datetime.now(UTC))
    assert outcome.result == "sent", outcome
    return uuid.UUID(str(row.delivery_id))


def night_in(zone: str) -> datetime:
    """23:30 on 2026-11-25 where the user lives: inside the default quiet hours."""
    return datetime(2026, 11, 25, 23, 30, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def tell_a_story(
    auth_client: AuthClient, users: list[dict[str, Any]], settings: Settings, outbox: Path
) -> Story:
    """A user who registered (welcome mail sent and delivered), got a like digest at the send
    hour, had a mailing held for the quiet hours, turned mailings off and was skipped for it,
    and had an event refused."""
    user = next(u for u in users if all(u["notification_policy"].values()))
    uid, zone = user["user_id"], user["timezone"]
    _apply("user_registered", uid, event(uuid.UUID(uid), None, "https://a/confirm", "once"), 0)
    welcome = _notification_id("welcome", uid)
    plan_once([welcome], auth=auth_client, settings=settings, now=datetime.now(UTC))
    delivery = _send(welcome, settings, outbox)
    feedback.apply_provider_events(
        [ProviderEvent(delivery, "delivered", False, None)],
        now=datetime.now(UTC),
        settings=settings,
    )
    content = uuid.uuid4()
    for offset in (0, 1):
        _apply("comment_liked", uid, event(uuid.UUID(uid), content, "a comment", "daily"), offset)
    run_digest(
        "daily", auth=auth_client, settings=settings, now=datetime(2026, 11, 25, 0, 5, tzinfo=UTC)
    )
    _send(_notification_id("likes", uid), settings, outbox)  # the digest goes out
    night = night_in(zone)
    _apply("mailing", uid, event(uuid.UUID(uid), uuid.uuid4(), "Night news", "once"), 0)
    plan_once([_notification_id("mailing", uid)], auth=auth_client, settings=settings, now=night)
    feedback.unsubscribe(user_id=uuid.UUID(uid), kind="mailing")
    _apply("mailing", uid, event(uuid.UUID(uid), uuid.uuid4(), "Daily news", "daily"), 1)
    run_digest("daily", auth=auth_client, settings=settings, now=night + timedelta(days=1))
    _apply("comment_liked", uid, b'{"user_id": "not a uuid"}', 2)
    return Story(user, zone)
