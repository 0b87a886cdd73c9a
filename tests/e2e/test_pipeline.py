"""End to end: events on Kafka become e-mails, through every process of the service.

The service's processes run as separate OS processes on the real Kafka, PostgreSQL and RabbitMQ;
the Auth service is the dev Auth server and SendGrid a fake that speaks its v3 API over HTTP.
Time is driven through the service's clock setting (CLOCK_OFFSET_S), never by sleeping.
"""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.auth.dev_server import generate_users
from app.cli.demo import DEV_AUTH_USERS
from app.contracts import Event, encode_event
from app.db.models import Delivery, Notification
from app.db.session import dispose_engines, session_scope
from app.db.templates import get_template_by_name
from app.db.timeline import load_user
from app.domain import timeline
from app.domain.campaigns import Draft, parse_audience
from app.jobs.campaigns import create_campaign, publish_campaign
from app.jobs.celery_app import DAILY_DIGEST, JOBS_QUEUE, celery_app
from app.kafka.producer import make_producer, publish_all
from app.portal.app import create_app
from harness.fakes.sendgrid import FakeSendGrid, sign_webhook, webhook_keys
from harness.pipeline import BIN, Pipeline, http_json, reset_state, scrape
from harness.waiting import wait_for

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Kathmandu")  # +05:45: a send hour that is not on a UTC hour boundary
USERS = [{**user, "timezone": ZONE.key} for user in generate_users(120, seed=11)]
UNKNOWN = uuid.UUID("00000000-0000-4000-8000-00000000dead")
# The users `make run`'s dev Auth server serves, for `notify demo` (different ids from USERS).
DEMO_USERS = generate_users(DEV_AUTH_USERS)
# Users of the deliverability test who take every kind of mail (ids apart from USERS').
# Generated addresses repeat from one seed to the next: these get addresses of their own.
BOUNCING = [
    {**u, "timezone": ZONE.key, "email": f"bouncing{i}@example.org"}
    for i, u in enumerate(generate_users(20, seed=12))
    if all(u["notification_policy"].values())
][:2]


def _user_id(i: int) -> uuid.UUID:
    return uuid.UUID(USERS[i]["user_id"])


@pytest.fixture(scope="module")
def pipeline(
    sendgrid: FakeSendGrid, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    from app.config import get_settings

    settings = get_settings()
    reset_state(settings)
    tmp = tmp_path_factory.mktemp("pipeline")
    users_file = tmp / "users.json"
    users_file.write_text(json.dumps(USERS + DEMO_USERS + BOUNCING))
    pipeline = Pipeline(settings, tmp, users_file, sendgrid.url, sendgrid.api_key)
    try:
        pipeline.start()
        # Midday in the users' zone: nothing is held back by quiet hours.
        pipeline.set_local_clock(dtime(12, 0), ZONE, "jobs", "emails", "beat")
        yield pipeline
    finally:
        pipeline.stop()
        dispose_engines()


def _produce(pipeline: Pipeline, kind: str, events: list[Event]) -> None:
    producer = make_producer(pipeline.settings)
    messages = [(str(e.user_id).encode(), encode_event(e)) for e in events]
    report = publish_all(producer, pipeline.topics[kind], messages)
    assert report.delivered == len(events), report.errors


def _mails_to(sendgrid: FakeSendGrid, address: str) -> list[dict[str, Any]]:
    return [
        r.body
        for r in sendgrid.accepted()
        if r.body and r.body["personalizations"][0]["to"][0]["email"] == address
    ]


def _content(mail: dict[str, Any], mime: str) -> str:
    value: str = next(c["value"] for c in mail["content"] if c["type"] == mime)
    return value


def test_registration_becomes_a_welcome_email_with_the_link(
    pipeline: Pipeline, sendgrid: FakeSendGrid
) -> None:
    user = USERS[0]
    link = "https://auth.example.com/confirm?token=e2e-123"
    _produce(pipeline, "user_registered", [Event(_user_id(0), "once", None, link)])
    (mail,) = wait_for(
        lambda: _mails_to(sendgrid, user["email"]),
        timeout=60,
        what="the welcome e-mail at the fake SendGrid",
    )
    assert link in _content(mail, "text/plain")
    assert f'href="{link}"' in _content(mail, "text/html")
    assert user["name"] in mail["subject"]
    assert "List-Unsubscribe" not in (mail.get("headers") or {})  # transactional


def _sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_every_process_serves_metrics_and_logs_json_lines(
    pipeline: Pipeline, sendgrid: FakeSendGrid
) -> None:
    i = next(i for i in range(110, 120) if USERS[i]["notification_policy"]["email"])
    _produce(pipeline, "user_registered", [Event(_user_id(i), "once", None, "https://x.test/c")])
    wait_for(lambda: _mails_to(sendgrid, USERS[i]["email"]), timeout=60, what="the welcome mail")
    ports = pipeline.metrics_ports

    stream = scrape(f"http://127.0.0.1:{pipeline.web_port}/metrics")
    topic = pipeline.topics["user_registered"]
    assert _sample(stream, "notify_stream_events_applied_total", topic=topic) >= 1
    assert _sample(stream, "notify_stream_partition_lag", topic=topic, partition="0") == 0
    jobs = scrape(f"http://127.0.0.1:{ports['jobs']}/metrics")
    assert _sample(jobs, "notify_planned_total", periodicity="once", decision="scheduled") >= 1
    assert _sample(jobs, "notify_auth_calls_total", result="ok") >= 1
    assert _sample(jobs, "notify_circuit_state", dependency="auth") == 0
    assert _sample(jobs, "notify_emails_enqueued_total") >= 1
    # Sent, and recorded: wait for the counter rather than racing the worker's bookkeeping.
    emails_url = f"http://127.0.0.1:{ports['emails']}/metrics"
    wait_for(
        lambda: _sample(scrape(emails_url), "notify_deliveries_total", outcome="sent") >= 1,
        timeout=10,
        what="the sent delivery counted",
    )
    sends = _sample(
        scrape(emails_url), "notify_email_send_seconds_count", backend="SendGridBackend"
    )
    assert sends >= 1
    for name in ("jobs", "emails", "beat"):
        assert http_json(f"http://127.0.0.1:{ports[name]}/healthz") == {"status": "ok"}

    # JSON lines, with the task and the delivery named in fields of their own.
    records = [
        json.loads(line)
        for line in pipeline.processes["emails"].new_log().splitlines()
        if line.startswith("{")
    ]
    assert records, "the emails worker wrote no JSON log lines"
    sent = [
        r
        for r in records
        if r["message"].startswith("delivery ") and r["message"].endswith(" sent")
    ]
    assert sent and all(r["delivery_id"] and r["task_name"] == "notify.send_emails" for r in sent)
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)


def test_registration_through_the_outbox_backend(pipeline: Pipeline) -> None:
    pipeline.email_backend = "outbox"
    pipeline.restart("emails")
    try:
        user = USERS[1]
        link = "https://auth.example.com/confirm?token=e2e-outbox"
        _produce(pipeline, "user_registered", [Event(_user_id(1), "once", None, link)])
        (path,) = wait_for(
            lambda: list(Path(pipeline.outbox).glob("*.eml")),
            timeout=60,
            what="an .eml file in the outbox",
        )
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message["To"].endswith(f"<{user['email']}>") or message["To"] == user["email"]
        text_part = next(p for p in message.walk() if p.get_content_type() == "text/plain")
        assert link in text_part.get_content()
    finally:
        pipeline.email_backend = "sendgrid"
        pipeline.restart("emails")


def test_the_demo_turns_its_burst_into_mail_in_the_outbox(pipeline: Pipeline) -> None:
    pipeline.email_backend = "outbox"
    pipeline.restart("emails")
    try:
        before = set(Path(pipeline.outbox).glob("*.eml"))
        demo = subprocess.run(
            [
                str(BIN / "notify"),
                "demo",
                "--registrations",
                "8",
                "--likes",
                "40",
                "--comments",
                "4",
                "--campaign",
                "12",
                "--wait",
                "90",
            ],
            env=pipeline.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert demo.returncode == 0, demo.stderr[-3000:]
        assert "published     8 events to" in demo.stdout
        assert "all welcome e-mails handled" in demo.stdout, demo.stdout
        assert "/admin/outbox" in demo.stdout
        new = set(Path(pipeline.outbox).glob("*.eml")) - before
        # Welcome mail is transactional: all 8 went out, whatever the users' quiet hours.
        subjects = [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)["Subject"]
            for p in new
        ]
        assert sum(s.startswith("Welcome, ") for s in subjects) == 8, subjects
    finally:
        pipeline.email_backend = "sendgrid"
        pipeline.restart("emails")


def test_an_unknown_user_is_skipped(pipeline: Pipeline, sendgrid: FakeSendGrid) -> None:
    _produce(pipeline, "user_registered", [Event(UNKNOWN, "once", None, "https://x.example/c")])

    def skipped() -> Delivery | None:
        with session_scope() as session:
            return session.scalars(
                select(Delivery).join(Notification).where(Notification.user_id == UNKNOWN)
            ).one_or_none()

    delivery = wait_for(skipped, timeout=60, what="the unknown user's delivery")
    assert (delivery.status, delivery.error) == ("skipped", "unknown user")
    assert all(r.delivery_id != str(delivery.delivery_id) for r in sendgrid.received)


def test_a_campaign_reaches_exactly_the_users_whose_policy_allows_mailings(
    pipeline: Pipeline, sendgrid: FakeSendGrid
) -> None:
    recipients = USERS[10:110]
    policies = {u["email"]: u["notification_policy"] for u in recipients}
    allowed = {address for address, p in policies.items() if p["email"] and p["mailing"]}
    assert 0 < len(allowed) < len(recipients)
    with session_scope() as session:
        template_id = get_template_by_name(session=session, name="mailing").template_id
    campaign = create_campaign(
        draft=Draft("E2E news", template_id, "Hello from the e2e campaign", "once"),
        audience=parse_audience("\n".join(u["user_id"] for u in recipients)),
        created_by="e2e",
    )
    producer = make_producer(pipeline.settings)
    report = publish_campaign(
        campaign_id=campaign.campaign_id, producer=producer, topic=pipeline.topics["mailing"]
    )
    assert report.delivered == 100

    def campaign_settled() -> dict[str | None, str] | None:
        with session_scope() as session:
            rows = session.execute(
                select(Delivery.status, Delivery.email)
                .join(Notification)
                .where(Notification.campaign_id == campaign.campaign_id)
            ).all()
        if len(rows) < 100 or any(s not in ("sent", "skipped") for s, _ in rows):
            return None
        return {e: s for s, e in rows if s == "sent"} or {"": ""}

    wait_for(campaign_settled, timeout=90, what="every campaign delivery sent or skipped")
    got = {
        r.body["personalizations"][0]["to"][0]["email"]
        for r in sendgrid.accepted()
        if r.body and r.body["subject"].startswith("News for you")
    }
    assert got == allowed


def test_25_likes_become_one_digest_at_the_local_send_hour(
    pipeline: Pipeline, sendgrid: FakeSendGrid
) -> None:
    owner = next(
        i
        for i in range(2, 10)
        if USERS[i]["notification_policy"]["likes"] and USERS[i]["notification_policy"]["email"]
    )
    comment = uuid.uuid4()
    likes = [Event(_user_id(owner), "daily", comment, "What a sunset!") for _ in range(25)]
    _produce(pipeline, "comment_liked", likes)

    def counted() -> bool:
        with session_scope() as session:
            count = session.scalar(
                select(Notification.like_count).where(
                    Notification.kind == "likes", Notification.content_id == comment
                )
            )
        return count == 25

    wait_for(counted, timeout=60, what="25 likes counted in PostgreSQL")

    # A little before 09:00 in the owner's zone; the daily job plans the digest for 09:00.
    nine = pipeline.set_local_clock(dtime(8, 59, 20), ZONE, "jobs", "emails", "beat")
    nine = nine.replace(hour=9, minute=0, second=0)
    celery_app.send_task(DAILY_DIGEST, queue=JOBS_QUEUE)
    address = USERS[owner]["email"]
    (mail,) = wait_for(
        lambda: _mails_to(sendgrid, address),
        timeout=120,
        what="the like digest at the fake SendGrid",
    )
    assert "25 new likes" in mail["subject"]
    received = next(r for r in sendgrid.accepted() if r.body is mail)
    # The provider call, on the service's clock.
    called_at = datetime.fromtimestamp(received.at, UTC) + timedelta(
        seconds=pipeline.clock_offset_s
    )
    assert timedelta(0) <= called_at - nine < timedelta(seconds=15), (called_at, nine)
    with session_scope() as session:
        row = session.scalars(select(Notification).where(Notification.content_id == comment)).one()
        delivery = session.scalars(
            select(Delivery).where(Delivery.notification_id == row.notification_id)
        ).one()
    assert (row.status, row.like_count, delivery.reported_count) == ("sent", 0, 25)
    assert delivery.sent_at is not None
    assert delivery.sent_at.astimezone(ZONE).strftime("%H:%M") == "09:00"


def _delivery_of(user_id: uuid.UUID, kind: str) -> Delivery | None:
    with session_scope() as session:
        return session.scalars(
            select(Delivery)
            .join(Notification)
            .where(Notification.user_id == user_id, Notification.kind == kind)
        ).first()


def _settled(user_id: uuid.UUID, kind: str) -> Callable[[], Delivery | None]:
    def check() -> Delivery | None:
        found = _delivery_of(user_id, kind)
        return found if found is not None and found.status in ("sent", "skipped") else None

    return check


def test_a_hard_bounce_stops_the_digest_and_the_campaign_to_that_address(
    pipeline: Pipeline, sendgrid: FakeSendGrid
) -> None:
    bouncing, other = BOUNCING
    uid, other_id = uuid.UUID(bouncing["user_id"]), uuid.UUID(other["user_id"])
    link = "https://auth.example.com/confirm?token=bounce"
    _produce(pipeline, "user_registered", [Event(uid, "once", None, link)])
    welcome = wait_for(_settled(uid, "welcome"), timeout=60, what="the welcome mail sent")
    assert welcome.status == "sent" and len(_mails_to(sendgrid, bouncing["email"])) == 1

    # The recipient's server refuses the address for good: SendGrid reports it on the webhook.
    private, public = webhook_keys()
    portal = TestClient(
        create_app(pipeline.settings.model_copy(update={"sendgrid_webhook_public_key": public}))
    )
    events = [
        {
            "event": "bounce",
            "type": "bounce",
            "email": bouncing["email"],
            "reason": "550 5.1.1 user unknown",
            "delivery_id": str(welcome.delivery_id),
        }
    ]
    body = json.dumps(events).encode()
    signed = sign_webhook(private, body, str(int(time.time())))
    answer = portal.post("/webhooks/sendgrid", content=body, headers=signed)
    assert answer.status_code == 200 and answer.json()["applied"]["suppressed"] == 1

    # A like digest at the send hour, then a campaign to both users.
    _produce(pipeline, "comment_liked", [Event(uid, "daily", uuid.uuid4(), "Nice photo")] * 3)
    wait_for(lambda: _delivery_of(uid, "likes") is None and _liked(uid), timeout=60, what="likes")
    pipeline.set_local_clock(dtime(8, 59, 20), ZONE, "jobs", "emails", "beat")
    celery_app.send_task(DAILY_DIGEST, queue=JOBS_QUEUE)
    digest = wait_for(_settled(uid, "likes"), timeout=120, what="the digest's delivery")
    with session_scope() as session:
        template_id = get_template_by_name(session=session, name="mailing").template_id
    campaign = create_campaign(
        draft=Draft("Bounce check", template_id, "Hello again", "once"),
        audience=parse_audience(f"{uid}\n{other_id}"),
        created_by="e2e",
    )
    published = publish_campaign(
        campaign_id=campaign.campaign_id,
        producer=make_producer(pipeline.settings),
        topic=pipeline.topics["mailing"],
    )
    assert published.delivered == 2
    mailing = wait_for(_settled(uid, "mailing"), timeout=90, what="the campaign's delivery")
    wait_for(lambda: _mails_to(sendgrid, other["email"]), timeout=90, what="the other's mail")

    reason = "address suppressed: it bounced on "
    for held in (digest, mailing):
        assert held.status == "skipped" and (held.error or "").startswith(reason), held.error
        assert "550 5.1.1 user unknown" in (held.error or "")
    assert len(_mails_to(sendgrid, bouncing["email"])) == 1  # the welcome mail, and no more
    with session_scope() as session:
        story = timeline.build(load_user(session=session, user_id=uid))
    said = [e.detail for e in story if e.outcome == "skipped"]
    assert len(said) == 2
    assert all(d.startswith("skipped: the address gets no more mail: it bounced on") for d in said)


def _liked(user_id: uuid.UUID) -> bool:
    with session_scope() as session:
        count = session.scalar(
            select(Notification.like_count).where(
                Notification.user_id == user_id, Notification.kind == "likes"
            )
        )
    return count == 3
