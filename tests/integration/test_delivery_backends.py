"""Each backend sends rendered e-mails end to end: planned delivery -> `emails` queue -> worker."""

from __future__ import annotations

import email
import uuid
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from app.auth.client import AuthUser
from app.config import Settings
from app.core.clock import utcnow
from app.db.models import Delivery, Notification
from app.db.session import session_scope
from app.domain.vocabulary import Kind
from harness.delivery import dispatch, purge_emails_queue, running_worker, seed, statuses_settled
from harness.fakes.sendgrid import FakeSendGrid
from harness.smtp import SmtpSink
from harness.waiting import free_port, wait_for

KINDS: list[Kind] = ["likes", "welcome", "mailing"]
# What `seed` planned: (delivery id, recipient, kind) each.
Planned = list[tuple[uuid.UUID, AuthUser, Kind]]


class _BusyMailbox(SmtpSink):
    """An SMTP server whose recipient's mailbox stays busy: 450, a temporary refusal."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "450 4.2.1 Mailbox busy, try again later"


@pytest.fixture
def planned(db: str, settings: Settings) -> Planned:
    purge_emails_queue(settings)
    rows = seed(settings, utcnow(), KINDS)
    assert dispatch(utcnow()) == len(KINDS)
    return rows


def _check_message(message: EmailMessage, user: Any, kind: str, delivery_id: str) -> None:
    assert message["To"] == user.email
    assert message["From"] == "Notifications <noreply@notify.local>"
    assert user.name in message["Subject"]
    assert message["Message-ID"] == f"<{delivery_id}@notify.local>"
    plain_part, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert plain_part is not None and html_part is not None
    plain = plain_part.get_content()
    html = html_part.get_content()
    assert message.get_content_type() == "multipart/alternative"
    if kind == "welcome":  # transactional: no unsubscribe at all
        assert message["List-Unsubscribe"] is None
        assert "Hello <b>0</b>" not in html
        return
    link = message["List-Unsubscribe"]
    assert link.startswith("<http://127.0.0.1:8000/unsubscribe?token=") and link.endswith(">")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert link[1:-1] in plain
    # User text is escaped in HTML and literal in the text part.
    assert "&lt;b&gt;" in html and "<b>" in plain


def _sent(rows: Planned) -> dict[uuid.UUID, Delivery]:
    ids = [d for d, _u, _k in rows]
    found = wait_for(statuses_settled(ids, {"sent", "failed"}), timeout=30, what="the sends")
    assert {found[i].status for i in ids} == {"sent"}, [found[i].error for i in ids]
    with session_scope() as session:
        notes = session.execute(select(Notification.status, Notification.like_count)).all()
    assert sorted(notes) == [("sent", 0)] * 3  # the likes digest reported all 3 likes
    return found


def test_outbox_writes_one_eml_per_delivery(planned, settings, tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    with running_worker(
        settings, tmp_path / "worker.log", email_backend="outbox", outbox_dir=outbox
    ):
        found = _sent(planned)
    files = sorted(p.name for p in outbox.iterdir())
    assert files == sorted(f"{d}.eml" for d, _u, _k in planned)
    for delivery_id, user, kind in planned:
        raw = (outbox / f"{delivery_id}.eml").read_bytes()
        assert b"\r\n" in raw  # RFC 5322 line endings
        message = email.message_from_bytes(raw, policy=policy.default)
        _check_message(message, user, kind, str(delivery_id))
        assert found[delivery_id].provider_message_id == f"{delivery_id}.eml"
        assert found[delivery_id].attempts == 1


def test_smtp_sends_to_a_real_smtp_server(planned, settings, smtp_server, tmp_path) -> None:
    controller, sink = smtp_server
    url = f"smtp://{controller.hostname}:{controller.port}"
    with running_worker(settings, tmp_path / "worker.log", email_backend="smtp", smtp_url=url):
        _sent(planned)
    assert len(sink.messages) == len(planned)
    by_to = {rcpt[0]: (sender, raw) for sender, rcpt, raw in sink.messages}
    for delivery_id, user, kind in planned:
        sender, raw = by_to[user.email]
        assert sender == "noreply@notify.local"
        message = email.message_from_bytes(raw, policy=policy.default)
        _check_message(message, user, kind, str(delivery_id))


def test_sendgrid_posts_both_parts_headers_and_delivery_id(planned, settings, tmp_path) -> None:
    fake = FakeSendGrid().start()
    try:
        with running_worker(
            settings,
            tmp_path / "worker.log",
            email_backend="sendgrid",
            sendgrid_host=fake.url,
            sendgrid_api_key=fake.api_key,
        ):
            found = _sent(planned)
    finally:
        fake.stop()
    accepted = {r.delivery_id: r for r in fake.accepted()}
    assert len(fake.received) == len(accepted) == len(planned)
    for delivery_id, user, kind in planned:
        request = accepted[str(delivery_id)]
        body = request.body
        assert body is not None
        assert body["personalizations"] == [{"to": [{"email": user.email}]}]
        assert body["from"] == {"name": "Notifications", "email": "noreply@notify.local"}
        assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
        assert user.name in body["subject"]
        assert found[delivery_id].provider_message_id == request.message_id
        headers = body.get("headers", {})
        if kind == "welcome":
            assert "List-Unsubscribe" not in headers
        else:
            assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert headers["List-Unsubscribe"].startswith("<http://127.0.0.1:8000/unsubscribe?")


def test_temporary_refusals_of_the_e_mail_give_up_after_max_attempts(
    planned, settings, tmp_path
) -> None:
    # 450 concerns this recipient, not the server being down: each refusal uses an attempt.
    sink = _BusyMailbox()
    controller = Controller(sink, hostname="127.0.0.1", port=free_port())
    controller.start()
    url = f"smtp://{controller.hostname}:{controller.port}"
    try:
        with running_worker(
            settings,
            tmp_path / "worker.log",
            email_backend="smtp",
            smtp_url=url,
            email_max_attempts=3,
            email_retry_base_s=0.1,
            email_retry_max_s=0.3,
        ):
            ids = [d for d, _u, _k in planned]
            found = wait_for(statuses_settled(ids, {"sent", "failed"}), timeout=30, what="fails")
    finally:
        controller.stop()
    assert {(found[i].status, found[i].attempts, found[i].deferrals) for i in ids} == {
        ("failed", 3, 0)
    }
    assert all((found[i].error or "").startswith("450 ") for i in ids)
    assert len(sink.messages) == 3 * len(ids)
