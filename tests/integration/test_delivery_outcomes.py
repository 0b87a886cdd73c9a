"""Provider answers -> delivery outcomes, through a real worker, RabbitMQ and a fake SendGrid."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from app.config import get_settings
from app.core.clock import utcnow
from app.db import sends
from app.db.models import Delivery, Notification, OptOut
from app.db.session import session_scope
from app.delivery.sending import RELEASE_GRACE_S, release_abandoned
from app.jobs.celery_app import celery_app
from app.jobs.dispatch import task_of_row as email_task
from app.jobs.handoff import CeleryEmailPublisher
from harness.delivery import (
    Worker,
    deliveries,
    dispatch,
    mail_rows,
    purge_emails_queue,
    seed,
    statuses_settled,
)
from harness.fakes.sendgrid import FakeSendGrid
from harness.waiting import wait_for

MAX_ATTEMPTS = 4
RETRY_MAX_S = 0.5


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
        email_retry_max_s=RETRY_MAX_S,
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


def _settle(ids: list[uuid.UUID], timeout: float = 30) -> dict[uuid.UUID, Delivery]:
    return wait_for(
        statuses_settled(ids, {"sent", "failed", "skipped"}),
        timeout=timeout,
        what="deliveries to settle",
    )


def test_rate_limit_storm_then_everything_sent_once_after_the_reset(sendgrid) -> None:
    reset = math.ceil(time.time()) + 2
    sendgrid.rate_limit_until(reset)
    planned = seed(get_settings(), utcnow(), ["mailing"] * 20)
    ids = [d for d, _u, _k in planned]
    dispatch(utcnow())
    found = _settle(ids)
    assert {found[i].status for i in ids} == {"sent"}
    assert sendgrid.accepted_counts() == {str(i): 1 for i in ids}
    assert min(r.at for r in sendgrid.accepted()) >= reset
    limited = [r for r in sendgrid.received if r.status == 429]
    assert {r.delivery_id for r in limited} <= {str(i) for i in ids}
    # A throttling provider is not asked again for each e-mail: once the sends in flight (two
    # waves of the 8 threads) were refused, the worker's circuit parks the rest until a probe
    # (one per 2 s interval) gets through.
    assert len(limited) <= 2 * 8 + 2, len(limited)
    assert all(found[i].attempts - found[i].deferrals == 1 for i in ids)  # none spent


def test_server_error_twice_then_sent_once(sendgrid) -> None:
    sendgrid.script(500, 500)
    [(delivery_id, _u, _k)] = seed(get_settings(), utcnow(), ["likes"])
    dispatch(utcnow())
    found = _settle([delivery_id])
    assert found[delivery_id].status == "sent"
    assert found[delivery_id].attempts == 3 and found[delivery_id].error is None
    assert [r.status for r in sendgrid.received] == [500, 500, 202]


def test_bad_request_fails_at_once_with_the_providers_error(sendgrid) -> None:
    sendgrid.script(400)
    [(delivery_id, _u, _k)] = seed(get_settings(), utcnow(), ["mailing"])
    dispatch(utcnow())
    found = _settle([delivery_id])
    delivery = found[delivery_id]
    assert delivery.status == "failed" and delivery.attempts == 1
    assert delivery.error == "400 from: The from address does not match a verified Sender Identity."
    with session_scope() as session:
        assert session.scalar(select(Notification.status)) == "failed"
    # Proving a retry does not happen needs a wait: four times the longest backoff.
    time.sleep(4 * RETRY_MAX_S)
    assert len(sendgrid.received) == 1


def test_a_provider_outage_longer_than_max_attempts_delays_but_never_fails(sendgrid) -> None:
    sendgrid.script(*[503] * (2 * MAX_ATTEMPTS))
    [(delivery_id, _u, _k)] = seed(get_settings(), utcnow(), ["mailing"])
    dispatch(utcnow())
    delivery = _settle([delivery_id])[delivery_id]
    assert delivery.status == "sent" and delivery.error is None
    assert (delivery.attempts, delivery.deferrals) == (2 * MAX_ATTEMPTS + 1, 2 * MAX_ATTEMPTS)
    assert [r.status for r in sendgrid.received] == [503] * (2 * MAX_ATTEMPTS) + [202]
    assert sendgrid.accepted_counts() == {str(delivery_id): 1}


def test_a_rate_limit_storm_longer_than_max_attempts_still_sends_once(sendgrid) -> None:
    sendgrid.script(*[429] * (3 * MAX_ATTEMPTS))  # 429s without a reset: our own backoff
    [(delivery_id, _u, _k)] = seed(get_settings(), utcnow(), ["welcome"])
    dispatch(utcnow())
    delivery = _settle([delivery_id], timeout=60)[delivery_id]
    assert delivery.status == "sent" and delivery.deferrals == 3 * MAX_ATTEMPTS
    assert sendgrid.accepted_counts() == {str(delivery_id): 1}


def test_duplicate_tasks_send_once_and_likes_that_came_meanwhile_stay(sendgrid, worker) -> None:
    [(delivery_id, _u, _k)] = seed(get_settings(), utcnow(), ["likes"], like_count=3)
    with session_scope() as session:  # two likes arrive after the digest reporting 3 was planned
        session.execute(update(Notification).values(like_count=5))
    done_before = worker.log_text().count(f"delivery {delivery_id} not sent: done")
    dispatch(utcnow())
    task = email_task(mail_rows()[delivery_id])
    CeleryEmailPublisher(celery_app).publish([(task, None)] * 4)
    found = _settle([delivery_id])
    assert found[delivery_id].status == "sent"
    # The four extra copies each end as 'done' (already sent) without reaching the provider.
    wait_for(
        lambda: (
            worker.log_text().count(f"delivery {delivery_id} not sent: done") >= done_before + 4
        ),
        timeout=10,
        what="the duplicate tasks to be consumed",
    )
    assert sendgrid.accepted_counts() == {str(delivery_id): 1}
    assert len(sendgrid.received) == 1
    with session_scope() as session:
        status, likes = session.execute(select(Notification.status, Notification.like_count)).one()
    assert (status, likes) == ("sent", 2)


def test_opt_out_after_planning_skips_the_send(sendgrid) -> None:
    [(delivery_id, user, _k)] = seed(get_settings(), utcnow(), ["mailing"])
    with session_scope() as session:
        session.add(OptOut(user_id=user.user_id, kind="mailing", source="link"))
    dispatch(utcnow())
    delivery = _settle([delivery_id])[delivery_id]
    assert (delivery.status, delivery.error) == ("skipped", "opted out")
    assert sendgrid.received == []


def test_abandoned_sends_are_released_to_the_dispatchers_re_sweep(db: str) -> None:
    settings = get_settings()
    purge_emails_queue(settings)
    now = utcnow()
    (old, _u, _k), (fresh, _u2, _k2) = seed(settings, now, ["mailing", "mailing"])
    with session_scope() as session:
        session.execute(
            update(Delivery).values(status="sending", enqueued_at=now - timedelta(hours=1))
        )
        session.execute(
            update(Delivery)
            .where(Delivery.delivery_id == old)
            .values(updated_at=func.now() - timedelta(minutes=10))
        )
        # A claim younger than the timeout belongs to a live worker: hands off.
        busy = sends.claim(
            session=session,
            delivery_id=fresh,
            notification_id=deliveries()[fresh].notification_id,
            stale_after_s=settings.email_sending_timeout_s,
        )
    assert busy.state == "busy" and 0 < busy.wait_s <= settings.email_sending_timeout_s
    assert release_abandoned(settings) == 1
    rows = deliveries()
    assert (rows[old].status, rows[fresh].status) == ("enqueued", "sending")
    # Not at once: a live worker whose accepted send waits to be recorded gets the grace first.
    assert dispatch(now) == 0
    assert dispatch(now + timedelta(seconds=RELEASE_GRACE_S + 1)) == 1  # then enqueued again


def test_recording_fails_after_the_provider_accepted_and_the_send_is_not_repeated(
    sendgrid, worker
) -> None:
    from app.db.session import dispose_engines
    from harness.outages import postgres_down

    # The provider answers after 1.5 s (within the worker's 2 s timeout); meanwhile PostgreSQL
    # goes away, so the worker cannot record the accepted send at first.
    sendgrid.delay_s = 1.5
    [(delivery_id, _u, _k)] = seed(get_settings(), utcnow(), ["welcome"])
    dispatch(utcnow())
    wait_for(lambda: sendgrid.received, timeout=15, what="the provider call to start")
    with postgres_down(get_settings().database_url, seconds=3):
        pass
    dispose_engines()
    found = _settle([delivery_id])
    assert found[delivery_id].status == "sent" and found[delivery_id].attempts == 1
    assert sendgrid.accepted_counts() == {str(delivery_id): 1}
    assert len(sendgrid.received) == 1  # exactly one provider call
    assert f"delivery {delivery_id} accepted; recording it failed" in worker.log_text()


def test_hostile_provider_answers_end_recorded_and_each_mail_is_sent_once(sendgrid) -> None:
    # A 429 whose reset is no number, a 400 whose error text holds a NUL, and a 202 whose
    # message id is 5,000 characters long: once a NaN countdown, a record PostgreSQL refused
    # (the delivery stuck in 'sending'), and a send repeated about every 15 minutes.
    planned = seed(get_settings(), utcnow(), ["mailing"] * 3)
    throttled, refused, long_id = (d for d, _u, _k in planned)
    sendgrid.script_answers(
        (429, {"errors": [{"message": "slow down"}]}, {"X-RateLimit-Reset": "nan"}),
        (400, {"errors": [{"message": "bad\u0000address", "field": "to"}]}, {}),
        (202, None, {"X-Message-Id": "m" * 5000}),
    )
    dispatch(utcnow())
    found = _settle([throttled, refused, long_id])
    statuses = {i: found[i].status for i in (throttled, refused, long_id)}
    assert (
        list(statuses.values()).count("failed") == 1 and list(statuses.values()).count("sent") == 2
    )
    [failed] = [found[i] for i in statuses if statuses[i] == "failed"]
    assert "bad\ufffdaddress" in (failed.error or "")
    ids = [found[i].provider_message_id for i in statuses if statuses[i] == "sent"]
    assert any(i and len(i) == 200 for i in ids)  # the long id, clipped to its column
    assert set(sendgrid.accepted_counts().values()) == {1} and len(sendgrid.accepted()) == 2


def test_an_accepted_send_whose_record_is_refused_is_recorded_without_the_providers_values(
    db: str,
) -> None:
    # The last line behind the backends' bounds: never left in 'sending' to be sent again.
    from app.db import sends as store
    from app.db.session import connection_scope
    from app.delivery.sending import _record_sent

    [(delivery_id, _u, _k)] = seed(get_settings(), utcnow(), ["welcome"])
    with connection_scope() as connection:
        claim = store.claim(
            session=connection,
            delivery_id=delivery_id,
            notification_id=deliveries()[delivery_id].notification_id,
            stale_after_s=120,
        )
    accepted = {"attempt": claim.attempt, "provider_message_id": "m" * 5000, "backend": "sg"}
    outcome = _record_sent(delivery_id, accepted, utcnow())
    assert outcome.result == "sent"
    row = deliveries()[delivery_id]
    assert row.status == "sent" and row.provider_message_id is None
