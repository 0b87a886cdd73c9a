"""The whole pipeline as separate OS processes, as in production, on private topics.

Each of our processes (Faust worker, Celery jobs and e-mail workers, beat, dev Auth server) runs
with the same environment a deployment would give it; the outside systems are the dev Auth server
and a fake SendGrid speaking the v3 API over HTTP.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from app.config import REPO_ROOT, Settings
from app.delivery.send_pool import CHUNKS_IN_FLIGHT
from app.kafka.admin import ensure_topics
from harness.secured import kafka_env, tls_env
from harness.waiting import free_port, wait_for

BIN = Path(sys.executable).parent
T = TypeVar("T")


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@dataclass
class Process:
    """One long-running process in its own process group, with its log and a readiness check."""

    name: str
    argv: list[str]
    log_path: Path
    ready: Callable[[Process], bool]
    env: dict[str, str] = field(default_factory=dict)  # on top of the pipeline's environment
    proc: subprocess.Popen[bytes] | None = None
    _log_offset: int = 0

    def start(self, env: dict[str, str], timeout: float = 90) -> Process:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env={**env, **self.env},
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, timeout=timeout, what=f"{self.name} to be ready", every=0.3)
        return self

    def _ready(self) -> bool:
        assert self.alive(), f"{self.name} exited:\n{self.log_tail()}"
        return self.ready(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def new_log(self) -> str:
        """What the process logged since its last start."""
        return self.log_path.read_bytes()[self._log_offset :].decode("utf-8", "replace")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text("utf-8", "replace")[-chars:]

    def stop(self) -> None:
        """SIGTERM (warm shutdown), SIGKILL if it does not go within 20 s."""
        if not self.alive():
            return
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """A Prometheus endpoint's samples: {(name, labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def _logged(marker: str) -> Callable[[Process], bool]:
    return lambda process: marker in process.new_log()


def _answers(url: str) -> Callable[[Process], bool]:
    def check(_process: Process) -> bool:
        try:
            http_json(url)
            return True
        except OSError:
            return False

    return check


def _owns_partitions(url: str) -> Callable[[Process], bool]:
    def check(_process: Process) -> bool:
        try:
            return bool(http_json(f"{url}/likes/?local=1")["partitions"])
        except (OSError, KeyError, ValueError):
            return False

    return check


@dataclass
class Pipeline:
    """Every process of the service, configured like a deployment, on private topics."""

    settings: Settings
    tmp: Path
    users_file: Path
    sendgrid_url: str
    sendgrid_key: str
    prefix: str = field(default_factory=lambda: f"e2e{uuid.uuid4().hex[:8]}")
    clock_offset_s: float = 0.0
    email_backend: str = "sendgrid"
    processes: dict[str, Process] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)  # settings of one test
    email_processes: int = 1  # e-mail worker processes: "emails", then "emails-2", ...

    def __post_init__(self) -> None:
        self.auth_port, self.web_port = free_port(), free_port()
        # Where the Celery processes serve /metrics and /healthz.
        names = ("jobs", "beat", *self.email_process_names)
        self.metrics_ports = {name: free_port() for name in names}
        self.outbox = self.tmp / "outbox"

    @property
    def email_process_names(self) -> list[str]:
        return ["emails", *(f"emails-{i}" for i in range(2, self.email_processes + 1))]

    @property
    def topics(self) -> dict[str, str]:
        kinds = ("user_registered", "comment_liked", "mailing", "dead_letter")
        return {kind: f"{self.prefix}.{kind}" for kind in kinds}

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": self.settings.database_url,
            "CELERY_BROKER_URL": self.settings.celery_broker_url,
            **kafka_env(self.settings),
            **tls_env(self.settings),
            "AUTH_API_URL": f"http://127.0.0.1:{self.auth_port}",
            "EMAIL_BACKEND": self.email_backend,
            "SENDGRID_HOST": self.sendgrid_url,
            "SENDGRID_API_KEY": self.sendgrid_key,
            "OUTBOX_DIR": str(self.outbox),
            "CLOCK_OFFSET_S": str(self.clock_offset_s),
            **{f"TOPIC_{kind.upper()}": name for kind, name in self.topics.items()},
            "FAUST_APP_ID": self.prefix,
            "FAUST_DATA_DIR": str(self.tmp / "faust"),
            "FAUST_SESSION_TIMEOUT_S": "6",
            "LOG_FORMAT": "json",
            **self.extra_env,
        }
        # A secret handed over as a file (NAME_FILE) replaces the variable itself.
        return {k: v for k, v in env.items() if f"{k}_FILE" not in self.extra_env}

    def _define(self) -> list[Process]:
        log = self.tmp
        celery = [sys.executable, "-m", "celery", "-A", "app.jobs.celery_app"]
        quiet = ["--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel=INFO"]
        worker_ready = _logged(" ready.")
        metrics = {name: {"METRICS_PORT": str(port)} for name, port in self.metrics_ports.items()}
        return [
            Process(
                "auth",
                [
                    str(BIN / "notify"),
                    "dev-auth",
                    "--users-file",
                    str(self.users_file),
                    "--port",
                    str(self.auth_port),
                ],
                log / "auth.log",
                _answers(f"http://127.0.0.1:{self.auth_port}/health"),
            ),
            Process(
                "stream",
                [str(BIN / "notify"), "worker", "--web-port", str(self.web_port)],
                log / "stream.log",
                _owns_partitions(f"http://127.0.0.1:{self.web_port}"),
            ),
            Process(
                "jobs",
                [
                    *celery,
                    "worker",
                    "-Q",
                    "jobs",
                    "-P",
                    "threads",
                    "-c",
                    "4",
                    "-n",
                    f"{self.prefix}-jobs@%h",
                    *quiet,
                ],
                log / "jobs.log",
                worker_ready,
                metrics["jobs"],
            ),
            *(
                Process(
                    name,
                    [
                        *celery,
                        "worker",
                        "-Q",
                        "emails",
                        "-P",
                        "threads",
                        "-c",
                        # as the Procfile runs it (notify email-worker --concurrency 16: 16
                        # sends over CHUNKS_IN_FLIGHT chunk threads, EMAIL_SEND_CONCURRENCY)
                        str(CHUNKS_IN_FLIGHT),
                        "-n",
                        f"{self.prefix}-{name}@%h",
                        *quiet,
                    ],
                    log / f"{name}.log",
                    worker_ready,
                    metrics[name],
                )
                for name in self.email_process_names
            ),
            Process(
                "beat",
                [*celery, "beat", "--loglevel=INFO", "--pidfile=", f"--schedule={log / 'beat'}"],
                log / "beat.log",
                _logged("beat: Starting"),
                metrics["beat"],
            ),
        ]

    def start(self) -> Pipeline:
        ensure_topics(self.settings, self.topics.values(), partitions=4)
        for process in self._define():
            self.processes[process.name] = process  # known before it starts: stop() finds it
            process.start(self.env)
        return self

    def restart(self, *names: str) -> None:
        """Restart these processes with the current environment (e.g. a new clock offset)."""
        for name in names:
            self.processes[name].stop()
        for name in names:
            self.processes[name].start(self.env)

    def set_local_clock(self, local: dtime, tz: ZoneInfo, *names: str) -> datetime:
        """Shift the service clock so it is now `local` o'clock in `tz` (the next such moment)."""
        local_now = self.now().astimezone(tz)  # the clock only moves forward
        target = datetime.combine(local_now.date(), local, tzinfo=tz)
        if target <= local_now:
            target += timedelta(days=1)
        self.clock_offset_s = (target - datetime.now(UTC)).total_seconds()
        self.restart(*names)
        return target

    def now(self) -> datetime:
        """The service's (shifted) clock."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_offset_s)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.log_tail(1500)}" for p in self.processes.values())


def reset_state(settings: Settings) -> None:
    """An empty database at head with the default templates and schedule, and empty queues."""
    from kombu.connection import Connection
    from sqlalchemy import text

    from app.db import migrate
    from app.db.session import session_scope
    from app.jobs.celery_app import broker_tls, celery_app
    from app.jobs.schedule import seed_schedule
    from app.portal.template_files import load_default_templates

    migrate.upgrade("heads", settings.database_url)
    with session_scope() as session:
        tables = (
            "deliveries, notifications, messages, campaign_recipients, campaigns, opt_outs,"
            " stream_offsets, dead_letters, received_events, preferences, preference_changes,"
            " suppressions, soft_bounces, send_pacing"
        )
        session.execute(text(f"TRUNCATE {tables} CASCADE"))
        load_default_templates(session=session)
    seed_schedule()
    with Connection(settings.celery_broker_url, ssl=broker_tls(settings)) as conn:
        for queue in celery_app.conf.task_queues:
            bound = queue(conn.default_channel)
            bound.declare()
            bound.purge()
