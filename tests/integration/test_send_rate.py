"""The global send rate: the dispatcher hands out send slots, the e-mail workers only send.

Two real e-mail workers send 1,000 due mails through a fake SendGrid with EMAIL_MAX_RATE=50.
Nothing is shared between the workers: the dispatcher gives each e-mail a slot 20 ms after the
last, in chunks due within the same tenth of a second, and the provider must never see more than
the rate (±10 %) in any second. A worker killed mid-drain hands RabbitMQ a minute of unacked
mail for the other one; what comes to it past its slot goes back for a new slot, not out in a
burst.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Sequence
from datetime import timedelta

import pytest
from sqlalchemy import update

from app.config import Settings
from app.core.clock import utcnow
from app.db.dispatch import MAX_LATE_RESLOTS
from app.db.models import Delivery
from app.db.session import session_scope
from app.delivery import paced, sending
from app.domain.pacing import Pace
from app.jobs.celery_app import celery_app
from app.jobs.dispatch import dispatch_due
from app.jobs.handoff import CeleryEmailPublisher
from harness.delivery import Worker, deliveries, purge_emails_queue, seed
from harness.fakes.sendgrid import FakeSendGrid
from harness.waiting import wait_for

pytestmark = pytest.mark.integration

RATE = 50.0
MAILS = 1000
# The provider may see 10 % more than the rate in a second: a chunk is a tenth of a second's
# mail sent side by side, and a worker's start of it is as punctual as its thread is.
MOST_IN_A_SECOND = int(RATE * 1.1)


def _most_in_one_second(times: Sequence[float]) -> int:
    ordered = sorted(times)
    return max(bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered))


def _dispatch_as_beat_would(settings: Settings, until_sent: int, fake: FakeSendGrid) -> None:
    """The dispatch task's work every second until the provider has every mail: due mail put
    on the queue at the rate, and sends abandoned by a dead worker handed back."""
    publisher = CeleryEmailPublisher(celery_app)
    # The workers' own timeouts: a dead worker's claims are given up after 5 s, not 2 min.
    settings = settings.model_copy(update={"email_timeout_s": 2.0, "email_sending_timeout_s": 5.0})
    deadline = time.monotonic() + 120
    while len(fake.accepted()) < until_sent:
        assert time.monotonic() < deadline, f"{len(fake.accepted())} of {until_sent} sent"
        sending.release_abandoned(settings)
        dispatch_due(publisher=publisher, now=utcnow(), pace=Pace(rate=RATE))
        time.sleep(1.0)


def _workers(settings: Settings, fake: FakeSendGrid, tmp_path) -> list[Worker]:
    return [
        Worker(
            settings,
            tmp_path / f"worker{n}.log",
            concurrency=8,
            email_backend="sendgrid",
            sendgrid_host=fake.url,
            sendgrid_api_key=fake.api_key,
            email_max_rate=RATE,
            email_timeout_s=2.0,
            email_sending_timeout_s=5.0,
        )
        for n in range(2)
    ]


def test_two_workers_keep_to_the_rate_and_drain_in_its_time(
    db: str, settings: Settings, tmp_path
) -> None:
    purge_emails_queue(settings)
    fake = FakeSendGrid(keep_bodies=False).start()
    workers = _workers(settings, fake, tmp_path)
    try:
        ids = [d for d, _u, _k in seed(settings, utcnow(), ["mailing"] * MAILS)]
        for worker in workers:
            worker.start()
        started = time.time()
        _dispatch_as_beat_would(settings, MAILS, fake)
        times = [r.at for r in fake.accepted()]
        busiest, drain = _most_in_one_second(times), max(times) - started
        print(  # noqa: T201
            f"\nsend rate: {MAILS} mails at EMAIL_MAX_RATE={RATE:g} over 2 workers: at most "
            f"{busiest} in any second, drained {drain:.1f} s after the first dispatch "
            f"(first mail at {min(times) - started:.2f} s)"
        )
        assert busiest <= MOST_IN_A_SECOND
        # 1,000 mails at 50 a second: 20 s after the dispatcher's 1 s lead. A mail a busy worker
        # hands back for coming late goes at the end, 20 ms later each: a few seconds' slack.
        assert (MAILS - 1) / RATE * 0.95 <= drain <= MAILS / RATE + 5
        assert fake.accepted_counts() == {str(i): 1 for i in ids}
        wait_for(
            lambda: {d.status for d in deliveries().values()} == {"sent"},
            timeout=30,
            what="every delivery recorded sent",
        )
    finally:
        for worker in workers:
            worker.kill()
        fake.stop()


def test_a_worker_frozen_mid_drain_hands_its_late_mail_back_instead_of_a_burst(
    db: str, settings: Settings, tmp_path
) -> None:
    """A worker stopped for 3 s (a stalled host, a long pause) wakes up to 3 s of its share of
    mail past its slots: sending it then would be a burst on top of the other worker's."""
    purge_emails_queue(settings)
    fake = FakeSendGrid(keep_bodies=False).start()
    workers = _workers(settings, fake, tmp_path)
    try:
        ids = [d for d, _u, _k in seed(settings, utcnow(), ["mailing"] * MAILS)]
        for worker in workers:
            worker.start()
        publisher = CeleryEmailPublisher(celery_app)
        dispatch_due(publisher=publisher, now=utcnow(), pace=Pace(rate=RATE))
        wait_for(lambda: len(fake.accepted()) >= MAILS // 4, timeout=60, what="a quarter sent")
        with workers[0].frozen():
            time.sleep(3.0)
        woke = time.time()
        _dispatch_as_beat_would(settings, MAILS, fake)
        times = [r.at for r in fake.accepted()]
        busiest = _most_in_one_second(times)
        after = _most_in_one_second([t for t in times if t >= woke])
        handed_back = workers[0].log_text().count("paced e-mails handed back")
        print(  # noqa: T201
            f"\nsend rate, a worker frozen 3 s: at most {busiest} in any second ({after} after "
            f"it woke), {handed_back} hand-backs by it, all {MAILS} out "
            f"{max(times) - woke:.1f} s after it woke"
        )
        assert busiest <= MOST_IN_A_SECOND
        # Its share of 3 s at 50/s is some 75 mails: most went back for new slots.
        assert handed_back >= 25
        assert fake.accepted_counts() == {str(i): 1 for i in ids}
    finally:
        for worker in workers:
            worker.kill()
        fake.stop()


def test_a_worker_killed_mid_drain_leaves_no_burst_behind(
    db: str, settings: Settings, tmp_path
) -> None:
    purge_emails_queue(settings)
    fake = FakeSendGrid(keep_bodies=False).start()
    workers = _workers(settings, fake, tmp_path)
    try:
        ids = [d for d, _u, _k in seed(settings, utcnow(), ["mailing"] * MAILS)]
        for worker in workers:
            worker.start()
        publisher = CeleryEmailPublisher(celery_app)
        dispatch_due(publisher=publisher, now=utcnow(), pace=Pace(rate=RATE))
        wait_for(lambda: len(fake.accepted()) >= MAILS // 4, timeout=60, what="a quarter sent")
        workers[0].kill()  # its prefetched mail, slots past and to come, goes to the other
        killed = time.time()
        time.sleep(4.0)  # what the other worker got back is past its slot by more than 2 s
        _dispatch_as_beat_would(settings, MAILS, fake)
        times = [r.at for r in fake.accepted()]
        busiest = _most_in_one_second(times)
        after = _most_in_one_second([t for t in times if t >= killed])
        print(  # noqa: T201
            f"\nsend rate, a worker killed: at most {busiest} in any second ({after} after the "
            f"kill), all {MAILS} out {max(times) - killed:.1f} s after it"
        )
        assert busiest <= MOST_IN_A_SECOND
        assert fake.accepted_counts() == {str(i): 1 for i in ids}
    finally:
        for worker in workers:
            worker.kill()
        fake.stop()


def test_mail_late_for_its_slot_goes_round_three_times_at_most(db: str, settings: Settings) -> None:
    """A rate above what the workers can keep makes every mail late: it must still go, late,
    not round and round the dispatcher."""
    [(delivery_id, _user, _kind)] = seed(settings, utcnow(), ["mailing"])
    item = {"delivery_id": str(delivery_id), "slot": (utcnow() - timedelta(seconds=1)).isoformat()}
    for _ in range(MAX_LATE_RESLOTS):
        with session_scope() as session:
            session.execute(
                update(Delivery)
                .where(Delivery.delivery_id == delivery_id)
                .values(status="enqueued")
            )
        assert paced.hold_late([item], utcnow()) == ([], 1)
        assert deliveries()[delivery_id].status == "scheduled"
    with session_scope() as session:
        session.execute(
            update(Delivery).where(Delivery.delivery_id == delivery_id).values(status="enqueued")
        )
    assert paced.hold_late([item], utcnow()) == ([item], 0)
    assert deliveries()[delivery_id].late_reslots == MAX_LATE_RESLOTS
