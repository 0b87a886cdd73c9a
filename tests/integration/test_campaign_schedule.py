"""Scheduled campaigns against the real stack: created in the portal, published to Kafka, applied
by the stream's ingest, planned, dispatched and sent with a shifted clock; cancelled before they
start; and a test mail that counts nowhere."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from kombu.connection import Connection
from sqlalchemy import text

from app.auth.client import AuthClient
from app.config import Settings
from app.db.session import session_scope
from app.delivery.mail.outbox_backend import OutboxBackend
from app.delivery.sending import deliver
from app.jobs.digests import plan_once
from app.portal.app import create_app
from app.stream.ingest import apply_batch
from harness.delivery import dispatch, purge_emails_queue
from harness.kafka import read_topic, record_of
from harness.portal import form_token, log_in, make_admin_user
from harness.stream import next_emails

ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
GROUP = "campaign-schedule-test"


@pytest.fixture
def portal(portal_settings: Settings, tmp_path: Path, db: str) -> Iterator[TestClient]:
    """A signed-in admin's portal whose mail goes to an outbox of this test."""
    settings = portal_settings.model_copy(
        update={"email_backend": "outbox", "outbox_dir": tmp_path / "outbox"}
    )
    with TestClient(create_app(settings)) as client:
        log_in(client, *make_admin_user())
        yield client


def _recipients(auth_users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Three users who allow mailings, one in each zone (the dev Auth server serves the change)."""
    chosen = [u for u in auth_users if all(u["notification_policy"].values())][: len(ZONES)]
    for user, zone in zip(chosen, ZONES, strict=True):
        user["timezone"] = zone
    return chosen


def _create(client: TestClient, users: list[dict[str, Any]], **schedule: str) -> uuid.UUID:
    templates = client.get("/admin/mailings/new").text
    template_id = templates.split('<option value="')[1].split('"')[0]
    form = {
        "csrf_token": form_token(client),
        "name": "Winter news",
        "template_id": template_id,
        "content_value": "Our winter news",
        "periodicity": "once",
        "audience": "\n".join(u["user_id"] for u in users),
        **schedule,
    }
    created = client.post("/admin/mailings/new", data=form, follow_redirects=False)
    assert created.status_code == 303, created.text[:500]
    return uuid.UUID(created.headers["location"].rsplit("/", 1)[1])


def _send_and_apply(client: TestClient, campaign_id: uuid.UUID, topic: str, settings: Settings):
    """Send in the portal; apply the published events as the stream worker does."""
    token = form_token(client, f"/admin/mailings/{campaign_id}")
    sent = client.post(
        f"/admin/mailings/{campaign_id}/send", data={"csrf_token": token}, follow_redirects=False
    )
    assert sent.status_code == 303
    # The test's own topic: this campaign's events.
    records = [record_of(m) for m in read_topic(settings, topic, 3)]
    apply_batch("mailing", records, group_id=GROUP, max_bytes=65536)
    with session_scope() as session:
        return list(
            session.scalars(
                text("SELECT notification_id FROM notifications WHERE campaign_id = :c"),
                {"c": campaign_id},
            )
        )


def _deliveries(campaign_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT n.user_id, d.delivery_id, d.send_at, d.send_reason, d.status"
                " FROM deliveries d JOIN notifications n USING (notification_id)"
                " WHERE n.campaign_id = :c"
            ),
            {"c": campaign_id},
        )
        return {str(r.user_id): r for r in rows}


def test_a_campaign_at_9_local_reaches_each_zone_at_its_own_9(
    portal: TestClient,
    auth_client: AuthClient,
    auth_users: list[dict[str, Any]],
    portal_settings: Settings,
    mailing_topic: str,
    tmp_path: Path,
) -> None:
    users = _recipients(auth_users)
    day = (datetime.now(UTC) + timedelta(days=2)).date()
    campaign_id = _create(portal, users, when="local", local_date=day.isoformat(), local_hour="9")
    page = portal.get(f"/admin/mailings/{campaign_id}").text
    assert f"at 09:00 on {day} in each recipient&#39;s time zone" in page

    notification_ids = _send_and_apply(portal, campaign_id, mailing_topic, portal_settings)
    assert len(notification_ids) == 3
    planned_at = datetime.now(UTC)
    plan_once(notification_ids, auth=auth_client, settings=portal_settings, now=planned_at)
    deliveries = _deliveries(campaign_id)
    nine = {u["user_id"]: _nine(day, u["timezone"]) for u in users}
    for user in users:
        row = deliveries[user["user_id"]]
        assert (row.status, row.send_at) == ("scheduled", nine[user["user_id"]])
        assert row.send_reason == (
            f"the campaign's 09:00 local time: {day} 09:00 {user['timezone']}"
        )

    # The service clock moves through the day: each mail leaves at its own 09:00, no sooner.
    purge_emails_queue(portal_settings)
    backend = OutboxBackend(tmp_path / "sent", sender=portal_settings.email_from)
    sent_at: dict[str, datetime] = {}
    with Connection(portal_settings.celery_broker_url) as conn:
        for user in sorted(users, key=lambda u: nine[u["user_id"]]):
            at = nine[user["user_id"]]
            assert dispatch(at - timedelta(minutes=10)) == 0
            assert dispatch(at) == 1
            [task] = next_emails(conn, 1, timeout=10)
            assert task["email"] == user["email"]
            outcome = deliver(task, backend=backend, settings=portal_settings, now=at)
            assert outcome.result == "sent"
            sent_at[user["user_id"]] = at
    assert {uid: _deliveries(campaign_id)[uid].status for uid in sent_at} == dict.fromkeys(
        sent_at, "sent"
    )
    assert len(list((tmp_path / "sent").glob("*.eml"))) == 3


def _nine(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(9), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def test_a_scheduled_campaign_cancelled_before_its_time_sends_nothing(
    portal: TestClient,
    auth_client: AuthClient,
    auth_users: list[dict[str, Any]],
    portal_settings: Settings,
    mailing_topic: str,
) -> None:
    users = _recipients(auth_users)
    at = (datetime.now(UTC) + timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
    campaign_id = _create(portal, users, when="at", send_at=at.strftime("%Y-%m-%dT%H:%M"))
    notification_ids = _send_and_apply(portal, campaign_id, mailing_topic, portal_settings)
    plan_once(notification_ids, auth=auth_client, settings=portal_settings, now=datetime.now(UTC))
    planned = _deliveries(campaign_id).values()
    # 12:00 UTC, or the end of the quiet hours where it is night then (07:00 in New York).
    assert {r.status for r in planned} == {"scheduled"}
    assert at in {r.send_at for r in planned} and all(r.send_at >= at for r in planned)
    last = max(r.send_at for r in planned)

    token = form_token(portal, f"/admin/mailings/{campaign_id}")
    cancelled = portal.post(
        f"/admin/mailings/{campaign_id}/cancel", data={"csrf_token": token}, follow_redirects=False
    )
    assert cancelled.status_code == 303
    purge_emails_queue(portal_settings)
    assert dispatch(last + timedelta(minutes=1)) == 0
    assert {r.status for r in _deliveries(campaign_id).values()} == {"cancelled"}


def test_a_schedule_needs_a_once_campaign_and_a_future_time(
    portal: TestClient, auth_users: list[dict[str, Any]]
) -> None:
    users = _recipients(auth_users)
    token = form_token(portal)
    base = {"csrf_token": token, "name": "x", "content_value": "x", "audience": users[0]["user_id"]}
    template_id = portal.get("/admin/mailings/new").text.split('<option value="')[1].split('"')[0]
    daily = portal.post(
        "/admin/mailings/new",
        data={
            **base,
            "template_id": template_id,
            "periodicity": "daily",
            "when": "local",
            "local_date": "2030-01-01",
            "local_hour": "9",
        },
    )
    assert daily.status_code == 400 and "only a `once` campaign can be scheduled" in daily.text
    past = portal.post(
        "/admin/mailings/new",
        data={
            **base,
            "template_id": template_id,
            "periodicity": "once",
            "when": "at",
            "send_at": "2020-01-01T09:00",
        },
    )
    assert past.status_code == 400 and "the send time is in the past" in past.text


def test_a_test_mail_goes_to_one_address_and_counts_nowhere(
    portal: TestClient, auth_users: list[dict[str, Any]], portal_settings: Settings, tmp_path: Path
) -> None:
    campaign_id = _create(portal, _recipients(auth_users))
    token = form_token(portal, f"/admin/mailings/{campaign_id}")
    sent = portal.post(
        f"/admin/mailings/{campaign_id}/test",
        data={"csrf_token": token, "address": "qa@example.com"},
        follow_redirects=True,
    )
    assert sent.status_code == 200 and 'id="test-sent"' in sent.text
    [mail] = list((tmp_path / "outbox").glob("*.eml"))
    content = mail.read_text()
    assert "To: qa@example.com" in content and "Subject: [Test] " in content
    assert "Our winter news" in content
    with session_scope() as session:
        counted = session.execute(
            text(
                "SELECT (SELECT count(*) FROM notifications WHERE campaign_id = :c),"
                " (SELECT status FROM campaigns WHERE campaign_id = :c)"
            ),
            {"c": campaign_id},
        ).one()
    assert tuple(counted) == (0, "draft")
    refused = portal.post(
        f"/admin/mailings/{campaign_id}/test",
        data={"csrf_token": token, "address": "not an address"},
    )
    assert refused.status_code == 409 and "not an e-mail address" in refused.text


def test_test_mail_goes_only_to_allowed_addresses_and_only_so_often(
    portal_settings: Settings, auth_users: list[dict[str, Any]], tmp_path: Path
) -> None:
    settings = portal_settings.model_copy(
        update={
            "email_backend": "outbox",
            "outbox_dir": tmp_path / "outbox",
            "portal_test_send_limits": "2 per hour",
            "portal_test_recipients": "@example.com, qa@team.test",
        }
    )
    with TestClient(create_app(settings)) as portal:
        log_in(portal, *make_admin_user(role="editor"))
        campaign_id = _create(portal, _recipients(auth_users))
        token = form_token(portal, f"/admin/mailings/{campaign_id}")

        def test_to(address: str) -> int:
            data = {"csrf_token": token, "address": address}
            return portal.post(f"/admin/mailings/{campaign_id}/test", data=data).status_code

        assert test_to("victim@elsewhere.test") == 409
        assert test_to("qa@team.test") == 200
        assert test_to("qa@example.com") == 429  # the third test send within the hour
    sent = sorted(
        m.read_text().split("To: ")[1].split("\n")[0] for m in (tmp_path / "outbox").glob("*.eml")
    )
    assert sent == ["qa@team.test"]
