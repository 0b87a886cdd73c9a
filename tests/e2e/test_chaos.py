"""Chaos: a steady flow through every process while each dependency fails in turn.

Registrations and likes flow in, and a 500-recipient campaign is published. Meanwhile, in
turn: PostgreSQL restarts, RabbitMQ restarts, the Kafka broker restarts, the Auth service is
down for 30 s, SendGrid answers 503 for 30 s, and PostgreSQL is down for 150 s (longer than
EMAIL_SENDING_TIMEOUT_S) while sends are in the provider call. Afterwards every expected mail
was accepted by the fake SendGrid, every like was counted once, and every process recovered on
its own.
Duplicates are counted; the documented window (a worker that dies mid-send) is not among these
faults, so there must be none. Run it alone with `pytest -m chaos`.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text

from app.auth.dev_server import generate_users
from app.config import REPO_ROOT
from app.contracts import Event, encode_event
from app.db.session import dispose_engines, session_scope
from app.db.templates import get_template_by_name
from app.domain.campaigns import Draft, parse_audience
from app.jobs.campaigns import create_campaign, publish_campaign
from app.kafka.producer import make_producer, publish_all
from harness.fakes.sendgrid import FakeSendGrid
from harness.pipeline import Pipeline, reset_state
from harness.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.chaos]
log = logging.getLogger(__name__)

USERS = [
    {**u, "timezone": "UTC", "notification_policy": {"email": True, "likes": True, "mailing": True}}
    for u in generate_users(1500, seed=23)
]
CAMPAIGN = USERS[:500]
REGISTERING = USERS[500:]
OUTAGE_S = 30
LONG_OUTAGE_S = 150


class Flow:
    """Registrations (about 4/s) and likes (about 40/s), produced until stopped."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.registered: list[dict[str, Any]] = []
        self.likes: Counter[tuple[str, str]] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._users = iter(REGISTERING)
        self.errors: list[str] = []
        self._producer = make_producer(pipeline.settings)
        self._lock = threading.Lock()  # the flow and the recovery probes share the producer

    def start(self) -> Flow:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def register_one(self) -> dict[str, Any]:
        user = next(self._users)
        event = Event(uuid.UUID(user["user_id"]), "once", None, f"https://auth/c/{user['user_id']}")
        self._publish("user_registered", [event])
        self.registered.append(user)
        return user

    def _run(self) -> None:
        rng = random.Random(4)
        comments = [str(uuid.uuid4()) for _ in range(20)]
        while not self._stop.is_set():
            likes = []
            for _ in range(10):
                user, comment = rng.choice(CAMPAIGN)["user_id"], rng.choice(comments)
                likes.append(Event(uuid.UUID(user), "daily", uuid.UUID(comment), "nice"))
            try:
                self._publish("comment_liked", likes)
                for like in likes:
                    self.likes[(str(like.user_id), str(like.content_id))] += 1
                self.register_one()
            except Exception as exc:  # noqa: BLE001 - Kafka restarting: try again shortly
                self.errors.append(repr(exc))
            self._stop.wait(0.25)

    def _publish(self, kind: str, events: list[Event]) -> None:
        messages = [(str(e.user_id).encode(), encode_event(e)) for e in events]
        with self._lock:
            report = publish_all(
                self._producer, self.pipeline.topics[kind], messages, flush_timeout_s=120
            )
        if report.failed:
            raise RuntimeError(f"{report.failed} not delivered: {report.errors}")


@pytest.fixture(scope="module")
def pipeline(
    sendgrid: FakeSendGrid, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    from app.config import get_settings

    settings = get_settings()
    reset_state(settings)
    tmp = tmp_path_factory.mktemp("chaos")
    users_file = tmp / "users.json"
    users_file.write_text(json.dumps(USERS))
    extra = {"QUIET_HOURS": "", "EMAIL_RETRY_BASE_S": "0.5", "EMAIL_RETRY_MAX_S": "5"}
    running = Pipeline(settings, tmp, users_file, sendgrid.url, sendgrid.api_key, extra_env=extra)
    try:
        running.start()
        yield running
    finally:
        running.stop()
        dispose_engines()


def _mails(sendgrid: FakeSendGrid) -> Counter[tuple[str, str]]:
    """Accepted mails by (recipient, first word of the subject)."""
    found: Counter[tuple[str, str]] = Counter()
    for r in sendgrid.accepted():
        assert r.body is not None  # accepted: a JSON object, kept whole
        to = r.body["personalizations"][0]["to"][0]["email"]
        found[(to, r.body["subject"].split()[0].rstrip(","))] += 1
    return found


def _like_counts() -> dict[tuple[str, str], int]:
    with session_scope() as session:
        rows = session.execute(
            text("SELECT user_id, content_id, like_count FROM notifications WHERE kind = 'likes'")
        )
        return {(str(r.user_id), str(r.content_id)): r.like_count for r in rows}


def _services(command: str, service: str) -> None:
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/services.sh"), command, service],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"services.sh {command} {service}: {done.stdout}{done.stderr}"


def _postgres_down_during_sends(pipeline: Pipeline, sendgrid: FakeSendGrid) -> None:
    """PostgreSQL stopped for LONG_OUTAGE_S while sends are in the provider call."""
    from harness.outages import postgres_down

    sendgrid.delay_s = 3.0  # the fake records a request, then answers 3 s later

    def in_flight() -> list[Any]:
        return [r for r in list(sendgrid.received) if r.at > time.time() - 1.5]

    wait_for(in_flight, timeout=30, what="sends in the provider call")
    with postgres_down(pipeline.settings.database_url, seconds=LONG_OUTAGE_S):
        # Accepted while PostgreSQL is away: they can only be recorded when it is back.
        time.sleep(5)
        sendgrid.delay_s = 0.0


def _recovery(flow: Flow, sendgrid: FakeSendGrid) -> float:
    """Seconds from the end of a fault until a new registration's welcome mail is accepted."""
    started = time.monotonic()
    user = flow.register_one()
    wait_for(
        lambda: (user["email"], "Welcome") in _mails(sendgrid),
        timeout=300,
        what=f"a welcome mail after the fault for {user['email']}",
    )
    return time.monotonic() - started


def test_every_mail_goes_out_once_while_each_dependency_fails_in_turn(
    pipeline: Pipeline, sendgrid: FakeSendGrid, capsys: pytest.CaptureFixture[str]
) -> None:
    flow = Flow(pipeline).start()
    with session_scope() as session:
        template_id = get_template_by_name(session=session, name="mailing").template_id
    campaign = create_campaign(
        draft=Draft("Chaos news", template_id, "News during chaos", "once"),
        audience=parse_audience("\n".join(u["user_id"] for u in CAMPAIGN)),
        created_by="chaos",
    )
    producer = make_producer(pipeline.settings)
    published = publish_campaign(
        campaign_id=campaign.campaign_id, producer=producer, topic=pipeline.topics["mailing"]
    )
    assert published.delivered == 500

    auth = pipeline.processes["auth"]

    def auth_down() -> None:
        auth.stop()
        time.sleep(OUTAGE_S)
        auth.start(pipeline.env)

    def sendgrid_unavailable() -> None:
        sendgrid.down_until(time.time() + OUTAGE_S)
        time.sleep(OUTAGE_S)

    faults: list[tuple[str, Callable[[], None]]] = [
        ("PostgreSQL restart", lambda: _services("restart", "postgres")),
        ("RabbitMQ restart", lambda: _services("restart", "rabbitmq")),
        ("Kafka broker restart", lambda: _services("restart", "kafka")),
        ("Auth down 30 s", auth_down),
        ("SendGrid 503 for 30 s", sendgrid_unavailable),
        (
            "PostgreSQL down 150 s during sends",
            lambda: _postgres_down_during_sends(pipeline, sendgrid),
        ),
    ]
    recovery: dict[str, float] = {}
    try:
        time.sleep(5)  # a steady flow first
        for name, fault in faults:
            fault()
            dispose_engines()  # this process's own pooled connections may have died
            recovery[name] = _recovery(flow, sendgrid)
            log.warning("%s: the pipeline delivered again %.1f s after it", name, recovery[name])
    finally:
        flow.stop()

    expected = Counter({(u["email"], "Welcome"): 1 for u in flow.registered})
    expected.update({(u["email"], "News"): 1 for u in CAMPAIGN})
    wait_for(
        lambda: set(_mails(sendgrid)) >= set(expected),
        timeout=300,
        what="every expected mail at the fake SendGrid",
    )
    mails = _mails(sendgrid)
    duplicates = sum(n - 1 for n in mails.values() if n > 1)
    with capsys.disabled():
        print(  # noqa: T201
            f"\nchaos: {len(expected)} mails expected, {sum(mails.values())} accepted, "
            f"{duplicates} duplicated; {sum(flow.likes.values())} likes; recovery after each "
            f"fault: {', '.join(f'{k} {v:.1f} s' for k, v in recovery.items())}"
        )
    assert set(mails) == set(expected)
    assert duplicates == 0, [k for k, n in mails.items() if n > 1][:10]
    wait_for(lambda: _like_counts() == dict(flow.likes), timeout=120, what="exact like counts")
    dead = [name for name, process in pipeline.processes.items() if not process.alive()]
    assert dead == [], pipeline.logs()
