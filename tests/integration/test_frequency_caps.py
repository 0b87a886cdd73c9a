"""Frequency caps on the real services: four campaigns in a day to one user under `3/1d`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.auth.client import AuthClient
from app.config import Settings
from app.core.clock import utcnow
from app.db.models import Delivery, Notification
from app.db.session import session_scope
from app.db.templates import get_template_by_name
from app.domain.campaigns import Draft, parse_audience
from app.jobs.campaigns import create_campaign
from app.jobs.digests import plan_once
from harness.campaigns import simulate_stream
from harness.delivery import dispatch, purge_emails_queue, running_worker
from harness.fakes.sendgrid import FakeSendGrid
from harness.waiting import wait_for


@pytest.fixture
def provider() -> Iterator[FakeSendGrid]:
    fake = FakeSendGrid().start()
    yield fake
    fake.stop()


def _campaign_rows(user_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    """`count` campaigns of one recipient, each turned into its mailing notification."""
    with session_scope() as session:
        template_id = get_template_by_name(session=session, name="mailing").template_id
    notifications = []
    for i in range(count):
        campaign = create_campaign(
            draft=Draft(f"Campaign {i}", template_id, f"News {i}", "once"),
            audience=parse_audience(str(user_id)),
            created_by="test",
        )
        notifications += simulate_stream(campaign.campaign_id, [user_id], link=True)
    return notifications


def _deliveries(ids: list[uuid.UUID]) -> list[Delivery]:
    with session_scope() as session:
        rows = session.scalars(select(Delivery).where(Delivery.notification_id.in_(ids)))
        by_note = {d.notification_id: d for d in rows}
    return [by_note[i] for i in ids]


def test_the_fourth_campaign_of_a_day_waits_for_the_next_and_goes_once(
    db: str,
    settings: Settings,
    auth_client: AuthClient,
    auth_users: list[dict[str, Any]],
    provider: FakeSendGrid,
    tmp_path: Path,
) -> None:
    user = next(u for u in auth_users if all(u["notification_policy"].values()))
    capped = settings.model_copy(update={"frequency_cap": "3/1d", "quiet_hours": ""})
    ids = _campaign_rows(uuid.UUID(user["user_id"]), 4)
    now = utcnow()
    for nid in ids:  # each campaign's mail planned as its event arrives, one after the other
        assert plan_once([nid], auth=auth_client, settings=capped, now=now) == {nid: "scheduled"}
    first, *_, fourth = _deliveries(ids)
    assert all(d.send_at <= now + timedelta(seconds=1) for d in _deliveries(ids)[:3])
    assert fourth.send_at == first.send_at + timedelta(days=1)
    assert fourth.send_reason is not None
    assert "held by the frequency cap 3/1d" in fourth.send_reason

    purge_emails_queue(settings)
    worker = dict(
        email_backend="sendgrid", sendgrid_host=provider.url, sendgrid_api_key=provider.api_key
    )
    with running_worker(settings, tmp_path / "worker.log", **worker):
        assert dispatch(now) == 3  # today: three, the fourth is not due
        wait_for(lambda: len(provider.accepted()) == 3, timeout=30, what="today's three mails")
        assert dispatch(now + timedelta(hours=23)) == 0
        assert dispatch(fourth.send_at) == 1  # the next day, when the first left the window
        wait_for(lambda: len(provider.accepted()) == 4, timeout=30, what="the fourth mail")
        # Accepted, then recorded: the worker lives until every send is on record.
        wait_for(lambda: _statuses(ids) == ["sent"] * 4, timeout=30, what="four sends recorded")
        assert dispatch(fourth.send_at + timedelta(minutes=20)) == 0  # nothing to send again
    accepted = provider.accepted_counts()
    assert sorted(accepted.values()) == [1, 1, 1, 1]
    assert accepted[str(fourth.delivery_id)] == 1


def _statuses(ids: list[uuid.UUID]) -> list[str]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(Notification.status).where(Notification.notification_id.in_(ids))
            ).all()
        )
