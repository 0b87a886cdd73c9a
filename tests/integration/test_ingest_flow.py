"""Batch ingest against real PostgreSQL (no broker): offsets, replays, likes, replaced texts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import pytest
from sqlalchemy import text

from app.db.session import session_scope
from app.domain.vocabulary import EventKind
from app.stream.ingest import DeadLetter, Record, apply_batch

GROUP = "ingest-test"


def _value(user: uuid.UUID, content: uuid.UUID | None, body: str, periodicity: str) -> bytes:
    return json.dumps(
        {
            "user_id": str(user),
            "periodicity": periodicity,
            "content_id": str(content) if content else "",
            "content_value": body,
        }
    ).encode()


def _apply(kind: EventKind, records: Sequence[Record], **kwargs):
    return apply_batch(kind, records, group_id=GROUP, max_bytes=65536, **kwargs)


def _row(kind: str, user: uuid.UUID, content: uuid.UUID | None):
    with session_scope() as session:
        return session.execute(
            text(
                "SELECT n.notification_id, n.status, n.periodicity, n.like_count,"
                " m.content_value, t.name AS template FROM notifications n"
                " JOIN messages m USING (message_id) JOIN templates t USING (template_id)"
                " WHERE n.kind = :k AND n.user_id = :u"
                " AND n.content_id IS NOT DISTINCT FROM CAST(:c AS uuid)"
            ),
            {"k": kind, "u": str(user), "c": str(content) if content else None},
        ).one()


def _offsets() -> dict[tuple[str, int], int]:
    with session_scope() as session:
        rows = session.execute(
            text('SELECT topic, partition, "offset" FROM stream_offsets WHERE group_id = :g'),
            {"g": GROUP},
        )
        return {(r.topic, r.partition): r.offset for r in rows}


def test_likes_are_added_per_key_and_replays_are_skipped(db: str) -> None:
    user, content = uuid.uuid4(), uuid.uuid4()
    likes = [
        Record("likes", p, o, None, _value(user, content, "hi", "daily"))
        for p in (0, 1)
        for o in range(5)
    ]
    first = _apply("comment_liked", likes[:7])
    assert first.applied == 7 and first.like_counts == {f"{user}:{content}": (1, 7)}
    # Redelivery of everything (a crash before Kafka's commit): only the 3 new ones count.
    again = _apply("comment_liked", likes)
    assert (again.applied, again.replayed) == (3, 7)
    assert again.like_counts == {f"{user}:{content}": (1, 10)}
    # A pure replay still reports the stored count, so the Faust table can be set again.
    replay = _apply("comment_liked", likes[:2])
    assert replay.applied == 0 and replay.like_counts == {f"{user}:{content}": (0, 10)}
    row = _row("likes", user, content)
    assert (row.like_count, row.template, row.status) == (10, "likes_digest", "pending")
    assert _offsets() == {("likes", 0): 4, ("likes", 1): 4}


def test_replaced_mailing_text_and_the_once_rule(db: str) -> None:
    user, campaign = uuid.uuid4(), uuid.uuid4()

    def mail(offset: int, body: str) -> Record:
        return Record("mail", 0, offset, None, _value(user, campaign, body, "once"))

    created = _apply("mailing", [mail(0, "v1"), mail(1, "v2")])
    row = _row("mailing", user, campaign)
    assert (row.content_value, row.template) == ("v2", "mailing")
    assert created.send_now == [row.notification_id]
    # Replaced before it went out: the new text goes, once.
    assert _apply("mailing", [mail(2, "v3")]).send_now == [row.notification_id]
    # Replaced after it was sent: the text is stored, nothing is mailed twice.
    with session_scope() as session:
        session.execute(
            text("UPDATE notifications SET status = 'sent' WHERE notification_id = :i"),
            {"i": row.notification_id},
        )
    assert _apply("mailing", [mail(3, "v4")]).send_now == []
    after = _row("mailing", user, campaign)
    assert (after.content_value, after.status) == ("v4", "sent")


def test_registration_creates_one_welcome_and_sends_it_now(db: str) -> None:
    user = uuid.uuid4()
    reg = [Record("reg", 3, o, None, _value(user, None, f"https://a/{o}", "once")) for o in (0, 1)]
    result = _apply("user_registered", reg)
    row = _row("welcome", user, None)
    assert (row.content_value, row.template, row.periodicity) == ("https://a/1", "welcome", "once")
    assert result.send_now == [row.notification_id]


def test_dead_letters_are_handed_over_inside_the_transaction(db: str) -> None:
    user, content = uuid.uuid4(), uuid.uuid4()
    records = [
        Record("likes", 0, 0, None, b"{bad"),
        Record("likes", 0, 1, None, _value(user, content, "", "weekly")),
    ]

    def broken_sink(dead: Sequence[DeadLetter]) -> None:
        raise ConnectionError("kafka down")

    with pytest.raises(ConnectionError):
        _apply("comment_liked", records, before_commit=broken_sink)
    # Nothing was committed: the batch is applied in full when it comes again.
    assert _offsets() == {}
    got: list[DeadLetter] = []
    result = _apply("comment_liked", records, before_commit=got.extend)
    assert [d.reason for d in got] == ["not_json"] and result.applied == 1
    assert _row("likes", user, content).like_count == 1
