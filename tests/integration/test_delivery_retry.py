"""Operators retry failed deliveries once the cause is fixed: CLI and portal, through a real
jobs worker (Celery on RabbitMQ), the dev Auth server over HTTP and PostgreSQL."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from kombu.connection import Connection
from sqlalchemy import text

from app.auth.dev_server import DevAuthServer
from app.db.session import session_scope
from app.jobs import digests
from app.portal.template_files import load_default_templates
from harness.auth import client_for
from harness.portal import form_token
from harness.rows import Spec, insert_notifications
from harness.stream import BIN, StreamEnv, next_emails

BROKEN = "<p>{{ 1 // 0 }}</p>"


def _failed_welcomes(
    users: list[dict[str, Any]], auth_server: DevAuthServer, settings: Any
) -> list[uuid.UUID]:
    with session_scope() as session:
        ids = insert_notifications(
            session,
            [Spec(uuid.UUID(u["user_id"]), "welcome", "once", None, "https://a/c") for u in users],
        )
        session.execute(
            text("UPDATE templates SET body_html = :b WHERE name = 'welcome'"), {"b": BROKEN}
        )
    client = client_for(auth_server, settings)
    try:
        statuses = digests.plan_once(ids, auth=client, settings=settings, now=datetime.now(UTC))
    finally:
        client.close()
    assert set(statuses.values()) == {"failed"}
    return ids


def _restore_welcome() -> None:
    with session_scope() as session:
        load_default_templates(session=session, names=["welcome"])


def test_failed_deliveries_are_planned_again_and_sent_after_the_fix(
    stream_env: StreamEnv,
    jobs_worker: subprocess.Popen[bytes],
    auth_server: DevAuthServer,
    auth_users: list[dict[str, Any]],
) -> None:
    s = stream_env
    _failed_welcomes(auth_users[:3], auth_server, s.settings)
    _restore_welcome()
    done = subprocess.run(
        [str(BIN / "notify"), "deliveries", "retry", "--error-contains", "ZeroDivisionError"],
        env=s.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "retry requested for 3 deliveries" in done.stdout, done.stderr
    with Connection(s.settings.celery_broker_url) as conn:
        tasks = next_emails(conn, 3, timeout=30)
    assert {t["email"] for t in tasks} == {u["email"] for u in auth_users[:3]}
    assert all("https://a/c" in t["body"] for t in tasks)
    again = subprocess.run(
        [str(BIN / "notify"), "deliveries", "retry"],
        env=s.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "retry requested for 0 deliveries" in again.stdout


def test_the_portal_retries_a_selection_through_a_confirmed_post(
    client: TestClient,
    auth_server: DevAuthServer,
    auth_users: list[dict[str, Any]],
    portal_settings: Any,
) -> None:
    _failed_welcomes(auth_users[:2], auth_server, portal_settings)
    with session_scope() as session:
        ids = [str(i) for i in session.scalars(text("SELECT delivery_id FROM deliveries"))]
    page = client.get(
        "/admin/delivery/action/retry", params={"pks": ",".join(ids)}, follow_redirects=True
    )
    assert page.status_code == 200 and "Retry 2 deliveries" in page.text
    assert client.post("/admin/deliveries/retry", data={"ids": ",".join(ids)}).status_code == 403
    token = form_token(client, f"/admin/deliveries/retry?ids={ids[0]}")
    done = client.post("/admin/deliveries/retry", data={"ids": ",".join(ids), "csrf_token": token})
    assert "Asked the jobs worker to plan 2 deliveries again" in done.text
    with session_scope() as session:
        statuses = set(session.scalars(text("SELECT status FROM notifications")))
        errors = list(session.scalars(text("SELECT error FROM deliveries")))
    assert statuses == {"pending"} and all(e.startswith("retry requested") for e in errors)
