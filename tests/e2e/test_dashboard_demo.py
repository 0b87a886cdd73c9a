"""`make run`'s stack (the Procfile under honcho) and `notify demo`, then the dashboard in
Chromium: its charts draw the figures the pipeline just produced."""

from __future__ import annotations

import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect, sync_playwright
from sqlalchemy import text

from app.config import REPO_ROOT, Settings
from app.db.session import session_scope
from app.domain.vocabulary import outcome_of
from harness.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, shot
from harness.pipeline import BIN
from harness.portal import make_admin_user
from harness.procfile import private_env, procfile
from harness.waiting import wait_for

PORTAL = "http://127.0.0.1:8000"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            status: int = response.status
            return status == 200
    except OSError:
        return False


@pytest.fixture
def stack(settings: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every process of the Procfile on private topics, the bundled dev Auth server included."""
    env = private_env(settings, tmp_path, f"dash{uuid.uuid4().hex[:8]}")
    with procfile(env, tmp_path / "honcho.log"):
        for url in (f"{PORTAL}/healthz", "http://127.0.0.1:8081/health"):
            wait_for(partial(_answers, url), timeout=90, what=url)
        for port in (9101, 9102, 9104):
            url = f"http://127.0.0.1:{port}/healthz"
            wait_for(partial(_answers, url), timeout=90, what=url)
        yield env


def _sent_in_the_last_day() -> dict[str, int]:
    """Deliveries due in the chart's 24 hours, by the vocabulary's outcome group."""
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT status, count(*) AS n FROM deliveries"
                " WHERE send_at >= date_trunc('hour', now()) - interval '23 hours' GROUP BY 1"
            )
        )
        counts: dict[str, int] = {}
        for row in rows:
            outcome = outcome_of(row.status)
            if outcome is not None:
                counts[outcome] = counts.get(outcome, 0) + row.n
        return counts


def test_the_dashboard_draws_what_notify_demo_produced(stack: dict[str, str]) -> None:
    demo = subprocess.run(
        [
            str(BIN / "notify"),
            "demo",
            "--registrations",
            "20",
            "--likes",
            "60",
            "--comments",
            "10",
            "--campaign",
            "30",
            "--wait",
            "45",
        ],
        env=stack,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    # The welcome mails and the campaign go at once (the campaign unless it is night somewhere).
    wait_for(lambda: _sent_in_the_last_day().get("sent", 0) >= 20, timeout=60, what="mail sent")
    username, password = make_admin_user()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{PORTAL}/login")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("button[type=submit]")
        expect(page).to_have_url(f"{PORTAL}/admin/")
        page.wait_for_function(
            "() => typeof Chart !== 'undefined' && Chart.getChart('chart-hourly')"
        )
        drawn: dict[str, Any] = page.evaluate(
            """() => {
              const chart = Chart.getChart('chart-hourly');
              const total = (i) => chart.data.datasets[i].data.reduce((a, b) => a + b, 0);
              return {sent: total(0), failed: total(1), skipped: total(2),
                      labels: chart.data.labels.length,
                      circuits: Array.from(document.querySelectorAll('#dash-circuits tbody tr'))
                        .map((tr) => tr.children[0].textContent + ' ' + tr.children[1].textContent),
                      provider: document.getElementById('dash-provider').textContent.trim(),
                      emails: document.getElementById('dash-queue-emails').textContent.trim()};
            }"""
        )
        stored = _sent_in_the_last_day()
        assert drawn["labels"] == 24
        assert drawn["sent"] >= 20
        # Drawn from what PostgreSQL holds (more may have been sent since the page loaded).
        assert drawn["sent"] <= stored.get("sent", 0)
        assert "auth closed" in drawn["circuits"], drawn["circuits"]
        assert drawn["provider"] == "primary"
        assert drawn["emails"].isdigit()
        lag = page.locator("#dash-lag tbody tr")
        expect(lag.first).to_contain_text(stack["TOPIC_COMMENT_LIKED"].split(".")[0])
        shot(page, SCREENSHOTS, "20-dashboard-after-demo", "Mails per hour, last 24 h")
        browser.close()
