"""Chromium on what the send rate shows operators: the dashboard's Sending panel and a
campaign's expected end, with 1,000 mails due at EMAIL_MAX_RATE=50 (screenshots in
var/screenshots/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.config import Settings
from harness.browser import shot
from harness.pacing import due_campaign

RATE = "50"
WARMUP = "2026-12-01:20000/d,+50%/d"


@pytest.fixture
def portal_env() -> dict[str, str]:
    return {"EMAIL_MAX_RATE": RATE, "EMAIL_WARMUP": WARMUP}


def test_the_dashboard_and_a_campaign_show_the_rate_and_the_drain(
    page: Page, portal_url: str, settings: Settings, screenshots: Path
) -> None:
    campaign_id = due_campaign(settings, 1000)
    page.goto(f"{portal_url}/admin/")
    expect(page.locator("#dash-rate")).to_contain_text("50 mails/s, warm-up:")
    expect(page.locator("#dash-rate")).to_contain_text(WARMUP)
    expect(page.locator("#dash-waiting")).to_have_text("1000")
    expect(page.locator("#dash-drain")).to_have_text("about 20 s")
    page.locator("#dash-sending").scroll_into_view_if_needed()
    shot(page, screenshots, "51-dashboard-send-rate", "Rate in force")

    page.goto(f"{portal_url}/admin/mailings/{campaign_id}")
    expect(page.locator("#progress-eta")).to_contain_text(" UTC")
    shot(page, screenshots, "52-campaign-eta", "expected out:")
