"""A user's timeline from real rows: the portal page and `notify explain` tell the same story,
with the reason of every decision (sent at once, held for quiet hours, digest hour, skipped)."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.auth.client import AuthClient
from app.cli import main
from app.config import Settings
from app.db import timeline as store
from app.db.session import session_scope
from app.delivery import feedback
from app.delivery.mail.outbox_backend import OutboxBackend
from app.delivery.mail.sendgrid_events import ProviderEvent
from app.delivery.sending import deliver
from app.domain import timeline
from app.jobs.digests import plan_once, run_digest
from app.jobs.planning import email_task
from app.stream.ingest import Record, apply_batch
from tests.integration.stream_support import event

GROUP = "timeline-test"
ROW = re.compile(
    r'<tr class="timeline-entry" data-outcome="([^"]*)">\s*<td[^>]*>([^<]*)</td>\s*'
    r'<td><span class="badge timeline-outcome">[^<]*</span></td>\s*'
    r'<td class="timeline-title">([^<]*)</td>\s*<td class="timeline-detail">([^<]*)</td>'
)


def _apply(kind: str, user_id: str, value: bytes, offset: int) -> None:
    record = Record(f"timeline.{kind}", 0, offset, user_id.encode(), value)
    apply_batch(kind, [record], group_id=GROUP, max_bytes=65536)


def _notification_id(kind: str, user_id: str) -> uuid.UUID:
    with session_scope() as session:
        return session.execute(
            text(
                "SELECT notification_id FROM notifications WHERE kind = :k AND user_id = :u"
                " ORDER BY created_at DESC LIMIT 1"
            ),
            {"k": kind, "u": user_id},
        ).scalar_one()


def _send(notification_id: uuid.UUID, settings: Settings, outbox: Path) -> uuid.UUID:
    """The e-mail worker's send of this notification's delivery, to the outbox."""
    with session_scope() as session:
        row = session.execute(
            text("SELECT * FROM deliveries WHERE notification_id = :n"), {"n": notification_id}
        ).one()
    task = email_task(
        notification_id=notification_id,
        delivery_id=row.delivery_id,
        email=row.email,
        subject=row.subject,
        body_html=row.body_html,
        body_text=row.body_text,
        headers=row.headers,
    )
    backend = OutboxBackend(outbox, sender=settings.email_from)
    outcome = deliver(task, backend=backend, settings=settings, now=datetime.now(UTC))
    assert outcome.result == "sent", outcome
    return uuid.UUID(str(row.delivery_id))


def _night_in(zone: str) -> datetime:
    """23:30 on 2026-11-25 where the user lives: inside the default quiet hours."""
    return datetime(2026, 11, 25, 23, 30, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def test_the_page_and_notify_explain_tell_why_each_mail_went_or_not(
    client: TestClient,
    auth_client: AuthClient,
    auth_users: list[dict[str, Any]],
    settings: Settings,
    tmp_path: Path,
) -> None:
    user = next(u for u in auth_users if all(u["notification_policy"].values()))
    uid, zone = user["user_id"], user["timezone"]

    # A registration: the welcome mail goes at once, is sent, and the provider reports it.
    _apply("user_registered", uid, event(uuid.UUID(uid), None, "https://a/confirm", "once"), 0)
    welcome = _notification_id("welcome", uid)
    plan_once([welcome], auth=auth_client, settings=settings, now=datetime.now(UTC))
    delivery = _send(welcome, settings, tmp_path / "outbox")
    feedback.apply_provider_events(
        [ProviderEvent(delivery, "delivered", False, None)], now=datetime.now(UTC)
    )
    # Likes: the daily digest at the user's send hour.
    content = uuid.uuid4()
    for offset in (0, 1):
        _apply("comment_liked", uid, event(uuid.UUID(uid), content, "a comment", "daily"), offset)
    run_digest(
        "daily",
        auth=auth_client,
        settings=settings,
        now=datetime(2026, 11, 25, 0, 5, tzinfo=UTC),
    )
    # A `once` mailing published at night where the user lives: held for the quiet hours.
    night = _night_in(zone)
    _apply("mailing", uid, event(uuid.UUID(uid), uuid.uuid4(), "Night news", "once"), 0)
    plan_once([_notification_id("mailing", uid)], auth=auth_client, settings=settings, now=night)
    # The user turns mailings off; the next daily mailing is skipped for it.
    feedback.unsubscribe(user_id=uuid.UUID(uid), kind="mailing")
    _apply("mailing", uid, event(uuid.UUID(uid), uuid.uuid4(), "Daily news", "daily"), 1)
    run_digest("daily", auth=auth_client, settings=settings, now=night + timedelta(days=1))
    # And an event that breaks its schema: a dead letter keyed by the user.
    _apply("comment_liked", uid, b'{"user_id": "not a uuid"}', 2)

    with session_scope() as session:
        entries = timeline.build(store.load_user(session=session, user_id=uuid.UUID(uid)))
    story = [(e.outcome, e.title, e.detail) for e in entries]
    outcomes = [e.outcome for e in entries]
    for needed in ("received", "created", "scheduled", "sent", "delivered", "skipped", "refused"):
        assert needed in outcomes, (needed, story)
    details = "\n".join(e.detail for e in entries)
    assert "transactional: at once, whatever the hour" in details
    assert f"daily digest at the send hour 09:00 in {zone}" in details
    assert f"held for quiet hours: 2026-11-25 23:30 {zone} is inside 22:00-08:00" in details
    assert "skipped: the user turned mailings off here" in details
    assert "went to the dead letters" in "\n".join(e.title for e in entries)

    # The command prints these entries, line for line.
    printed = CliRunner().invoke(main, ["explain", uid])
    assert printed.exit_code == 0, printed.output
    lines = printed.output.splitlines()
    assert lines[0] == f"user {uid} ({user['email']})"
    assert [line.strip() for line in lines[1:]] == [e.line() for e in entries]

    # The page shows the same entries, and the search finds it by address.
    page = client.get(f"/admin/users/{uid}")
    assert page.status_code == 200
    shown = [
        (outcome, f"{at} UTC", html.unescape(title), html.unescape(detail))
        for outcome, at, title, detail in ROW.findall(page.text)
    ]
    assert shown == [
        (e.outcome, f"{e.at:%Y-%m-%d %H:%M:%S} UTC", e.title, e.detail) for e in entries
    ]
    found = client.get("/admin/users", params={"q": user["email"]}, follow_redirects=False)
    assert (found.status_code, found.headers["location"]) == (303, f"/admin/users/{uid}")


def test_an_unknown_user_has_an_empty_story(client: TestClient) -> None:
    nobody = uuid.uuid4()
    page = client.get(f"/admin/users/{nobody}")
    assert page.status_code == 200 and "Nothing stored for this user" in page.text
    assert client.get("/admin/users/not-a-uuid").status_code == 404
    missing = client.get("/admin/users", params={"q": "nobody@example.com"})
    assert missing.status_code == 200 and 'id="user-no-match"' in missing.text
    printed = CliRunner().invoke(main, ["explain", "nobody@example.com"])
    assert printed.exit_code == 1 and "no mail went to that address" in printed.output
