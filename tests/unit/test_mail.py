"""Pure parts of sending: MIME building, SendGrid body and errors, SMTP URLs, retry delays,
webhook events and signatures."""

from __future__ import annotations

import email
import json
import random
import uuid
from email import policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.delivery.mail.base import OutgoingEmail, build_message
from app.delivery.mail.sendgrid_backend import address, error_text, mail_json, rate_limit_reset
from app.delivery.mail.sendgrid_events import parse_events, verify
from app.delivery.mail.smtp_backend import parse_smtp_url
from app.delivery.sending import MAX_COUNTDOWN_S, outgoing, retry_delay
from harness.fakes.sendgrid import sign_webhook, validate_mail, webhook_keys

SENDER = "Notifications <noreply@notify.local>"
HEADERS = {
    "List-Unsubscribe": "<https://x.example/unsubscribe?token=t>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
}
MAIL = OutgoingEmail(
    "ann@example.com",
    "Hi Ann",
    "<p>Hi &amp; bye</p>",
    "Hi & bye",
    HEADERS,
    "0b7c0e4e-6c8e-4a55-9e53-3f1c2d1e0a11",
)


def test_message_has_both_parts_headers_and_a_stable_message_id() -> None:
    raw = build_message(MAIL, SENDER).as_bytes(policy=policy.SMTP)
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.get_body(("plain",)), parsed.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().strip() == "Hi & bye"
    assert html.get_content().strip() == "<p>Hi &amp; bye</p>"
    assert parsed["List-Unsubscribe"] == HEADERS["List-Unsubscribe"]
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["Message-ID"] == f"<{MAIL.delivery_id}@notify.local>"
    again = build_message(MAIL, SENDER)
    assert again["Message-ID"] == parsed["Message-ID"]  # every try of a delivery: one id


def test_html_only_message_when_there_is_no_text() -> None:
    message = build_message(OutgoingEmail("a@example.com", "s", "<p>x</p>"), SENDER)
    assert message.get_content_type() == "text/html"


def test_sendgrid_body_passes_the_fakes_validation_with_text_first() -> None:
    body = mail_json(MAIL, address(SENDER))
    assert validate_mail(body) == []
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert body["custom_args"] == {"delivery_id": MAIL.delivery_id}
    assert body["headers"] == HEADERS


def library_body(mail: OutgoingEmail, sender: str) -> dict[str, object]:
    """The same body built through the official library's helper objects."""
    from sendgrid.helpers.mail import Content, CustomArg, From, Header, Mail, To

    built = Mail(from_email=From(sender), to_emails=To(mail.to), subject=mail.subject)
    if mail.text:
        built.add_content(Content("text/plain", mail.text))
    built.add_content(Content("text/html", mail.html))
    if mail.headers:
        built.header = [Header(name, value) for name, value in mail.headers.items()]
    if mail.delivery_id:
        built.custom_arg = CustomArg("delivery_id", mail.delivery_id)
    return dict(built.get())


_line = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
_addresses = st.one_of(
    st.emails(),
    st.builds(
        lambda name, addr: f"{name} <{addr}>",
        st.from_regex(r"[A-Za-z][A-Za-z .]{0,20}", fullmatch=True),
        st.emails(),
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    to=_addresses,
    sender=_addresses,
    subject=_line,
    html=_line,
    text=st.one_of(st.just(""), _line),
    headers=st.dictionaries(st.from_regex(r"X-[A-Za-z]{1,10}", fullmatch=True), _line, max_size=3),
    delivery_id=st.one_of(st.none(), st.uuids().map(str)),
)
def test_the_direct_body_is_the_one_the_library_builds(
    to: str,
    sender: str,
    subject: str,
    html: str,
    text: str,
    headers: dict[str, str],
    delivery_id: str | None,
) -> None:
    mail = OutgoingEmail(to, subject, html, text, headers, delivery_id)
    assert mail_json(mail, address(sender)) == library_body(mail, sender)


def test_fake_refuses_what_sendgrid_refuses() -> None:
    body = mail_json(MAIL, address(SENDER))
    body["content"][0]["value"] = ""
    body["personalizations"][0]["to"] = [{"email": f"u{i}@example.com"} for i in range(1001)]
    fields = {e["field"] for e in validate_mail(body)}
    assert fields == {"content.0.value", "personalizations"}
    assert {e["field"] for e in validate_mail({})} >= {"personalizations", "from.email", "content"}


def test_error_text_and_rate_limit_reset() -> None:
    body = json.dumps(
        {
            "errors": [
                {"message": "bad", "field": "from", "help": None},
                {"message": "worse", "field": None},
            ]
        }
    ).encode()
    assert error_text(body) == "from: bad; worse"
    assert error_text(b"<html>oops</html>") == "<html>oops</html>"
    assert rate_limit_reset({"X-RateLimit-Reset": "1764100000"}) == 1764100000.0
    assert rate_limit_reset({"X-RateLimit-Reset": "soon"}) is None
    assert rate_limit_reset({}) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://127.0.0.1:1025", ("127.0.0.1", 1025, False, False, None)),
        ("smtp://u%40x:p%3Aw@mail.example?starttls=1", ("mail.example", 587, False, True, "u@x")),
        ("smtps://mail.example", ("mail.example", 465, True, False, None)),
    ],
)
def test_smtp_url(url: str, expected: tuple[str, int, bool, bool, str | None]) -> None:
    t = parse_smtp_url(url)
    assert (t.host, t.port, t.implicit_tls, t.starttls, t.username) == expected


def test_smtp_url_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        parse_smtp_url("http://mail.example")


def test_retry_delay_grows_with_jitter_and_stays_capped() -> None:
    rng = random.Random(7)
    for attempt, (low, high) in {1: (1, 2), 2: (2, 4), 3: (4, 8), 10: (150, 300)}.items():
        delays = [retry_delay(attempt, base_s=2, max_s=300, rng=rng) for _ in range(200)]
        assert low <= min(delays) and max(delays) <= high
        assert len(set(delays)) > 100  # jittered


def test_retry_delay_honours_the_rate_limit_reset() -> None:
    delay = retry_delay(1, base_s=2, max_s=300, retry_at=1000.0, now_ts=990.0)
    assert 10 <= delay <= 12
    assert retry_delay(1, base_s=2, max_s=300, retry_at=1.0, now_ts=990.0) <= 2  # already past
    assert retry_delay(1, base_s=2, max_s=300, retry_at=1e12, now_ts=0) == MAX_COUNTDOWN_S


def test_outgoing_reads_the_task() -> None:
    task = {
        "notification_id": str(uuid.uuid4()),
        "email": "a@example.com",
        "subject": "s",
        "body": "<p>b</p>",
        "headers": HEADERS,
    }
    assert outgoing(task) == OutgoingEmail("a@example.com", "s", "<p>b</p>", "", HEADERS, None)


def test_webhook_events_map_to_statuses_and_opt_outs() -> None:
    d = str(uuid.uuid4())
    body = json.dumps(
        [
            {"event": "delivered", "delivery_id": d, "response": "250 OK"},
            {"event": "bounce", "delivery_id": d, "reason": "550 no such user"},
            {"event": "deferred", "delivery_id": d, "response": "421 later"},
            {"event": "dropped", "delivery_id": d, "reason": "Spam Reporting Address"},
            {"event": "spamreport", "delivery_id": d},
            {"event": "unsubscribe", "delivery_id": d},
            {"event": "open", "delivery_id": d},
            {"event": "delivered"},
            {"event": "delivered", "delivery_id": "nope"},
        ]
    ).encode()
    events = [(e.status, e.opt_out, e.error) for e in parse_events(body)]
    assert events == [
        ("delivered", False, None),
        ("bounced", False, "550 no such user"),
        ("deferred", False, "421 later"),
        ("dropped", False, "Spam Reporting Address"),
        ("spam", True, None),
        (None, True, None),
    ]
    with pytest.raises(ValueError):
        parse_events(b'{"event": "delivered"}')


def test_what_an_event_says_about_its_address() -> None:
    did = "0b7c0e4e-6c8e-4a55-9e53-3f1c2d1e0a11"
    items = [
        {"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user"},
        {"event": "bounce", "type": "blocked", "reason": "452 mailbox full"},
        {"event": "bounce", "reason": "550 gone"},  # no type: a bounce is hard
        {"event": "dropped", "reason": "Invalid"},
        {"event": "dropped", "reason": "Bounced Address"},
        {"event": "spamreport"},
        {"event": "deferred", "response": "421 later"},
        {"event": "delivered"},
    ]
    body = json.dumps([{**item, "delivery_id": did} for item in items]).encode()
    assert [(e.suppression, e.soft_bounce) for e in parse_events(body)] == [
        ("hard bounce", False),
        (None, True),
        ("hard bounce", False),
        ("invalid address", False),
        ("blocked", False),
        ("spam report", False),
        (None, False),
        (None, False),
    ]


def test_webhook_signature_is_checked_with_the_librarys_helper() -> None:
    private, public = webhook_keys()
    body = b'[{"event":"delivered"}]'
    headers = sign_webhook(private, body, "1764100000")
    sig = headers["X-Twilio-Email-Event-Webhook-Signature"]
    assert verify(public, body, sig, "1764100000")
    assert not verify(public, body + b" ", sig, "1764100000")
    assert not verify(public, body, sig, "1764100001")
    assert not verify(webhook_keys()[1], body, sig, "1764100000")
    assert not verify("", body, sig, "1764100000")
    assert not verify("not a key", body, sig, "1764100000")


def test_sending_timeout_must_outlast_a_provider_call() -> None:
    from pydantic import ValidationError

    from app.config import Settings
    from app.delivery.send_pool import CLAIMS_PER_THREAD

    with pytest.raises(ValidationError, match="EMAIL_SENDING_TIMEOUT_S"):
        Settings(email_timeout_s=10, email_sending_timeout_s=5)
    # A claim may wait for one provider call per claim held per thread before its own ends.
    with pytest.raises(ValidationError, match="EMAIL_SENDING_TIMEOUT_S"):
        Settings(email_timeout_s=10, email_sending_timeout_s=10 * CLAIMS_PER_THREAD)
    assert Settings(email_timeout_s=10, email_sending_timeout_s=10 * CLAIMS_PER_THREAD + 1)


def test_a_long_unsubscribe_url_stays_a_literal_header_on_the_wire() -> None:
    url = "https://notify.example.com/unsubscribe?token=" + "A1b2C3d4" * 20
    mail = OutgoingEmail("ann@example.com", "Hi", "<p>x</p>", "x", {"List-Unsubscribe": f"<{url}>"})
    raw = build_message(mail, SENDER).as_bytes()
    assert f"List-Unsubscribe: <{url}>\r\n".encode() in raw  # not folded into =?utf-8?q?...?=
    assert b"=?utf-8?" not in raw


def test_a_webhook_timestamp_is_fresh_only_within_the_window() -> None:
    from app.delivery.mail.sendgrid_events import fresh

    now = 1_800_000_000.0
    assert fresh("1800000000", max_age_s=600, now=now)
    assert fresh(str(int(now) - 600), max_age_s=600, now=now)
    assert not fresh(str(int(now) - 601), max_age_s=600, now=now)
    assert not fresh(
        str(int(now) + 601), max_age_s=600, now=now
    )  # from the future: skewed or forged
    assert not fresh("", max_age_s=600, now=now) and not fresh("soon", max_age_s=600, now=now)
