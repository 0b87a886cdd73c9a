"""One send per delivery: claim it in PostgreSQL, call the backend, record the outcome.

One module for the whole path of a send, in the order it runs, because its guarantees (one
send, no lost mail, only the record retried after the provider accepted) hold across the steps.

Plain functions (the Celery task only calls them). The claim is committed before the provider
call and the outcome in one commit after it, so a redelivered or duplicated task never sends a
delivery that is sent or being sent. One window cannot be closed without the provider's help: a
worker that dies after the provider accepted the e-mail and before the 'sent' commit leaves the
delivery in 'sending'. Once that claim is older than EMAIL_SENDING_TIMEOUT_S the delivery is sent
again (at least once: mail is never silently lost), logged as a possible duplicate; a provider
event that arrives first records it as sent and prevents the second send.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.config import Settings
from app.contracts import validate
from app.core import circuits, faults, metrics
from app.core.circuits import Circuit, Turn
from app.db import sends
from app.db.session import connection_scope
from app.delivery import feedback
from app.delivery.mail.base import (
    EmailBackend,
    OutgoingEmail,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
    UnconfirmedSendError,
    backend_name,
)
from app.domain.bounds import clip_text
from app.jobs.dispatch import RESWEEP_AFTER

log = logging.getLogger(__name__)

# Celery holds countdown tasks unacked in worker memory; RabbitMQ's consumer_timeout is 30 min.
MAX_COUNTDOWN_S = 900.0

Result = Literal[
    "sent", "retry", "parked", "record", "failed", "done", "missing", "skipped", "unconfirmed"
]
# What a claim we did not get means for the task.
UNCLAIMED: dict[sends.ClaimState, Result] = {
    "done": "done",
    "missing": "missing",
    "opted_out": "skipped",
}
# Tries of recording an accepted send before the task is retried for the recording alone.
RECORD_TRIES_S = (0.2, 0.5, 1.0, 2.0)
RECORD_RETRY_S = 5.0
# A released send is sent again no sooner than this: long enough for a worker whose accepted
# send waits to be recorded (every RECORD_RETRY_S) to record it once PostgreSQL is back.
RELEASE_GRACE_S = 60.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one task: `retry` comes with the countdown to wait before the next try.

    `record`: the provider accepted the e-mail but PostgreSQL could not record it yet; the task
    is retried with `accepted`, which records the send and never calls the provider again.
    """

    result: Result
    countdown: float | None = None
    error: str | None = None
    accepted: dict[str, Any] | None = None


def retry_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    retry_at: float | None = None,
    now_ts: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before try `attempt + 1`: exponential with jitter, or the provider's reset.

    Equal jitter keeps at least half the backoff while spreading workers apart; after a rate
    limit everyone waits for the reset plus up to `base_s`, so the released herd is spread too.
    """
    rng = rng or random.Random()
    if retry_at is not None and math.isfinite(retry_at):
        wait = max(retry_at - (time.time() if now_ts is None else now_ts), 0.0)
        return min(wait + rng.uniform(0, base_s), MAX_COUNTDOWN_S)
    delay: float = min(max_s, base_s * 2 ** max(attempt - 1, 0))
    return min(delay / 2 + rng.uniform(0, delay / 2), MAX_COUNTDOWN_S)


def mail_circuit(backend: EmailBackend, settings: Settings) -> Circuit:
    """The process's circuit for this mail backend, shared by every task and chunk."""
    return circuits.shared(
        f"mail:{getattr(backend, 'name', type(backend).__name__)}",
        failure_threshold=settings.circuit_failure_threshold,
        probe_interval_s=settings.circuit_probe_interval_s,
    )


def observe(circuit: Circuit, result: SendResult | BaseException) -> None:
    """Tell the circuit what a send said about the provider: only an outage counts against it.

    A refusal of one e-mail (a 4xx, a bad address) is the provider answering: it closes.
    """
    if isinstance(result, TransientSendError) and result.outage:
        circuit.record_failure()
    elif isinstance(result, (SendResult, SendError)):
        circuit.record_success()


def longest_wait_s(settings: Settings) -> float:
    """The longest backoff of one delivery: EMAIL_RETRY_MAX_S within RETRY_MAX_WAIT_S."""
    return min(settings.email_retry_max_s, settings.retry_max_wait_s)


def outgoing(task: dict[str, Any]) -> OutgoingEmail:
    """The e-mail a task describes (schemas/email_task.json)."""
    return OutgoingEmail(
        to=task["email"],
        subject=task["subject"],
        html=task["body"],
        text=task.get("text") or "",
        headers=dict(task.get("headers") or {}),
        delivery_id=task.get("delivery_id"),
    )


def ids_of(delivery_id: uuid.UUID) -> dict[str, str]:
    """Log fields naming the delivery (a field of its own in JSON logs)."""
    return {"delivery_id": str(delivery_id)}


def timed_send(backend: EmailBackend, email: OutgoingEmail) -> SendResult:
    started = time.perf_counter()
    try:
        return backend.send(email)
    finally:
        metrics.SEND_SECONDS.labels(type(backend).__name__).observe(time.perf_counter() - started)


def deliver(
    task: dict[str, Any],
    *,
    backend: EmailBackend,
    settings: Settings,
    now: datetime,
    retries: int = 0,
    accepted: dict[str, Any] | None = None,
) -> Outcome:
    """Send the e-mail of one task at most once per claim; say whether to retry and when.

    With `accepted` (the provider took it on an earlier try), only record that. Raises
    ContractError for a payload that breaks its schema (retrying cannot help).
    """
    validate("email_task", task)
    email = outgoing(task)
    notification_id = uuid.UUID(task["notification_id"])
    if email.delivery_id is None:
        return _deliver_untracked(email, notification_id, backend, settings, now, retries + 1)
    delivery_id = uuid.UUID(email.delivery_id)
    if accepted is not None:
        return _record_sent(delivery_id, accepted, now)
    circuit = mail_circuit(backend, settings)
    turn = circuit.turn()
    if turn == "park":  # not claimed, so no attempt spent: it comes back at the next probe
        circuits.parked(circuit.name)
        return Outcome("parked", countdown=circuit.park_countdown())
    try:
        claim = claim_for_sending(delivery_id, notification_id, settings)
    except BaseException:
        if turn == "probe":
            circuit.release_probe()
        raise
    if turn == "probe" and claim.state != "claimed":
        circuit.release_probe()  # nothing to send: the next caller probes
    waiting = _unclaimed(claim, delivery_id)
    if waiting is not None:
        return waiting
    return _send_claimed(email, delivery_id, claim, backend, settings, now, circuit, turn)


def _unclaimed(claim: sends.Claim, delivery_id: uuid.UUID) -> Outcome | None:
    """What to do when the claim is not ours to send (None: it is, go on)."""
    if claim.state == "busy":
        # Another worker is in the provider call (or died there): look again once it is stale.
        return Outcome("retry", countdown=min(claim.wait_s + random.uniform(0, 1), MAX_COUNTDOWN_S))
    if claim.state != "claimed":
        log.info(
            "delivery %s not sent: %s (status %s)",
            delivery_id,
            claim.state,
            claim.status,
            extra=ids_of(delivery_id),
        )
        return Outcome(UNCLAIMED[claim.state])
    if claim.reclaimed:
        log.warning(
            "delivery %s: resending a send abandoned in 'sending' (possible duplicate, attempt %d)",
            delivery_id,
            claim.attempt,
            extra=ids_of(delivery_id),
        )
    return None


def _send_claimed(
    email: OutgoingEmail,
    delivery_id: uuid.UUID,
    claim: sends.Claim,
    backend: EmailBackend,
    settings: Settings,
    now: datetime,
    circuit: Circuit,
    turn: Turn,
) -> Outcome:
    """The provider call of a claimed delivery, and its outcome recorded."""
    try:
        result = timed_send(backend, email)
    except UnconfirmedSendError as exc:
        observe(circuit, exc)
        return _leave_unconfirmed(delivery_id, claim, exc)
    except SendError as exc:
        observe(circuit, exc)
        outcome = _record_failure(delivery_id, claim, exc, settings, now, circuit)
        feedback.suppress_refused_addresses(
            [(email.to, exc)], now=now, source=backend_name(backend)
        )
        return outcome
    except Exception as exc:  # a bug must not leave the delivery claimed until it goes stale
        log.exception("delivery %s: backend crashed", delivery_id, extra=ids_of(delivery_id))
        if turn == "probe":
            circuit.release_probe()
        crash = TransientSendError(repr(exc))
        return _record_failure(delivery_id, claim, crash, settings, now, circuit)
    observe(circuit, result)
    accepted = {
        "attempt": claim.attempt,
        "provider_message_id": result.provider_message_id,
        "backend": result.backend or getattr(backend, "name", None),
    }
    return _record_sent(delivery_id, accepted, now)


def claim_for_sending(
    delivery_id: uuid.UUID, notification_id: uuid.UUID, settings: Settings
) -> sends.Claim:
    """Claim the delivery: one autocommitted statement when it is simply waiting (nearly always),
    else the locked look in a transaction, which says why not or takes over an abandoned send."""
    with connection_scope(autocommit=True) as connection:
        waiting = sends.claim_waiting(
            session=connection, delivery_id=delivery_id, notification_id=notification_id
        )
    if waiting is not None:
        return waiting
    with connection_scope() as connection:
        return sends.claim(
            session=connection,
            delivery_id=delivery_id,
            notification_id=notification_id,
            stale_after_s=settings.email_sending_timeout_s,
            max_attempts=settings.email_max_attempts,
        )


def _mark_sent(delivery_id: uuid.UUID, accepted: dict[str, Any], now: datetime) -> bool:
    # One statement (the delivery and its notification), so no transaction around it.
    with connection_scope(autocommit=True) as connection:
        return sends.mark_sent(
            session=connection,
            delivery_id=delivery_id,
            attempt=accepted["attempt"],
            provider_message_id=accepted.get("provider_message_id"),
            now=now,
            backend=accepted.get("backend"),
        )


def _record_sent(delivery_id: uuid.UUID, accepted: dict[str, Any], now: datetime) -> Outcome:
    """Record an accepted send, retrying the recording (never the send) through outages.

    A record PostgreSQL refuses for the provider's values (which the backends bound, so this
    is a last line) is made again with our own values alone: the send is never left to be
    swept back and sent again for a detail of its record.
    """
    pauses = list(RECORD_TRIES_S)
    while True:
        try:
            recorded = _mark_sent(delivery_id, accepted, now)
            break
        except Exception as exc:  # noqa: BLE001 - the mail went out: any failure only delays its record
            transient = faults.is_transient(exc)
            if not transient and (accepted.get("provider_message_id") or accepted.get("backend")):
                log.error(
                    "delivery %s accepted; its record was refused (%s): recording it without "
                    "the provider's id",
                    delivery_id,
                    faults.describe(exc, 300),
                    extra=ids_of(delivery_id),
                )
                accepted = {"attempt": accepted["attempt"]}
                continue
            if not transient or not pauses:
                log.warning(
                    "delivery %s accepted by the provider; recording it failed (%s): the "
                    "task will record it later, without sending again",
                    delivery_id,
                    faults.describe(exc, 300),
                    extra=ids_of(delivery_id),
                )
                return Outcome("record", countdown=RECORD_RETRY_S, accepted=accepted)
            pause = pauses.pop(0)
            log.info(
                "delivery %s accepted; recording it failed (%s), again in %.1f s",
                delivery_id,
                faults.describe(exc, 200),
                pause,
                extra=ids_of(delivery_id),
            )
            time.sleep(pause)
    if not recorded:
        log.warning(
            "delivery %s sent, but its claim was taken over or a provider event recorded it first",
            delivery_id,
            extra=ids_of(delivery_id),
        )
    else:
        log.info("delivery %s sent", delivery_id, extra=ids_of(delivery_id))
    return Outcome("sent")


def _leave_unconfirmed(
    delivery_id: uuid.UUID, claim: sends.Claim, exc: UnconfirmedSendError
) -> Outcome:
    """Keep the claim of a send the provider may have taken: confirmed by its event, or swept."""
    error = clip_text(f"unconfirmed, waiting for the provider's event: {exc}")
    with connection_scope(autocommit=True) as connection:
        sends.note_unconfirmed(
            session=connection, delivery_id=delivery_id, attempt=claim.attempt, error=error
        )
    log.warning("delivery %s: %s", delivery_id, error, extra=ids_of(delivery_id))
    return Outcome("unconfirmed", error=error)


@dataclass(frozen=True, slots=True)
class FailureVerdict:
    """What a refused send means for its delivery: handed back for a retry, or failed."""

    retry: bool
    error: str
    outage: bool = False
    countdown: float | None = None


def judge_failure(
    exc: SendError, claim: sends.Claim, settings: Settings, circuit: Circuit | None = None
) -> FailureVerdict:
    """Retry a transient failure while attempts are left (outages never use them up), else fail.

    An outage behind an open circuit waits for the next probe instead of its own backoff.
    """
    # The provider's text, bounded and storable (a NUL in a body must not fail the record).
    error = clip_text(str(exc))
    outage = isinstance(exc, TransientSendError) and exc.outage
    # Throttling and provider outages delay a delivery without using up its attempts.
    counted = claim.attempt - claim.deferrals
    if isinstance(exc, TransientSendError) and (outage or counted < settings.email_max_attempts):
        if outage and circuit is not None and circuit.state != "closed":
            return FailureVerdict(True, error, outage, circuit.park_countdown())
        countdown = retry_delay(
            claim.attempt,
            base_s=settings.email_retry_base_s,
            max_s=longest_wait_s(settings),
            retry_at=getattr(exc, "retry_at", None),
        )
        return FailureVerdict(True, error, outage, countdown)
    return FailureVerdict(False, error)


def log_failure(delivery_id: uuid.UUID, attempt: int, verdict: FailureVerdict) -> None:
    if verdict.retry:
        log.info(
            "delivery %s: attempt %d failed (%s); retry in %.1fs",
            delivery_id,
            attempt,
            verdict.error,
            verdict.countdown,
            extra=ids_of(delivery_id),
        )
    else:
        log.warning(
            "delivery %s failed after %d attempt(s): %s",
            delivery_id,
            attempt,
            verdict.error,
            extra=ids_of(delivery_id),
        )


def _record_failure(
    delivery_id: uuid.UUID,
    claim: sends.Claim,
    exc: SendError,
    settings: Settings,
    now: datetime,
    circuit: Circuit | None = None,
) -> Outcome:
    verdict = judge_failure(exc, claim, settings, circuit)
    with connection_scope() as connection:
        if verdict.retry:
            sends.release_for_retry(
                session=connection,
                delivery_id=delivery_id,
                attempt=claim.attempt,
                error=verdict.error,
                now=now,
                outage=verdict.outage,
            )
        else:
            sends.mark_failed(
                session=connection,
                delivery_id=delivery_id,
                attempt=claim.attempt,
                error=verdict.error,
                now=now,
            )
    log_failure(delivery_id, claim.attempt, verdict)
    if verdict.retry:
        return Outcome("retry", countdown=verdict.countdown, error=verdict.error)
    return Outcome("failed", error=verdict.error)


def _deliver_untracked(
    email: OutgoingEmail,
    notification_id: uuid.UUID,
    backend: EmailBackend,
    settings: Settings,
    now: datetime,
    attempt: int,
) -> Outcome:
    """A task without delivery_id: no per-delivery state, so no exactly-once guarantee."""
    status: Result
    error: str | None
    try:
        timed_send(backend, email)
    except TransientSendError as exc:
        if attempt < settings.email_max_attempts:
            countdown = retry_delay(
                attempt,
                base_s=settings.email_retry_base_s,
                max_s=longest_wait_s(settings),
                retry_at=exc.retry_at,
            )
            return Outcome("retry", countdown=countdown, error=str(exc))
        status, error = "failed", str(exc)
    except PermanentSendError as exc:
        status, error = "failed", str(exc)
    else:
        status, error = "sent", None
    with connection_scope() as connection:
        sends.mark_notification(
            session=connection, notification_id=notification_id, status=status, now=now
        )
    return Outcome(status, error=error)


def release_abandoned(settings: Settings) -> int:
    """Hand deliveries left in 'sending' by dead workers back to the dispatcher."""
    with connection_scope() as connection:
        released = sends.release_stale_sending(
            session=connection,
            stale_after_s=settings.email_sending_timeout_s,
            max_attempts=settings.email_max_attempts,
            resweep_after_s=RESWEEP_AFTER.total_seconds(),
            grace_s=RELEASE_GRACE_S,
        )
    if released:
        log.warning(
            "released %d deliveries abandoned in 'sending' (possible duplicates: their "
            "provider call may have gone through)",
            released,
        )
    return released
