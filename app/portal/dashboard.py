"""The portal's home: the pipeline's health at a glance, refreshed in place.

`GET /admin/api/dashboard` gathers it: mails sent / failed / skipped per hour over the last 24 h
and dead letters by reason (PostgreSQL); the stream's lag per partition (Kafka's end offsets
against the offsets applied to PostgreSQL); the depth of the `emails` and `jobs` queues
(RabbitMQ); every dependency's circuit and the provider failover (the workers' /metrics); the
next beat runs (the schedule in PostgreSQL); the latest planning runs with their shards'
progress (PostgreSQL). The home page draws it with Chart.js, served from the portal itself
(`/admin/assets/`), and fetches it again every few seconds.

Whatever a probe cannot reach is reported as such ("unknown", with the error), never as zero:
a dashboard that shows an empty queue because RabbitMQ is down would lie.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from kombu.connection import Connection
from prometheus_client.parser import text_string_to_metric_families
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.core.clock import utcnow
from app.db import dashboard as store
from app.db import planning_shards
from app.db.session import session_scope
from app.db.stream_offsets import OffsetRow
from app.domain.dashboard import hour_floor, hourly_series, window_start
from app.jobs.celery_app import EMAILS_QUEUE, JOBS_QUEUE, broker_tls
from app.jobs.schedule import Entry, list_entries, next_run
from app.kafka.admin import end_offsets
from app.portal.pages import render_page

log = logging.getLogger(__name__)
router = APIRouter()

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# The files /admin/assets/ serves, by name: our script and the chart library from npm (copied
# to vendor/ by `make install`, so the package carries it).
ASSETS = {
    "dashboard.js": ASSETS_DIR / "dashboard.js",
    "chart.umd.min.js": ASSETS_DIR / "vendor" / "chart.umd.min.js",
}
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
        return {
            "generated_at": now.isoformat(),
            "hourly": hourly_series(hourly, now).as_json(),
            "dead_letters": [{"reason": reason, "count": count} for reason, count in dead],
            "lag": self._lag(applied),
            "queues": self.queues.get(self.settings),
            "circuits": self.circuits.get(self.settings),
            "beat": self._beat(now),
            "planning": planning,
        }

    def _lag(self, applied: list[OffsetRow]) -> dict[str, Any]:
        ends = self.ends.get(self.settings)
        rows = {f"{r.topic}:{r.partition}": r for r in applied}
        if not ends["ok"]:
            return {"ok": False, "error": ends["error"]}
        partitions = []
        for key, end in sorted(ends["value"].items()):
            topic, partition = key.rsplit(":", 1)
            row = rows.get(key)
            done = row.offset if row is not None and row.offset is not None else -1
            partitions.append(
                {
                    "topic": topic,
                    "partition": int(partition),
                    "applied": None if done < 0 else done,
                    "end": end,
                    "lag": max(end - 1 - done, 0),
                    "blocked": row.blocked_reason if row is not None else None,
                }
            )
        return {"ok": True, "partitions": partitions}

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


def dashboard_of(request: Request) -> Dashboard:
    state = request.app.state
    if getattr(state, "dashboard", None) is None:
        state.dashboard = Dashboard(state.settings)
    board: Dashboard = state.dashboard
    return board


async def figures(request: Request) -> dict[str, Any]:
    """The dashboard's figures now (the home page renders them, the API returns them)."""
    board = dashboard_of(request)
    return await run_in_threadpool(board.figures, utcnow())


# HEAD too: left to SQLAdmin's own index, a HEAD would render this template without its figures.
@router.api_route("/admin/", methods=["GET", "HEAD"], include_in_schema=False)
async def home(request: Request) -> Response:
    """The portal's home: the dashboard, drawn from the figures of this moment."""
    return await render_page(request, "sqladmin/index.html", {"figures": await figures(request)})


@router.get("/admin/api/dashboard", include_in_schema=False)
async def dashboard_api(request: Request) -> JSONResponse:
    """The dashboard's figures, for the home page's refresh."""
    return JSONResponse(await figures(request), headers={"Cache-Control": "no-store"})


@router.get("/admin/assets/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """The dashboard's script and the chart library (installed by `make install` with npm)."""
    path = ASSETS.get(name)
    if path is None or not path.is_file():
        raise HTTPException(status_code=404, detail="no such asset")
    return FileResponse(
        path, media_type="text/javascript", headers={"Cache-Control": "max-age=3600"}
    )
