"""The dashboard's circuit panel follows a real e-mail worker through a provider outage.

A real e-mail worker sends through a fake SendGrid that answers 503: its circuit for the
provider opens, and the portal's dashboard (reading the worker's /metrics) says so. When the
provider answers again, slowly, the probe out is shown as half-open; once it is accepted the
panel turns to closed by itself (the page refreshes its figures in place), and every parked
e-mail goes out once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from app.config import Settings
from app.core.clock import utcnow
from harness.delivery import Worker, dispatch, purge_emails_queue, seed
from harness.fakes.sendgrid import FakeSendGrid
from harness.portal import make_admin_user
from harness.waiting import free_port, wait_for

MAILS = 30
SLOW_PROBE_S = 6.0  # under EMAIL_TIMEOUT_S: the probe is answered, just late
MIN_SCREENSHOT_BYTES = 10_000


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def portal_env(metrics_port: int) -> dict[str, str]:
    return {
        "DASHBOARD_METRICS_URLS": f"http://127.0.0.1:{metrics_port}/metrics",
        "DASHBOARD_PROBE_CACHE_S": "0",
    }


@pytest.fixture
def provider() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid().start()
    yield fake
    fake.stop()


def _shot(page: Page, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > MIN_SCREENSHOT_BYTES, f"{path} looks blank"


def _reload_until(page: Page, badge: Locator, state: str, timeout: float = 60) -> None:
    """Reload the dashboard until the badge reads `state` (a half-open lasts seconds)."""

    def shows() -> bool:
        page.reload()
        return badge.count() == 1 and badge.inner_text().strip() == state

    wait_for(shows, timeout=timeout, what=f"the provider's circuit shown {state}", every=0.3)


def test_the_circuit_panel_shows_open_then_half_open_then_closed(
    browser: Browser,
    portal_url: str,
    screenshots: Path,
    settings: Settings,
    provider: FakeSendGrid,
    metrics_port: int,
    tmp_path: Path,
) -> None:
    purge_emails_queue(settings)
    provider.down_until(time.time() + 3600)
    worker = Worker(
        settings,
        tmp_path / "worker.log",
        concurrency=4,
        email_backend="sendgrid",
        sendgrid_host=provider.url,
        sendgrid_api_key=provider.api_key,
        metrics_port=metrics_port,
    )
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        ids = [d for d, _u, _k in seed(settings, utcnow(), ["mailing"] * MAILS)]
        assert dispatch(utcnow()) == MAILS
        worker.start()
        username, password = make_admin_user()
        page.goto(f"{portal_url}/login")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{portal_url}/admin/")
        row = page.locator("#dash-circuits tbody tr", has_text="mail:sendgrid")
        badge = row.locator(".badge")

        _reload_until(page, badge, "open")
        assert int(row.locator("td").nth(2).inner_text()) > 0  # e-mails parked so far
        _shot(page, screenshots, "40-circuit-open")

        provider.delay_s = SLOW_PROBE_S
        provider.down_until(0)
        _reload_until(page, badge, "half-open")
        _shot(page, screenshots, "41-circuit-half-open")
        provider.delay_s = 0.0

        # No reload: the page's own refresh turns the badge once the probe was accepted.
        expect(badge).to_have_text("closed", timeout=60_000)
        _shot(page, screenshots, "42-circuit-closed")
        wait_for(lambda: len(provider.accepted()) == MAILS, timeout=60, what="every parked e-mail")
        assert provider.accepted_counts() == {str(i): 1 for i in ids}
    finally:
        page.close()
        worker.kill()
