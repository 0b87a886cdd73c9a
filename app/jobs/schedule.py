"""The beat schedule lives in PostgreSQL (sqlalchemy-celery-beat): seeded once, edited anywhere.

Entries are created only when missing, never overwritten, so edits made in the admin portal
survive restarts (beat's own `beat_schedule` would rewrite them at every start). Edits go through
sqlalchemy-celery-beat's ORM and bump PeriodicTaskChanged, which is what makes a running beat
reload its schedule (within beat_max_loop_interval) without a restart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

from celery import Celery
from celery.schedules import crontab
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from sqlalchemy_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    Period,
    PeriodicTask,
    PeriodicTaskChanged,
)
from sqlalchemy_celery_beat.session import SessionManager
from sqlalchemy_celery_beat.tzcrontab import TzAwareCrontab

from app.db.session import get_engine, transaction
from app.jobs.celery_app import BEAT_SCHEMA, DAILY_DIGEST, DISPATCH, JOBS_QUEUE, WEEKLY_DIGEST

CRON_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")


class ScheduleError(ValueError):
    """A schedule edit we refuse; the message is meant for the person who made it."""


@dataclass(frozen=True, slots=True)
class Cron:
    """The five cron fields and the zone they are read in."""

    minute: str = "*"
    hour: str = "*"
    day_of_week: str = "*"
    day_of_month: str = "*"
    month_of_year: str = "*"
    timezone: str = "UTC"

    def __str__(self) -> str:
        fields = (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        return f"{' '.join(fields)} ({self.timezone})"


@dataclass(frozen=True, slots=True)
class DefaultEntry:
    name: str
    task: str
    description: str
    cron: Cron | None = None
    every_s: int | None = None


DEFAULT_ENTRIES = (
    DefaultEntry(
        "daily-digest",
        DAILY_DIGEST,
        "Plan the daily digests (send times are per user).",
        cron=Cron(minute="5", hour="0"),
    ),
    DefaultEntry(
        "weekly-digest",
        WEEKLY_DIGEST,
        "Plan the weekly digests (ISO weeks, per user zone).",
        cron=Cron(minute="10", hour="0", day_of_week="1"),
    ),
    DefaultEntry("dispatch", DISPATCH, "Enqueue deliveries whose send time has come.", every_s=10),
)


@contextmanager
def beat_session(database_url: str | None = None) -> Iterator[Session]:
    """A session on the scheduler's tables (created on first use, in their own schema).

    On the process's pooled engine; the tables are checked on each call, as a reset may have
    dropped their schema and this path runs at an operator's pace.
    """
    engine = get_engine(database_url).execution_options(
        schema_translate_map={"celery_schema": BEAT_SCHEMA}
    )
    SessionManager().prepare_models(engine, schema=BEAT_SCHEMA)
    with transaction(Session(bind=engine, expire_on_commit=False)) as session:
        yield session


def _schedule_model(session: Session, entry: DefaultEntry) -> CrontabSchedule | IntervalSchedule:
    if entry.cron is not None:
        model: CrontabSchedule | IntervalSchedule = CrontabSchedule(
            **{name: getattr(entry.cron, name) for name in (*CRON_FIELDS, "timezone")}
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


@dataclass(frozen=True, slots=True)
class Entry:
    """One beat entry as the portal shows it."""

    id: int
    name: str
    task: str
    description: str
    enabled: bool
    queue: str | None
    cron: Cron | None
    every: str | None
    last_run_at: datetime | None
    total_run_count: int
    every_s: float | None = None


def next_run(entry: Entry, now: datetime) -> datetime | None:
    """When beat next runs this entry after `now` (aware UTC); None when it is disabled.

    A cron entry is read in its own zone, as beat reads it; an interval entry runs `every_s`
    after its last run (at once when it never ran or is overdue).
    """
    if not entry.enabled:
        return None
    if entry.cron is not None:
        zone = ZoneInfo(entry.cron.timezone)
        local_now = now.astimezone(zone)
        fields = {name: getattr(entry.cron, name) for name in CRON_FIELDS}
        schedule = TzAwareCrontab(**fields, tz=zone)  # what beat runs it as
        schedule.nowfun = lambda: local_now
        remaining: timedelta = schedule.remaining_estimate(local_now)
        return (now + remaining).astimezone(UTC)
    if entry.every_s is not None:
        if entry.last_run_at is None:
            return now
        return max(now, entry.last_run_at + timedelta(seconds=entry.every_s))
    return None


def parse_cron(**fields: str) -> Cron:
    """Validate cron fields (as celery parses them) and the zone; raise ScheduleError."""
    cron = Cron(
        **{k: (v or "").strip() or "*" for k, v in fields.items() if k != "timezone"},
        timezone=(fields.get("timezone") or "UTC").strip(),
    )
    if cron.timezone not in available_timezones():
        raise ScheduleError(f"unknown time zone {cron.timezone!r}")
    try:
        crontab(**{name: getattr(cron, name) for name in CRON_FIELDS})
    except (ValueError, TypeError) as exc:
        raise ScheduleError(f"invalid cron {cron}: {exc}") from exc
    return cron


def _entry(task: PeriodicTask) -> Entry:
    model = task.schedule_model
    cron = every = every_s = None
    if isinstance(model, CrontabSchedule):
        cron = Cron(**{name: getattr(model, name) for name in (*CRON_FIELDS, "timezone")})
    elif isinstance(model, IntervalSchedule):
        period = getattr(model.period, "value", model.period)
        every = f"every {model.every} {period}"
        every_s = timedelta(**{str(period): model.every}).total_seconds()
    return Entry(
        id=task.id,
        name=task.name,
        task=task.task,
        description=task.description or "",
        enabled=task.enabled,
        queue=task.queue,
        cron=cron,
        every=every,
        last_run_at=task.last_run_at,
        total_run_count=task.total_run_count or 0,
        every_s=every_s,
    )


def list_entries(database_url: str | None = None) -> list[Entry]:
    """Every beat entry, by name."""
    with beat_session(database_url) as session:
        tasks = session.scalars(select(PeriodicTask).order_by(PeriodicTask.name)).all()
        return [_entry(task) for task in tasks]


def _task(session: Session, entry_id: int) -> PeriodicTask:
    task = session.get(PeriodicTask, entry_id, with_for_update=True)
    if task is None:
        raise ScheduleError("no such schedule entry")
    return task


def set_cron(entry_id: int, cron: Cron, database_url: str | None = None) -> Entry:
    """Give a cron entry a new schedule; beat picks it up without a restart."""
    with beat_session(database_url) as session:
        task = _task(session, entry_id)
        model = task.schedule_model
        if not isinstance(model, CrontabSchedule):
            raise ScheduleError(f"{task.name} runs on an interval, not a cron schedule")
        sharers = session.execute(
            select(func.count())
            .select_from(PeriodicTask)
            .where(
                PeriodicTask.discriminator == model.discriminator,
                PeriodicTask.schedule_id == model.id,
            )
        ).scalar_one()
        if sharers > 1:  # edit a copy: the other entries keep their schedule
            model = CrontabSchedule()
            session.add(model)
        for name in (*CRON_FIELDS, "timezone"):
            setattr(model, name, getattr(cron, name))
        session.flush()
        task.schedule_model = model
        PeriodicTaskChanged.update_from_session(session, commit=False)
        session.flush()
        return _entry(task)


def set_enabled(entry_id: int, enabled: bool, database_url: str | None = None) -> Entry:
    """Enable or disable an entry."""
    with beat_session(database_url) as session:
        task = _task(session, entry_id)
        task.enabled = enabled
        PeriodicTaskChanged.update_from_session(session, commit=False)
        session.flush()
        return _entry(task)


def run_now(entry_id: int, celery_app: Celery, database_url: str | None = None) -> str:
    """Send the entry's task to its queue now (by name); return the Celery task id."""
    with beat_session(database_url) as session:
        task = session.get(PeriodicTask, entry_id)
        if task is None:
            raise ScheduleError("no such schedule entry")
        name, queue = task.task, task.queue or JOBS_QUEUE
        args, kwargs = json.loads(task.args or "[]"), json.loads(task.kwargs or "{}")
    result = celery_app.send_task(name, args=args, kwargs=kwargs, queue=queue)
    return str(result.id)
