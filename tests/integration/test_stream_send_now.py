"""A registration event reaches the `emails` queue through send_now within a second (idle stack)."""

from __future__ import annotations

import logging
import subprocess
import time
import uuid
from typing import Any

from kombu.connection import Connection
from sqlalchemy import text

from app.config import Settings
from app.db.session import session_scope
from harness.kafka import produce
from harness.stream import StreamEnv, event, next_email

log = logging.getLogger(__name__)


def _welcome_id(user_id: str) -> str | None:
    with session_scope() as session:
        found = session.execute(
            text(
                "SELECT notification_id FROM notifications WHERE kind = 'welcome' AND user_id = :u"
            ),
            {"u": user_id},
        ).scalar_one_or_none()
    return str(found) if found else None


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
        assert next_email(conn, timeout=30)["notification_id"] == _welcome_id(warm)

        registration = event(uuid.UUID(measured), None, "https://a/2", "once")
        produce(s.settings, [(s.registered, measured, registration)])
        sent = time.monotonic()
        task = next_email(conn, timeout=10)
        latency = time.monotonic() - sent
    assert task["notification_id"] == _welcome_id(measured)
    assert task["email"] == auth_users[1]["email"] and "https://a/2" in task["body"]
    log.warning("registration -> emails queue: %.0f ms", latency * 1000)
    assert latency < 1.0, f"{latency:.2f} s"
