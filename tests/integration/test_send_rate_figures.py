"""What operators read of the send rate: the dashboard's Sending panel and a campaign's ETA,
from the same pacing row and due mail the dispatcher works from."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.core.clock import utcnow
from app.domain.pacing import Pace
from app.jobs.celery_app import celery_app
from app.jobs.dispatch import dispatch_due
from app.jobs.handoff import CeleryEmailPublisher
from app.portal.app import create_app
from harness.delivery import purge_emails_queue
from harness.pacing import due_campaign
from harness.portal import log_in, make_admin_user

pytestmark = pytest.mark.integration

RATE = 50.0
MAILS = 1000


def _read(client: TestClient, campaign_id: Any) -> tuple[dict[str, Any], datetime]:
    sending = client.get("/admin/api/dashboard").json()["sending"]
    progress = client.get(f"/admin/api/mailings/{campaign_id}/progress").json()
    return sending, datetime.fromisoformat(progress["eta"])


def test_the_dashboard_and_a_campaign_say_when_the_backlog_drains(
    db: str, settings: Settings
) -> None:
    campaign_id = due_campaign(settings, MAILS)
    paced = settings.model_copy(update={"email_max_rate": RATE})
    with TestClient(create_app(paced)) as client:
        log_in(client, *make_admin_user(role="viewer"))
        before = utcnow()
        sending, eta = _read(client, campaign_id)
        # 1,000 due and no slot handed out yet: 999 gaps of 20 ms after the first.
        assert sending["rate"] == "50 mails/s"
        assert (sending["waiting"], sending["slots_until"]) == (MAILS, None)
        assert sending["drain_s"] == pytest.approx((MAILS - 1) / RATE, abs=0.1)
        assert sending["drain"] == "about 20 s"
        assert before + timedelta(seconds=19) <= eta <= utcnow() + timedelta(seconds=21)

        purge_emails_queue(settings)
        dispatched = dispatch_due(
            publisher=CeleryEmailPublisher(celery_app), now=utcnow(), pace=Pace(rate=RATE)
        )
        purge_emails_queue(settings)
        assert dispatched == MAILS
        sending, eta = _read(client, campaign_id)
        # Every mail has a slot now: the last one is 1 s of lead and 20 s of slots away.
        slots_until = datetime.fromisoformat(sending["slots_until"])
        assert sending["waiting"] == 0
        assert before + timedelta(seconds=20) <= slots_until <= utcnow() + timedelta(seconds=22)
        assert sending["drain_s"] == pytest.approx((slots_until - utcnow()).total_seconds(), abs=1)
        assert eta == pytest.approx(slots_until, abs=timedelta(seconds=1))

    with TestClient(create_app(settings)) as client:
        log_in(client, *make_admin_user(role="viewer"))
        unpaced = client.get("/admin/api/dashboard").json()["sending"]
    assert unpaced["rate"] == "unlimited"
    assert (unpaced["drain_s"], unpaced["drain"]) == (
        None,
        "as fast as the workers go (no send rate)",
    )
