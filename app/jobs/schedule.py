"""The beat schedule lives in PostgreSQL (sqlalchemy-celery-beat): seed it once, edit it anywhere.

Entries are created only when missing, never overwritten, so edits made in the admin portal
survive restarts (beat's own `beat_schedule` would rewrite them at every start).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session
from sqlalchemy_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    Period,
    PeriodicTask,
    PeriodicTaskChanged,
)
from sqlalchemy_celery_beat.session import SessionManager

from app.config import get_settings
from app.db.session import transaction
from app.jobs.celery_app import BEAT_SCHEMA, DAILY_DIGEST, DISPATCH, JOBS_QUEUE, WEEKLY_DIGEST


@dataclass(frozen=True, slots=True)
class Cron:
    minute: str
    hour: str
    day_of_week: str = "*"


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    name: str
    task: str
    description: str
    cron: Cron | None = None
    every_s: int | None = None


DEFAULT_ENTRIES = (
    DefaultEntry(
        "daily-digest", DAILY_DIGEST, "Plan the daily digests (send times are per user).",
        cron=Cron(minute="5", hour="0"),
    ),
    DefaultEntry(
        "weekly-digest", WEEKLY_DIGEST, "Plan the weekly digests (ISO weeks, per user zone).",
        cron=Cron(minute="10", hour="0", day_of_week="1"),
    ),
    DefaultEntry(
        "dispatch", DISPATCH, "Enqueue deliveries whose send time has come.", every_s=10
    ),
)  # fmt: skip


@contextmanager
def beat_session(database_url: str | None = None) -> Iterator[Session]:
    """A session on the scheduler's tables (created on first use, in their own schema)."""
    manager = SessionManager()
    engine, factory = manager.create_session(
        database_url or get_settings().database_url, schema=BEAT_SCHEMA
    )
    manager.prepare_models(engine, schema=BEAT_SCHEMA)
    try:
        with transaction(factory()) as session:
            yield session
    finally:
        engine.dispose()


def _schedule_model(session: Session, entry: DefaultEntry) -> CrontabSchedule | IntervalSchedule:
    if entry.cron is not None:
        model: CrontabSchedule | IntervalSchedule = CrontabSchedule(
            minute=entry.cron.minute,
            hour=entry.cron.hour,
            day_of_week=entry.cron.day_of_week,
            day_of_month="*",
            month_of_year="*",
            timezone="UTC",
        )
    else:
        model = IntervalSchedule(every=entry.every_s, period=Period.SECONDS)
    session.add(model)
    session.flush()
    return model


def seed_schedule(database_url: str | None = None) -> list[str]:
    """Create the default entries that are missing; return the names created."""
    created = []
    with beat_session(database_url) as session:
        existing = {name for (name,) in session.query(PeriodicTask.name)}
        for entry in DEFAULT_ENTRIES:
            if entry.name in existing:
                continue
            task = PeriodicTask(
                name=entry.name, task=entry.task, queue=JOBS_QUEUE, description=entry.description
            )
            task.schedule_model = _schedule_model(session, entry)
            session.add(task)
            created.append(entry.name)
        if created:
            PeriodicTaskChanged.update_from_session(session, commit=False)
    return created
