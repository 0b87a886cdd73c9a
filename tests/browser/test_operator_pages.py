"""Chromium through the pages operators and recipients use: a user's timeline with each reason,
a campaign at 9:00 in each recipient's zone, and the preference page; screenshots saved in
var/screenshots/."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from kombu.connection import Connection
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import text

from app.auth.client import AuthClient
from app.auth.dev_server import DevAuthServer, generate_users
from app.config import Settings
from app.db import suppressions
from app.db.session import session_scope
from app.delivery.mail.outbox_backend import OutboxBackend
from app.delivery.sending import deliver
from app.jobs.digests import plan_once, run_digest
from app.jobs.links import preferences_url
from app.stream.ingest import apply_batch
from harness.auth import serve_in_thread
from harness.browser import shot, sidebar_column_luma
from harness.delivery import dispatch, purge_emails_queue
from harness.kafka import read_topic, record_of
from harness.rows import Spec, insert_notifications
from harness.stream import next_emails
from harness.timeline import tell_a_story

ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")


@pytest.fixture
def auth_users() -> list[dict[str, Any]]:
    return generate_users(50)


@pytest.fixture
def zone_users(auth_users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Three users who allow every mail, one in each of ZONES (the Auth server serves these
    very records, so the change is what it answers)."""
    chosen = [u for u in auth_users if all(u["notification_policy"].values())][: len(ZONES)]
    for user, zone in zip(chosen, ZONES, strict=True):
        user["timezone"] = zone
    return chosen


@pytest.fixture
def auth_client(auth_users: list[dict[str, Any]], settings: Settings) -> Iterator[AuthClient]:
    """The dev Auth server (the Auth contract over HTTP) and a client of it."""
    server = DevAuthServer(("127.0.0.1", 0), auth_users, settings.auth_api_token.get_secret_value())
    serve_in_thread(server)
    client = AuthClient(
        f"http://127.0.0.1:{server.server_address[1]}",
        settings.auth_api_token.get_secret_value(),
        retries=1,
    )
    yield client
    client.close()
    server.shutdown()
    server.server_close()


def test_the_timeline_shows_why_each_mail_went_or_did_not(
    page: Page,
    portal_url: str,
    auth_client: AuthClient,
    auth_users: list[dict[str, Any]],
    settings: Settings,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    story = tell_a_story(auth_client, auth_users, settings, tmp_path / "outbox")
    page.fill("#user-search input[name=q]", story.user["email"])  # the home page's search box
    page.click("#user-search button[type=submit]")
    expect(page).to_have_url(f"{portal_url}/admin/users/{story.user_id}")
    table = page.locator("#timeline")
    for reason in (
        "transactional: at once, whatever the hour",  # the welcome mail
        "provider message id",  # ... sent
        f"daily digest at the send hour 09:00 in {story.zone}",  # the like digest
        f"held for quiet hours: 2026-11-25 23:30 {story.zone} is inside 22:00-08:00",
        "skipped: the user turned mailings off here",
        "went to the dead letters",
    ):
        expect(table).to_contain_text(reason)
    expect(page.locator("tr[data-outcome=delivered]")).to_have_count(1)
    sent = page.locator("tr[data-outcome=sent] .timeline-title")
    expect(sent).to_have_count(2)  # the welcome mail and the like digest
    expect(sent.nth(1)).to_contain_text("like digest (2026-11-25) via outbox")
    shot(page, screenshots, "10-user-timeline", "notify explain")
    # The dark sidebar's column runs the page's length, however far past the window it goes.
    height, luma = sidebar_column_luma(screenshots / "10-user-timeline.png")
    viewport = page.viewport_size
    assert viewport is not None and height > viewport["height"] + 200  # longer than the window
    assert luma < 80, f"the sidebar's column is light ({luma}) at the bottom of the page"


def _nine(day: Any, zone: str) -> datetime:
    return datetime.combine(day, time(9), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def test_a_campaign_at_9_local_is_sent_at_each_recipients_own_9(
    page: Page,
    portal_url: str,
    mailing_topic: str,
    auth_client: AuthClient,
    zone_users: list[dict[str, Any]],
    settings: Settings,
    screenshots: Path,
    tmp_path: Path,
) -> None:
    users = zone_users
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    page.goto(f"{portal_url}/admin/mailings/new")
    page.fill("#name", "Morning news")
    page.fill("#content_value", "Good morning: our news.")
    # Only the chosen mode's fields show: none for "now", the local day and hour for "local".
    for field in ("#send_at", "#local_date", "#local_hour"):
        expect(page.locator(field)).to_be_hidden()
    page.select_option("#when", "local")
    expect(page.locator("#send_at")).to_be_hidden()
    expect(page.locator("#local_hour")).to_be_visible()
    page.fill("#local_date", day.isoformat())
    page.fill("#local_hour", "9")
    page.fill("#audience", "\n".join(u["user_id"] for u in users))
    shot(page, screenshots, "11-campaign-scheduled-form", "At a local hour")
    page.click("button[type=submit]")
    expect(page.locator("#campaign-schedule")).to_have_text(
        f"at 09:00 on {day} in each recipient's time zone"
    )
    page.click("#send")
    expect(page.locator("body")).to_contain_text("3 events published to Kafka")
    campaign_id = page.url.split("?")[0].rsplit("/", 1)[1]

    # The stream worker's ingest of the published events, then planning: each one at 09:00
    # where its recipient lives.
    records = [record_of(m) for m in read_topic(settings, mailing_topic, 3)]
    apply_batch("mailing", records, group_id="browser-campaign", max_bytes=65536)
    with session_scope() as session:
        ids = list(
            session.scalars(
                text("SELECT notification_id FROM notifications WHERE campaign_id = :c"),
                {"c": campaign_id},
            )
        )
    plan_once(ids, auth=auth_client, settings=settings, now=datetime.now(UTC))

    # The service clock moves through the day: each mail leaves at its recipient's 09:00.
    purge_emails_queue(settings)
    backend = OutboxBackend(tmp_path / "outbox", sender=settings.email_from)
    order = sorted(users, key=lambda u: _nine(day, u["timezone"]))
    with Connection(settings.celery_broker_url) as conn:
        for user in order:
            at = _nine(day, user["timezone"])
            assert dispatch(at - timedelta(minutes=5)) == 0, user["timezone"]
            assert dispatch(at) == 1, user["timezone"]
            [task] = next_emails(conn, 1, timeout=10)
            assert task["email"] == user["email"]
            assert deliver(task, backend=backend, settings=settings, now=at).result == "sent"
    page.reload()
    expect(page.locator("[data-count=sent]")).to_have_text("3")
    shot(page, screenshots, "12-campaign-sent-at-local-9", "Morning news")

    for user in order:
        page.goto(f"{portal_url}/admin/users/{user['user_id']}")
        sent = page.locator("tr[data-outcome=sent] td").first
        expect(sent).to_have_text(f"{_nine(day, user['timezone']):%Y-%m-%d %H:%M:%S}")
        expect(page.locator("#timeline")).to_contain_text(
            f"the campaign's 09:00 local time: {day} 09:00 {user['timezone']}"
        )
    shot(page, screenshots, "13-campaign-recipient-timeline", "the campaign's 09:00 local time")


def test_a_recipient_switches_likes_to_weekly_and_the_next_daily_run_skips_them(
    browser: Browser,
    page: Page,
    portal_url: str,
    auth_client: AuthClient,
    auth_users: list[dict[str, Any]],
    settings: Settings,
    screenshots: Path,
) -> None:
    user = next(u for u in auth_users if all(u["notification_policy"].values()))
    uid = uuid.UUID(user["user_id"])
    with session_scope() as session:
        [likes] = insert_notifications(
            session, [Spec(uid, "likes", "daily", uuid.uuid4(), "a comment", like_count=4)]
        )
    link = preferences_url(settings, uid, datetime.now(UTC)).replace(
        settings.public_base_url.rstrip("/"), portal_url
    )
    recipient = browser.new_page(viewport={"width": 900, "height": 700})  # no portal session
    recipient.goto(link)
    expect(recipient.locator("#pref-likes input[value=daily]")).to_be_checked()
    recipient.check("#pref-likes input[value=weekly]")
    recipient.click("button[type=submit]")
    expect(recipient.locator("#pref-saved")).to_contain_text("Saved")
    expect(recipient.locator("#pref-likes input[value=weekly]")).to_be_checked()
    shot(recipient, screenshots, "14-preferences-weekly", "Your e-mail preferences")
    recipient.close()

    now = datetime(2026, 11, 25, 0, 5, tzinfo=UTC)
    run_digest("daily", auth=auth_client, settings=settings, now=now)
    with session_scope() as session:
        planned = session.execute(
            text("SELECT period_key FROM deliveries WHERE notification_id = :n"), {"n": likes}
        ).all()
    assert planned == []  # the next daily run skipped them
    run_digest("weekly", auth=auth_client, settings=settings, now=now)
    page.goto(f"{portal_url}/admin/users/{uid}")
    expect(page.locator("#timeline")).to_contain_text(
        "like digests set to weekly on the preference page"
    )
    expect(page.locator("#timeline")).to_contain_text("like digest (2026-W48)")
    shot(page, screenshots, "15-preference-on-timeline", "like digests set to weekly")


def test_the_dashboard_refreshes_in_place(page: Page) -> None:
    """A dead letter stored after the page was drawn shows up on it, with no reload."""
    page.evaluate("window.notReloaded = true")  # gone if the page were loaded again
    generated = page.locator("#dash-generated").inner_text()
    with session_scope() as session:
        session.execute(
            text(
                "INSERT INTO dead_letters (group_id, source_topic, source_partition,"
                " source_offset, reason, error, replay_token)"
                " VALUES ('refresh-test', 'refresh-test', 0, 0, 'schema', 'late', :token)"
            ),
            {"token": uuid.uuid4()},
        )
        stored = session.scalar(
            text("SELECT count(*) FROM dead_letters WHERE status = 'dead' AND reason = 'schema'")
        )
    expect(page.locator("#dash-dead-letters")).to_contain_text(f"schema: {stored}", timeout=30_000)
    expect(page.locator("#dash-generated")).not_to_have_text(generated)
    assert page.evaluate("window.notReloaded") is True


def test_the_suppression_page_lists_searches_and_lifts(page: Page, screenshots: Path) -> None:
    now = datetime.now(UTC)
    with session_scope() as session:
        for i, (reason, detail) in enumerate(
            [
                ("hard bounce", "550 5.1.1 <gone@example.com>: user unknown"),
                ("soft bounces", "3 soft bounces in 30 days; last: 452 4.2.2 mailbox full"),
                ("spam report", None),
                ("invalid address", "400 personalizations.0.to.0.email: invalid"),
                ("manual", "asked by phone"),
            ]
        ):
            suppressions.suppress(
                session=session,
                address=f"person{i}@example.com",
                reason=reason,  # type: ignore[arg-type]
                at=now - timedelta(days=i),
                source="sendgrid" if reason != "manual" else "portal",
                detail=detail,
            )
    page.click("text=Suppressions")
    rows = page.locator("#suppressions tr.suppression")
    expect(rows).to_have_count(5)
    expect(page.locator("#suppression-total")).to_have_text("5 addresses")
    shot(page, screenshots, "50-suppressions", "Suppressed addresses")
    page.fill("#suppression-search input[name=q]", "person2")
    page.click("#suppression-search button[type=submit]")
    expect(rows).to_have_count(1)
    rows.first.locator("button", has_text="Lift").click()
    expect(page.locator("#suppression-notice")).to_contain_text("person2@example.com: lifted")
    expect(page.locator("#suppression-total")).to_have_text("4 addresses")
