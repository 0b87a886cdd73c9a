"""What the portal's dashboard shows, read from where it lives: PostgreSQL, and the slow probes
of Kafka's end offsets, RabbitMQ's queues, the workers' /metrics and the beat schedule.

Whatever a probe cannot reach is reported as such ("unknown", with the error), never as zero:
a dashboard that shows an empty queue because RabbitMQ is down would lie. The shapes are
app/domain/dashboard.py's; the routes that serve them are app/portal/dashboard.py.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from kombu.connection import Connection
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import dashboard as store
from app.db import pacing, planning_shards
from app.db.session import session_scope
from app.db.stream_offsets import OffsetRow
from app.domain.dashboard import hour_floor, hourly_series, partition_lags, window_start
from app.domain.pacing import describe_drain, drain_seconds
from app.jobs.celery_app import EMAILS_QUEUE, JOBS_QUEUE, broker_tls
from app.jobs.schedule import Entry, list_entries, next_run
from app.kafka.admin import end_offsets

PROBE_TIMEOUT_S = 2.0


@dataclass
class Probe:
    """A slow outside reading (Kafka, RabbitMQ, a worker's /metrics), kept for `max_age_s`."""

    read: Callable[[Settings], Any]
    max_age_s: float
    _value: Any = None
    _at: float = field(default=-1e9)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, settings: Settings) -> Any:
        with self._lock:
            if time.monotonic() - self._at >= self.max_age_s:
                try:
                    self._value = {"ok": True, "value": self.read(settings)}
                except Exception as exc:  # noqa: BLE001 - shown on the dashboard, not raised
                    self._value = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
                self._at = time.monotonic()
            return self._value


def read_queue_depths(settings: Settings) -> dict[str, int]:
    """Messages ready in the `emails` and `jobs` queues (a passive declare each)."""
    depths = {}
    with Connection(
        settings.celery_broker_url,
        ssl=broker_tls(settings),
        connect_timeout=PROBE_TIMEOUT_S,
        transport_options={"max_retries": 0},
    ) as conn:
        channel = conn.channel()
        for name in (EMAILS_QUEUE, JOBS_QUEUE):
            depths[name] = channel.queue_declare(queue=name, passive=True).message_count
    return depths


def read_end_offsets(settings: Settings) -> dict[str, int]:
    ends = end_offsets(settings, settings.input_topics, timeout_s=PROBE_TIMEOUT_S)
    return {f"{topic}:{partition}": end for (topic, partition), end in ends.items()}


# notify_circuit_state's values (app/core/circuits.py) and how the dashboard names them.
CIRCUIT_STATES = {0: "closed", 1: "half-open", 2: "open"}


def read_circuits(settings: Settings) -> dict[str, Any]:
    """Each dependency's circuit (the worst state over the processes that have one) and the
    provider failover, as the workers' /metrics report them; each process that does not answer
    is listed."""
    states: dict[str, int] = {}
    parked: dict[str, float] = {}
    failover: list[float] = []
    unreachable = []
    for url in filter(None, (u.strip() for u in settings.dashboard_metrics_urls.split(","))):
        if urlsplit(url).scheme not in ("http", "https"):
            unreachable.append(f"{url}: not an http(s) URL")
            continue
        try:
            with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:  # noqa: S310  # nosec B310  # an http(s) URL of our own setting, checked above
                body = response.read(2_000_000).decode("utf-8", "replace")
        except OSError as exc:
            unreachable.append(f"{url}: {exc}")
            continue
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                name = sample.labels.get("dependency", "")
                if sample.name == "notify_circuit_state" and sample.value in CIRCUIT_STATES:
                    states[name] = max(states.get(name, 0), int(sample.value))
                elif sample.name == "notify_circuit_parked_total":
                    parked[name] = parked.get(name, 0.0) + sample.value
            if family.name == "notify_email_failover":
                failover += [sample.value for sample in family.samples]
    return {
        "dependencies": [
            {"name": name, "state": CIRCUIT_STATES[state], "parked": int(parked.get(name, 0))}
            for name, state in sorted(states.items())
        ],
        "provider": "unknown" if not failover else ("fallback" if max(failover) else "primary"),
        "unreachable": unreachable,
    }


def read_schedule(settings: Settings) -> list[Entry]:
    return list_entries(settings.database_url)


class Dashboard:
    """The figures of one portal process; the slow probes are shared between requests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        age = settings.dashboard_probe_cache_s
        self.queues = Probe(read_queue_depths, age)
        self.ends = Probe(read_end_offsets, age)
        self.circuits = Probe(read_circuits, age)
        # The schedule's reader opens an engine of its own each time: read it as a probe too.
        self.schedule = Probe(read_schedule, age)

    def figures(self, now: datetime) -> dict[str, Any]:
        with session_scope() as session:
            hourly = store.deliveries_by_hour(
                session=session, since=window_start(now), until=hour_floor(now) + timedelta(hours=1)
            )
            dead = store.dead_letters_by_reason(session=session)
            applied = store.applied_offsets(session=session, group_id=self.settings.faust_app_id)
            planning = [_run_json(run) for run in planning_shards.latest_runs(session=session)]
            sending = self._sending(session, now)
        return {
            "generated_at": now.isoformat(),
            "hourly": hourly_series(hourly, now).as_json(),
            "dead_letters": [{"reason": reason, "count": count} for reason, count in dead],
            "lag": self._lag(applied),
            "queues": self.queues.get(self.settings),
            "circuits": self.circuits.get(self.settings),
            "beat": self._beat(now),
            "planning": planning,
            "sending": sending,
        }

    def _sending(self, session: Session, now: datetime) -> dict[str, Any]:
        """The send rate in force, the due mail waiting for a send slot, how far ahead slots
        are handed out, and how long the backlog takes to drain at the rate (None: unpaced)."""
        pace = self.settings.pace
        state = pacing.read_state(session=session, now=now)
        waiting = pacing.due_unslotted(session=session, now=now)
        drain = drain_seconds(pace, state, waiting, now)
        return {
            "rate": pace.describe(now.date()),
            "limited": pace.limited,
            "waiting": waiting,
            "slots_until": state.next_slot.isoformat() if state.next_slot > now else None,
            "drain_s": None if drain is None else round(drain, 1),
            "drain": describe_drain(drain, pace.limited),
        }

    def _lag(self, applied: list[OffsetRow]) -> dict[str, Any]:
        ends = self.ends.get(self.settings)
        if not ends["ok"]:
            return {"ok": False, "error": ends["error"]}
        stored = {(r.topic, r.partition): (r.offset, r.blocked_reason) for r in applied}
        return {"ok": True, "partitions": partition_lags(ends["value"], stored)}

    def _beat(self, now: datetime) -> list[dict[str, Any]]:
        schedule = self.schedule.get(self.settings)
        runs = []
        for entry in schedule["value"] if schedule["ok"] else []:
            upcoming = next_run(entry, now)
            runs.append(
                {
                    "name": entry.name,
                    "enabled": entry.enabled,
                    "next_run": upcoming.isoformat() if upcoming else None,
                    "last_run": entry.last_run_at.isoformat() if entry.last_run_at else None,
                }
            )
        return sorted(runs, key=lambda r: (r["next_run"] is None, r["next_run"] or ""))


def _run_json(run: planning_shards.RunProgress) -> dict[str, Any]:
    """A planning run's progress: its shards done of all, and its rows planned of those expected."""
    return {
        "periodicity": run.periodicity,
        "started": run.started.isoformat(),
        "shards": run.shards,
        "shards_done": run.done,
        "shards_failed": run.failed_shards,
        "expected": run.expected,
        "picked": run.picked,
        "scheduled": run.scheduled,
        "skipped": run.skipped,
        "failed": run.failed,
    }
