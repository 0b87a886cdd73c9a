"""The beat schedule lives in PostgreSQL; real beat and worker processes run the dispatcher."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from sqlalchemy import select, text
from sqlalchemy_celery_beat.models import CrontabSchedule, PeriodicTask
from sqlalchemy_celery_beat.schedulers import DatabaseScheduler

from app.auth.dev_server import DevAuthServer
from app.config import Settings
from app.db.models import Delivery, DeliveryContent, Notification
from app.db.session import session_scope
from app.jobs.celery_app import DAILY_DIGEST, DISPATCH, EMAILS_QUEUE, WEEKLY_DIGEST, celery_app
from app.jobs.handoff import request_send_now
from app.jobs.schedule import beat_session, seed_schedule
from harness.rows import Spec, insert_notifications
from harness.waiting import server_url


@pytest.fixture
def fresh_schedule(db: str) -> str:
    with session_scope() as session:
        session.execute(text("DROP SCHEMA IF EXISTS celery_schema CASCADE"))
    return db


def test_seed_creates_the_three_entries_once_and_keeps_edits(fresh_schedule: str) -> None:
    assert seed_schedule() == ["daily-digest", "weekly-digest", "dispatch"]
    with beat_session() as session:
        daily = session.scalars(
            select(PeriodicTask).where(PeriodicTask.name == "daily-digest")
        ).one()
        session.get_one(CrontabSchedule, daily.schedule_id).minute = "30"
    assert seed_schedule() == []  # present entries are not rewritten

    scheduler = DatabaseScheduler(app=celery_app, lazy=True)
    assert scheduler.dburi == fresh_schedule
    entries = scheduler.all_as_schedule()
    assert {name: e.task for name, e in entries.items()} == {
        "daily-digest": DAILY_DIGEST,
        "weekly-digest": WEEKLY_DIGEST,
        "dispatch": DISPATCH,
    }
    daily, weekly = entries["daily-digest"].schedule, entries["weekly-digest"].schedule
    assert (daily.minute, daily.hour, daily.day_of_week) == ({30}, {0}, set(range(7)))
    assert (weekly.minute, weekly.hour, weekly.day_of_week) == ({10}, {0}, {1})
    assert entries["dispatch"].schedule.run_every == timedelta(seconds=10)
    assert all(e.options.get("queue") == "jobs" for e in entries.values())


@pytest.fixture
def processes(
    fresh_schedule: str, tmp_path: Path, settings: Settings, auth_server: DevAuthServer
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start one beat and one jobs worker as real processes; kill them at the end."""
    seed_schedule()
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "AUTH_API_URL": server_url(auth_server),
    }
    started: list[subprocess.Popen[bytes]] = []
    commands = [
        ["beat", "--loglevel=INFO", "--pidfile=", f"--schedule={tmp_path / 'beat'}"],
        [
            "worker",
            "-Q",
            "jobs",
            "-P",
            "threads",
            "-c",
            "2",
            "--loglevel=INFO",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"jobs-{uuid.uuid4().hex[:6]}@%h",
        ],
    ]
    for args in commands:
        log = (tmp_path / f"{args[0]}.log").open("w")
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "app.jobs.celery_app", *args],
                cwd=tmp_path,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    yield started
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def test_beat_runs_the_dispatcher_from_the_database_schedule(
    processes: list[subprocess.Popen[bytes]], settings: Settings, tmp_path: Path
) -> None:
    queue = Queue(
        EMAILS_QUEUE, Exchange(EMAILS_QUEUE, "direct", durable=True), EMAILS_QUEUE, durable=True
    )
    with Connection(settings.celery_broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()
        with session_scope() as session:
            (nid,) = insert_notifications(
                session, [Spec(uuid.uuid4(), "mailing", "daily", uuid.uuid4(), "x")]
            )
            delivery = Delivery(
                notification_id=nid,
                period_key="2026-11-25",
                status="scheduled",
                send_at=datetime.now(UTC) - timedelta(minutes=1),
                email="ann@example.com",
                content=DeliveryContent(subject="Hello", body_html="<p>x</p>", body_text="x"),
            )
            session.add(delivery)
        deadline = time.monotonic() + 45  # the dispatch entry runs every 10 s
        message = None
        while message is None and time.monotonic() < deadline:
            if any(p.poll() is not None for p in processes):
                break
            message = bound.get(no_ack=True)
            if message is None:
                time.sleep(0.5)
        logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}
        assert message is not None, logs
        ((payload,),), _, _ = message.decode()  # one chunk of one e-mail
        assert payload["delivery_id"] == str(delivery.delivery_id)
        bound.purge()
    with session_scope() as session:
        assert session.get_one(Delivery, delivery.delivery_id).status == "enqueued"


def test_send_now_through_a_real_worker_reaches_the_emails_queue(
    processes: list[subprocess.Popen[bytes]],
    settings: Settings,
    auth_users: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    queue = Queue(
        EMAILS_QUEUE, Exchange(EMAILS_QUEUE, "direct", durable=True), EMAILS_QUEUE, durable=True
    )
    user = auth_users[0]
    link = "https://auth.example.com/confirm?token=abc"
    with Connection(settings.celery_broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()
        with session_scope() as session:
            (nid,) = insert_notifications(
                session, [Spec(uuid.UUID(user["user_id"]), "welcome", "once", None, link)]
            )
        request_send_now(celery_app, [nid])
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = bound.get(no_ack=True)
            if message is None:
                time.sleep(0.1)
        logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}
        assert message is not None, logs
        ((payload,),), _, _ = message.decode()  # one chunk of one e-mail
        bound.purge()
    assert payload["notification_id"] == str(nid)
    assert payload["email"] == user["email"]
    assert link in payload["text"]
    assert "headers" not in payload or "List-Unsubscribe" not in payload["headers"]
    with session_scope() as session:
        assert session.get_one(Notification, nid).status == "queued"
