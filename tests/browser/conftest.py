"""Browser tier: Playwright drives Debian's Chromium against a portal served by uvicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from confluent_kafka.admin import AdminClient
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import text

from app.config import REPO_ROOT, Settings
from app.db import migrate
from app.db.session import dispose_engines, session_scope
from app.jobs.schedule import seed_schedule
from app.kafka.admin import ensure_topics
from app.kafka.connection import client_config
from app.portal.template_files import load_default_templates
from harness.browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS
from harness.portal import make_admin_user
from harness.waiting import free_port


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.integration)  # needs the services, like that tier


@pytest.fixture
def browser_db(settings: Settings) -> Iterator[str]:
    """The test database at head with the default templates and a fresh beat schedule."""
    migrate.upgrade("heads", settings.database_url)
    with session_scope() as session:
        session.execute(
            text(
                "TRUNCATE deliveries, notifications, messages, campaigns, opt_outs, dead_letters,"
                " received_events, stream_offsets, preferences, preference_changes, suppressions,"
                " soft_bounces, send_pacing CASCADE"
            )
        )
        session.execute(text("DROP SCHEMA IF EXISTS celery_schema CASCADE"))
        load_default_templates(session=session)
    seed_schedule()
    yield settings.database_url
    dispose_engines()


@pytest.fixture
def mailing_topic(settings: Settings) -> Iterator[str]:
    name = f"test.mailing.{uuid.uuid4().hex[:12]}"
    ensure_topics(settings, [name], partitions=2)
    yield name
    AdminClient(client_config(settings)).delete_topics([name])


@pytest.fixture
def portal_env() -> dict[str, str]:
    """Settings of the portal process on top of the environment (a module may override it)."""
    return {}


@pytest.fixture
def portal_url(
    browser_db: str, mailing_topic: str, tmp_path: Path, portal_env: dict[str, str]
) -> Iterator[str]:
    """The portal served by uvicorn in a subprocess on a free port; stopped at teardown."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": browser_db, "TOPIC_MAILING": mailing_topic, **portal_env}
    log = (tmp_path / "portal.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.portal.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            assert process.poll() is None, (tmp_path / "portal.log").read_text()
            try:
                if requests.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the portal did not start within 30 s"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")  # its event loop must be gone before asyncio tests
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def page(browser: Browser, portal_url: str) -> Iterator[Page]:
    """A signed-in admin's page in Chromium."""
    username, password = make_admin_user()
    tab = browser.new_page(viewport={"width": 1400, "height": 900})
    tab.goto(f"{portal_url}/login")
    tab.fill("#username", username)
    tab.fill("#password", password)
    tab.click("button[type=submit]")
    expect(tab).to_have_url(f"{portal_url}/admin/")
    yield tab
    tab.close()
