"""A real `notify worker` under hostile input and outages: no event can stop a topic.

Poison and fuzzed events become dead letters while valid ones keep flowing; PostgreSQL down for
20 s only delays; dead letters replay once; a recreated topic or a renamed group holds its
partitions until an operator resets them.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import time
import uuid
from collections import Counter
from typing import Any

from kombu.connection import Connection
from sqlalchemy import text

from app.contracts import ContractError, decode_event
from app.db.session import dispose_engines, session_scope
from app.kafka.admin import ensure_topics
from app.kafka.connection import client_config
from harness.fuzzing import fuzzed_value, poison_events, valid_value
from harness.kafka import produce, read_topic
from harness.outages import postgres_down
from harness.stream import (
    BIN,
    StreamEnv,
    event,
    like_counts_in_db,
    metrics_of,
    next_email,
    total_likes_in_db,
)
from harness.waiting import wait_for

log = logging.getLogger(__name__)
KIND_OF = {"registered": "user_registered", "liked": "comment_liked", "mailing": "mailing"}


def _dead_letters(topics: list[str]) -> list[Any]:
    with session_scope() as session:
        return list(
            session.execute(
                text(
                    "SELECT source_topic, value, reason, error, status FROM dead_letters"
                    " WHERE source_topic = ANY(:t)"
                ),
                {"t": topics},
            )
        )


def _welcome_users() -> set[uuid.UUID]:
    with session_scope() as session:
        rows = session.execute(text("SELECT user_id FROM notifications WHERE kind = 'welcome'"))
        return {row.user_id for row in rows}


def _mailing_texts() -> dict[tuple[uuid.UUID, uuid.UUID], str]:
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT n.user_id, n.content_id, m.content_value FROM notifications n"
                " JOIN messages m USING (message_id) WHERE n.kind = 'mailing'"
            )
        )
        return {(r.user_id, r.content_id): r.content_value for r in rows}


def _notify(s: StreamEnv, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "notify"), *args], env=s.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_poison_and_fuzzed_events_never_stop_a_topic(
    stream_env: StreamEnv, jobs_worker: subprocess.Popen[bytes], auth_users: list[dict[str, Any]]
) -> None:
    s = stream_env
    topic_of = {"registered": s.registered, "liked": s.liked, "mailing": s.mailing}
    rng = random.Random(10)
    items: list[tuple[str, str, bytes | None]] = []
    bad: Counter[tuple[str, bytes | None]] = Counter()
    likes: Counter[tuple[uuid.UUID, uuid.UUID]] = Counter()
    welcomes: set[uuid.UUID] = set()
    texts: dict[tuple[uuid.UUID, uuid.UUID], str] = {}

    def add_valid(name: str, value: bytes) -> None:
        decoded = json.loads(value)
        user = uuid.UUID(decoded["user_id"])
        content = uuid.UUID(decoded["content_id"]) if decoded["content_id"] else None
        if name == "registered":
            welcomes.add(user)
        elif name == "liked":
            likes[(user, content)] += 1  # type: ignore[index]
        else:
            texts[(user, content)] = decoded["content_value"]  # type: ignore[index]
        items.append((topic_of[name], str(user), value))

    def add(name: str, value: bytes | None) -> None:
        try:
            decode_event(KIND_OF[name], value, max_bytes=s.settings.max_event_bytes)  # type: ignore[arg-type]
        except ContractError:
            bad[(topic_of[name], value)] += 1
            items.append((topic_of[name], str(uuid.uuid4()), value))
            return
        add_valid(name, value)  # type: ignore[arg-type]

    like_keys = [(uuid.uuid4(), uuid.uuid4()) for _ in range(50)]
    for name in topic_of:  # the known poison first: each would once have stopped its topic
        for value in poison_events(KIND_OF[name]).values():
            add(name, value)
    for i in range(1000):
        name = rng.choice(list(topic_of))
        add(name, fuzzed_value(rng, KIND_OF[name]))
        valid_name = ("registered", "liked", "mailing")[i % 3]
        valid = valid_value(KIND_OF[valid_name], body=f"v{i}")
        if valid_name == "liked":
            user, content = rng.choice(like_keys)
            valid = {**valid, "user_id": str(user), "content_id": str(content)}
        add_valid(valid_name, json.dumps(valid).encode())
    assert sum(bad.values()) >= 1000 + 3 * len(poison_events("mailing")) - 60
    rng.shuffle(items)  # poison anywhere among valid events (every valid key's text is unique)

    worker = s.worker()
    worker.wait_ready()
    produce(s.settings, items)
    # Produced after the poison: a registration of a user Auth knows reaches the emails queue.
    known = uuid.UUID(auth_users[0]["user_id"])
    with Connection(s.settings.celery_broker_url) as conn:
        produce(s.settings, [(s.registered, str(known), event(known, None, "https://a/k", "once"))])
        sent = time.monotonic()
        task = next_email(conn, timeout=30)
        latency = time.monotonic() - sent
    assert task["email"] == auth_users[0]["email"] and "https://a/k" in task["body"]
    assert latency < 5.0, f"the registration after the poison took {latency:.1f} s"
    log.warning(
        "registration produced after the poison reached the emails queue in %.2f s", latency
    )
    welcomes.add(known)

    wait_for(lambda: like_counts_in_db() == dict(likes), timeout=90, what="like counts")
    wait_for(lambda: _welcome_users() == welcomes, timeout=30, what="welcome rows")
    wait_for(lambda: _mailing_texts() == texts, timeout=30, what="mailing texts")
    topics = list(topic_of.values())
    wait_for(
        lambda: len(_dead_letters(topics)) == sum(bad.values()), timeout=60, what="dead letters"
    )
    letters = _dead_letters(topics)
    stored = Counter((d.source_topic, None if d.value is None else bytes(d.value)) for d in letters)
    assert stored == bad
    assert all(d.reason and d.error and d.status == "dead" for d in letters)
    assert len(read_topic(s.settings, s.dead_letter, expected=len(letters))) == len(letters)
    metrics = metrics_of(worker)
    counted = sum(v for k, v in metrics.items() if k.startswith("notify_stream_dead_letters_total"))
    assert counted == len(letters)
    assert worker.alive() and worker.starts == 1 and worker.stall_restarts == 0
    assert "crashed" not in worker.log_text().lower()


def _likes_applied(
    s: StreamEnv, count: int, name: str = "w1"
) -> tuple[Any, tuple[str, str, bytes]]:
    """A worker that has applied `count` likes of one key; the like, to produce more of it."""
    user, content = uuid.uuid4(), uuid.uuid4()
    like = (s.liked, str(user), event(user, content, "nice", "daily"))
    worker = s.worker(name)
    worker.wait_ready()
    produce(s.settings, [like] * count)
    wait_for(lambda: total_likes_in_db() == count, timeout=60, what=f"{count} likes")
    return worker, like


def test_postgres_down_for_20_s_mid_stream_only_delays(stream_env: StreamEnv) -> None:
    s = stream_env
    worker, like = _likes_applied(s, 3000)
    with postgres_down(s.settings.database_url, seconds=20):
        for _ in range(4):  # events keep arriving while PostgreSQL is away
            produce(s.settings, [like] * 1000)
            time.sleep(4)
    dispose_engines()  # this process's pooled connections died with the server
    back = time.monotonic()
    wait_for(lambda: total_likes_in_db() == 7000, timeout=90, what="likes after the outage")
    caught_up = time.monotonic() - back
    produce(s.settings, [like] * 500)
    wait_for(lambda: total_likes_in_db() == 7500, timeout=30, what="likes after catching up")
    assert list(like_counts_in_db().values()) == [7500]
    assert _dead_letters([s.liked]) == []
    assert worker.alive() and worker.starts == 1 and worker.stall_restarts == 0
    assert "waits for an outage" in worker.log_text()
    log.warning("caught up %.1f s after PostgreSQL came back", caught_up)


def test_dead_letters_replay_once_after_the_cause_is_fixed(stream_env: StreamEnv) -> None:
    s = stream_env
    with session_scope() as session:
        session.execute(text("DELETE FROM templates WHERE name = 'mailing'"))
    campaign = uuid.uuid4()
    users = [uuid.uuid4() for _ in range(30)]
    worker = s.worker()
    worker.wait_ready()
    produce(
        s.settings, [(s.mailing, str(u), event(u, campaign, f"text {u}", "weekly")) for u in users]
    )
    wait_for(lambda: len(_dead_letters([s.mailing])) == 30, timeout=60, what="dead letters")
    assert {d.reason for d in _dead_letters([s.mailing])} == {"missing_template"}
    assert "30 dead letters" in _notify(s, "dead-letters", "list", "--reason", "missing_template")

    _notify(s, "templates", "load")  # the cause is fixed
    assert "replayed 30 of 30" in _notify(s, "dead-letters", "replay", "--since", "1h")
    expected = {(u, campaign): f"text {u}" for u in users}
    wait_for(lambda: _mailing_texts() == expected, timeout=60, what="replayed mailings")
    assert "replayed 0 of 0" in _notify(s, "dead-letters", "replay")
    # Even a replay published twice (marks lost in a crash) applies nothing the second time.
    with session_scope() as session:
        session.execute(text("UPDATE dead_letters SET status = 'dead'"))
        session.execute(text("UPDATE messages SET content_value = 'edited'"))
    assert "replayed 30 of 30" in _notify(s, "dead-letters", "replay")
    metric = f'notify_stream_duplicate_replays_total{{topic="{s.mailing}"}}'
    wait_for(lambda: metrics_of(worker).get(metric) == 30, timeout=60, what="duplicates skipped")
    assert set(_mailing_texts().values()) == {"edited"} and len(_mailing_texts()) == 30
    assert len(_dead_letters([s.mailing])) == 30


def _blocked(worker: Any, topic: str) -> float:
    """The blocked-partition gauges of `topic` added up (the exposition sorts labels by name)."""
    gauges = metrics_of(worker).items()
    name, label = "notify_stream_partition_blocked{", f'topic="{topic}"'
    return sum(v for k, v in gauges if k.startswith(name) and label in k)


def test_a_recreated_topic_is_held_until_an_operator_resets_it(stream_env: StreamEnv) -> None:
    s = stream_env
    worker, like = _likes_applied(s, 200)
    worker.stop()

    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(s.settings))
    for future in admin.delete_topics([s.liked]).values():
        future.result()
    wait_for(
        lambda: s.liked not in admin.list_topics(timeout=10).topics,
        timeout=30,
        what="topic deleted",
    )
    wait_for(lambda: _recreated(s), timeout=60, what="topic recreated")
    produce(s.settings, [like] * 50)
    worker = s.worker("w2")
    wait_for(lambda: "blocked: topic" in worker.log_text(), timeout=90, what="blocked log line")
    wait_for(lambda: _blocked(worker, s.liked) >= 1, timeout=30, what="blocked metric")
    assert "notify offsets reset" in worker.log_text()
    assert total_likes_in_db() == 200  # not applied, and not skipped as replays either
    assert "BLOCKED" in _notify(s, "offsets", "list", "--group", s.prefix)

    out = _notify(s, "offsets", "reset", "--topic", s.liked, "--to-start")
    assert "was blocked: topic" in out
    wait_for(lambda: total_likes_in_db() == 250, timeout=60, what="held likes applied")
    produce(s.settings, [like] * 10)
    wait_for(lambda: total_likes_in_db() == 260, timeout=30, what="new likes")
    wait_for(lambda: _blocked(worker, s.liked) == 0, timeout=30, what="unblocked metric")
    assert worker.alive() and worker.starts == 1 and worker.stall_restarts == 0


def _recreated(s: StreamEnv) -> bool:
    try:
        ensure_topics(s.settings, [s.liked], partitions=4)
    except Exception:  # noqa: BLE001 - Kafka may still be deleting it
        return False
    return True


def test_a_renamed_group_is_held_instead_of_counting_every_like_twice(
    stream_env: StreamEnv,
) -> None:
    s = stream_env
    worker, like = _likes_applied(s, 300)
    worker.stop()

    old_group, s.env["FAUST_APP_ID"] = s.prefix, f"{s.prefix}-renamed"
    renamed = s.worker("renamed")
    wait_for(
        lambda: "was FAUST_APP_ID renamed?" in renamed.log_text(),
        timeout=90,
        what="blocked log line",
    )
    assert total_likes_in_db() == 300  # the history is held, not applied a second time
    _notify(s, "offsets", "reset", "--topic", s.liked, "--to-stored", "--from-group", old_group)
    produce(s.settings, [like] * 20)
    wait_for(lambda: total_likes_in_db() == 320, timeout=60, what="new likes after the reset")
    assert list(like_counts_in_db().values()) == [320]
    assert renamed.alive() and renamed.stall_restarts == 0
