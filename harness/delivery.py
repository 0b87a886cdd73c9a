"""Deliveries for tests and benches: seed planned ones, run a real e-mail worker, poll the DB."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from sqlalchemy import Row, select

from app.auth.client import AuthUser
from app.config import REPO_ROOT, Settings
from app.db import jobs as store
from app.db.models import Delivery, DeliveryContent
from app.db.session import session_scope
from app.delivery.send_pool import CHUNKS_IN_FLIGHT
from app.domain.vocabulary import TEMPLATE_OF_KIND, Kind
from app.jobs.celery_app import EMAILS_QUEUE, celery_app
from app.jobs.dispatch import dispatch_due
from app.jobs.handoff import CeleryEmailPublisher
from app.jobs.planning import Candidate, plan_delivery
from app.portal.template_files import default_templates
from harness.rows import Spec, insert_notifications
from harness.waiting import wait_for

T = TypeVar("T")
ALLOW_ALL = {"email": True, "likes": True, "mailing": True}


def user(i: int) -> AuthUser:
    return AuthUser(uuid.uuid4(), f"user{i}@example.com", f"User {i}", "UTC", dict(ALLOW_ALL))


def seed(
    settings: Settings, now: datetime, kinds: list[Kind], *, like_count: int = 3
) -> list[tuple[uuid.UUID, AuthUser, Kind]]:
    """Plan one due delivery per kind with the real planner and templates; return their ids."""
    sources = {t.name: t for t in default_templates()}
    users = [user(i) for i in range(len(kinds))]
    specs = [
        Spec(
            u.user_id,
            kind,
            "once" if kind == "welcome" else "daily",
            None if kind == "welcome" else uuid.uuid4(),
            f"Hello <b>{i}</b> & co",
            like_count=like_count if kind == "likes" else 0,
        )
        for i, (u, kind) in enumerate(zip(users, kinds, strict=True))
    ]
    with session_scope() as session:
        ids = insert_notifications(session, specs)
        plans = []
        for nid, spec, u in zip(ids, specs, users, strict=True):
            source = sources[TEMPLATE_OF_KIND[spec.kind]]
            candidate = Candidate(
                nid,
                u.user_id,
                spec.kind,
                spec.periodicity,
                spec.like_count,
                spec.content_id,
                spec.content_value,
                source.subject,
                source.body_html,
                source.body_text,
            )
            plan = plan_delivery(candidate, u, opted_out=frozenset(), now=now, settings=settings)
            assert plan.status == "scheduled", plan
            # Due now, whatever the send hour: these tests are about sending.
            plans.append({**plan.as_row(), "send_at": now - timedelta(seconds=1)})
        store.record_plans(session=session, plans=plans, now=now)
        found = dict(session.execute(select(Delivery.notification_id, Delivery.delivery_id)).all())
    return [(found[nid], u, spec.kind) for nid, spec, u in zip(ids, specs, users, strict=True)]


def dispatch(now: datetime) -> int:
    """Put every due delivery on the real `emails` queue, through the real dispatcher."""
    total = 0
    while n := dispatch_due(publisher=CeleryEmailPublisher(celery_app), now=now):
        total += n
    return total


def purge_emails_queue(settings: Settings) -> None:
    queue = Queue(
        EMAILS_QUEUE, Exchange(EMAILS_QUEUE, "direct", durable=True), EMAILS_QUEUE, durable=True
    )
    with Connection(settings.celery_broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()


def deliveries() -> dict[uuid.UUID, Delivery]:
    with session_scope() as session:
        return {d.delivery_id: d for d in session.scalars(select(Delivery))}


def mail_rows() -> dict[uuid.UUID, Row[*tuple[Any, ...]]]:
    """Every delivery as the dispatcher claims it: what its e-mail task is built from."""
    query = select(
        Delivery.delivery_id,
        Delivery.notification_id,
        Delivery.email,
        Delivery.send_at,
        DeliveryContent.subject,
        DeliveryContent.body_html,
        DeliveryContent.body_text,
        DeliveryContent.headers,
    ).outerjoin(DeliveryContent)
    with session_scope() as session:
        return {row.delivery_id: row for row in session.execute(query)}


def statuses_settled(
    ids: list[uuid.UUID], final: set[str]
) -> Callable[[], dict[uuid.UUID, Delivery] | None]:
    def check() -> dict[uuid.UUID, Delivery] | None:
        rows = deliveries()
        return rows if all(rows[i].status in final for i in ids) else None

    return check


class Worker:
    """A real `celery -A app.celery_app worker -Q emails` subprocess, as `notify email-worker`
    runs it: `concurrency` provider calls out at once, over CHUNKS_IN_FLIGHT chunk threads."""

    def __init__(
        self, settings: Settings, log_path: Path, concurrency: int = 4, **env: Any
    ) -> None:
        self.log_path = log_path
        self.env = {
            **os.environ,
            "DATABASE_URL": settings.database_url,
            "CELERY_BROKER_URL": settings.celery_broker_url,
            "PYTHONUNBUFFERED": "1",
            "EMAIL_SEND_CONCURRENCY": str(concurrency),
            **{k.upper(): str(v) for k, v in env.items()},
        }
        self.argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app.jobs.celery_app",
            "worker",
            "-Q",
            EMAILS_QUEUE,
            "-P",
            "threads",
            "-c",
            str(CHUNKS_IN_FLIGHT),
            "-n",
            f"emails-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Worker:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_tail()
            return b" ready." in self.log_path.read_bytes()[offset:]

        wait_for(ready, timeout=timeout, what="the celery worker to be ready")
        return self

    def kill(self) -> None:
        """SIGKILL the worker (no warm shutdown: unacked tasks go back to the queue)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """SIGSTOP the worker for the block, then SIGCONT: a stalled host, as it sees it."""
        assert self.proc is not None and self.proc.poll() is None
        os.killpg(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self.proc.pid, signal.SIGCONT)

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")


@contextlib.contextmanager
def running_worker(settings: Settings, log_path: Path, **kwargs: Any) -> Iterator[Worker]:
    worker = Worker(settings, log_path, **kwargs).start()
    try:
        yield worker
    finally:
        worker.kill()
