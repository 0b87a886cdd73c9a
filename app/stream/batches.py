"""One batch of one input topic, as the agents run it: ingest off the loop, then what follows.

The database work and the Celery hand-off run in a thread executor, so heartbeats and
rebalances never wait behind I/O (docs/stream-semantics.md). Nothing an event contains can make a
batch raise or retry forever: `ingest.apply_batch` turns every refusal into a dead letter and
raises only on an outage, which is retried here with backoff (docs/fault-model.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError
from confluent_kafka import KafkaException
from faust.streams import _current_event
from faust.types import TP, EventT

from app.core import faults, metrics
from app.domain.vocabulary import EventKind
from app.stream import handoffs, ingest, parking, table_mirror, topics
from app.stream.faust_app import app, settings
from app.stream.kafka_reads import end_offsets, headers_of, read_gap, topic_ids

log = logging.getLogger(__name__)

# An outage is polled at most this far apart: its end is noticed within two seconds.
MAX_RETRY_DELAY_S = 2.0
# How often parked records of blocked partitions are tried again (an operator's reset).
HOLD_POLL_S = 2.0

LikeTable = table_mirror.Table


def to_record(event: EventT[bytes]) -> ingest.Record:
    """The transport-neutral record of a Faust event (raw bytes, position, headers)."""
    message = event.message
    return ingest.Record(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        headers_of(message.headers),
    )


async def emit_dead_letters(dead: Sequence[ingest.DeadLetter]) -> None:
    """Send dead letters (original bytes, reason headers) and wait until Kafka has them."""
    await asyncio.gather(*[await _send_dead_letter(d) for d in dead])


# The largest key a dead letter without its value still carries (Kafka keys are ids here).
MAX_DEAD_LETTER_KEY_BYTES = 4096


def too_large_to_send(error: BaseException) -> bool:
    """Whether a send failed for the record's size (Faust wraps aiokafka's error in its own)."""
    return any(isinstance(link, MessageSizeTooLargeError) for link in faults.chain(error))


async def _send_dead_letter(dead: ingest.DeadLetter) -> Any:
    try:
        return await topics.dead_letter.send(
            key=dead.record.key, value=dead.record.value, headers=dead.headers()
        )
    except Exception as exc:
        if not too_large_to_send(exc):
            raise
    # A record at the broker's size limit no longer fits with our headers: the topic gets the
    # headers alone (and the key, unless it is the large part); the original bytes are kept in
    # the dead_letters table for replay.
    headers = [*dead.headers(), ("value_omitted", b"too large; kept in dead_letters")]
    key = dead.record.key
    if key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES:
        key = None
        headers.append(("key_omitted", b"too large; kept in dead_letters"))
    return await topics.dead_letter.send(key=key, value=None, headers=headers)


def _dead_letter_sink(loop: asyncio.AbstractEventLoop) -> ingest.DeadLetterSink:
    # Called from the executor thread inside the batch's transaction: block until delivered.
    def sink(dead: Sequence[ingest.DeadLetter]) -> None:
        asyncio.run_coroutine_threadsafe(emit_dead_letters(dead), loop).result(timeout=120)

    return sink


async def apply_with_retry(kind: EventKind, records: Sequence[ingest.Record]) -> ingest.BatchResult:
    """Apply a batch, retrying with backoff until PostgreSQL takes it.

    `apply_batch` isolates every failure an event causes, so what reaches this loop is an
    outage (PostgreSQL or Kafka down, a deadlock): it delays the batch, never drops it.
    Raising is not an option either: `take_events` acks a batch whose agent body failed.
    """
    loop = asyncio.get_running_loop()
    topic = topics.INPUT_TOPICS[kind].get_topic_name()
    apply = partial(
        ingest.apply_batch,
        kind,
        records,
        group_id=app.conf.id,
        max_bytes=settings.max_event_bytes,
        before_commit=_dead_letter_sink(loop),
        fill_gaps=read_gap,
        topic_ids=topic_ids,
        end_offsets=end_offsets,
    )
    delay = 0.5
    while True:
        try:
            return await loop.run_in_executor(None, apply)
        except Exception as exc:
            transient = faults.is_transient(exc)
            metrics.BATCH_RETRIES.labels(topic, "outage" if transient else "other").inc()
            if transient:
                log.warning(
                    "%s: batch of %d waits for an outage (%s); retrying in %.1f s",
                    kind,
                    len(records),
                    faults.describe(exc, 300),
                    delay,
                )
            else:
                log.exception(
                    "%s: batch of %d failed outside any one event; retrying in %.1f s",
                    kind,
                    len(records),
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY_S)


@contextmanager
def _in_partition_of(event: EventT[bytes]) -> Iterator[None]:
    # Faust picks a table key's changelog partition (and RocksDB shard) from the current event.
    # After a batch that is just the last event taken, so point it at an event of the key's own
    # partition. Faust has no public setter; this is the context variable its streams set.
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


# The like table's changelog records go to Kafka in bulk, once per batch (app/stream/table_mirror).
changelog_writer: table_mirror.ChangelogWriter = table_mirror.KafkaChangelogWriter(settings)


async def mirror_like_counts(
    result: ingest.BatchResult, events: Sequence[EventT[bytes]], table: LikeTable
) -> None:
    """Set each touched key of the like table to the count PostgreSQL returned.

    The changelog records first (retried through a Kafka outage: they are values, so writing
    them twice is harmless), then the store, each in the key's own partition.
    """
    counts = {key.encode(): value for key, value in result.like_counts.items()}
    records = table_mirror.changelog_records(table, counts)
    topic = table.changelog_topic.get_topic_name()
    loop = asyncio.get_running_loop()
    delay = 0.5
    while True:
        try:
            offsets = await loop.run_in_executor(None, changelog_writer.write, topic, records)
            break
        except (table_mirror.ChangelogError, KafkaException) as exc:
            metrics.BATCH_RETRIES.labels(topic, "outage").inc()
            log.warning(
                "like table: %d changelog records wait for Kafka (%s); again in %.1f s",
                len(records),
                faults.describe(exc, 300),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY_S)
    last_of_partition = {event.message.partition: event for event in events}
    table_mirror.store_counts(
        table, counts, offsets, lambda partition: _in_partition_of(last_of_partition[partition])
    )


# Blocked partitions of this worker, parked so their agent serves the other partitions.
parked = parking.ParkingLot()


async def run_batch(
    kind: EventKind, events: Sequence[EventT[bytes]], like_table: LikeTable
) -> ingest.BatchResult:
    """Ingest one batch of one input topic and do what follows the commit.

    Records of a parked partition join the lot, behind the ones parked before them; records
    of a partition found blocked now are parked. Neither holds up the batch's other partitions.
    """
    topic = topics.INPUT_TOPICS[kind].get_topic_name()
    metrics.EVENTS_CONSUMED.labels(topic).inc(len(events))
    metrics.BATCH_SIZE.labels(topic).observe(len(events))
    started = time.perf_counter()
    records = [to_record(event) for event in events]
    behind = [r for r in records if (r.topic, r.partition) in parked]
    if behind:
        parked.park(kind, behind, events)
        records = [r for r in records if (r.topic, r.partition) not in parked]
    result = await apply_with_retry(kind, records) if records else ingest.BatchResult(kind)
    metrics.BATCH_SECONDS.labels(topic).observe(time.perf_counter() - started)
    await _after_commit(kind, topic, result, events, like_table)
    if result.held:
        _park(kind, result, events)
    return result


def _park(kind: EventKind, result: ingest.BatchResult, events: Sequence[EventT[bytes]]) -> None:
    for tp in parked.park(kind, result.held, events):
        metrics.PARTITION_BLOCKED.labels(tp[0], str(tp[1])).set(1)
        # Nothing more of it is fetched while it waits: the lot stays as small as the buffer.
        app.consumer.pause_partitions([TP(*tp)])
        log.warning("%s[%d]: parked until an operator resets it; the other partitions go on", *tp)


async def release_parked(like_table: LikeTable) -> None:
    """Try the parked records again: apply those of partitions an operator has reset.

    A partition taken away by a rebalance is forgotten: its records were acked with their
    batch, and its new owner reads them back from Kafka once the partition is reset, since
    every reset leaves it a stored offset (`gaps.find_gaps`).
    """
    owned = {(tp.topic, tp.partition) for tp in app.consumer.assignment()}
    for kind, tps in parked.by_kind().items():
        ours = [tp for tp in tps if tp in owned and not app.rebalancing]
        for tp in set(tps) - set(ours):
            log.warning("%s[%d]: forgetting %d parked records: reassigned", *tp, parked.drop(tp))
            metrics.PARTITION_BLOCKED.labels(tp[0], str(tp[1])).set(0)
        if not ours:
            continue
        records, events, counts = parked.snapshot(ours)
        result = await apply_with_retry(kind, records)
        topic = topics.INPUT_TOPICS[kind].get_topic_name()
        await _after_commit(kind, topic, result, events, like_table)
        for tp in ours:
            if parked.settle(tp, counts[tp], still_blocked=tp in result.blocked):
                metrics.PARTITION_BLOCKED.labels(tp[0], str(tp[1])).set(0)
                app.consumer.resume_partitions([TP(*tp)])
                log.warning("%s[%d]: reset by an operator; its parked records applied", *tp)


async def _after_commit(
    kind: EventKind,
    topic: str,
    result: ingest.BatchResult,
    events: Sequence[EventT[bytes]],
    like_table: LikeTable,
) -> None:
    metrics.EVENTS_APPLIED.labels(topic).inc(result.applied)
    metrics.EVENTS_REPLAYED.labels(topic).inc(result.replayed)
    metrics.EVENTS_RECOVERED.labels(topic).inc(result.recovered)
    metrics.DUPLICATE_REPLAYS.labels(topic).inc(result.duplicate_replays)
    for dead in result.dead_letters:
        metrics.DEAD_LETTERS.labels(topic, dead.reason).inc()
        record = dead.record
        log.warning(
            "%s: dead letter at %s[%d]@%d: %s",
            kind,
            record.topic,
            record.partition,
            record.offset,
            dead.error,
            extra=_position(record),
        )
    if result.like_counts:
        await mirror_like_counts(result, events, like_table)
    if result.send_now:
        await handoffs.hand_off(result.send_now)


def _position(record: ingest.Record) -> dict[str, Any]:
    """Log fields naming an event's place in Kafka (fields of their own in JSON logs)."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}
