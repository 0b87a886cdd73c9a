"""Provider failover: SendGrid down -> mail goes out through SMTP; SendGrid back -> SendGrid.

A real e-mail worker, RabbitMQ and PostgreSQL; the fake SendGrid answers 503 while "down", and
a local SMTP server (aiosmtpd) is the fallback.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from app.config import Settings
from app.core.clock import utcnow
from harness.delivery import (
    dispatch,
    purge_emails_queue,
    running_worker,
    seed,
    statuses_settled,
    wait_for,
)
from harness.fakes.sendgrid import FakeSendGrid

from .conftest import SmtpSink


def _sent(ids: list[Any]) -> dict:
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
