"""Periodic tasks in the portal: edits reach beat through PeriodicTaskChanged; run now sends."""

from __future__ import annotations

import html
import json
import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from fastapi.testclient import TestClient
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from sqlalchemy import select, text
from sqlalchemy_celery_beat.models import CrontabSchedule, PeriodicTask, PeriodicTaskChanged
from sqlalchemy_celery_beat.schedulers import DatabaseScheduler

from app.config import Settings
from app.db.session import session_scope
from app.jobs.celery_app import DAILY_DIGEST, JOBS_QUEUE, celery_app
from app.jobs.schedule import beat_session, seed_schedule
from harness.portal import form_token


@pytest.fixture
def seeded(db: str) -> str:
    with session_scope() as session:
        session.execute(text("DROP SCHEMA IF EXISTS celery_schema CASCADE"))
    seed_schedule()
    return db


def _task(name: str) -> tuple[int, CrontabSchedule, bool, datetime | None]:
    with beat_session() as session:
        task = session.scalars(select(PeriodicTask).where(PeriodicTask.name == name)).one()
        cron = session.get_one(CrontabSchedule, task.schedule_id)
        return task.id, cron, task.enabled, PeriodicTaskChanged.last_change(session)


def _post(client: TestClient, path: str, **data: str) -> str:
    token = form_token(client, "/admin/schedule")
    response = client.post(path, data={"csrf_token": token, **data})
    assert response.status_code == 200
    return html.unescape(response.text)


def test_page_lists_the_schedule_from_the_database(client: TestClient, seeded: str) -> None:
    page = client.get("/admin/schedule").text
    for name in ("daily-digest", "weekly-digest", "dispatch"):
        assert f'id="entry-{name}"' in page
    assert "every 10 seconds" in page


def test_editing_the_daily_cron_reaches_beat_without_a_restart(
    client: TestClient, seeded: str
) -> None:
    entry_id, _cron, _enabled, changed_before = _task("daily-digest")
    scheduler = DatabaseScheduler(app=celery_app, lazy=True)
    assert scheduler.all_as_schedule()["daily-digest"].schedule.hour == {0}
    time.sleep(0.01)  # last_update has microsecond resolution; make "later" observable
    page = _post(
        client,
        f"/admin/schedule/{entry_id}/cron",
        minute="30",
        hour="6",
        day_of_week="1-5",
        day_of_month="*",
        month_of_year="*",
        timezone="Europe/Berlin",
    )
    assert "daily-digest now runs at 30 6 * * 1-5 (Europe/Berlin)" in page
    _id, cron, _enabled, changed_after = _task("daily-digest")
    assert (cron.minute, cron.hour, cron.day_of_week, cron.timezone) == (
        "30",
        "6",
        "1-5",
        "Europe/Berlin",
    )
    assert changed_before is not None and changed_after is not None
    assert changed_after > changed_before  # what a running beat polls to reload
    schedule = DatabaseScheduler(app=celery_app, lazy=True).all_as_schedule()
    daily = schedule["daily-digest"].schedule
    assert (daily.minute, daily.hour, daily.day_of_week) == ({30}, {6}, {1, 2, 3, 4, 5})
    weekly = schedule["weekly-digest"].schedule
    assert (weekly.minute, weekly.hour) == ({10}, {0})  # the other entry kept its schedule


def test_an_invalid_cron_is_refused_and_nothing_changes(client: TestClient, seeded: str) -> None:
    entry_id, before, _enabled, _changed = _task("daily-digest")
    page = _post(client, f"/admin/schedule/{entry_id}/cron", minute="99", hour="0", timezone="UTC")
    assert "Schedule not changed: invalid cron" in page
    page = _post(
        client, f"/admin/schedule/{entry_id}/cron", minute="0", hour="0", timezone="Mars/Olympus"
    )
    assert "unknown time zone" in page
    _id, after, _enabled, _changed = _task("daily-digest")
    assert (after.minute, after.hour, after.timezone) == (before.minute, before.hour, "UTC")


def test_disable_and_enable(client: TestClient, seeded: str) -> None:
    entry_id, _cron, enabled, _changed = _task("weekly-digest")
    assert enabled
    assert "weekly-digest disabled." in _post(
        client, f"/admin/schedule/{entry_id}/enabled", enabled="0"
    )
    assert _task("weekly-digest")[2] is False
    assert "weekly-digest" not in DatabaseScheduler(app=celery_app, lazy=True).all_as_schedule()
    _post(client, f"/admin/schedule/{entry_id}/enabled", enabled="1")
    assert _task("weekly-digest")[2] is True


@pytest.fixture
def jobs_queue(settings: Settings) -> Iterator[Queue]:
    """The jobs queue of this test run's own vhost, emptied before and after."""
    queue = Queue(
        JOBS_QUEUE,
        Exchange(JOBS_QUEUE, type="direct", durable=True),
        routing_key=JOBS_QUEUE,
        durable=True,
    )
    with Connection(settings.celery_broker_url) as conn:
        bound = queue(conn.channel())
        bound.declare()
        bound.purge()
        yield bound
        bound.purge()


def test_run_now_sends_the_task_by_name(client: TestClient, seeded: str, jobs_queue) -> None:
    entry_id, _cron, _enabled, _changed = _task("daily-digest")
    page = _post(client, f"/admin/schedule/{entry_id}/run")
    task_id = page.split("Task sent (id ", 1)[1].split(")", 1)[0]
    deadline = time.monotonic() + 10
    message = None
    while message is None and time.monotonic() < deadline:
        message = jobs_queue.get(no_ack=True)
        if message is None:
            time.sleep(0.1)
    assert message is not None, "no task on the jobs queue"
    assert message.headers["task"] == DAILY_DIGEST and message.headers["id"] == task_id
    assert json.loads(message.body)[0] == []  # args
