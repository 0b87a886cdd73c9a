"""The SendGrid Event Webhook on the portal app: signed events move deliveries and opt users out."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import Row, select, update
from starlette.types import Message

from app.auth.client import AuthUser
from app.config import Settings
from app.core.clock import utcnow
from app.db.models import Delivery, Notification, OptOut
from app.db.session import session_scope
from app.domain.vocabulary import Kind
from app.portal.app import create_app
from harness.delivery import deliveries, seed
from harness.fakes.sendgrid import sign_webhook, webhook_keys


@pytest.fixture
def keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    return webhook_keys()


@pytest.fixture
def client(db: str, settings: Settings, keys) -> TestClient:
    _private, public = keys
    app = create_app(settings.model_copy(update={"sendgrid_webhook_public_key": public}))
    return TestClient(app)


def _now() -> str:
    """A timestamp as SendGrid signs it: Unix seconds at sending."""
    return str(int(time.time()))


def _post(client: TestClient, private, events: list[dict[str, Any]], timestamp: str | None = None):
    body = json.dumps(events).encode()
    timestamp = timestamp or _now()
    return client.post(
        "/webhooks/sendgrid", content=body, headers=sign_webhook(private, body, timestamp)
    )


def _state() -> tuple[list[Row[uuid.UUID, str, str | None]], list[Row[uuid.UUID, str, str]]]:
    with session_scope() as session:
        rows = session.execute(select(Delivery.delivery_id, Delivery.status, Delivery.error))
        opt_outs = session.execute(select(OptOut.user_id, OptOut.kind, OptOut.source))
        return sorted(rows.all()), sorted(opt_outs.all())


@pytest.fixture
def sent(client, settings: Settings) -> list[tuple[uuid.UUID, AuthUser, Kind]]:
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


def _event(kind: str, delivery_id, **extra) -> dict[str, Any]:
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
        d5_note = session.get_one(Notification, rows[d5].notification_id)
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
    headers = sign_webhook(private, body, _now())
    if tamper == "other key":
        headers = sign_webhook(webhook_keys()[0], body, _now())
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
        "/webhooks/sendgrid", content=body, headers=sign_webhook(private, body, _now())
    )
    assert answer.status_code == 403


@pytest.mark.parametrize("age_s", [-3600, 601, 86_400 * 30])
def test_a_signed_request_outside_the_freshness_window_is_a_replay(
    client, keys, sent, age_s: int
) -> None:
    """A captured request stays validly signed forever: its signed timestamp is what ages."""
    private, _public = keys
    body = json.dumps([_event("spamreport", sent[0][0])]).encode()
    headers = sign_webhook(private, body, str(int(time.time()) - age_s))
    before = _state()
    answer = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert answer.status_code == 403 and "timestamp" in answer.json()["error"]
    assert _state() == before
    # The same events, signed now, are applied.
    assert _post(client, private, [_event("spamreport", sent[0][0])]).status_code == 200
    assert _state() != before


def test_a_deeply_nested_signed_body_is_a_400_not_a_500(client, keys) -> None:
    private, _public = keys
    body = b"[" * 100_000 + b"]" * 100_000
    answer = client.post(
        "/webhooks/sendgrid", content=body, headers=sign_webhook(private, body, _now())
    )
    assert answer.status_code == 400


def test_a_10_mib_body_is_refused_before_it_is_read(db, settings, keys) -> None:
    """At the ASGI level: the app answers 413 without asking for a single chunk of the body."""
    app = create_app(settings)
    size = 10 * 1024 * 1024
    chunks_read = 0
    messages: list[Message] = []

    async def receive() -> Message:
        nonlocal chunks_read
        chunks_read += 1
        more = chunks_read * 65536 < size  # the whole 10 MiB, if the app asks for it
        return {"type": "http.request", "body": b"[" * 65536, "more_body": more}

    async def send(message: Message) -> None:
        messages.append(message)

    for path in ("/webhooks/sendgrid", "/unsubscribe"):
        chunks_read, messages[:] = 0, []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-length", str(size).encode()), (b"host", b"testserver")],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
        }
        asyncio.run(app(scope, receive, send))
        start = next(m for m in messages if m["type"] == "http.response.start")
        assert start["status"] in (413, 400), path  # the unsubscribe page says why, in HTML
        assert chunks_read == 0, path


def test_a_chunked_body_is_cut_off_at_the_limit(db, settings, keys) -> None:
    private, _public = keys
    client = TestClient(create_app(settings.model_copy(update={"portal_max_body_bytes": 4096})))

    def chunks():
        for _ in range(64):
            yield b"[" * 1024

    answer = client.post("/webhooks/sendgrid", content=chunks())
    assert answer.status_code == 413


def test_hostile_values_in_a_signed_batch_do_not_lose_the_batch(client, keys, sent) -> None:
    private, _public = keys
    bounced, delivered = sent[0][0], sent[1][0]
    events: list[dict[str, Any]] = [
        {"event": ["bounce"], "delivery_id": str(delivered)},  # unhashable: not one of ours
        {"event": {"type": "bounce"}, "delivery_id": str(delivered)},
        _event("bounce", bounced, reason="550 no such user\x00 here"),  # NUL: not storable
        _event("delivered", delivered),
    ]
    assert _post(client, private, events).status_code == 200
    rows, _opt_outs = _state()
    status = {delivery_id: (state, error) for delivery_id, state, error in rows}
    assert status[bounced] == ("bounced", "550 no such user here")
    assert status[delivered][0] == "delivered"
