"""Harness for stream tests: private topics and consumer group, Faust workers as OS processes.

No tests here: its fixtures are registered in tests/conftest.py, its helpers imported.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from sqlalchemy import text

from app.auth.dev_server import DevAuthServer
from app.config import REPO_ROOT, Settings
from app.db.session import session_scope
from app.jobs.celery_app import EMAILS_QUEUE, JOBS_QUEUE
from app.kafka.admin import ensure_topics
from app.kafka.connection import client_config
from app.stream.stall import STALL_EXIT_CODE
from harness.waiting import free_port, server_url, wait_for

BIN = Path(sys.executable).parent
log = logging.getLogger(__name__)


@dataclass
class StreamEnv:
    """One test's private topics, consumer group and environment for subprocesses."""

    prefix: str
    settings: Settings
    tmp: Path
    env: dict[str, str]
    workers: list[Worker] = field(default_factory=list)

    @property
    def registered(self) -> str:
        return f"{self.prefix}.user_registered"

    @property
    def liked(self) -> str:
        return f"{self.prefix}.comment_liked"

    @property
    def mailing(self) -> str:
        return f"{self.prefix}.mailing"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead_letter"

    def worker(self, name: str = "w1", port: int | None = None) -> Worker:
        """Start a Faust worker subprocess (its own web port and table directory)."""
        port = port or free_port()
        worker = Worker(name, port, self.tmp / name, self.env, self.tmp / f"{name}.log")
        worker.start()
        self.workers.append(worker)
        return worker


class Worker:
    """`notify worker` as its own process group, restartable after a kill -9."""

    def __init__(self, name: str, port: int, data_dir: Path, env: dict[str, str], log: Path):
        self.name, self.port, self.data_dir, self.env, self.log = name, port, data_dir, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stall_restarts = 0
        self._supervisor: threading.Thread | None = None
        self._closed = False

    def _supervise(self) -> None:
        """Restart the worker when its stall watchdog made it exit, as a supervisor would."""
        while not self._closed:
            proc = self.proc
            if proc is not None and proc.poll() == STALL_EXIT_CODE and proc is self.proc:
                self.stall_restarts += 1
                self.start()
            time.sleep(0.5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, daemon=True)
            self._supervisor.start()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    str(BIN / "notify"),
                    "worker",
                    "--web-port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--loglevel",
                    "info",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        self.starts += 1

    def kill9(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        self._closed = True
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.load(response)

    def partitions(self) -> list[int] | None:
        """The likes partitions this worker owns, or None while its web server is not up."""
        assert self.alive(), f"{self.name} exited:\n{self.log_text()[-3000:]}"
        try:
            partitions: list[int] = self.get("/likes/?local=1")["partitions"]
            return partitions
        except OSError:
            return None

    def wait_ready(self, timeout: float = 90) -> None:
        """Wait until the worker has joined the group and owns partitions."""
        wait_for(self.partitions, timeout=timeout, every=0.5, what=f"{self.name} ready")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def diagnosis(self, tail: int = 60) -> str:
        """Warnings and errors of every generation, then the log's last lines."""
        lines = self.log_text().splitlines() if self.log.exists() else []
        alarming = [line for line in lines if re.search(r"WARNING|ERROR|CRITICAL|Traceback", line)]
        return "\n".join(
            [
                f"--- {self.name}: {self.starts} starts, {self.stall_restarts} after a stall ---",
                *alarming[-80:],
                f"--- {self.name}: last {tail} lines ---",
                *lines[-tail:],
            ]
        )


@pytest.fixture
def stream_env(db: str, settings: Settings, tmp_path: Path) -> Iterator[StreamEnv]:
    """Private topics (4 partitions) and Faust app id for one test; workers killed at the end."""
    prefix = f"stream-test-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CELERY_BROKER_URL": settings.celery_broker_url,
        "TOPIC_USER_REGISTERED": f"{prefix}.user_registered",
        "TOPIC_COMMENT_LIKED": f"{prefix}.comment_liked",
        "TOPIC_MAILING": f"{prefix}.mailing",
        "TOPIC_DEAD_LETTER": f"{prefix}.dead_letter",
        "TOPIC_PARTITIONS": "4",
        "FAUST_APP_ID": prefix,
        "FAUST_STORE": "rocksdb://",
        "FAUST_SESSION_TIMEOUT_S": "6",
        "STREAM_STALL_TIMEOUT_S": "15",
        "PYTHONUNBUFFERED": "1",
    }
    stream = StreamEnv(prefix, settings, tmp_path, env)
    names = [stream.registered, stream.liked, stream.mailing, stream.dead_letter]
    ensure_topics(settings, names, partitions=4)
    try:
        yield stream
    finally:
        for worker in stream.workers:
            worker.stop()
            # Captured: pytest shows it only when the test failed.
            log.warning("%s", worker.diagnosis())
        admin = AdminClient(client_config(settings))
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if ours:
            admin.delete_topics(ours)


def event(user_id: uuid.UUID, content_id: uuid.UUID | None, value: str, periodicity: str) -> bytes:
    return json.dumps(
        {
            "user_id": str(user_id),
            "periodicity": periodicity,
            "content_id": str(content_id) if content_id else "",
            "content_value": value,
        }
    ).encode()


def like_counts_in_db() -> dict[tuple[uuid.UUID, uuid.UUID], int]:
    with session_scope() as session:
        rows = session.execute(
            text("SELECT user_id, content_id, like_count FROM notifications WHERE kind = 'likes'")
        )
        return {(r.user_id, r.content_id): r.like_count for r in rows}


def total_likes_in_db() -> int:
    with session_scope() as session:
        total: int = session.execute(
            text("SELECT coalesce(sum(like_count), 0) FROM notifications WHERE kind = 'likes'")
        ).scalar_one()
        return total


def email_queue(name: str) -> Queue:
    # Declared exactly as app.celery_app declares it.
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


@pytest.fixture
def jobs_worker(
    stream_env: StreamEnv, auth_server: DevAuthServer, settings: Settings
) -> Iterator[subprocess.Popen[bytes]]:
    """A Celery jobs worker subprocess talking to the dev Auth server, on empty queues."""
    with Connection(settings.celery_broker_url) as conn:
        for name in (JOBS_QUEUE, EMAILS_QUEUE):
            email_queue(name)(conn.default_channel).declare()
            email_queue(name)(conn.default_channel).purge()
    log = stream_env.tmp / "celery.log"
    env = {**stream_env.env, "AUTH_API_URL": server_url(auth_server)}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "app.jobs.celery_app",
                "worker",
                "-Q",
                JOBS_QUEUE,
                "-P",
                "threads",
                "-c",
                "4",
                "-n",
                f"{stream_env.prefix}@%h",
                "--loglevel",
                "info",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: "ready." in log.read_text(errors="replace"),
            timeout=60,
            what="celery jobs worker",
        )
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def next_email(conn: Connection, timeout: float) -> dict[str, Any]:
    return next_emails(conn, 1, timeout)[0]


def next_emails(conn: Connection, count: int, timeout: float) -> list[dict[str, Any]]:
    """The next `count` e-mail tasks on the queue, from as many chunks as they come in, read
    with one consumer (a consumer per message would leave the messages the first one
    prefetched unacked on the channel)."""
    tasks: list[dict[str, Any]] = []
    with conn.SimpleQueue(email_queue(EMAILS_QUEUE)) as queue:
        while len(tasks) < count:
            message = queue.get(block=True, timeout=timeout)
            message.ack()
            tasks.extend(message.payload[0][0])  # Celery protocol 2: [[chunk], kwargs, embed]
    return tasks


def metrics_of(worker: Any) -> dict[str, float]:
    """A worker's `/metrics` page as {sample with labels: value}."""
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if line and not line.startswith("#")
    }
