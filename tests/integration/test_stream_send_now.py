"""A registration event reaches the `emails` queue through send_now within a second (idle stack)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Exchange, Queue
from sqlalchemy import text

from app.celery_app import EMAILS_QUEUE, JOBS_QUEUE
from app.config import REPO_ROOT, Settings
from app.db.session import session_scope
from app.devauth import DevAuthServer
from tests.integration.test_stream_harness import (
    BIN,
    StreamEnv,
    event,
    produce,
    stream_env,
    wait_for,
)

__all__ = ["stream_env"]  # the fixture, imported for pytest
log = logging.getLogger(__name__)


def _queue(name: str) -> Queue:
    # Declared exactly as app.celery_app declares it.
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


@pytest.fixture
def jobs_worker(
    stream_env: StreamEnv, auth_server: DevAuthServer, settings: Settings
) -> Iterator[subprocess.Popen[bytes]]:
    """A Celery jobs worker subprocess talking to the dev Auth server, on empty queues."""
    with Connection(settings.celery_broker_url) as conn:
        for name in (JOBS_QUEUE, EMAILS_QUEUE):
            _queue(name)(conn.default_channel).declare()
            _queue(name)(conn.default_channel).purge()
    host, port = auth_server.server_address[:2]
    log = stream_env.tmp / "celery.log"
    env = {**stream_env.env, "AUTH_API_URL": f"http://{host}:{port}"}
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(BIN / "celery"), "-A", "app.celery_app", "worker", "-Q", JOBS_QUEUE, "-P",
             "threads", "-c", "4", "-n", f"{stream_env.prefix}@%h", "--loglevel", "info"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: "ready." in log.read_text(errors="replace"), timeout=60,
                   what="celery jobs worker")  # fmt: skip
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _welcome_id(user_id: str) -> str | None:
    with session_scope() as session:
        found = session.execute(
            text(
                "SELECT notification_id FROM notifications WHERE kind = 'welcome' AND user_id = :u"
            ),
            {"u": user_id},
        ).scalar_one_or_none()
    return str(found) if found else None


def _next_email(conn: Connection, timeout: float) -> dict[str, Any]:
    with conn.SimpleQueue(_queue(EMAILS_QUEUE)) as queue:
        message = queue.get(block=True, timeout=timeout)
        message.ack()
    return message.payload[0][0]  # Celery protocol 2: [args, kwargs, embed]


def test_registration_reaches_emails_queue_within_a_second(
    stream_env: StreamEnv,
    jobs_worker: subprocess.Popen[bytes],
    auth_users: list[dict[str, Any]],
    settings: Settings,
) -> None:
    s = stream_env
    worker = s.worker()
    worker.wait_ready()
    warm, measured = auth_users[0]["user_id"], auth_users[1]["user_id"]
    with Connection(settings.celery_broker_url) as conn:
        # Warm-up: first connections (Kafka, PostgreSQL, RabbitMQ, Auth) are not the idle case.
        produce(
            s.settings, [(s.registered, warm, event(uuid.UUID(warm), None, "https://a/1", "once"))]
        )
        assert _next_email(conn, timeout=30)["notification_id"] == _welcome_id(warm)

        registration = event(uuid.UUID(measured), None, "https://a/2", "once")
        produce(s.settings, [(s.registered, measured, registration)])
        sent = time.monotonic()
        task = _next_email(conn, timeout=10)
        latency = time.monotonic() - sent
    assert task["notification_id"] == _welcome_id(measured)
    assert task["email"] == auth_users[1]["email"] and "https://a/2" in task["body"]
    log.warning("registration -> emails queue: %.0f ms", latency * 1000)
    assert latency < 1.0, f"{latency:.2f} s"
