"""Each agent under `agent.test_context()` (no broker): ingest, dead letters, table, hand-off.

The ingest flow, the dead-letter producer and the Celery hand-off are replaced by recorders; the
Faust table is the real one on the memory store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from faust.tables.base import Collection

from app.config import get_settings
from app.domain.vocabulary import EventKind

pytestmark = pytest.mark.anyio

# The Faust app reads its settings on import: unit tests use the in-memory table store, and a
# throwaway data directory.
os.environ["FAUST_STORE"] = "memory://"
os.environ["FAUST_DATA_DIR"] = tempfile.mkdtemp(prefix="faust-unit-")
get_settings.cache_clear()

from app import agents  # noqa: E402
from app.core import metrics  # noqa: E402
from app.stream import batches, handoffs, ingest  # noqa: E402
from app.stream.ingest import BatchResult, DeadLetter, Record  # noqa: E402
from app.tables import like_counts  # noqa: E402


class Recorder:
    """Stands in for ingest.apply_batch, the dead-letter producer and request_send_now."""

    def __init__(self, make_result: Callable[[EventKind, list[Record]], BatchResult]) -> None:
        self.make_result = make_result
        self.batches: list[tuple[EventKind, list[Record]]] = []
        self.dead: list[DeadLetter] = []
        self.handed: list[uuid.UUID] = []
        self.failures_left = 0

    def apply_batch(self, kind: EventKind, records: Sequence[Record], **kwargs: Any) -> BatchResult:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("database down")
        self.batches.append((kind, list(records)))
        result = self.make_result(kind, list(records))
        if result.dead_letters:
            kwargs["before_commit"](result.dead_letters)
        return result

    async def emit(self, dead: Sequence[DeadLetter]) -> None:
        self.dead.extend(dead)

    def send_now(self, _app: Any, ids: Sequence[uuid.UUID]) -> None:
        self.handed.extend(ids)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Recorder]:
    def install(make_result: Callable[[EventKind, list[Record]], BatchResult]) -> Recorder:
        rec = Recorder(make_result)
        monkeypatch.setattr(ingest, "apply_batch", rec.apply_batch)
        monkeypatch.setattr(batches, "emit_dead_letters", rec.emit)
        monkeypatch.setattr(handoffs, "request_send_now", rec.send_now)
        monkeypatch.setattr(batches, "MAX_RETRY_DELAY_S", 0.05)
        return rec

    return install


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


class ChangelogRecorder:
    """Kafka's side of the like table's changelog (the unit tests run without a broker)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, bytes, bytes]] = []

    def write(self, topic: str, records: Any) -> dict[int, int]:
        self.records.extend((topic, r.partition, r.key, r.value) for r in records)
        return {r.partition: len(self.records) for r in records}


async def test_likes_agent_sets_table_keys_in_their_own_partition(
    recorder: Callable[..., Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = {"u1:c1": (1, 5), "u2:c2": (3, 7)}
    rec = recorder(lambda kind, records: BatchResult(kind, applied=len(records), like_counts=keys))
    changelog = ChangelogRecorder()
    monkeypatch.setattr(batches, "changelog_writer", changelog)
    async with agents.ingest_likes.test_context() as agent:
        await agent.put(b"like-1", key=b"u1", partition=1)
        await agent.put(b"like-2", key=b"u2", partition=3)
        await _until(lambda: len(changelog.records) == 2)
        await _until(lambda: b"u2:c2" in like_counts)
    # Faust's own encoding of the table's key (raw) and value (JSON), in the key's partition.
    topic = like_counts.changelog_topic.get_topic_name()
    assert sorted(changelog.records) == [(topic, 1, b"u1:c1", b"5"), (topic, 3, b"u2:c2", b"7")]
    assert like_counts[b"u1:c1"] == 5 and like_counts[b"u2:c2"] == 7
    kind, records = rec.batches[0]
    assert kind == "comment_liked" and records[0].value == b"like-1" and records[0].partition == 1
    assert rec.handed == [] and rec.dead == []


async def test_registration_agent_hands_new_rows_to_send_now(
    recorder: Callable[..., Recorder],
) -> None:
    ids = [uuid.uuid4(), uuid.uuid4()]
    rec = recorder(lambda kind, records: BatchResult(kind, applied=len(records), send_now=ids))
    async with agents.ingest_registrations.test_context() as agent:
        await agent.put(b"registered", key=b"u1")
        await _until(lambda: rec.handed == ids)
    assert [kind for kind, _ in rec.batches] == ["user_registered"]


async def test_mailing_agent_emits_dead_letters_and_keeps_going(
    recorder: Callable[..., Recorder],
) -> None:
    def result(kind: EventKind, records: list[Record]) -> BatchResult:
        dead = [DeadLetter(r, "mailing: not JSON", "not_json") for r in records if r.value == b"?"]
        return BatchResult(kind, applied=len(records) - len(dead), dead_letters=dead)

    rec = recorder(result)
    async with agents.ingest_mailings.test_context() as agent:
        await agent.put(b"?", key=b"u1")
        await _until(lambda: len(rec.dead) == 1)
        await agent.put(b"fine", key=b"u1")
        await _until(lambda: sum(len(r) for _, r in rec.batches) == 2)
    assert rec.dead[0].record.value == b"?" and rec.dead[0].reason == "not_json"


async def test_a_failing_batch_is_retried_not_dropped(recorder: Callable[..., Recorder]) -> None:
    rec = recorder(lambda kind, records: BatchResult(kind, applied=len(records)))
    rec.failures_left = 2
    async with agents.ingest_mailings.test_context() as agent:
        await agent.put(b"text", key=b"u1")
        await _until(lambda: len(rec.batches) == 1)
    assert rec.failures_left == 0 and rec.batches[0][1][0].value == b"text"


async def test_a_refused_hand_off_does_not_stop_the_agent_and_is_asked_for_again(
    recorder: Callable[..., Recorder],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    made: list[uuid.UUID] = []

    def result(kind: EventKind, records: list[Record]) -> BatchResult:
        ids = [uuid.uuid4() for _ in records]
        made.extend(ids)
        return BatchResult(kind, applied=len(records), send_now=ids)

    rec = recorder(result)
    rabbitmq = {"down": True}

    def flaky(app: Any, ids: Sequence[uuid.UUID]) -> None:
        if rabbitmq["down"]:
            raise ConnectionError("rabbitmq down")
        rec.send_now(app, ids)

    monkeypatch.setattr(handoffs, "request_send_now", flaky)
    monkeypatch.setattr(handoffs, "HANDOFF_RETRY_S", 0.05)
    caplog.set_level(logging.INFO, logger=handoffs.__name__)
    failures_before = metrics.HANDOFF_FAILURES._value.get()
    async with agents.ingest_registrations.test_context() as agent:
        await agent.put(b"a", key=b"u1")
        await agent.put(b"b", key=b"u2")
        # The agent went on with both events while RabbitMQ refused the hand-off...
        await _until(lambda: sum(len(r) for _, r in rec.batches) == 2)
        # ... which is asked for again in the background, and refused again.
        await _until(lambda: metrics.HANDOFF_FAILURES._value.get() - failures_before >= 3)
        assert rec.handed == []
        rabbitmq["down"] = False
        await _until(lambda: len(rec.handed) == 2)
    assert sorted(rec.handed) == sorted(made)  # each once, asked for together
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed: ConnectionError('rabbitmq down')" in m for m in messages)
    assert any("hand-off of 2 notifications made on a later try" in m for m in messages)


def test_changelog_records_are_encoded_exactly_as_faust_encodes_them() -> None:
    from app.stream.table_mirror import changelog_records

    rng = random.Random(3)
    counts = {
        f"{uuid.UUID(int=rng.getrandbits(128))}:{uuid.UUID(int=rng.getrandbits(128))}".encode(): (
            rng.randrange(4),
            rng.choice([0, 1, 2, 3, 17, 10**9]),
        )
        for _ in range(500)
    }
    # Typed TableT, which leaves out the serializers that every Collection has.
    assert isinstance(like_counts, Collection)
    topic = like_counts.changelog_topic
    expected = [
        (
            partition,
            topic.prepare_key(key, like_counts.key_serializer)[0],
            topic.prepare_value(count, like_counts.value_serializer)[0],
        )
        for key, (partition, count) in counts.items()
    ]
    records = changelog_records(like_counts, counts)
    assert [(r.partition, r.key, r.value) for r in records] == expected
