"""The admin portal in a real browser: login, template + preview, campaign, send, progress, cron."""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select
from sqlalchemy_celery_beat.models import CrontabSchedule, PeriodicTask

from app.config import Settings
from app.db.models import Campaign
from app.db.session import session_scope
from app.jobs.schedule import beat_session
from harness.browser import shot
from harness.campaigns import simulate_deliveries, simulate_stream
from harness.kafka import read_topic, value_of
from harness.portal import make_admin_user


def log_in(page: Page, url: str, folder: Path) -> None:
    username, password = make_admin_user()
    page.goto(f"{url}/admin/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#username", username)
    page.fill("#password", password)
    shot(page, folder, "01-login", "Sign in to manage")
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{url}/admin/")
    shot(page, folder, "02-dashboard", "Mails per hour, last 24 h")


def create_template(page: Page, url: str, folder: Path, pixel: str) -> str:
    name = f"winter-{uuid.uuid4().hex[:6]}"
    page.goto(f"{url}/admin/template/create")
    page.fill("#name", name)
    page.fill("#subject", "Winter news for {{ name }}")
    page.fill("#body_text", "{{ content_value }}\n\nUnsubscribe: {{ unsubscribe_url }}")
    page.fill("#body_html", "{{ ''.__class__.__mro__ }}")
    page.click("input[type=submit][value=Save]")
    shot(page, folder, "03-template-refused", "Template not saved. HTML body: SecurityError")
    # A tracking pixel, as a hostile or careless template would have: the preview must not load it.
    page.fill(
        "#body_html",
        f'<h1>Hello {{{{ name }}}}</h1><p>{{{{ content_value }}}}</p><img src="{pixel}">',
    )
    page.click("input[type=submit][value=Save]")
    expect(page).to_have_url(re.compile(r"/admin/template-preview/"))
    expect(page.locator("#preview-subject")).to_have_text("Winter news for Ann Example")
    frame = page.frame_locator("iframe[title='HTML preview']")
    expect(frame.locator("h1")).to_have_text("Hello Ann Example")
    shot(page, folder, "04-template-preview", f"Preview of {name}")
    return name


def create_campaign(
    page: Page, url: str, folder: Path, template: str, users: list[uuid.UUID]
) -> str:
    page.goto(f"{url}/admin/mailings/new")
    page.fill("#name", "Winter campaign")
    page.select_option("#template_id", label=template)
    page.fill("#content_value", "Our winter sale starts on Monday.")
    page.fill("#audience", f"{users[0]}\n{users[1]}\nnot-a-user-id")
    page.click("button[type=submit]")
    expect(page.locator("#invalid-ids")).to_contain_text("not-a-user-id")
    shot(page, folder, "05-campaign-draft", "1 audience entries are not user ids")
    return page.url.rsplit("/", 1)[1]


class _Pixel(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/gif")
        self.end_headers()
        self.wfile.write(b"GIF89a")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def pixel_url() -> Iterator[str]:
    """A tracking pixel on another origin (a local server that counts the requests)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pixel)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Pixel.hits.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/pixel.gif"
    server.shutdown()


def test_portal_end_to_end(
    browser: Browser,
    portal_url: str,
    mailing_topic: str,
    settings: Settings,
    screenshots: Path,
    pixel_url: str,
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    console = []
    page.on("console", lambda message: console.append(message.text))
    log_in(page, portal_url, screenshots)
    template = create_template(page, portal_url, screenshots, pixel_url)
    page.wait_for_load_state("load")  # the preview's iframe and its images included
    assert _Pixel.hits == [], "the preview fetched a remote image"

    users = [uuid.uuid4(), uuid.uuid4()]
    campaign_id = uuid.UUID(create_campaign(page, portal_url, screenshots, template, users))
    page.click("#send")
    expect(page.locator("body")).to_contain_text("2 events published to Kafka")
    expect(page.locator("[data-count=published]")).to_have_text("2")
    shot(page, screenshots, "06-campaign-sent", "Progress")
    events = [json.loads(value_of(m)) for m in read_topic(settings, mailing_topic, 2)]
    assert sorted(e["user_id"] for e in events) == sorted(map(str, users))
    assert {e["content_id"] for e in events} == {str(campaign_id)}

    # What the stream worker and the e-mail worker would write, one delivery at a time.
    notifications = simulate_stream(campaign_id, users, link=True)
    simulate_deliveries({notifications[0]: "sent"})
    page.reload()
    expect(page.locator("[data-bar=sent]")).to_have_attribute("style", re.compile("width: 50.0%"))
    shot(page, screenshots, "07-progress-half", "1 of 2 recipients done")
    simulate_deliveries({notifications[1]: "sent"})
    page.reload()
    expect(page.locator("[data-bar=sent]")).to_have_attribute("style", re.compile("width: 100.0%"))
    shot(page, screenshots, "08-progress-done", "2 of 2 recipients done")
    with session_scope() as session:
        assert session.get_one(Campaign, campaign_id).status == "published"

    page.goto(f"{portal_url}/admin/delivery/list?status=sent&user={users[0]}&user_op=equals")
    expect(page.locator("tbody tr")).to_have_count(1)
    shot(page, screenshots, "09-deliveries-filtered", "pm-1")
    page.locator("tbody tr a[href*='/details/']").first.click()
    shot(page, screenshots, "10-delivery-details", "Provider message id")

    page.goto(f"{portal_url}/admin/schedule")
    row = page.locator("#entry-daily-digest")
    row.get_by_label("daily-digest min").fill("45")
    row.get_by_label("daily-digest hour").fill("7")
    row.get_by_role("button", name="Save").click()
    expect(page.locator("body")).to_contain_text("daily-digest now runs at 45 7 * * * (UTC)")
    shot(page, screenshots, "11-schedule-edited", "Beat schedule")
    with beat_session() as session:
        task = session.scalars(
            select(PeriodicTask).where(PeriodicTask.name == "daily-digest")
        ).one()
        cron = session.get_one(CrontabSchedule, task.schedule_id)
        assert (cron.minute, cron.hour) == ("45", "7")

    # Signing out: SQLAdmin's link leads to a page whose button posts the form.
    page.get_by_role("link", name="Logout").click()
    expect(page).to_have_url(f"{portal_url}/admin/logout")
    page.click("#sign-out")
    expect(page).to_have_url(f"{portal_url}/login")
    page.goto(f"{portal_url}/admin/")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.close()

    assert _Pixel.hits == [], "a page fetched a remote image"
    refused = [text for text in console if "Content Security Policy" in text]
    assert refused and all("pixel.gif" in text for text in refused), refused
