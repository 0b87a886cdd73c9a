"""Mailing campaigns through the portal: audience, Kafka events, progress, cancel, 10k publish."""

from __future__ import annotations

import html
import json
import re
import uuid
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.config import Settings
from app.contracts import validate
from app.db.models import Campaign, CampaignRecipient, Delivery, Notification, Template
from app.db.session import session_scope
from app.domain import campaigns as rules
from app.jobs import campaigns
from app.kafka.connection import client_config
from app.kafka.producer import make_producer
from harness.campaigns import simulate_deliveries, simulate_stream
from harness.kafka import read_topic, value_of
from harness.portal import form_token


def _template_id() -> uuid.UUID:
    with session_scope() as session:
        query = select(Template.template_id).where(Template.name == "mailing")
        return session.execute(query).scalar_one()


def _create(client: TestClient, audience: str, csv: bytes | None = None, **fields: str):
    data = {
        "name": "Winter news",
        "template_id": str(_template_id()),
        "content_value": "Hello!",
        "periodicity": "once",
        "audience": audience,
        "csrf_token": form_token(client),
        **fields,
    }
    files = {"audience_csv": ("audience.csv", csv, "text/csv")} if csv is not None else None
    return client.post("/admin/mailings/new", data=data, files=files, follow_redirects=False)


def _campaign_id(response) -> uuid.UUID:
    assert response.status_code == 303, response.text[:500]
    return uuid.UUID(response.headers["location"].rsplit("/", 1)[1])


def _campaign(campaign_id: uuid.UUID) -> Campaign:
    with session_scope() as session:
        return session.get_one(Campaign, campaign_id)


def _send(client: TestClient, campaign_id: uuid.UUID):
    page = f"/admin/mailings/{campaign_id}"
    return client.post(f"{page}/send", data={"csrf_token": form_token(client)})


def test_audience_from_text_and_csv_lists_invalid_ids(client: TestClient) -> None:
    a, b, c = (uuid.uuid4() for _ in range(3))
    csv = f"user_id,name\n{b},Bob\nnot-a-user,Eve\n{a},Ann again\n".encode()
    campaign_id = _campaign_id(_create(client, f"{a}, {c}\n12345", csv=csv))
    with session_scope() as session:
        query = select(CampaignRecipient.user_id).where(
            CampaignRecipient.campaign_id == campaign_id
        )
        stored = set(session.scalars(query))
    assert stored == {a, b, c}
    campaign = _campaign(campaign_id)
    assert (campaign.total_recipients, campaign.status) == (3, "draft")
    assert campaign.invalid_recipients == ["12345", "not-a-user"]
    page = client.get(f"/admin/mailings/{campaign_id}").text
    assert "2 audience entries are not user ids" in page and "not-a-user" in page


def test_an_audience_without_valid_ids_is_refused_and_listed_back(client: TestClient) -> None:
    response = _create(client, "bob, alice")
    assert response.status_code == 400
    text = html.unescape(response.text)
    assert "the audience has no valid user id" in text and "bob, alice" in text


def test_send_publishes_one_event_per_valid_recipient(
    client: TestClient, portal_settings: Settings
) -> None:
    users = [uuid.uuid4(), uuid.uuid4()]
    campaign_id = _campaign_id(_create(client, f"{users[0]}\n{users[1]}\nnobody"))
    page = _send(client, campaign_id)
    assert page.status_code == 200 and "2 events published to Kafka" in page.text
    messages = read_topic(portal_settings, portal_settings.topic_mailing, 2)
    events = [json.loads(value_of(m)) for m in messages]
    for message, event in zip(messages, events, strict=True):
        validate("mailing", event)
        key = message.key()
        assert key is not None
        assert key.decode() == event["user_id"]
    assert sorted(e["user_id"] for e in events) == sorted(map(str, users))
    assert {(e["content_id"], e["content_value"], e["periodicity"]) for e in events} == {
        (str(campaign_id), "Hello!", "once")
    }
    campaign = _campaign(campaign_id)
    assert (campaign.status, campaign.published_count) == ("published", 2)
    again = _send(client, campaign_id)
    assert again.status_code == 409 and "cannot be sent" in again.text


def _progress(client: TestClient, campaign_id: uuid.UUID) -> dict[str, Any]:
    response = client.get(f"/admin/api/mailings/{campaign_id}/progress")
    assert response.status_code == 200
    progress: dict[str, Any] = response.json()
    return progress


def test_progress_follows_notifications_and_deliveries(client: TestClient) -> None:
    users = [uuid.uuid4() for _ in range(5)]
    campaign_id = _campaign_id(_create(client, " ".join(map(str, users))))
    assert _send(client, campaign_id).status_code == 200
    # The stream worker links most rows by campaign_id; one older row only by content_id.
    linked = simulate_stream(campaign_id, users[:3], link=True)
    by_content = simulate_stream(campaign_id, users[3:4], link=False)
    simulate_deliveries({linked[0]: "sent", linked[1]: "failed", linked[2]: "skipped"})
    got = _progress(client, campaign_id)
    assert {
        k: got[k]
        for k in ("total", "published", "notified", "sent", "failed", "skipped", "waiting")
    } == {
        "total": 5,
        "published": 5,
        "notified": 4,
        "sent": 1,
        "failed": 1,
        "skipped": 1,
        "waiting": 1,
    }
    assert got["percent"]["sent"] == 20.0
    simulate_deliveries({by_content[0]: "sent"})
    page = client.get(f"/admin/mailings/{campaign_id}").text
    assert re.search(r'data-bar="sent" style="width: 40.0%"', page)
    assert re.search(r'data-count="done">4<', page)


def test_cancel_stops_unsent_deliveries(client: TestClient) -> None:
    users = [uuid.uuid4() for _ in range(4)]
    campaign_id = _campaign_id(_create(client, " ".join(map(str, users))))
    nids = simulate_stream(campaign_id, users, link=True)
    deliveries = simulate_deliveries({nids[0]: "scheduled", nids[1]: "enqueued", nids[2]: "sent"})
    page = f"/admin/mailings/{campaign_id}"
    response = client.post(f"{page}/cancel", data={"csrf_token": form_token(client, page)})
    assert response.status_code == 200
    with session_scope() as session:
        query = select(Delivery.notification_id, Delivery.status).where(
            Delivery.delivery_id.in_(deliveries.values())
        )
        statuses = dict(session.execute(query).all())
        pending = session.get_one(Notification, nids[3]).status
    assert statuses == {nids[0]: "cancelled", nids[1]: "cancelled", nids[2]: "sent"}
    assert pending == "skipped"
    campaign = _campaign(campaign_id)
    assert campaign.status == "cancelled" and campaign.cancelled_at is not None
    assert _progress(client, campaign_id)["cancelled"] == 2
    assert _send(client, campaign_id).status_code == 409


def _topic_size(settings: Settings, topic: str, partitions: int) -> int:
    consumer = Consumer({**client_config(settings), "group.id": "sizer"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        )
    finally:
        consumer.close()


def test_ten_thousand_recipients_are_each_published_once(
    db: str, portal_settings: Settings
) -> None:
    audience = rules.Audience(valid=tuple(uuid.uuid4() for _ in range(10_000)), invalid=())
    draft = rules.Draft("Big", _template_id(), "Big news " * 20, "weekly")
    campaign = campaigns.create_campaign(draft=draft, audience=audience, created_by="test")
    producer = make_producer(portal_settings)
    # How fast: bench/campaign.py. Here: every event acknowledged, counted and on the topic.
    report = campaigns.publish_campaign(
        campaign_id=campaign.campaign_id, producer=producer, topic=portal_settings.topic_mailing
    )
    assert (report.delivered, report.failed) == (10_000, 0)
    topic = portal_settings.topic_mailing
    assert _topic_size(portal_settings, topic, 2) == 10_000
    assert _campaign(campaign.campaign_id).published_count == 10_000
