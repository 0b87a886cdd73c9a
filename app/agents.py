"""Thin Faust agents: take a batch, ingest it off the loop, dead letters, mirror table, hand off.

The database work and the Celery hand-off run in a thread executor, so heartbeats and
rebalances never wait behind I/O (DESIGN.md "Agents stay responsive").
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, partial
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from faust.streams import _current_event
from faust.types import EventT, StreamT

from app import ingest, metrics, topics
from app.celery_app import celery_app
from app.contracts import EventKind
from app.faust_app import app, settings
from app.handoff import request_send_now
from app.tables import like_counts

log = logging.getLogger(__name__)

MAX_RETRY_DELAY_S = 30.0


def to_record(event: EventT) -> ingest.Record:
    """The transport-neutral record of a Faust event (raw bytes, position in the log)."""
    message = event.message
    return ingest.Record(
        message.topic, message.partition, message.offset, message.key, message.value
    )


async def emit_dead_letters(dead: Sequence[ingest.DeadLetter]) -> None:
    """Send dead letters (original bytes, reason headers) and wait until Kafka has them."""
    pending = [
        await topics.dead_letter.send(key=d.record.key, value=d.record.value, headers=d.headers())
        for d in dead
    ]
    await asyncio.gather(*pending)


def _dead_letter_sink(loop: asyncio.AbstractEventLoop) -> ingest.DeadLetterSink:
    # Called from the executor thread inside the batch's transaction: block until delivered.
    def sink(dead: Sequence[ingest.DeadLetter]) -> None:
        asyncio.run_coroutine_threadsafe(emit_dead_letters(dead), loop).result(timeout=120)

    return sink


async def apply_with_retry(kind: EventKind, events: Sequence[EventT]) -> ingest.BatchResult:
    """Apply a batch, retrying with backoff until PostgreSQL takes it.

    Raising is not an option: `take_events` acks a batch whose agent body failed, which would
    drop it; an outage must delay events, never lose them.
    """
    loop = asyncio.get_running_loop()
    records = [to_record(event) for event in events]
    apply = partial(
        ingest.apply_batch,
        kind,
        records,
        group_id=app.conf.id,
        max_bytes=settings.max_event_bytes,
        before_commit=_dead_letter_sink(loop),
        fill_gaps=read_gap,
    )
    delay = 0.5
    while True:
        try:
            return await loop.run_in_executor(None, apply)
        except Exception:
            log.exception("%s: batch of %d failed; retrying in %.1f s", kind, len(records), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY_S)


GAP_READ_TIMEOUT_S = 30.0


def read_gap(gap: ingest.Gap) -> list[ingest.Record]:
    """The records at offsets [start, end) of one partition, read with a client of our own.

    Gaps are rare (a rebalance, a crash), so a short-lived consumer per gap is cheap enough, and
    unshared: agents of different topics may read gaps at once from their executor threads.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.faust_app_id}-gaps",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",  # a gap below the log's start: read what is left
        }
    )
    records: list[ingest.Record] = []
    deadline = time.monotonic() + GAP_READ_TIMEOUT_S
    try:
        consumer.assign([TopicPartition(gap.topic, gap.partition, gap.start)])
        while True:
            message = consumer.poll(1.0)
            if message is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {gap} from Kafka")
                continue
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    return records
                raise KafkaException(message.error())
            if message.offset() >= gap.end:
                return records
            records.append(ingest.Record(gap.topic, gap.partition, message.offset(),
                                         message.key(), message.value()))  # fmt: skip
            if message.offset() == gap.end - 1:
                return records
    finally:
        consumer.close()


@contextmanager
def _in_partition_of(event: EventT) -> Iterator[None]:
    # Faust picks a table key's changelog partition (and RocksDB shard) from the current event.
    # After a batch that is just the last event taken, so point it at an event of the key's own
    # partition. Faust has no public setter; this is the context variable its streams set.
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def mirror_like_counts(result: ingest.BatchResult, events: Sequence[EventT]) -> None:
    """Set each touched key of the like table to the count PostgreSQL returned."""
    last_of_partition = {event.message.partition: event for event in events}
    for key, (partition, count) in result.like_counts.items():
        with _in_partition_of(last_of_partition[partition]):
            like_counts[key.encode()] = count


async def hand_off(notification_ids: Sequence[Any]) -> None:
    """Ask Celery to send these now; a failure is left to the dispatcher's re-sweep."""
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, request_send_now, celery_app, list(notification_ids))
    except Exception:
        # The rows are committed as pending: `dispatch` re-requests lost `once` hand-offs.
        metrics.HANDOFF_FAILURES.inc()
        log.exception("send_now hand-off of %d notifications failed", len(notification_ids))


async def run_batch(kind: EventKind, events: Sequence[EventT]) -> ingest.BatchResult:
    """Ingest one batch of one input topic and do what follows the commit."""
    topic = topics.INPUT_TOPICS[kind].get_topic_name()
    metrics.EVENTS_CONSUMED.labels(topic).inc(len(events))
    metrics.BATCH_SIZE.labels(topic).observe(len(events))
    started = time.perf_counter()
    result = await apply_with_retry(kind, events)
    metrics.BATCH_SECONDS.labels(topic).observe(time.perf_counter() - started)
    metrics.EVENTS_APPLIED.labels(topic).inc(result.applied)
    metrics.EVENTS_REPLAYED.labels(topic).inc(result.replayed)
    metrics.EVENTS_RECOVERED.labels(topic).inc(result.recovered)
    for dead in result.dead_letters:
        metrics.DEAD_LETTERS.labels(topic, dead.reason).inc()
        record = dead.record
        log.warning("%s: dead letter at %s[%d]@%d: %s", kind, record.topic, record.partition,
                    record.offset, dead.error, extra=_position(record))  # fmt: skip
    if result.like_counts:
        mirror_like_counts(result, events)
    if result.send_now:
        await hand_off(result.send_now)
    return result


def _position(record: ingest.Record) -> dict[str, Any]:
    """Log fields naming an event's place in Kafka (fields of their own in JSON logs)."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _batches(stream: StreamT, within: float | None = None) -> AsyncIterator[Sequence[EventT]]:
    within = within if within is not None else settings.ingest_batch_within_s
    return stream.take_events(settings.ingest_batch_size, within=within)


@app.agent(topics.user_registered, name="ingest_registrations")
async def ingest_registrations(stream: StreamT) -> None:
    """Create welcome notifications and send them now."""
    async for events in _batches(stream):
        await run_batch("user_registered", events)


@app.agent(topics.comment_liked, name="ingest_likes")
async def ingest_likes(stream: StreamT) -> None:
    """Count likes per user and content in PostgreSQL; mirror the counts in the table."""
    async for events in _batches(stream, settings.ingest_likes_batch_within_s):
        await run_batch("comment_liked", events)


@app.agent(topics.mailing, name="ingest_mailings")
async def ingest_mailings(stream: StreamT) -> None:
    """Create or replace mailing texts; send `once` mailings now."""
    async for events in _batches(stream):
        await run_batch("mailing", events)


@cache
def _offsets_reader() -> Consumer:
    return Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers,
                     "group.id": f"{settings.faust_app_id}-watchdog"})  # fmt: skip


def _end_offsets(partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """Kafka's end offset of each partition, asked with a client of its own."""
    reader = _offsets_reader()
    return {
        (topic, partition): reader.get_watermark_offsets(TopicPartition(topic, partition), 10)[1]
        for topic, partition in partitions
    }


_stalls = ingest.StallDetector(timeout=settings.stream_stall_timeout_s)


async def _look_for_stalls() -> list[tuple[str, int]]:
    names = {topic.get_topic_name() for topic in topics.INPUT_TOPICS.values()}
    owned = [(tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in names]
    if not owned:
        return []
    loop = asyncio.get_running_loop()
    # Not through Faust's consumer: a stalled consumer thread would stall this check too.
    ends, applied = await asyncio.wait_for(
        asyncio.gather(
            loop.run_in_executor(None, _end_offsets, owned),
            loop.run_in_executor(None, ingest.applied_offsets, app.conf.id),
        ),
        timeout=30,
    )
    for (topic, partition), end in ends.items():
        metrics.PARTITION_LAG.labels(topic, str(partition)).set(
            max(end - 1 - applied.get((topic, partition), -1), 0)
        )
    return _stalls.look(applied, ends, time.monotonic())


@app.timer(interval=5.0)
async def stall_watchdog() -> None:
    """Exit when a partition of ours holds events but its applied offset has stopped moving.

    faust-streaming consumers can stop fetching for good (faust-streaming#175, #629, #640);
    restarting the process is safe, since PostgreSQL's offsets make every replay harmless.
    """
    try:
        stalled = await _look_for_stalls()
    except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any one failed look
        log.warning("stall watchdog could not compare offsets: %r", exc)
        return
    if stalled:
        log.critical("stream stalled for %.0f s with events waiting on %s: exiting to restart",
                     _stalls.waiting_for(time.monotonic()), stalled)  # fmt: skip
        logging.shutdown()
        os._exit(ingest.STALL_EXIT_CODE)
