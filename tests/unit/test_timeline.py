"""A user's story from stored rows, without any service: order, reasons, provider events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.domain.timeline import (
    DeliveryRow,
    EventRow,
    NotificationRow,
    OptOutRow,
    ProviderEventRow,
    RefusedRow,
    UserRecord,
    build,
    skip_reason,
)
from app.domain.vocabulary import Kind

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
USER = uuid.UUID(int=7)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _delivery(notification_id: uuid.UUID, minutes: int, **extra: object) -> DeliveryRow:
    values: dict[str, object] = {
        "delivery_id": uuid.uuid4(),
        "notification_id": notification_id,
        "kind": "welcome",
        "period_key": "once",
        "created_at": _at(minutes),
        "send_at": _at(minutes),
        "send_reason": "transactional: at once, whatever the hour",
        "status": "scheduled",
        "email": "ann@example.com",
        "error": None,
        "backend": None,
        "provider_message_id": None,
        "sent_at": None,
        "updated_at": _at(minutes),
        "attempts": 0,
    }
    values.update(extra)
    return DeliveryRow(**values)  # type: ignore[arg-type]


def _notification(kind: str, minutes: int, **extra: object) -> NotificationRow:
    values: dict[str, object] = {
        "notification_id": uuid.uuid4(),
        "at": _at(minutes),
        "kind": kind,
        "periodicity": "once",
        "status": "pending",
        "content_value": "https://auth.example/confirm?t=1",
        "like_count": 0,
        "campaign_name": None,
    }
    values.update(extra)
    return NotificationRow(**values)  # type: ignore[arg-type]


def test_a_welcome_mail_reads_from_event_to_delivery() -> None:
    welcome = _notification("welcome", 0)
    sent = _delivery(
        welcome.notification_id,
        0,
        status="delivered",
        backend="sendgrid",
        provider_message_id="sg-123",
        sent_at=_at(1),
    )
    record = UserRecord(
        USER,
        events=[EventRow(_at(0), "user_registered", "auth.user_registered", 2, 41, "once", None)],
        notifications=[welcome],
        deliveries=[sent],
        provider_events=[ProviderEventRow(sent.delivery_id, _at(3), "delivered", None)],
    )
    story = [(e.outcome, e.title, e.detail) for e in build(record)]
    assert story == [
        (
            "received",
            "user_registered event from auth.user_registered[2] offset 41",
            "periodicity once",
        ),
        ("created", "welcome notification (once)", "https://auth.example/confirm?t=1"),
        (
            "scheduled",
            "welcome mail (once) for 2026-11-25 08:00 UTC to ann@example.com",
            "transactional: at once, whatever the hour",
        ),
        (
            "sent",
            "welcome mail (once) via sendgrid to ann@example.com",
            "provider message id sg-123",
        ),
        ("delivered", "welcome mail (once): the provider reports delivered", "-"),
    ]


@pytest.mark.parametrize(
    ("error", "kind", "expected"),
    [
        (
            "email disabled",
            "likes",
            "skipped by the Auth policy: the user turned e-mail off in Auth",
        ),
        (
            "mailing disabled",
            "mailing",
            "skipped by the Auth policy: the user turned mailings off in Auth",
        ),
        (
            "opted out",
            "likes",
            "skipped: the user turned like digests off here (unsubscribe link or preferences)",
        ),
        ("unknown user", "mailing", "skipped: the Auth service does not know this user"),
        (
            "unusable Auth record: email is not an address",
            "likes",
            "skipped: unusable Auth record: email is not an address",
        ),
    ],
)
def test_each_skip_reads_as_its_cause(error: str, kind: Kind, expected: str) -> None:
    assert skip_reason(error, kind) == expected


def test_a_skipped_delivery_is_one_entry_with_its_reason() -> None:
    mailing = _notification("mailing", 0, periodicity="daily", campaign_name="Winter sale")
    skipped = _delivery(
        mailing.notification_id,
        5,
        kind="mailing",
        period_key="2026-11-25",
        status="skipped",
        error="mailing disabled",
        email="ann@example.com",
    )
    entries = build(UserRecord(USER, notifications=[mailing], deliveries=[skipped]))
    assert [(e.outcome, e.title) for e in entries] == [
        ("created", "mailing notification (daily) of the campaign 'Winter sale'"),
        ("skipped", "mailing (2026-11-25)"),
    ]
    assert entries[1].detail == "skipped by the Auth policy: the user turned mailings off in Auth"


def test_a_failed_send_shows_the_providers_error_and_attempts() -> None:
    likes = _notification("likes", 0, periodicity="daily", like_count=4)
    failed = _delivery(
        likes.notification_id,
        10,
        kind="likes",
        period_key="2026-11-25",
        status="failed",
        attempts=8,
        error="SendGrid 400: The to.email field is invalid",
        updated_at=_at(30),
        send_reason="daily digest at the send hour 09:00 in Europe/Berlin",
    )
    entries = build(UserRecord(USER, notifications=[likes], deliveries=[failed]))
    assert [e.outcome for e in entries] == ["created", "scheduled", "failed"]
    assert entries[0].detail == "4 likes so far"
    assert entries[1].detail == "daily digest at the send hour 09:00 in Europe/Berlin"
    assert entries[2].title == "like digest (2026-11-25) after 8 attempts"
    assert entries[2].detail == "SendGrid 400: The to.email field is invalid"


def test_refused_events_and_opt_outs_take_their_place_in_time() -> None:
    record = UserRecord(
        USER,
        refused=[RefusedRow(_at(2), "ugc.comment_liked", 0, 9, "schema", "no user_id")],
        events=[EventRow(_at(1), "comment_liked", "ugc.comment_liked", 0, 8, "daily", USER)],
        opt_outs=[OptOutRow(_at(3), "likes", "link")],
    )
    assert [(e.outcome, e.title, e.detail) for e in build(record)] == [
        (
            "received",
            "comment_liked event from ugc.comment_liked[0] offset 8",
            f"periodicity daily, content {USER}",
        ),
        (
            "refused",
            "event from ugc.comment_liked[0] offset 9 went to the dead letters",
            "schema: no user_id",
        ),
        ("opted out", "like digests turned off", "by link"),
    ]


def test_a_line_is_what_notify_explain_prints() -> None:
    entry = build(UserRecord(USER, opt_outs=[OptOutRow(_at(3), "likes", "sendgrid")]))[0]
    assert entry.line() == (
        "2026-11-25 08:03:00 UTC  opted out   like digests turned off - by sendgrid"
    )


def test_long_texts_are_clipped_to_one_line() -> None:
    record = UserRecord(
        USER, notifications=[_notification("mailing", 0, content_value="a\n" * 500)]
    )
    detail = build(record)[0].detail
    assert len(detail) == 300 and detail.endswith("…") and "\n" not in detail
