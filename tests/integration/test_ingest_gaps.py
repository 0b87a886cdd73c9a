"""Records the consumer skipped are read back from real Kafka and applied in offset order."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import text

from app.config import Settings
from app.db.session import session_scope
from app.kafka.admin import ensure_topics
from app.kafka.connection import client_config
from app.stream.gaps import Gap
from app.stream.ingest import BatchResult, Record, apply_batch
from app.stream.kafka_reads import read_gap
from harness.kafka import produce

pytestmark = pytest.mark.integration
GROUP = "gaps-test"


@pytest.fixture
def topic(settings: Settings) -> Iterator[str]:
    name = f"test.gaps.{uuid.uuid4().hex[:12]}"
    ensure_topics(settings, [name], partitions=1)
    yield name
    AdminClient(client_config(settings)).delete_topics([name])


def _event(user: uuid.UUID, content: uuid.UUID, value: str, periodicity: str = "daily") -> bytes:
    return json.dumps(
        {
            "user_id": str(user),
            "periodicity": periodicity,
            "content_id": str(content),
            "content_value": value,
        }
    ).encode()


def _scalar(sql: str, **params: object) -> object:
    with session_scope() as session:
        return session.execute(text(sql), params).scalar_one()


def test_read_gap_returns_exactly_the_offsets_asked_for(settings: Settings, topic: str) -> None:
    produce(settings, [(topic, None, str(i).encode()) for i in range(30)])
    records = read_gap(Gap(topic, 0, 10, 20))
    assert [(r.offset, r.value) for r in records] == [(i, str(i).encode()) for i in range(10, 20)]
    # A gap that runs to the end of the log stops there instead of waiting for more.
    assert [r.offset for r in read_gap(Gap(topic, 0, 25, 40))] == [25, 26, 27, 28, 29]


def test_skipped_likes_are_read_back_and_counted_once(
    db: str, settings: Settings, topic: str
) -> None:
    user, content = uuid.uuid4(), uuid.uuid4()
    produce(settings, [(topic, None, _event(user, content, "nice")) for _ in range(30)])
    records = read_gap(Gap(topic, 0, 0, 30))

    def apply(batch: list[Record]) -> BatchResult:
        return apply_batch(
            "comment_liked", batch, group_id=GROUP, max_bytes=65536, fill_gaps=read_gap
        )

    assert apply(records[:10]).recovered == 0
    # The consumer skipped offsets 10..19 (dropped and acked around a rebalance).
    later = apply(records[20:25])
    assert (later.applied, later.recovered) == (15, 10)
    assert apply(records[25:]).applied == 5
    assert _scalar("SELECT like_count FROM notifications WHERE user_id = :u", u=user) == 30
    assert _scalar('SELECT "offset" FROM stream_offsets WHERE group_id = :g', g=GROUP) == 29
    # Redelivering everything changes nothing.
    assert apply(records).applied == 0
    assert _scalar("SELECT like_count FROM notifications WHERE user_id = :u", u=user) == 30


def test_read_back_texts_apply_in_offset_order(db: str, settings: Settings, topic: str) -> None:
    user, content = uuid.uuid4(), uuid.uuid4()
    texts = [_event(user, content, f"v{i}", "weekly") for i in range(10)]
    produce(settings, [(topic, None, text) for text in texts])
    records = read_gap(Gap(topic, 0, 0, 10))
    apply_batch("mailing", records[:3], group_id=GROUP, max_bytes=65536, fill_gaps=read_gap)
    result = apply_batch(
        "mailing", [records[8]], group_id=GROUP, max_bytes=65536, fill_gaps=read_gap
    )
    assert result.recovered == 5
    # v3..v7 came back from Kafka, yet the text is the one of the highest offset applied.
    assert (
        _scalar(
            "SELECT m.content_value FROM notifications n JOIN messages m USING (message_id)"
            " WHERE n.user_id = :u",
            u=user,
        )
        == "v8"
    )
