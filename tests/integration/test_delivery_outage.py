"""PostgreSQL away longer than EMAIL_SENDING_TIMEOUT_S while mails are in the provider call.

Each of them is accepted during the outage and cannot be recorded until PostgreSQL is back; the
dispatcher's sweep then finds their claims stale. The record must still win: every mail sent
once and recorded, none released and sent a second time.
"""

from __future__ import annotations

import logging
import os
import signal
import time

import pytest

from app.config import Settings
from app.core.clock import utcnow
from app.db.session import dispose_engines
from app.tasks import dispatch as dispatch_tick
from harness.delivery import (
    Worker,
    deliveries,
    dispatch,
    purge_emails_queue,
    seed,
    statuses_settled,
)
from harness.fakes.sendgrid import FakeSendGrid
from harness.outages import postgres_down
from harness.waiting import wait_for

log = logging.getLogger(__name__)

IN_FLIGHT = 8
OUTAGE_S = 150.0

pytestmark = pytest.mark.integration


def test_a_150_s_postgres_outage_during_sends_loses_and_repeats_nothing(
    db: str, settings: Settings, tmp_path
) -> None:
    assert settings.email_sending_timeout_s < OUTAGE_S  # the claims go stale during the outage
    purge_emails_queue(settings)
    fake = FakeSendGrid().start()
    fake.delay_s = 4.0  # every send is still in the provider call when PostgreSQL stops
    worker = Worker(
        settings,
        tmp_path / "worker.log",
        concurrency=IN_FLIGHT,
        email_backend="sendgrid",
        sendgrid_host=fake.url,
        sendgrid_api_key=fake.api_key,
        email_timeout_s=10,
    )
    try:
        ids = [d for d, _u, _k in seed(settings, utcnow(), ["mailing", "likes"] * (IN_FLIGHT // 2))]
        assert dispatch(utcnow()) == IN_FLIGHT
        worker.start()
        wait_for(
            lambda: all(d.status == "sending" for d in deliveries().values()),
            timeout=30,
            what="every delivery claimed",
        )
        with postgres_down(settings.database_url, seconds=OUTAGE_S):
            wait_for(lambda: len(fake.accepted()) == IN_FLIGHT, timeout=30, what="all accepted")
            time.sleep(fake.delay_s + 1)  # every answer is in: the worker retries the records
            # Held still until the dispatcher has ticked, so the sweep surely comes first.
            assert worker.proc is not None
            os.killpg(worker.proc.pid, signal.SIGSTOP)
        dispose_engines()  # this process's pooled connections died with the server
        back = time.monotonic()
        try:
            # The dispatcher's first tick after the outage: every claim is stale by now
            # (150 s > EMAIL_SENDING_TIMEOUT_S), and released before the worker records it.
            dispatch_tick()
            assert {d.status for d in deliveries().values()} == {"enqueued"}
        finally:
            os.killpg(worker.proc.pid, signal.SIGCONT)
        found = wait_for(
            statuses_settled(ids, {"sent", "failed"}),
            timeout=60,
            every=1.0,
            what="every accepted send recorded",
        )
        recorded_after = time.monotonic() - back
        for _ in range(3):  # later ticks find nothing to release or re-send
            dispatch_tick()
            time.sleep(1)
    finally:
        worker.kill()
        fake.stop()
    counts = fake.accepted_counts()
    assert {found[i].status for i in ids} == {"sent"}
    assert set(counts) == {str(i) for i in ids} and set(counts.values()) == {1}
    assert all(found[i].provider_message_id for i in ids)
    log.warning("recorded %.1f s after PostgreSQL came back", recorded_after)


def test_a_chunk_whose_next_wave_meets_the_outage_records_its_accepted_sends_once(
    db: str, settings: Settings, tmp_path
) -> None:
    """Three waves of 4: the first two are claimed, then PostgreSQL stops while they are in the
    provider call, so the third wave's claim fails. The accepted sends of the first two must
    still be recorded, not sent again once their claims are stale."""
    purge_emails_queue(settings)
    fake = FakeSendGrid().start()
    fake.delay_s = 2.0  # the first waves are in the provider call when PostgreSQL stops
    worker = Worker(
        settings,
        tmp_path / "worker.log",
        concurrency=4,
        email_backend="sendgrid",
        sendgrid_host=fake.url,
        sendgrid_api_key=fake.api_key,
        email_timeout_s=4,
        email_sending_timeout_s=9,  # stale long before PostgreSQL is back
    )
    try:
        ids = [d for d, _u, _k in seed(settings, utcnow(), ["mailing", "likes"] * 6)]
        assert dispatch(utcnow()) == 12  # one chunk
        worker.start()
        wait_for(
            lambda: sum(d.status == "sending" for d in deliveries().values()) == 8,
            timeout=30,
            what="two waves claimed",
        )
        with postgres_down(settings.database_url, seconds=20):
            wait_for(lambda: len(fake.accepted()) == 8, timeout=30, what="two waves accepted")
        dispose_engines()  # this process's pooled connections died with the server
        found = wait_for(
            statuses_settled(ids, {"sent", "failed"}),
            timeout=90,
            every=1.0,
            what="every delivery sent and recorded",
        )
    finally:
        worker.kill()
        fake.stop()
    counts = fake.accepted_counts()
    assert {found[i].status for i in ids} == {"sent"}
    assert set(counts) == {str(i) for i in ids} and set(counts.values()) == {1}
