"""Apply a batch of raw input records to PostgreSQL: one transaction, offsets included (no Faust).

Kafka delivers at least once. The transaction that writes a batch's rows also raises the stored
offset of each topic-partition, and records at or below the stored offset are skipped, so a replay
after any crash neither loses nor double-counts an event (docs/stream-semantics.md).

Every failure stays with the event that caused it (docs/fault-model.md): a record that does not
decode, or that PostgreSQL refuses, becomes a dead letter (a row in `dead_letters`, written in
the same transaction, and a copy on the dead-letter topic) and the rest of the batch is applied.
Only outages escape, for the caller to retry the whole batch.

The consumer may also deliver too little: around a rebalance faust-streaming drops and acks
records fetched under the previous group generation, so its committed Kafka offset can pass
records no batch ever saw. So a batch that starts beyond the stored offset + 1, or has a hole,
first reads the missing records from Kafka itself (`fill_gaps`) and applies them in offset order.

And Kafka may change under the stored offsets: a partition whose topic was recreated (its topic
id changed), or that this group has no position for while another group applied it (the app id
was renamed), is blocked: its records are held, not applied, until an operator resets it.

One module on purpose, just over 300 lines: the offset checks and the batch's transaction must
be read together, or a record could be applied twice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from app.db import dead_letters, stream_offsets
from app.db import ingest as db_ingest
from app.db.dead_letters import NewDeadLetter
from app.db.session import session_scope
from app.db.stream_offsets import PartitionState, TopicPartition
from app.domain.vocabulary import EventKind
from app.stream import gaps
from app.stream.ingest_apply import (
    Accepted,
    Effects,
    apply_isolated,
    mirror_replayed_likes,
    table_key,
)
from app.stream.records import (
    BatchResult,
    DeadLetter,
    DeadLetterSink,
    EndOffsets,
    Record,
    TopicIds,
    dead_letter,
    decode_records,
    reason_of,
    split_fresh,
    top_offsets,
)

__all__ = [
    "BatchResult",
    "DeadLetter",
    "DeadLetterSink",
    "Record",
    "apply_batch",
    "decode_records",
    "positions",
    "reason_of",
    "table_key",
]

log = logging.getLogger(__name__)


def apply_batch(
    kind: EventKind,
    records: Sequence[Record],
    *,
    group_id: str,
    max_bytes: int,
    before_commit: DeadLetterSink | None = None,
    fill_gaps: gaps.GapFiller | None = None,
    topic_ids: TopicIds | None = None,
    end_offsets: EndOffsets | None = None,
) -> BatchResult:
    """Apply the records not applied yet in one transaction; return what was done.

    `before_commit` receives the batch's new dead letters inside the transaction: once it
    returns they are safely elsewhere, and a crash before the commit only repeats them.
    `fill_gaps` reads skipped records back from Kafka; `topic_ids` tells the current topic ids
    (see the module's docstring), `end_offsets` where the log of a partition ends (asked only
    for stored offsets that carry no topic id). Raises only on an outage: retry the same
    records later.
    """
    result = BatchResult(kind)
    with session_scope() as session:
        states = stream_offsets.lock_offsets(
            session=session, group_id=group_id, partitions={(r.topic, r.partition) for r in records}
        )
        ids = dict(topic_ids({t for t, _ in states})) if topic_ids is not None else {}
        result.blocked = _check_partitions(session, group_id, states, ids, end_offsets)
        result.held = [r for r in records if (r.topic, r.partition) in result.blocked]
        open_states = {tp: s for tp, s in states.items() if tp not in result.blocked}
        fresh, replayed = split_fresh(records, open_states)
        if fill_gaps is not None:
            known = {tp: s.offset for tp, s in open_states.items()}
            result.recovered = gaps.fill(fresh, known, fill_gaps)
        ordered = [fresh[position] for position in sorted(fresh)]  # the last text must win
        ordered = _without_duplicate_replays(session, ordered, result)
        accepted, result.dead_letters = decode_records(kind, ordered, max_bytes=max_bytes)
        applied, refused, effects = apply_isolated(session, kind, accepted)
        _record_received(session, kind, applied)
        result.dead_letters += [dead_letter(r.record, r.error, r.reason) for r in refused]
        result.applied, result.replayed = len(applied), len(replayed)
        _take_effects(result, effects)
        _claim_replay_tokens(session, applied)
        if kind == "comment_liked" and replayed:
            old = decode_records(kind, replayed, max_bytes=max_bytes)[0]
            for key, value in mirror_replayed_likes(session, old).items():
                result.like_counts.setdefault(key, value)
        stream_offsets.save_offsets(
            session=session, group_id=group_id, offsets=top_offsets(fresh), topic_ids=ids
        )
        _record_dead_letters(session, group_id, result.dead_letters)
        if result.dead_letters and before_commit is not None:
            before_commit(result.dead_letters)
    if replayed:
        log.info("%s: skipped %d replayed records", kind, len(replayed))
    return result


def _claim_replay_tokens(session: Session, applied: Sequence[Accepted]) -> None:
    """Replayed dead letters that were applied now: their tokens are used up."""
    dead_letters.claim_tokens(
        session=session,
        applied=[
            (token, r.topic, r.partition, r.offset)
            for r, _ in applied
            if r.headers and (token := r.replay_token()) is not None
        ],
    )


def _record_received(session: Session, kind: EventKind, applied: Sequence[Accepted]) -> None:
    db_ingest.record_received(
        session=session,
        kind=kind,
        events=[
            db_ingest.Received(
                e.user_id, r.topic, r.partition, r.offset, e.content_id, e.periodicity
            )
            for r, e in applied
        ],
    )


def _take_effects(result: BatchResult, effects: Effects) -> None:
    result.send_now = effects.send_now
    result.like_counts.update(effects.like_counts)


def _record_dead_letters(session: Session, group_id: str, dead: Sequence[DeadLetter]) -> None:
    dead_letters.record(
        session=session,
        group_id=group_id,
        letters=[
            NewDeadLetter(
                d.record.topic,
                d.record.partition,
                d.record.offset,
                d.record.key,
                d.record.value,
                d.reason,
                d.error,
                d.replay_token,
            )
            for d in dead
        ],
    )


def _without_duplicate_replays(
    session: Session, ordered: list[Record], result: BatchResult
) -> list[Record]:
    """Drop replayed copies of an event that an earlier copy (or one before it here) applied."""
    if not any(r.headers for r in ordered):
        return ordered  # the common case: no record carries headers, so none is a replay
    tokens = {token for r in ordered if (token := r.replay_token()) is not None}
    if not tokens:
        return ordered
    taken = dead_letters.claimed_tokens(session=session, tokens=tokens)
    kept = []
    for record in ordered:
        token = record.replay_token()
        if token is not None and token in taken:
            result.duplicate_replays += 1
            continue
        if token is not None:
            taken.add(token)  # a second copy in this batch is a duplicate too
        kept.append(record)
    if result.duplicate_replays:
        log.info(
            "skipped %d replayed copies of dead letters applied before", result.duplicate_replays
        )
    return kept


def _past_the_log(
    states: Mapping[TopicPartition, PartitionState],
    topic_ids: Mapping[str, str | None],
    end_offsets: EndOffsets | None,
    blocked: Mapping[TopicPartition, str],
) -> dict[TopicPartition, str]:
    """Partitions whose stored offsets carry no topic id and lie past the end of the log.

    Rows written before topic ids were stored cannot be compared by id; a stored offset at or
    past the log's end cannot belong to this topic, which was recreated. One nearer the start
    is taken as this topic's, and its id is stored with the batch from then on.
    """
    unnamed = [
        tp
        for tp, s in states.items()
        if s.topic_id is None
        and s.offset is not None
        and s.offset >= 0
        and topic_ids.get(tp[0]) is not None
        and tp not in blocked
    ]
    if not unnamed or end_offsets is None:
        return {}
    ends = end_offsets(sorted(unnamed))
    found: dict[TopicPartition, str] = {}
    for topic, partition in unnamed:
        stored, end = states[(topic, partition)].offset, ends.get((topic, partition))
        if stored is not None and end is not None and stored >= end:
            found[(topic, partition)] = (
                f"topic {topic} was recreated: the offsets stored for partition {partition} (up "
                f"to {stored}) carry no topic id and lie past the end of its log ({end})"
            )
    return found


def _check_partitions(
    session: Session,
    group_id: str,
    states: Mapping[TopicPartition, PartitionState],
    topic_ids: Mapping[str, str | None],
    end_offsets: EndOffsets | None = None,
) -> dict[TopicPartition, str]:
    """The batch's blocked partitions: blocked before, or found now (and blocked in the DB)."""
    blocked = {tp: s.blocked_reason for tp, s in states.items() if s.blocked_reason}
    found: dict[TopicPartition, str] = {}
    for (topic, partition), state in states.items():
        current = topic_ids.get(topic)
        if (topic, partition) in blocked or current is None or state.topic_id in (None, current):
            continue
        found[(topic, partition)] = (
            f"topic {topic} was recreated: its id is now {current}, while the offsets stored for "
            f"partition {partition} (up to {state.offset}) belong to topic id {state.topic_id}"
        )
    found.update(_past_the_log(states, topic_ids, end_offsets, blocked))
    unpositioned = [
        tp for tp, s in states.items() if s.offset is None and tp not in blocked and tp not in found
    ]
    others = stream_offsets.offsets_of_other_groups(
        session=session, group_id=group_id, partitions=unpositioned
    )
    for (topic, partition), applied_by in others.items():
        groups = ", ".join(f"{g} (up to offset {o})" for g, o in applied_by)
        found[(topic, partition)] = (
            f"group {group_id} has no offsets for {topic}[{partition}], but it was applied by "
            f"{groups}: was FAUST_APP_ID renamed?"
        )
    if found:
        stream_offsets.block_partitions(session=session, group_id=group_id, reasons=found)
        for (topic, partition), reason in sorted(found.items()):
            log.critical(
                "%s[%d] blocked: %s. Its events are held, not applied, until an operator "
                "runs `notify offsets reset --topic %s --to-start|--to-end|--to-stored`",
                topic,
                partition,
                reason,
                topic,
                extra={"topic": topic, "partition": partition},
            )
    return {**blocked, **found}


def positions(group_id: str) -> tuple[dict[TopicPartition, int], dict[TopicPartition, str]]:
    """This group's applied offset per topic-partition, and the partitions that are blocked."""
    with session_scope() as session:
        return stream_offsets.positions(session=session, group_id=group_id)
