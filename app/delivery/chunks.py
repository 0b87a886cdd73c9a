"""A chunk of e-mail tasks: claimed, sent concurrently and recorded a wave at a time.

The per-mail costs of the single-task path (a Celery task, two statements, a provider request
built through helper objects) are paid here per wave: one statement claims every delivery of the
wave, the sends run side by side on the process's send pool (kept connections, one per pool
thread), and one statement records every outcome. Every rule of `sending.py` still holds per
delivery: a delivery claimed elsewhere is left alone (looked at on its own, as the single path
does), throttling and provider outages hand it back without spending an attempt, a send the
provider accepted but PostgreSQL could not record is only recorded later, never sent again.

Why waves and not the whole chunk at once: a process holds at most CLAIMS_PER_THREAD claims per
send thread (EMAIL_SEND_CONCURRENCY), from the claim to the record, and a wave is as large as the
send threads at most. So the next wave is claimed while the one before it is in the provider call
and starts as soon as a thread is free (PostgreSQL's round trips overlap the sends instead of
leaving the threads idle), a claim waits in 'sending' for at most one provider call before its own
(EMAIL_SENDING_TIMEOUT_S covers two), and a worker killed mid-chunk leaves at most its slots' worth
of accepted but unrecorded sends in the provider-ack window.

Retries go back as chunks of their own, so a chunk never waits for its slowest mail.

One module on purpose, over 300 lines: claiming, sending, recording a wave and handing back what
it could not settle are one protocol, and a step read apart from the others is how a delivery
would get sent twice.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.config import Settings
from app.contracts import ContractError, validate
from app.core import circuits, faults
from app.core.circuits import Circuit, Turn
from app.db import chunk_sends, sends
from app.db.chunk_sends import Record, RecordedStatus
from app.db.session import connection_scope
from app.delivery import feedback, paced, sending
from app.delivery.mail.base import (
    EmailBackend,
    SendError,
    SendResult,
    UnconfirmedSendError,
    backend_name,
)
from app.delivery.send_pool import SendCapacity, send_capacity, sender
from app.domain.bounds import clip_text

log = logging.getLogger(__name__)

# How long a chunk's thread holds parked e-mails before handing them back to the queue: well
# under RabbitMQ's consumer_timeout, and long enough that a short outage costs no round trip.
PARK_MAX_S = 60.0


@dataclass(slots=True)
class ChunkReport:
    """What became of a chunk: counts per result, and the work handed back for later.

    `retry`: items to send again, each after its countdown. `record`: sends the provider
    accepted whose record PostgreSQL refused for now: delivery id -> what the provider said.
    """

    counts: Counter[str] = field(default_factory=Counter)
    retry: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    # Sends an outage refused while the provider's circuit is open: they rejoin the chunk's
    # parked e-mails instead of going back to the queue on a countdown of their own.
    rejoin: list[tuple[uuid.UUID, dict[str, Any]]] = field(default_factory=list)
    record: dict[str, dict[str, Any]] = field(default_factory=dict)
    record_items: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Claimed:
    delivery_id: uuid.UUID
    item: dict[str, Any]
    claim: sends.Claim


def deliver_chunk(
    items: Sequence[dict[str, Any]],
    *,
    backend: EmailBackend,
    settings: Settings,
    now: datetime,
    accepted: dict[str, dict[str, Any]] | None = None,
) -> ChunkReport:
    """Send a chunk of e-mail tasks (schemas/email_task.json) at most once per claim each."""
    report = ChunkReport()
    tracked: dict[uuid.UUID, dict[str, Any]] = {}
    for item in items:
        delivery_id = _admit(item, report, backend, settings, now, accepted or {})
        if delivery_id is None:
            continue
        if delivery_id in tracked:
            # A copy in the same chunk: the first one is this delivery's only send here.
            log.info(
                "delivery %s not sent: done (a copy of it came in the same chunk)",
                delivery_id,
                extra=sending.ids_of(delivery_id),
            )
            report.counts["done"] += 1
            continue
        tracked[delivery_id] = item
    _send_in_waves(list(tracked.items()), report, backend, settings, now)
    return report


def _send_in_waves(
    pending: list[tuple[uuid.UUID, dict[str, Any]]],
    report: ChunkReport,
    backend: EmailBackend,
    settings: Settings,
    now: datetime,
) -> None:
    """Claim the next wave while the one before is in the provider call; record them in order.

    A wave is as large as the send threads at most, and is claimed only when claim slots are
    free; when none are, the oldest wave in flight is waited for and recorded, which gives its
    slots back. Sends already out are recorded even when a later claim fails, and a claim that
    fails on an outage hands the rest of the chunk back as a retry instead of failing the task:
    the report, with the accepted sends still to record, must reach the caller, or a retry of
    the whole chunk would find them claimed and, once the claims are stale, send them again.
    """
    capacity = send_capacity(settings.email_send_concurrency)
    circuit = sending.mail_circuit(backend, settings)
    waves: deque[_Wave] = deque()

    def finish_oldest() -> None:
        nonlocal pending
        _finish_wave(waves.popleft(), report, backend, settings, now, capacity, circuit)
        pending += report.rejoin
        report.rejoin.clear()

    try:
        while pending or waves:
            turn = circuit.turn() if pending else "call"
            if turn == "park":
                if waves:  # what is in flight may close the circuit, or confirm the outage
                    finish_oldest()
                    continue
                # Paced mail is not held here: let go all at once, it would break the rate.
                turn = "park" if _paced(pending) else _park(pending, circuit)
                if turn == "park":  # a long outage: back to the queue, and the thread is free
                    _hand_back_parked(pending, circuit, report)
                    pending = []
                    continue
            wanted = min(len(pending), 1 if turn == "probe" else capacity.threads)
            taken = capacity.slots.take(wanted, wait=not waves)
            if not taken:
                if turn == "probe":
                    circuit.release_probe()
                finish_oldest()
                continue
            started, pending = _start_next(
                pending, taken, turn, report, backend, settings, capacity, circuit
            )
            if started is not None:
                waves.append(started)
    except BaseException:
        while waves:
            finish_oldest()
        raise


def _start_next(
    pending: list[tuple[uuid.UUID, dict[str, Any]]],
    taken: int,
    turn: Turn,
    report: ChunkReport,
    backend: EmailBackend,
    settings: Settings,
    capacity: SendCapacity,
    circuit: Circuit,
) -> tuple[_Wave | None, list[tuple[uuid.UUID, dict[str, Any]]]]:
    """Claim and start the next `taken` e-mails; the wave (None if its claim met an outage,
    which hands the rest back as a retry) and what is still pending."""
    wave, rest = pending[:taken], pending[taken:]
    try:
        started = _start_wave(wave, report, backend, settings, capacity)
    except Exception as exc:
        if turn == "probe":
            circuit.release_probe()
        if not faults.is_transient(exc):
            raise
        _hand_back_unclaimed([*wave, *rest], exc, report)
        return None, []
    if turn == "probe" and not started.claimed:
        circuit.release_probe()  # nothing of it to send: the next wave probes
    return started, rest


def _paced(pending: Sequence[tuple[uuid.UUID, dict[str, Any]]]) -> bool:
    return paced.is_paced([item for _delivery_id, item in pending])


def _park(pending: Sequence[tuple[uuid.UUID, dict[str, Any]]], circuit: Circuit) -> Turn:
    """Hold the rest of the chunk, unclaimed (no attempt spent), until the provider is back.

    The thread waits on the circuit: it goes on the moment a probe closes it, or makes the
    probe itself when one is due. Chunks behind it wait in RabbitMQ meanwhile, so the release
    is the queue drained at the workers' full rate, not thousands of countdowns.
    """
    circuits.parked(circuit.name, len(pending))
    log.info("%s is out: %d e-mails of a chunk wait for it", circuit.name, len(pending))
    return circuit.wait_for_turn(PARK_MAX_S)


def _hand_back_parked(
    pending: Sequence[tuple[uuid.UUID, dict[str, Any]]], circuit: Circuit, report: ChunkReport
) -> None:
    """Items parked for PARK_MAX_S: back to the queue for the next probe, still unclaimed."""
    countdown = circuit.park_countdown()
    for _delivery_id, item in pending:
        report.retry.append((item, countdown))
    report.counts["parked"] += len(pending)


def _hand_back_unclaimed(
    unclaimed: Sequence[tuple[uuid.UUID, dict[str, Any]]], exc: Exception, report: ChunkReport
) -> None:
    """Items whose claim an outage refused: tried again later, as a chunk of their own."""
    log.warning(
        "claiming %d deliveries failed (%s): tried again in %.0f s",
        len(unclaimed),
        faults.describe(exc, 300),
        sending.RECORD_RETRY_S,
    )
    for _delivery_id, item in unclaimed:
        report.retry.append((item, sending.RECORD_RETRY_S))
        report.counts["retry"] += 1


def _admit(
    item: dict[str, Any],
    report: ChunkReport,
    backend: EmailBackend,
    settings: Settings,
    now: datetime,
    accepted: dict[str, dict[str, Any]],
) -> uuid.UUID | None:
    """The delivery id of an item to claim; None when it was settled on its own here.

    An item that breaks its contract is dropped on its own (retrying cannot mend it), as is one
    without a delivery id: a chunk's items come from the dispatcher, which always names the
    delivery, and without one there is no per-delivery state to send it at most once by. One
    whose send was accepted earlier takes the single path, which only records it.
    """
    try:
        validate("email_task", item)
        if not item.get("delivery_id"):
            raise ContractError("email_task: an item of a chunk must name its delivery_id")
    except ContractError as exc:
        log.error("emails: dropping an invalid task of a chunk: %s", exc)
        report.counts["invalid"] += 1
        return None
    delivery_id: str = item["delivery_id"]
    if delivery_id in accepted:
        outcome = sending.deliver(
            item, backend=backend, settings=settings, now=now, accepted=accepted[delivery_id]
        )
        _count_single(item, outcome, report)
        return None
    return uuid.UUID(delivery_id)


def _count_single(item: dict[str, Any], outcome: sending.Outcome, report: ChunkReport) -> None:
    report.counts[outcome.result] += 1
    if outcome.result == "retry":
        report.retry.append((item, outcome.countdown or 0.0))
    elif outcome.result == "record" and outcome.accepted is not None:
        report.record[item["delivery_id"]] = outcome.accepted
        report.record_items.append(item)


@dataclass(frozen=True, slots=True)
class _Wave:
    """Deliveries claimed together, and their sends on the process's send threads."""

    claimed: list[_Claimed]
    sends: list[Future[SendResult | SendError]]


def _start_wave(
    wave: Sequence[tuple[uuid.UUID, dict[str, Any]]],
    report: ChunkReport,
    backend: EmailBackend,
    settings: Settings,
    capacity: SendCapacity,
) -> _Wave:
    """Claim a wave in one statement and hand its sends to the send threads."""
    try:
        claimed = _claim(wave, report, settings)
    except BaseException:
        capacity.slots.give(len(wave))
        raise
    capacity.slots.give(len(wave) - len(claimed))  # nothing to send for those
    send = sender(backend)
    return _Wave(claimed, [capacity.pool.submit(send, done.item) for done in claimed])


def _finish_wave(
    wave: _Wave,
    report: ChunkReport,
    backend: EmailBackend,
    settings: Settings,
    now: datetime,
    capacity: SendCapacity,
    circuit: Circuit,
) -> None:
    """Wait for a wave's sends and record every outcome in one statement; free its slots."""
    try:
        results = [send.result() for send in wave.sends]
        for result in results:
            sending.observe(circuit, result)
        records: list[Record] = []
        verdicts: dict[uuid.UUID, sending.FailureVerdict] = {}
        for done, result in zip(wave.claimed, results, strict=True):
            records.append(_record_of(done, result, backend, settings, verdicts, circuit))
        recorded = _record(records, now)
        if recorded is None:  # PostgreSQL out of reach for longer than the record's tries
            _hand_back_unrecorded(wave.claimed, records, report)
            return
        for done, record in zip(wave.claimed, records, strict=True):
            _settle(done, record, record.delivery_id in recorded, verdicts, report, circuit)
        refusals = [
            (done.item.get("email"), result)
            for done, result in zip(wave.claimed, results, strict=True)
            if isinstance(result, BaseException)
        ]
        feedback.suppress_refused_addresses(refusals, now=now, source=backend_name(backend))
    finally:
        capacity.slots.give(len(wave.claimed))


def _claim(
    wave: Sequence[tuple[uuid.UUID, dict[str, Any]]], report: ChunkReport, settings: Settings
) -> list[_Claimed]:
    """Claim the wave in one statement; look at what it did not get one delivery at a time."""
    pairs = [(d, uuid.UUID(item["notification_id"])) for d, item in wave]
    with connection_scope(autocommit=True) as connection:
        got = chunk_sends.claim_chunk(connection, pairs)
    claimed = []
    for (delivery_id, item), (_d, notification_id) in zip(wave, pairs, strict=True):
        if delivery_id in got:
            chunk_claim = got[delivery_id]
            claim = sends.Claim(
                "claimed", None, chunk_claim.attempt, deferrals=chunk_claim.deferrals
            )
            claimed.append(_Claimed(delivery_id, item, claim))
            continue
        single = _claim_alone(delivery_id, notification_id, item, report, settings)
        if single is not None:
            claimed.append(_Claimed(delivery_id, item, single))
    return claimed


def _claim_alone(
    delivery_id: uuid.UUID,
    notification_id: uuid.UUID,
    item: dict[str, Any],
    report: ChunkReport,
    settings: Settings,
) -> sends.Claim | None:
    """The single path's claim, for a delivery that was not simply waiting."""
    try:
        claim = sending.claim_for_sending(delivery_id, notification_id, settings)
    except Exception as exc:  # noqa: BLE001 - one delivery's trouble must not fail its chunk
        if not faults.is_transient(exc):
            raise
        report.retry.append((item, sending.RECORD_RETRY_S))
        report.counts["retry"] += 1
        return None
    if claim.state == "busy":
        # Another worker is in the provider call (or died there): look again once it is stale.
        report.retry.append((item, min(claim.wait_s + 1.0, sending.MAX_COUNTDOWN_S)))
        report.counts["retry"] += 1
        return None
    if claim.state != "claimed":
        log.info(
            "delivery %s not sent: %s (status %s)",
            delivery_id,
            claim.state,
            claim.status,
            extra=sending.ids_of(delivery_id),
        )
        report.counts[sending.UNCLAIMED[claim.state]] += 1
        return None
    if claim.reclaimed:
        log.warning(
            "delivery %s: resending a send abandoned in 'sending' (possible duplicate, attempt %d)",
            delivery_id,
            claim.attempt,
            extra=sending.ids_of(delivery_id),
        )
    return claim


def _record_of(
    done: _Claimed,
    result: SendResult | SendError,
    backend: EmailBackend,
    settings: Settings,
    verdicts: dict[uuid.UUID, sending.FailureVerdict],
    circuit: Circuit,
) -> Record:
    attempt = done.claim.attempt
    if isinstance(result, SendResult):
        name = result.backend or getattr(backend, "name", None)
        return Record(done.delivery_id, attempt, "sent", None, result.provider_message_id, name)
    if isinstance(result, UnconfirmedSendError):
        error = clip_text(f"unconfirmed, waiting for the provider's event: {result}")
        return Record(done.delivery_id, attempt, "sending", error)
    verdict = sending.judge_failure(result, done.claim, settings, circuit)
    verdicts[done.delivery_id] = verdict
    status: RecordedStatus = "enqueued" if verdict.retry else "failed"
    return Record(done.delivery_id, attempt, status, verdict.error, outage=verdict.outage)


def _record(records: Sequence[Record], now: datetime) -> set[uuid.UUID] | None:
    """Record the wave's outcomes, trying again through short outages; None if it never could."""
    pauses = list(sending.RECORD_TRIES_S)
    while True:
        try:
            with connection_scope(autocommit=True) as connection:
                return chunk_sends.record_chunk(connection, records, now)
        except Exception as exc:  # noqa: BLE001 - sends went out: a failure only delays their record
            if not faults.is_transient(exc) or not pauses:
                log.warning(
                    "recording %d outcomes failed (%s): sends are recorded later, never sent again",
                    len(records),
                    faults.describe(exc, 300),
                )
                return None
            pause = pauses.pop(0)
            for record in records:
                if record.status == "sent":
                    log.info(
                        "delivery %s accepted; recording it failed (%s), again in %.1f s",
                        record.delivery_id,
                        faults.describe(exc, 200),
                        pause,
                        extra=sending.ids_of(record.delivery_id),
                    )
            time.sleep(pause)


def _hand_back_unrecorded(
    claimed: Sequence[_Claimed], records: Sequence[Record], report: ChunkReport
) -> None:
    """Accepted sends go back to be recorded only; the rest stay claimed until the claim is stale,
    then are tried again (their failure could not be recorded either)."""
    for done, record in zip(claimed, records, strict=True):
        if record.status == "sent":
            report.record[str(done.delivery_id)] = {
                "attempt": record.attempt,
                "provider_message_id": record.provider_message_id,
                "backend": record.backend,
            }
            report.record_items.append(done.item)
            report.counts["record"] += 1
        else:
            report.retry.append((done.item, sending.RECORD_RETRY_S))
            report.counts["retry"] += 1


def _settle(
    done: _Claimed,
    record: Record,
    recorded: bool,
    verdicts: dict[uuid.UUID, sending.FailureVerdict],
    report: ChunkReport,
    circuit: Circuit,
) -> None:
    delivery_id = done.delivery_id
    extra = sending.ids_of(delivery_id)
    if record.status == "sent":
        report.counts["sent"] += 1
        if recorded:
            log.info("delivery %s sent", delivery_id, extra=extra)
        else:
            log.warning(
                "delivery %s sent, but its claim was taken over or a provider event recorded "
                "it first",
                delivery_id,
                extra=extra,
            )
        return
    if record.status == "sending":
        report.counts["unconfirmed"] += 1
        log.warning("delivery %s: %s", delivery_id, record.error, extra=extra)
        return
    verdict = verdicts[delivery_id]
    sending.log_failure(delivery_id, record.attempt, verdict)
    if not verdict.retry:
        report.counts["failed"] += 1
    elif recorded and verdict.outage and circuit.state != "closed":
        report.rejoin.append((delivery_id, done.item))  # waits with the chunk's parked ones
    elif recorded:  # handed back by us: ours to send again
        report.counts["retry"] += 1
        report.retry.append((done.item, verdict.countdown or 0.0))
    else:  # its claim was taken over meanwhile: the new owner decides
        report.counts["done"] += 1


def retry_chunks(
    retry: Sequence[tuple[dict[str, Any], float]], size: int
) -> list[tuple[list[dict[str, Any]], float | None]]:
    """The items to try again as chunks, each item waiting at least its own countdown.

    Items are grouped by the whole second their countdown ends in (jitter keeps them spread).
    """
    by_second: dict[float, list[dict[str, Any]]] = {}
    for item, countdown in sorted(retry, key=lambda pair: pair[1]):
        by_second.setdefault(float(math.ceil(max(countdown, 0.0))), []).append(item)
    return [
        (items[start : start + size], second or None)
        for second, items in by_second.items()
        for start in range(0, len(items), size)
    ]
