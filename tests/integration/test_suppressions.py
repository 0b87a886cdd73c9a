"""Suppressed addresses on the real services: the webhook's soft bounces adding up, an SMTP
server refusing an address, the dispatcher holding mail planned before a bounce, the CLI."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from kombu.connection import Connection
from sqlalchemy import update

from app.cli import main
from app.config import Settings
from app.core.clock import utcnow
from app.db import suppressions
from app.db.models import Delivery
from app.db.session import session_scope
from app.domain.suppression import Suppression
from app.jobs.celery_app import EMAILS_QUEUE
from app.portal.app import create_app
from harness.delivery import (
    deliveries,
    dispatch,
    purge_emails_queue,
    running_worker,
    seed,
    statuses_settled,
)
from harness.fakes.sendgrid import sign_webhook, webhook_keys
from harness.smtp import SmtpSink
from harness.waiting import free_port, wait_for

SOFT = "soft@example.com"


@pytest.fixture
def keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    return webhook_keys()


@pytest.fixture
def webhook(db: str, settings: Settings, keys: tuple[Any, str]) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update={"sendgrid_webhook_public_key": keys[1]}))
    )


def _post(client: TestClient, private: Any, events: list[dict[str, Any]]) -> dict[str, Any]:
    body = json.dumps(events).encode()
    answer = client.post(
        "/webhooks/sendgrid",
        content=body,
        headers=sign_webhook(private, body, str(int(time.time()))),
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _blocked(delivery_id: uuid.UUID) -> dict[str, Any]:
    return {
        "event": "bounce",
        "type": "blocked",
        "reason": "452 4.2.2 mailbox full",
        "email": SOFT,
        "delivery_id": str(delivery_id),
    }


def _suppressed() -> dict[str, Suppression]:
    with session_scope() as session:
        return {s.address: s for s in suppressions.search(session=session)}


def test_soft_bounces_suppress_the_address_at_the_third(
    webhook: TestClient, keys: tuple[Any, str], settings: Settings
) -> None:
    private = keys[0]
    ids = [d for d, _u, _k in seed(settings, utcnow(), ["mailing"] * 3)]
    with session_scope() as session:  # three mails to one address, sent
        session.execute(
            update(Delivery).where(Delivery.delivery_id.in_(ids)).values(email=SOFT, status="sent")
        )
    _post(webhook, private, [_blocked(ids[0])])
    _post(webhook, private, [_blocked(ids[0])])  # SendGrid redelivers: the same bounce once
    assert _post(webhook, private, [_blocked(ids[1])])["applied"].get("suppressed", 0) == 0
    assert SOFT not in _suppressed()
    assert _post(webhook, private, [_blocked(ids[2])])["applied"]["suppressed"] == 1
    found = _suppressed()[SOFT]
    assert (found.reason, found.source) == ("soft bounces", "soft bounces")
    assert found.detail is not None and found.detail.startswith("3 soft bounces in 30 days")


def test_a_hard_bounce_suppresses_at_once_whatever_the_case_of_the_address(
    webhook: TestClient, keys: tuple[Any, str], settings: Settings
) -> None:
    ((did, user, _kind),) = seed(settings, utcnow(), ["likes"])
    with session_scope() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.delivery_id == did)
            .values(email=user.email.upper(), status="sent")
        )
    event = {"event": "bounce", "reason": "550 5.1.1 no such user", "delivery_id": str(did)}
    assert _post(webhook, keys[0], [event])["applied"]["suppressed"] == 1
    found = _suppressed()[user.email]
    assert (found.reason, found.detail, found.source) == (
        "hard bounce",
        "550 5.1.1 no such user",
        "sendgrid",
    )


def _queued(settings: Settings) -> int:
    with Connection(settings.celery_broker_url) as conn:
        _name, count, _consumers = conn.default_channel.queue_declare(EMAILS_QUEUE, passive=True)
    return int(count)


def test_mail_planned_before_a_bounce_is_held_at_dispatch(db: str, settings: Settings) -> None:
    purge_emails_queue(settings)
    planned = seed(settings, utcnow(), ["mailing", "likes", "welcome"])
    bounced = {u.email for _d, u, kind in planned if kind != "likes"}
    with session_scope() as session:
        for address in bounced:
            suppressions.suppress(
                session=session,
                address=address,
                reason="hard bounce",
                at=utcnow(),
                source="sendgrid",
                detail="550 gone",
            )
    assert dispatch(utcnow()) == 3
    rows = deliveries()
    by_kind = {kind: rows[d] for d, _u, kind in planned}
    assert by_kind["likes"].status == "enqueued"
    for kind in ("mailing", "welcome"):  # welcome too: SUPPRESS_TRANSACTIONAL is on by default
        held = by_kind[kind]
        assert held.status == "skipped"
        assert (held.error or "").startswith("address suppressed: it bounced on ")
    assert _queued(settings) == 1  # only the like digest went to the queue


class _RefusingServer(SmtpSink):
    """An SMTP server that has no mailbox for one address: 550 at RCPT TO."""

    def __init__(self, gone: str) -> None:
        super().__init__()
        self.gone = gone

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address == self.gone:
            return f"550 5.1.1 <{address}>: Recipient address rejected: no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_an_smtp_server_refusing_an_address_gets_it_suppressed_as_invalid(
    db: str, settings: Settings, tmp_path: Path
) -> None:
    purge_emails_queue(settings)
    planned = seed(settings, utcnow(), ["mailing", "mailing"])
    gone = planned[0][1].email
    server = _RefusingServer(gone)
    controller = Controller(server, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        assert dispatch(utcnow()) == 2
        url = f"smtp://{controller.hostname}:{controller.port}"
        with running_worker(settings, tmp_path / "w.log", email_backend="smtp", smtp_url=url):
            ids = [d for d, _u, _k in planned]
            found = wait_for(statuses_settled(ids, {"sent", "failed"}), timeout=30, what="sends")
            # Recorded first, suppressed right after: the worker must live until it has.
            suppressed = wait_for(lambda: _suppressed().get(gone), timeout=10, what="suppression")
    finally:
        controller.stop()
    assert [found[d].status for d in ids] == ["failed", "sent"]
    assert (suppressed.reason, suppressed.source) == ("invalid address", "smtp")
    assert suppressed.detail is not None and "550 5.1.1" in suppressed.detail
    assert [rcpt for _f, rcpt, _raw in server.messages] == [[planned[1][1].email]]


def test_the_command_line_adds_lists_imports_and_lifts(db: str, tmp_path: Path) -> None:
    runner = CliRunner()
    added = runner.invoke(main, ["suppressions", "add", " Ann@Example.com ", "--detail", "asked"])
    assert added.exit_code == 0, added.output
    assert "suppressed: " in added.output
    csv_file = tmp_path / "in.csv"
    csv_file.write_text(
        "address,reason,detail\nbob@example.com,spam report,complained\nnot-an-address,,\n"
    )
    imported = runner.invoke(main, ["suppressions", "import", str(csv_file)])
    assert imported.exit_code == 0, imported.output
    assert "1 rows read, 1 newly suppressed, 1 left out" in imported.output
    assert "left out: line 3" in imported.output
    listed = runner.invoke(main, ["suppressions", "list", "--csv"])
    assert (
        listed.output.splitlines()[0] == "address,reason,detail,first_event_at,last_event_at,source"
    )
    assert {line.split(",")[0] for line in listed.output.splitlines()[1:]} == {
        "ann@example.com",
        "bob@example.com",
    }
    lifted = runner.invoke(main, ["suppressions", "remove", "ANN@example.com"])
    assert lifted.exit_code == 0 and "lifted: ann@example.com (was manual" in lifted.output
    again = runner.invoke(main, ["suppressions", "remove", "ann@example.com"])
    assert again.exit_code != 0 and "is not suppressed" in again.output
    assert set(_suppressed()) == {"bob@example.com"}
