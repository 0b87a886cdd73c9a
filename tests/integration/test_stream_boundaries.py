"""A real `notify worker` at the edges of what Kafka carries: records as large as a producer sends.

A Java producer's default request limit is 1 MiB, so a 1,000,000-byte value reaches our topics;
its dead-letter copy with our headers is over Faust's own producer limit (1,000,000 bytes).
"""

from __future__ import annotations

import subprocess
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from sqlalchemy import text

from app.db.session import session_scope
from app.kafka.connection import client_config
from app.kafka.producer import make_producer
from harness.kafka import headers_of
from harness.stream import BIN, StreamEnv, event, metrics_of, total_likes_in_db
from harness.waiting import wait_for

HUGE = 1_000_000


def _produce_large(s: StreamEnv, items: list[tuple[str, str, bytes]]) -> None:
    # A producer whose own limit lets a 1,000,000-byte value through, as Java's default does.
    producer = make_producer(s.settings, **{"message.max.bytes": 1_048_576, "linger.ms": 5})
    for topic, key, value in items:
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    assert producer.flush(60) == 0


def _dead_letter_headers(s: StreamEnv, expected: int) -> list[dict[str, bytes]]:
    consumer = Consumer(
        {
            **client_config(s.settings),
            "group.id": f"test-read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([s.dead_letter])
    got: list[dict[str, bytes]] = []
    deadline = time.monotonic() + 60
    try:
        while len(got) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            assert message.value() is None, "a dead letter over the limit carries no value"
            got.append(headers_of(message))
    finally:
        consumer.close()
    return got


def test_a_million_byte_record_on_each_topic_is_dead_lettered_and_the_topics_flow(
    stream_env: StreamEnv,
) -> None:
    s = stream_env
    worker = s.worker()
    worker.wait_ready()
    user, comment, campaign = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    huge = b'{"pad": "' + b"x" * (HUGE - 11) + b'"}'
    assert len(huge) == HUGE
    items: list[tuple[str, str, bytes]] = []
    for topic in (s.registered, s.liked, s.mailing):
        items.append((topic, str(uuid.uuid4()), huge))
    items += [(s.liked, str(user), event(user, comment, "", "daily"))] * 20
    items.append((s.registered, str(user), event(user, None, "https://x.test/c", "once")))
    items.append((s.mailing, str(user), event(user, campaign, "hello", "once")))
    _produce_large(s, items)

    def dead() -> list[tuple[str, str]]:
        with session_scope() as session:
            rows = session.execute(
                text(
                    "SELECT source_topic, reason FROM dead_letters"
                    " WHERE source_topic = ANY(:t) AND octet_length(value) = :n"
                ),
                {"t": [s.registered, s.liked, s.mailing], "n": HUGE},
            )
            return sorted((row.source_topic, row.reason) for row in rows)

    wait_for(lambda: len(dead()) == 3, timeout=90, what="three dead letters")
    assert dead() == sorted((t, "too_large") for t in (s.registered, s.liked, s.mailing))
    wait_for(lambda: total_likes_in_db() == 20, timeout=60, what="the likes behind them")
    with session_scope() as session:
        kinds = set(
            session.execute(
                text("SELECT kind FROM notifications WHERE user_id = :u"), {"u": user}
            ).scalars()
        )
    assert kinds == {"welcome", "likes", "mailing"}
    headers = _dead_letter_headers(s, 3)
    assert len(headers) == 3
    assert all(h.get("reason") == b"too_large" and "value_omitted" in h for h in headers)
    # The topics keep flowing after it, with the same worker.
    _produce_large(s, [(s.liked, str(user), event(user, comment, "", "daily"))] * 5)
    wait_for(lambda: total_likes_in_db() == 25, timeout=60, what="likes after the large ones")
    assert worker.alive() and worker.starts == 1 and worker.stall_restarts == 0


def _recreate_empty(s: StreamEnv, topic: str) -> None:
    admin = AdminClient(client_config(s.settings))
    for future in admin.delete_topics([topic]).values():
        future.result()
    wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, timeout=30, what="deleted")


def test_a_store_ahead_of_a_recreated_changelog_is_set_aside_and_refilled_from_postgresql(
    stream_env: StreamEnv,
) -> None:
    s = stream_env
    worker = s.worker("w1")
    worker.wait_ready()
    users = [uuid.uuid4() for _ in range(6)]
    content = uuid.uuid4()
    _produce_large(
        s, [(s.liked, str(u), event(u, content, "", "daily")) for u in users for _ in range(5)]
    )
    wait_for(lambda: total_likes_in_db() == 30, timeout=60, what="likes applied")
    worker.stop()
    # The changelog is lost (deleted; Faust creates it again, empty, at the next start), while
    # the worker's local store still says it has read records of it.
    _recreate_empty(s, f"{s.prefix}-like_counts-changelog")

    again = s.worker("w1")  # the same data directory
    again.wait_ready(timeout=120)
    wait_for(lambda: "local table store set aside" in again.log_text(), timeout=60, what="log")

    def counts() -> list[int]:
        return [again.get(f"/likes/{u}/{content}/")["count"] for u in users]

    wait_for(lambda: counts() == [5] * 6, timeout=60, what="counts refilled from PostgreSQL")
    set_aside = {
        k: v
        for k, v in metrics_of(again).items()
        if k.startswith("notify_stream_table_stores_set_aside_total{")
    }
    assert sum(set_aside.values()) >= 1, "the set-aside is counted"
    # Told apart by the changelog's topic id, which the store keeps beside its offset.
    assert any('reason="another_topic"' in k for k in set_aside)
    _produce_large(s, [(s.liked, str(users[0]), event(users[0], content, "", "daily"))])
    wait_for(lambda: counts()[0] == 6, timeout=60, what="a new like on the rebuilt table")
    assert again.alive() and again.starts == 1 and again.stall_restarts == 0


def _likes_by_user() -> dict[uuid.UUID, int]:
    with session_scope() as session:
        rows = session.execute(
            text("SELECT user_id, sum(like_count) AS n FROM notifications GROUP BY user_id")
        )
        return {row.user_id: int(row.n) for row in rows}


def test_a_blocked_partition_parks_alone_while_its_siblings_flow_for_3_minutes(
    stream_env: StreamEnv,
) -> None:
    from app.stream.table_reseed import partition_of_user

    s = stream_env
    worker = s.worker()
    worker.wait_ready()
    content = uuid.uuid4()
    users: dict[int, uuid.UUID] = {}
    while len(users) < 4:  # one user in each of the 4 partitions
        user = uuid.uuid4()
        users.setdefault(partition_of_user(user, 4), user)

    def like_each(times: int = 1) -> None:
        _produce_large(
            s,
            [(s.liked, str(u), event(u, content, "", "daily")) for u in users.values()] * times,
        )

    like_each()
    wait_for(lambda: total_likes_in_db() == 4, timeout=60, what="one like per partition")
    with session_scope() as session:  # partition 2 waits for an operator from now on
        session.execute(
            text(
                "UPDATE stream_offsets SET blocked_reason = 'held for this test'"
                " WHERE topic = :t AND partition = 2"
            ),
            {"t": s.liked},
        )
    rounds = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # 3 minutes of new likes on every partition
        like_each()
        rounds += 1
        expected = {p: 1 + rounds for p in (0, 1, 3)}
        wait_for(
            lambda: {p: _likes_by_user().get(users[p]) for p in (0, 1, 3)} == expected,  # noqa: B023
            timeout=30,
            what="the siblings' likes",
        )
        assert _likes_by_user()[users[2]] == 1  # parked: neither applied nor skipped
        assert worker.alive() and worker.stall_restarts == 0
        time.sleep(5)
    assert rounds >= 10 and worker.starts == 1 and worker.stall_restarts == 0
    assert "parked until an operator resets it" in worker.log_text()

    subprocess.run(
        [
            str(BIN / "notify"),
            "offsets",
            "reset",
            "--topic",
            s.liked,
            "--partition",
            "2",
            "--to-stored",
        ],
        env=s.env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    wait_for(
        lambda: _likes_by_user().get(users[2]) == 1 + rounds,
        timeout=60,
        what="the parked likes applied after the reset",
    )
    like_each()
    wait_for(lambda: total_likes_in_db() == 4 * (2 + rounds), timeout=60, what="all flowing")
    assert worker.alive() and worker.starts == 1 and worker.stall_restarts == 0
