"""Faults stay with their event: app.ingest against real PostgreSQL (no broker).

PostgreSQL's refusals are isolated to single dead letters by bisection; hostile input never
escapes a batch; replayed dead letters apply once; blocked partitions hold their records.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.db import dead_letters
from app.db.dead_letters import REPLAY_HEADER
from app.db.session import session_scope
from app.portal.template_files import load_default_templates
from app.stream.ingest import BatchResult, Record, apply_batch
from harness.fuzzing import KINDS, hostile_bytes, valid_value

GROUP = "faults-test"
REFUSED_LINK = "https://refused.example/"


def _apply(kind: str, records: Sequence[Record], **kwargs: Any) -> BatchResult:
    kwargs.setdefault("group_id", GROUP)
    return apply_batch(kind, records, max_bytes=65536, **kwargs)  # type: ignore[arg-type]


def _scalar(sql: str, **params: Any) -> Any:
    with session_scope() as session:
        return session.execute(text(sql), params).scalar_one()


def _offset(topic: str, partition: int = 0, group: str = GROUP) -> int | None:
    with session_scope() as session:
        return session.execute(
            text(
                'SELECT "offset" FROM stream_offsets WHERE group_id = :g AND topic = :t'
                " AND partition = :p"
            ),
            {"g": group, "t": topic, "p": partition},
        ).scalar_one_or_none()


def _registration(topic: str, offset: int, link: str, **extra: Any) -> Record:
    value = {**valid_value("user_registered"), "content_value": link}
    return Record(topic, 0, offset, None, json.dumps(value).encode(), **extra)


@pytest.fixture
def refusing_postgres(db: str) -> Iterator[str]:
    """A CHECK rule the decoder does not know: PostgreSQL refuses one link, for a data reason."""
    with session_scope() as session:
        session.execute(
            text(
                "ALTER TABLE messages ADD CONSTRAINT test_refused_link"
                f" CHECK (content_value <> '{REFUSED_LINK}')"
            )
        )
    try:
        yield REFUSED_LINK
    finally:
        with session_scope() as session:
            session.execute(text("ALTER TABLE messages DROP CONSTRAINT test_refused_link"))


def test_postgres_refusing_one_event_of_5000_costs_only_that_event(refusing_postgres: str) -> None:
    records = [_registration("reg", o, f"https://ok.example/{o}") for o in range(5000)]
    records[3217] = _registration("reg", 3217, refusing_postgres)
    result = _apply("user_registered", records)

    assert result.applied == 4999 and len(result.send_now) == 4999
    [dead] = result.dead_letters
    assert dead.record.offset == 3217 and dead.reason == "db_refused"
    assert 'violates check constraint "test_refused_link"' in dead.error  # PostgreSQL's words
    assert _scalar("SELECT count(*) FROM notifications WHERE kind = 'welcome'") == 4999
    assert _offset("reg") == 4999
    with session_scope() as session:
        [stored] = dead_letters.select(session=session, status=None)
    assert (stored.source_topic, stored.source_offset, stored.reason) == ("reg", 3217, "db_refused")
    assert stored.value == records[3217].value and "test_refused_link" in stored.error
    # Redelivered (a crash before Kafka's commit): nothing applied twice, no second dead letter.
    again = _apply("user_registered", records)
    assert (again.applied, again.replayed, again.dead_letters) == (0, 5000, [])
    assert _scalar("SELECT count(*) FROM dead_letters") == 1


def _drop_template(name: str) -> None:
    # The `db` fixture loads the default templates again for the next test.
    with session_scope() as session:
        session.execute(text("DELETE FROM templates WHERE name = :n"), {"n": name})


def _restore_templates() -> None:
    with session_scope() as session:
        load_default_templates(session=session)


def test_a_missing_template_dead_letters_its_events_and_others_flow(db: str) -> None:
    _drop_template("mailing")
    mailings = [
        Record("mail", 0, o, None, json.dumps(valid_value("mailing")).encode()) for o in range(40)
    ]
    result = _apply("mailing", mailings)
    assert result.applied == 0 and len(result.dead_letters) == 40
    assert {d.reason for d in result.dead_letters} == {"missing_template"}
    assert "no template named 'mailing'" in result.dead_letters[0].error
    assert _offset("mail") == 39  # the partition moves on
    # The other kinds keep flowing.
    assert _apply("user_registered", [_registration("reg", 0, "https://ok/1")]).applied == 1


FUZZED = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZED
@given(kind=st.sampled_from(KINDS), values=st.lists(hostile_bytes(), min_size=1, max_size=30))
def test_hostile_batches_are_applied_or_dead_lettered_never_raised(
    db: str, kind: str, values: list[bytes | None]
) -> None:
    topic = f"fuzz.{uuid.uuid4().hex[:10]}"  # a partition of its own for each example
    records = [Record(topic, 0, o, b"k", v) for o, v in enumerate(values)]
    result = _apply(kind, records)
    assert result.applied + len(result.dead_letters) == len(records)
    assert all(d.reason and d.error for d in result.dead_letters)
    assert _offset(topic) == len(records) - 1
    stored = _scalar("SELECT count(*) FROM dead_letters WHERE source_topic = :t", t=topic)
    assert stored == len(result.dead_letters)
    if kind == "comment_liked":  # fresh random keys: their stored counts are this batch's likes
        assert sum(count for _partition, count in result.like_counts.values()) == result.applied


def _replay_of(record: Record, token: uuid.UUID, offset: int) -> Record:
    headers = ((REPLAY_HEADER, str(token).encode()),)
    return Record(record.topic, 0, offset, record.key, record.value, headers)


def test_replayed_copies_of_a_dead_letter_apply_once(db: str) -> None:
    _drop_template("welcome")
    original = _registration("reg", 0, "https://replay/1")
    [dead] = _apply("user_registered", [original]).dead_letters
    _restore_templates()
    # Published twice (a replay that crashed before it marked the letter): applied once.
    copies = [
        _replay_of(original, dead.replay_token, 1),
        _replay_of(original, dead.replay_token, 2),
    ]
    first = _apply("user_registered", copies[:1])
    second = _apply("user_registered", copies[1:])
    assert (first.applied, second.applied, second.duplicate_replays) == (1, 0, 1)
    assert _scalar("SELECT count(*) FROM notifications WHERE kind = 'welcome'") == 1
    # A header naming no dead letter of ours (forged, or malformed) changes nothing.
    forged = _replay_of(_registration("reg", 3, "https://replay/2"), uuid.uuid4(), 3)
    malformed = Record("reg", 0, 4, None, forged.value, ((REPLAY_HEADER, b"\xff not a uuid"),))
    assert _apply("user_registered", [forged, malformed]).applied == 2


def test_a_replay_that_fails_again_keeps_its_events_token(db: str) -> None:
    original = Record("likes", 0, 0, None, b"{broken")
    [dead] = _apply("comment_liked", [original]).dead_letters
    [again] = _apply("comment_liked", [_replay_of(original, dead.replay_token, 1)]).dead_letters
    assert again.replay_token == dead.replay_token
    tokens = _scalar("SELECT count(DISTINCT replay_token) FROM dead_letters")
    assert (tokens, _scalar("SELECT count(*) FROM dead_letters")) == (1, 2)


def test_a_recreated_topic_blocks_its_partition_until_reset(db: str) -> None:
    user, content = uuid.uuid4(), uuid.uuid4()
    like = json.dumps({**valid_value("comment_liked", user), "content_id": str(content)}).encode()
    old = [Record("likes", 0, o, None, like) for o in range(10)]
    assert _apply("comment_liked", old, topic_ids=lambda _t: {"likes": "id-one"}).applied == 10
    # The topic is deleted and made again: offsets start at 0 under a new topic id.
    new = [Record("likes", 0, o, None, like) for o in range(3)]
    held = _apply("comment_liked", new, topic_ids=lambda _t: {"likes": "id-two"})
    assert held.applied == 0 and held.held == new and "recreated" in held.blocked[("likes", 0)]
    # Still blocked on the next try; nothing was applied or skipped as a replay.
    assert _apply("comment_liked", new, topic_ids=lambda _t: {"likes": "id-two"}).held == new
    assert _scalar("SELECT like_count FROM notifications") == 10
    with session_scope() as session:  # what `notify offsets reset --to-start` stores
        from app.db.stream_offsets import reset_partition

        reset_partition(
            session=session,
            group_id=GROUP,
            topic="likes",
            partition=0,
            offset=-1,
            topic_id="id-two",
        )
    done = _apply("comment_liked", new, topic_ids=lambda _t: {"likes": "id-two"})
    assert (done.applied, done.held) == (3, [])
    assert _scalar("SELECT like_count FROM notifications") == 13


def _offset_without_topic_id(topic: str, offset: int) -> None:
    with session_scope() as session:  # as rows from before topic ids were stored
        session.execute(
            text(
                'INSERT INTO stream_offsets (group_id, topic, partition, "offset", topic_id)'
                " VALUES (:g, :t, 0, :o, NULL)"
            ),
            {"g": GROUP, "t": topic, "o": offset},
        )


def test_stored_offsets_without_a_topic_id_past_the_log_block_a_recreated_topic(
    db: str, settings: Any
) -> None:
    # Rows from before topic ids were stored carry none: a recreated topic must still be seen.
    from confluent_kafka.admin import AdminClient

    from app.kafka.admin import ensure_topics
    from app.kafka.connection import client_config
    from app.stream.kafka_reads import end_offsets, topic_ids
    from harness.kafka import produce

    topic, other = (f"null-id-{uuid.uuid4().hex[:8]}" for _ in range(2))
    ensure_topics(settings, [topic, other], partitions=1)
    try:
        user, content = uuid.uuid4(), uuid.uuid4()
        like = json.dumps(
            {**valid_value("comment_liked", user), "content_id": str(content)}
        ).encode()
        produce(settings, [(topic, str(user), like)] * 3)  # the new incarnation: offsets 0..2
        _offset_without_topic_id(topic, 9)  # the old incarnation was applied up to 9
        records = [Record(topic, 0, o, None, like) for o in range(3)]
        held = _apply("comment_liked", records, topic_ids=topic_ids, end_offsets=end_offsets)
        assert held.applied == 0 and held.replayed == 0 and held.held == records
        assert "carry no topic id" in held.blocked[(topic, 0)]
        # A row without an id that the log does cover is this topic's: adopted, id stored.
        produce(settings, [(other, str(user), like)] * 3)
        _offset_without_topic_id(other, 0)
        rest = [Record(other, 0, o, None, like) for o in range(3)]
        done = _apply("comment_liked", rest, topic_ids=topic_ids, end_offsets=end_offsets)
        assert (done.applied, done.replayed, done.held) == (2, 1, [])
        stored_id = _scalar("SELECT topic_id FROM stream_offsets WHERE topic = :t", t=other)
        assert stored_id == topic_ids([other])[other]
    finally:
        AdminClient(client_config(settings)).delete_topics([topic, other])


def test_a_renamed_group_blocks_instead_of_applying_the_history_again(db: str) -> None:
    records = [_registration("reg", o, f"https://r/{o}") for o in range(5)]
    assert _apply("user_registered", records, group_id="old-name").applied == 5
    held = _apply("user_registered", records, group_id="new-name")
    assert held.applied == 0 and len(held.held) == 5
    assert "old-name (up to offset 4)" in held.blocked[("reg", 0)]
    assert _offset("reg", group="new-name") is None


def test_a_daily_registration_is_mailed_once_and_never_in_a_digest(db: str) -> None:
    from app.db.jobs import lock_digest_candidates

    value = {**valid_value("user_registered"), "periodicity": "daily"}
    result = _apply("user_registered", [Record("reg", 0, 0, None, json.dumps(value).encode())])
    assert len(result.send_now) == 1
    assert _scalar("SELECT periodicity FROM notifications") == "once"
    # Even a welcome row stored as daily (before this rule) is never a digest's candidate.
    with session_scope() as session:
        session.execute(text("UPDATE notifications SET periodicity = 'daily', status = 'sent'"))
        found = lock_digest_candidates(session=session, periodicity="daily", after_id=None, limit=9)
    assert found == []
