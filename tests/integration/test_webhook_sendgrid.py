"""The SendGrid Event Webhook on the portal app: signed events move deliveries and opt users out."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from app.config import Settings
from app.core.clock import utcnow
from app.db.models import Delivery, Notification, OptOut
from app.db.session import session_scope
from app.portal.app import create_app
from harness.delivery import deliveries, seed
from harness.fakes.sendgrid import sign_webhook, webhook_keys


@pytest.fixture
def keys() -> tuple:
    return webhook_keys()


@pytest.fixture
def client(db: str, settings: Settings, keys) -> TestClient:
    _private, public = keys
    app = create_app(settings.model_copy(update={"sendgrid_webhook_public_key": public}))
    return TestClient(app)


def _post(client: TestClient, private, events: list[dict], timestamp: str = "1764100000"):
    body = json.dumps(events).encode()
    return client.post(
        "/webhooks/sendgrid", content=body, headers=sign_webhook(private, body, timestamp)
    )


def _state() -> tuple[list, list]:
    with session_scope() as session:
        rows = session.execute(select(Delivery.delivery_id, Delivery.status, Delivery.error))
        opt_outs = session.execute(select(OptOut.user_id, OptOut.kind, OptOut.source))
        return sorted(rows.all()), sorted(opt_outs.all())


@pytest.fixture
def sent(client, settings: Settings) -> list:
    """Five deliveries the provider accepted; the last one's worker died before recording it."""
    planned = seed(settings, utcnow(), ["mailing", "mailing", "likes", "mailing", "likes"])
    ids = [d for d, _u, _k in planned]
    with session_scope() as session:
        session.execute(
            update(Delivery).where(Delivery.delivery_id.in_(ids[:4])).values(status="sent")
        )
        session.execute(
            update(Delivery)
            .where(Delivery.delivery_id == ids[4])
            .values(status="sending", attempts=1)
        )
    return planned


def _event(kind: str, delivery_id, **extra) -> dict:
    return {
        "event": kind,
        "email": "x@example.com",
        "timestamp": 1764100000,
        "sg_event_id": uuid.uuid4().hex,
        "delivery_id": str(delivery_id),
        **extra,
    }


def test_signed_events_map_onto_deliveries_and_opt_outs(client, keys, sent) -> None:
    private, _public = keys
    (d1, _u1, _), (d2, _u2, _), (d3, u3, _), (d4, u4, _), (d5, _u5, _) = sent
    events = [
        _event("processed", d1),
        _event("delivered", d1, response="250 OK"),
        _event("bounce", d2, reason="550 5.1.1 no such user", type="bounce"),
        _event("deferred", d1, response="421 try later"),  # late and out of order: ignored
        _event("spamreport", d3),
        _event("unsubscribe", d4),
        _event("delivered", d5),
        {"event": "delivered", "email": "other@example.com"},  # not one of ours
        _event("dropped", uuid.uuid4(), reason="Bounced Address"),  # unknown delivery
    ]
    answer = _post(client, private, events)
    assert answer.status_code == 200, answer.text
    rows = deliveries()
    assert (rows[d1].status, rows[d1].error) == ("delivered", None)
    assert (rows[d2].status, rows[d2].error) == ("bounced", "550 5.1.1 no such user")
    assert rows[d3].status == "spam"
    assert rows[d4].status == "sent"  # an unsubscribe says nothing about delivery
    # The provider had accepted d5 before its worker died: recorded as sent, then delivered,
    # so no redelivered task sends it again; its likes were reported and subtracted.
    assert rows[d5].status == "delivered" and rows[d5].sent_at is not None
    with session_scope() as session:
        d5_note = session.get(Notification, rows[d5].notification_id)
        assert (d5_note.status, d5_note.like_count) == ("sent", 0)
    _rows, opt_outs = _state()
    assert opt_outs == sorted(
        (u.user_id, kind, "sendgrid") for u in (u3, u4) for kind in ("likes", "mailing")
    )
    # The same batch again (SendGrid retries) changes nothing.
    before = _state()
    assert _post(client, private, events).status_code == 200
    assert _state() == before


@pytest.mark.parametrize("tamper", ["other key", "changed body", "no signature", "bad base64"])
def test_bad_signature_gets_403_and_changes_nothing(client, keys, sent, tamper: str) -> None:
    private, _public = keys
    d1 = sent[0][0]
    body = json.dumps([_event("spamreport", d1)]).encode()
    headers = sign_webhook(private, body, "1764100000")
    if tamper == "other key":
        headers = sign_webhook(webhook_keys()[0], body, "1764100000")
    elif tamper == "changed body":
        body = body.replace(b"spamreport", b"unsubscribe")
    elif tamper == "no signature":
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    else:
        headers["X-Twilio-Email-Event-Webhook-Signature"] = "not-base64!"
    before = _state()
    answer = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 403
    assert _state() == before


def test_without_a_configured_key_every_request_is_refused(db, settings, keys) -> None:
    private, _public = keys
    client = TestClient(create_app(settings.model_copy(update={"sendgrid_webhook_public_key": ""})))
    body = b"[]"
    answer = client.post(
        "/webhooks/sendgrid", content=body, headers=sign_webhook(private, body, "1")
    )
    assert answer.status_code == 403
