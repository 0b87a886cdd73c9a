"""Provider failover: SendGrid down -> mail goes out through SMTP; SendGrid back -> SendGrid.

A real e-mail worker, RabbitMQ and PostgreSQL; the fake SendGrid answers 503 while "down", and
a local SMTP server (aiosmtpd) is the fallback.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from app.config import Settings
from app.core.clock import utcnow
from app.db.models import Delivery
from harness.delivery import dispatch, purge_emails_queue, running_worker, seed, statuses_settled
from harness.fakes.sendgrid import FakeSendGrid
from harness.smtp import SmtpSink
from harness.waiting import wait_for


def _sent(ids: list[Any]) -> dict[uuid.UUID, Delivery]:
    found = wait_for(statuses_settled(ids, {"sent", "failed"}), timeout=60, what="the sends")
    assert {found[i].status for i in ids} == {"sent"}, [found[i].error for i in ids]
    return found


def test_sendgrid_down_sends_through_smtp_and_back_to_sendgrid_when_it_recovers(
    db: str, settings: Settings, smtp_server: tuple[Controller, SmtpSink], tmp_path: Path
) -> None:
    controller, sink = smtp_server
    smtp_url = f"smtp://127.0.0.1:{controller.port}"
    fake = FakeSendGrid().start()
    purge_emails_queue(settings)
    try:
        fake.script(*[503] * 10_000)  # down until reset
        with running_worker(
            settings,
            tmp_path / "worker.log",
            email_backend="sendgrid",
            sendgrid_host=fake.url,
            sendgrid_api_key=fake.api_key,
            email_fallback_backend="smtp",
            smtp_url=smtp_url,
            email_failover_window_s=1,
            email_failover_probe_s=1,
            email_retry_base_s=0.1,
            email_retry_max_s=0.4,
        ):
            down = [d for d, _u, _k in seed(settings, utcnow(), ["welcome"] * 5)]
            dispatch(utcnow())
            found = _sent(down)
            assert {found[i].backend for i in down} == {"smtp"}
            assert len(sink.messages) == 5 and fake.accepted() == []
            assert all(found[i].deferrals >= 1 for i in down)  # waited out the window first

            fake.reset()  # SendGrid is back
            time.sleep(1.2)  # past the probe interval
            # The first e-mail after the probe interval tries SendGrid, which closes the circuit
            # (e-mails sent while that probe is in flight still take the fallback).
            [probe] = [d for d, _u, _k in seed(settings, utcnow(), ["welcome"])]
            dispatch(utcnow())
            assert _sent([probe])[probe].backend == "sendgrid"
            back = [d for d, _u, _k in seed(settings, utcnow(), ["welcome"] * 5)]
            dispatch(utcnow())
            found = _sent(back)
            assert {found[i].backend for i in back} == {"sendgrid"}
            assert fake.accepted_counts() == {str(i): 1 for i in [probe, *back]}
            assert len(sink.messages) == 5
    finally:
        fake.stop()


def test_a_probe_that_times_out_is_not_sent_through_the_fallback_too(
    db: str, settings: Settings, smtp_server: tuple[Controller, SmtpSink], tmp_path: Path
) -> None:
    # A timeout is no refusal: SendGrid may have taken the probe. Sending it through SMTP as
    # well would be a duplicate; it waits in 'sending' for the provider's event instead.
    from app.core.clock import utcnow as now
    from app.db import sends
    from app.db.session import session_scope
    from app.delivery.sending import release_abandoned
    from harness.delivery import deliveries

    controller, sink = smtp_server
    fake = FakeSendGrid().start()
    purge_emails_queue(settings)
    try:
        fake.script(*[503] * 10_000)
        with running_worker(
            settings,
            tmp_path / "worker.log",
            email_backend="sendgrid",
            sendgrid_host=fake.url,
            sendgrid_api_key=fake.api_key,
            email_fallback_backend="smtp",
            smtp_url=f"smtp://127.0.0.1:{controller.port}",
            email_failover_window_s=1,
            email_failover_probe_s=1,
            email_retry_base_s=0.1,
            email_retry_max_s=0.4,
            email_timeout_s=1,
            email_sending_timeout_s=3,
        ):
            opened = [d for d, _u, _k in seed(settings, utcnow(), ["welcome"] * 3)]
            dispatch(utcnow())
            found = _sent(opened)
            assert {found[i].backend for i in opened} == {"smtp"}
            fake.reset()
            fake.delay_s = 3.0  # SendGrid takes mail again, but answers after our timeout
            time.sleep(1.2)  # past the probe interval: the next e-mail probes SendGrid
            [probe] = [d for d, _u, _k in seed(settings, utcnow(), ["welcome"])]
            dispatch(utcnow())

            def probe_waiting() -> Delivery | None:
                row = deliveries()[probe]
                return row if row.error and "unconfirmed" in row.error else None

            waiting = wait_for(
                probe_waiting,
                timeout=30,
                what="the probe waiting for confirmation",
            )
            assert waiting.status == "sending"
            wait_for(lambda: len(fake.accepted()) == 1, timeout=30, what="SendGrid took it")
            with session_scope() as session:  # its event arrives, as the webhook records it
                sends.apply_provider_event(
                    session=session, delivery_id=probe, status="delivered", error=None, now=now()
                )
            time.sleep(3.5)  # past EMAIL_SENDING_TIMEOUT_S: the sweep finds nothing to resend
            swept = settings.model_copy(update={"email_sending_timeout_s": 3})
            assert release_abandoned(swept) == 0
    finally:
        fake.stop()
    assert deliveries()[probe].status == "delivered"
    assert fake.accepted_counts() == {str(probe): 1}
    assert len(sink.messages) == 3  # the probe never went out through SMTP
