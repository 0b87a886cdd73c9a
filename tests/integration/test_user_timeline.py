"""A user's timeline from real rows: the portal page and `notify explain` tell the same story,
with the reason of every decision (sent at once, held for quiet hours, digest hour, skipped)."""

from __future__ import annotations

import html
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.auth.client import AuthClient
from app.cli import main
from app.config import Settings
from app.db import timeline as store
from app.db.session import session_scope
from app.domain import timeline
from app.jobs import retention
from harness.timeline import tell_a_story

ROW = re.compile(
    r'<tr class="timeline-entry" data-outcome="([^"]*)">\s*<td[^>]*>([^<]*)</td>\s*'
    r'<td><span class="badge timeline-outcome">[^<]*</span></td>\s*'
    r'<td class="timeline-title">([^<]*)</td>\s*<td class="timeline-detail">([^<]*)</td>'
)


def test_the_page_and_notify_explain_tell_why_each_mail_went_or_not(
    client: TestClient,
    auth_client: AuthClient,
    auth_users: list[dict[str, Any]],
    settings: Settings,
    tmp_path: Path,
) -> None:
    story = tell_a_story(auth_client, auth_users, settings, tmp_path / "outbox")
    user, uid, zone = story.user, story.user_id, story.zone

    with session_scope() as session:
        entries = timeline.build(store.load_user(session=session, user_id=uuid.UUID(uid)))
    told = [(e.outcome, e.title, e.detail) for e in entries]
    outcomes = [e.outcome for e in entries]
    for needed in ("received", "created", "scheduled", "sent", "delivered", "skipped", "refused"):
        assert needed in outcomes, (needed, told)
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


def test_received_events_past_their_retention_leave_the_timeline(
    db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = uuid.uuid4()
    now = datetime.now(UTC)
    ages_days = [200, 120, 91, 89, 10, 0]
    with session_scope() as session:
        for offset, age in enumerate(ages_days):
            session.execute(
                text(
                    'INSERT INTO received_events (user_id, kind, topic, partition, "offset",'
                    " periodicity, received_at) VALUES (:u, 'comment_liked', 't', 0, :o, 'daily',"
                    " :at)"
                ),
                {"u": user, "o": offset, "at": now - timedelta(days=age)},
            )
    monkeypatch.setattr(retention, "PRUNE_CHUNK", 2)  # several chunks, one transaction each
    assert retention.prune_timeline(settings=settings, now=now) == 3
    assert retention.prune_timeline(settings=settings, now=now) == 0
    with session_scope() as session:
        kept = store.load_user(session=session, user_id=user).events
    assert sorted(e.offset for e in kept) == [3, 4, 5]  # 89, 10 and 0 days old
