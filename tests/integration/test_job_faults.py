"""Faults stay with their delivery: one bad Auth record, name, template or row never stops a chunk.

Real PostgreSQL and the dev Auth server over HTTP; the dispatcher publishes to a recording
publisher (the task contract is what is under test, not RabbitMQ).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app.auth.client import AuthClient
from app.auth.dev_server import DevAuthServer, generate_users
from app.config import Settings
from app.db.session import session_scope
from app.domain.vocabulary import Kind, Periodicity
from app.jobs import digests, dispatch
from harness.auth import client_for, serve_in_thread
from harness.fakes.auth import HostileAuthServer
from harness.rows import Spec, insert_notifications

NOW = datetime(2026, 11, 25, 0, 5, tzinfo=UTC)


class RecordingPublisher:
    """Keeps what the dispatcher would put on the `emails` queue."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = []

    def publish(
        self,
        tasks: Sequence[tuple[dict[str, Any], float | None]],
        *,
        resolution_s: float = 1.0,
        counted_from: datetime | None = None,
    ) -> None:
        self.tasks.extend(task for task, _delay in tasks)


@pytest.fixture
def users() -> list[dict[str, Any]]:
    found = generate_users(500)
    for user in found:  # everyone accepts everything: only the faults under test skip mail
        user["notification_policy"] = {"email": True, "likes": True, "mailing": True}
    return found


@pytest.fixture
def auth(users: list[dict[str, Any]], settings: Settings) -> Iterator[AuthClient]:
    server = DevAuthServer(("127.0.0.1", 0), users, settings.auth_api_token.get_secret_value())
    serve_in_thread(server)
    client = client_for(server, settings)
    yield client
    client.close()
    server.shutdown()
    server.server_close()


def _rows(
    kind: Kind, users: list[dict[str, Any]], periodicity: Periodicity = "once"
) -> list[uuid.UUID]:
    specs = [
        Spec(
            uuid.UUID(u["user_id"]),
            kind,
            periodicity,
            None if kind == "welcome" else uuid.uuid4(),
            "https://auth.example/confirm" if kind == "welcome" else "news",
            like_count=1,
        )
        for u in users
    ]
    with session_scope() as session:
        return insert_notifications(session, specs)


def _deliveries() -> list[Any]:
    with session_scope() as session:
        return list(
            session.execute(
                text(
                    "SELECT d.delivery_id, d.status, d.error, c.subject, n.user_id,"
                    " n.status AS n_status FROM deliveries d JOIN notifications n"
                    " USING (notification_id)"
                    " LEFT JOIN delivery_contents c ON c.delivery_id = d.delivery_id"
                )
            )
        )


def _set_template(name: str, **parts: str) -> None:
    # Straight into the database, as an old row or another tool could have it: no save check.
    with session_scope() as session:
        for column, value in parts.items():
            session.execute(
                text(f"UPDATE templates SET {column} = :v WHERE name = :n"), {"v": value, "n": name}
            )


def test_one_invalid_auth_address_among_500_costs_only_that_user(
    db: str, users: list[dict[str, Any]], auth: AuthClient, settings: Settings
) -> None:
    users[137]["email"] = "not-an-address"
    ids = _rows("welcome", users)
    statuses = digests.plan_once(ids, auth=auth, settings=settings, now=NOW)
    assert Counter(statuses.values()) == {"scheduled": 499, "skipped": 1}
    [skipped] = [d for d in _deliveries() if d.status == "skipped"]
    assert str(skipped.user_id) == users[137]["user_id"]
    assert "unusable Auth record" in skipped.error and "email must be email" in skipped.error
    publisher = RecordingPublisher()
    assert dispatch.dispatch_due(publisher=publisher, now=NOW) == 499


def test_a_1000_character_name_is_clipped_so_the_subject_stays_one_header_line(
    db: str, users: list[dict[str, Any]], auth: AuthClient, settings: Settings
) -> None:
    users[0]["name"] = "Ü" * 1000
    ids = _rows("welcome", users[:3])
    assert set(digests.plan_once(ids, auth=auth, settings=settings, now=NOW).values()) == {
        "scheduled"
    }
    publisher = RecordingPublisher()
    assert dispatch.dispatch_due(publisher=publisher, now=NOW) == 3
    long_one = next(t for t in publisher.tasks if "Ü" in t["subject"])
    assert len(long_one["subject"]) < 200 and "Ü" * 99 + "…" in long_one["subject"]


def test_a_template_whose_html_renders_empty_fails_its_deliveries_only(
    db: str, users: list[dict[str, Any]], auth: AuthClient, settings: Settings
) -> None:
    _set_template("mailing", body_html="{% if false %}never{% endif %}")
    mailings = _rows("mailing", users[:20], "daily")
    likes = _rows("likes", users[20:40], "daily")
    report = digests.run_digest("daily", auth=auth, settings=settings, now=NOW)
    assert report.by_status == {"failed": 20, "scheduled": 20}
    by_status = Counter(d.status for d in _deliveries())
    assert by_status == {"failed": 20, "scheduled": 20}
    assert {d.error for d in _deliveries() if d.status == "failed"} == {"HTML body: renders empty"}
    assert len(mailings) == len(likes) == 20


def test_a_template_raising_for_one_user_of_500_fails_that_delivery_only(
    db: str, users: list[dict[str, Any]], auth: AuthClient, settings: Settings
) -> None:
    users[250]["name"] = "Bob"  # every other name has 9 characters
    _set_template("welcome", body_html="<p>{{ 100 // (name|length - 3) }}</p>")
    ids = _rows("welcome", users)
    statuses = digests.plan_once(ids, auth=auth, settings=settings, now=NOW)
    assert Counter(statuses.values()) == {"scheduled": 499, "failed": 1}
    [failed] = [d for d in _deliveries() if d.status == "failed"]
    assert str(failed.user_id) == users[250]["user_id"] and "ZeroDivisionError" in failed.error


def test_a_row_whose_task_breaks_the_contract_fails_alone_and_never_comes_back(
    db: str, users: list[dict[str, Any]], auth: AuthClient, settings: Settings
) -> None:
    ids = _rows("welcome", users[:5])
    digests.plan_once(ids, auth=auth, settings=settings, now=NOW)
    with session_scope() as session:  # e.g. planned by an older version, before the checks
        session.execute(
            text(
                "UPDATE delivery_contents SET subject = :s WHERE delivery_id = ("
                " SELECT delivery_id FROM deliveries ORDER BY send_at LIMIT 1)"
            ),
            {"s": "x" * 1200},
        )
    publisher = RecordingPublisher()
    assert dispatch.dispatch_due(publisher=publisher, now=NOW) == 5
    assert len(publisher.tasks) == 4
    [broken] = [d for d in _deliveries() if d.status == "failed"]
    assert "task contract" in broken.error and broken.n_status == "failed"
    later = RecordingPublisher()  # the others are re-swept then (never sent); the broken one is not
    assert dispatch.dispatch_due(publisher=later, now=NOW + dispatch.RESWEEP_AFTER * 2) == 4
    assert str(broken.delivery_id) not in {t["delivery_id"] for t in later.tasks}


class ThreadRecordingPublisher(RecordingPublisher):
    """Also keeps which thread published each call; from call number `down_from`, the broker is
    down: every call fails."""

    def __init__(self, down_from: int | None = None) -> None:
        super().__init__()
        self.threads: set[str] = set()
        self.calls = 0
        self.down_from = down_from
        self._lock = threading.Lock()

    def publish(
        self,
        tasks: Sequence[tuple[dict[str, Any], float | None]],
        *,
        resolution_s: float = 1.0,
        counted_from: datetime | None = None,
    ) -> None:
        with self._lock:
            self.calls += 1
            if self.down_from is not None and self.calls >= self.down_from:
                raise ConnectionError("the broker went away mid-backlog")
            self.threads.add(threading.current_thread().name)
        time.sleep(0.05)  # a publish that takes a moment, so the lanes overlap
        with self._lock:
            super().publish(tasks)


def test_a_backlog_is_dispatched_by_lanes_side_by_side_each_delivery_once(
    db: str, users: list[dict[str, Any]], auth: AuthClient, settings: Settings
) -> None:
    ids = _rows("welcome", users)
    digests.plan_once(ids, auth=auth, settings=settings, now=NOW)
    publisher = ThreadRecordingPublisher()
    assert dispatch.dispatch_due(publisher=publisher, now=NOW, limit=40) == 500
    published = Counter(t["delivery_id"] for t in publisher.tasks)
    assert len(published) == 500 and set(published.values()) == {1}
    assert len(publisher.threads) > 1  # the backlog was worked by more than one lane
    assert {d.status for d in _deliveries()} == {"enqueued"}


def test_a_publish_that_fails_mid_backlog_leaves_its_batch_to_the_next_sweep(
    db: str, users: list[dict[str, Any]], auth: AuthClient, settings: Settings
) -> None:
    ids = _rows("welcome", users)
    digests.plan_once(ids, auth=auth, settings=settings, now=NOW)
    failing = ThreadRecordingPublisher(down_from=4)
    with pytest.raises(ConnectionError):
        dispatch.dispatch_due(publisher=failing, now=NOW, limit=40)
    rows = _deliveries()
    enqueued = {str(d.delivery_id) for d in rows if d.status == "enqueued"}
    assert enqueued == {t["delivery_id"] for t in failing.tasks}  # committed = published
    assert {d.status for d in rows} == {"enqueued", "scheduled"}
    again = ThreadRecordingPublisher()
    assert dispatch.dispatch_due(publisher=again, now=NOW, limit=40) == 500 - len(enqueued)
    assert not enqueued & {t["delivery_id"] for t in again.tasks}  # nothing published twice
    assert {d.status for d in _deliveries()} == {"enqueued"}


def test_a_delivery_stuck_in_sending_is_swept_by_the_dispatcher(db: str) -> None:
    from kombu.connection import Connection
    from kombu.entity import Exchange, Queue
    from sqlalchemy import func, update

    from app.config import get_settings
    from app.core.clock import utcnow
    from app.db.models import Delivery
    from app.delivery.sending import RELEASE_GRACE_S
    from app.jobs.celery_app import EMAILS_QUEUE
    from app.tasks import dispatch as dispatch_task
    from harness.delivery import deliveries, dispatch, purge_emails_queue, seed

    settings = get_settings()
    purge_emails_queue(settings)
    [(stuck, _u, _k)] = seed(settings, utcnow(), ["welcome"])
    with session_scope() as session:  # a worker died in the provider call an hour ago
        session.execute(
            update(Delivery)
            .where(Delivery.delivery_id == stuck)
            .values(
                status="sending",
                attempts=1,
                updated_at=func.now() - timedelta(hours=1),
                enqueued_at=func.now() - timedelta(hours=1),
            )
        )
    # No worker start-up needed: the dispatcher's tick releases it, and enqueues it once the
    # grace a live worker gets to record an accepted send has passed.
    assert dispatch_task() == 0
    assert deliveries()[stuck].status == "enqueued"
    assert dispatch(utcnow() + timedelta(seconds=RELEASE_GRACE_S + 1)) == 1
    queue = Queue(
        EMAILS_QUEUE, Exchange(EMAILS_QUEUE, "direct", durable=True), EMAILS_QUEUE, durable=True
    )
    with Connection(settings.celery_broker_url) as conn:
        message = queue(conn.default_channel).get(no_ack=True)
    assert message is not None and message.payload[0][0][0]["delivery_id"] == str(stuck)


@pytest.fixture
def hostile_auth(
    users: list[dict[str, Any]], settings: Settings
) -> Iterator[tuple[HostileAuthServer, AuthClient]]:
    server = HostileAuthServer(users, settings.auth_api_token.get_secret_value()).start()
    client = AuthClient(
        server.url, settings.auth_api_token.get_secret_value(), retries=1, sleep=lambda _s: None
    )
    yield server, client
    client.close()
    server.stop()


def test_addresses_no_column_or_mail_server_takes_cost_only_their_users(
    db: str,
    users: list[dict[str, Any]],
    hostile_auth: tuple[HostileAuthServer, AuthClient],
    settings: Settings,
) -> None:
    # Users who turned mailings off: their skipped deliveries once stored the raw address
    # (deliveries.email holds 320 characters), and the insert of the whole chunk failed.
    server, auth = hostile_auth
    bad = {
        10: '"' + "a" * 390 + '@example.com"',
        20: '"ann\\u0000@example.com"',
        30: '"ann\\ud800@example.com"',
    }
    for index, raw in bad.items():
        users[index]["notification_policy"] = {"email": True, "likes": True, "mailing": False}
        server.raw_fields[users[index]["user_id"]] = {"email": raw}
    ids = _rows("mailing", users)
    statuses = digests.plan_once(ids, auth=auth, settings=settings, now=NOW)
    assert Counter(statuses.values()) == {"scheduled": 497, "skipped": 3}
    skipped = {str(d.user_id): d.error for d in _deliveries() if d.status == "skipped"}
    assert skipped.keys() == {users[i]["user_id"] for i in bad}
    assert all(error.startswith("unusable Auth record") for error in skipped.values())
    assert "over RFC 5321's 254" in skipped[users[10]["user_id"]]


def test_auth_records_python_cannot_read_cost_only_their_users(
    db: str,
    users: list[dict[str, Any]],
    hostile_auth: tuple[HostileAuthServer, AuthClient],
    settings: Settings,
) -> None:
    # A 5,000-digit number, or nesting past the parser's depth, once failed the whole answer.
    server, auth = hostile_auth
    server.raw_fields[users[40]["user_id"]] = {"name": "1" * 5000}
    server.raw_fields[users[50]["user_id"]] = {"avatar": "[" * 100_000 + "]" * 100_000}
    ids = _rows("welcome", users)
    statuses = digests.plan_once(ids, auth=auth, settings=settings, now=NOW)
    assert Counter(statuses.values()) == {"scheduled": 498, "skipped": 2}
    skipped = {str(d.user_id): d.error for d in _deliveries() if d.status == "skipped"}
    assert skipped.keys() == {users[40]["user_id"], users[50]["user_id"]}
    assert "digit" in skipped[users[40]["user_id"]]
    assert "nested too deeply" in skipped[users[50]["user_id"]]
    # One answer, then halves down to each bad record: far fewer requests than users.
    assert server.answers <= 1 + 2 * 2 * 9


@pytest.mark.parametrize(
    ("source", "raised"),
    [
        ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "RecursionError"),
        ("{{ " + "1" * 5000 + " }}", "ValueError"),
        ("{% if x %}" * 3000 + "{% endif %}" * 3000, "RecursionError"),
    ],
)
def test_a_template_the_compiler_cannot_take_fails_its_deliveries_only(
    db: str,
    users: list[dict[str, Any]],
    auth: AuthClient,
    settings: Settings,
    source: str,
    raised: str,
) -> None:
    # Written straight to the table: the whole planning chunk once failed on its compile.
    _set_template("mailing", body_html=source)
    _rows("mailing", users[:20], "daily")
    _rows("likes", users[20:40], "daily")
    report = digests.run_digest("daily", auth=auth, settings=settings, now=NOW)
    assert report.by_status == {"failed": 20, "scheduled": 20}
    errors = {d.error for d in _deliveries() if d.status == "failed"}
    assert len(errors) == 1 and f"template cannot be compiled: {raised}" in errors.pop()
