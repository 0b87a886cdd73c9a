"""Chunks of e-mail tasks through a real worker, RabbitMQ and a fake SendGrid: every delivery of
a chunk keeps its own outcome, and a chunk never waits for its slowest mail."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from app.config import get_settings
from app.core.clock import utcnow
from app.db.models import Delivery, OptOut
from app.db.session import session_scope
from app.jobs.celery_app import celery_app
from app.jobs.dispatch import task_of_row as email_task
from app.jobs.handoff import CeleryEmailPublisher
from harness.delivery import Worker, dispatch, mail_rows, purge_emails_queue, seed, statuses_settled
from harness.fakes.sendgrid import FakeSendGrid
from harness.waiting import wait_for

pytestmark = pytest.mark.integration

MAX_ATTEMPTS = 4


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSendGrid]:
    server = FakeSendGrid().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def worker(fake: FakeSendGrid, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    settings = get_settings()
    purge_emails_queue(settings)
    log = Path(tmp_path_factory.mktemp("worker")) / "worker.log"
    running = Worker(
        settings,
        log,
        concurrency=8,
        email_backend="sendgrid",
        sendgrid_host=fake.url,
        sendgrid_api_key=fake.api_key,
        email_max_attempts=MAX_ATTEMPTS,
        email_retry_base_s=0.1,
        email_retry_max_s=0.5,
        email_timeout_s=2,
        email_sending_timeout_s=5,
    ).start()
    yield running
    running.kill()


@pytest.fixture
def sendgrid(db: str, fake: FakeSendGrid, worker: Worker) -> FakeSendGrid:
    purge_emails_queue(get_settings())
    fake.reset()
    return fake


def _sent_at(delivery: Delivery) -> datetime:
    assert delivery.sent_at is not None, delivery.status
    return delivery.sent_at


def _settle(ids: list[uuid.UUID], timeout: float = 30) -> dict[uuid.UUID, Delivery]:
    return wait_for(
        statuses_settled(ids, {"sent", "failed", "skipped"}),
        timeout=timeout,
        what="deliveries to settle",
    )


def test_one_chunk_with_a_429_a_5xx_a_refusal_and_an_opt_out_among_successes(sendgrid) -> None:
    planned = seed(get_settings(), utcnow(), ["mailing"] * 10)
    ids = [d for d, _u, _k in planned]
    throttled, unavailable, refused, opted_out = ids[:4]
    users = {d: u for d, u, _k in planned}
    reset = int(time.time()) + 3  # the throttled one waits for it; the chunk does not
    sendgrid.script_answers_for(
        users[throttled].email,
        (429, {"errors": [{"message": "slow"}]}, {"X-RateLimit-Reset": str(reset)}),
    )
    sendgrid.script_answers_for(
        users[unavailable].email, (503, {"errors": [{"message": "down"}]}, {})
    )
    sendgrid.script_answers_for(
        users[refused].email, (400, {"errors": [{"message": "bad", "field": "to"}]}, {})
    )
    with session_scope() as session:  # the user leaves after planning, before the send
        session.execute(
            insert(OptOut).values(user_id=users[opted_out].user_id, kind="mailing", source="test")
        )
    assert dispatch(utcnow()) == 10  # one chunk: every one of them due in the same second
    found = _settle(ids)

    successes = ids[4:]
    assert {found[i].status for i in successes} == {"sent"}
    assert all(found[i].attempts == 1 for i in successes)
    assert (found[throttled].status, found[throttled].attempts, found[throttled].deferrals) == (
        "sent",
        2,
        1,
    )
    assert (found[unavailable].status, found[unavailable].deferrals) == ("sent", 1)
    assert (found[refused].status, found[refused].attempts) == ("failed", 1)
    assert "bad" in (found[refused].error or "")
    assert found[opted_out].status == "skipped"
    counts = sendgrid.accepted_counts()
    assert set(counts) == {str(i) for i in [throttled, unavailable, *successes]}
    assert set(counts.values()) == {1}
    # The successes were recorded before the throttled one's reset: it went back on its own.
    assert max(_sent_at(found[i]) for i in successes) < _sent_at(found[throttled])
    assert max(_sent_at(found[i]) for i in successes).timestamp() < reset


def test_a_redelivered_chunk_sends_only_what_was_not_sent(sendgrid, worker) -> None:
    planned = seed(get_settings(), utcnow(), ["likes", "mailing"] * 3)
    first, fresh = [d for d, _u, _k in planned[:5]], planned[5][0]
    with session_scope() as session:  # only the first five are dispatched, and sent
        session.execute(
            update(Delivery)
            .where(Delivery.delivery_id == fresh)
            .values(send_at=utcnow() + timedelta(hours=1))
        )
    assert dispatch(utcnow()) == 5
    _settle(first)
    rows = mail_rows()
    chunk = [email_task(rows[i]) for i in [*first, fresh]]
    # The chunk comes again (a redelivery after a lost ack), twice, with the new one in it.
    CeleryEmailPublisher(celery_app).publish_chunks([(chunk, None), (chunk, None)])
    found = _settle([*first, fresh])
    assert {found[i].status for i in [*first, fresh]} == {"sent"}
    assert sendgrid.accepted_counts() == {str(i): 1 for i in [*first, fresh]}
    assert found[fresh].attempts == 1
