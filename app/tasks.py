"""Celery tasks: thin wrappers that call the jobs with real clients and the current time."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from functools import cache, partial
from typing import Any

from celery import Task
from celery.signals import worker_ready
from sqlalchemy.exc import OperationalError

from app.auth.client import AuthClient, AuthUnavailable
from app.config import get_settings
from app.contracts import ContractError
from app.core import circuits, faults, metrics
from app.core.clock import utcnow
from app.delivery import chunks, paced, sending
from app.delivery.mail import EmailBackend, get_backend
from app.domain.vocabulary import PERIODICITIES, Periodicity, one_of
from app.jobs import auth_outage, digests, retention
from app.jobs import dispatch as dispatcher
from app.jobs.celery_app import (
    DAILY_DIGEST,
    DISPATCH,
    PLAN_SHARD,
    SEND_EMAIL,
    SEND_EMAILS,
    SEND_NOW,
    WEEKLY_DIGEST,
    celery_app,
)
from app.jobs.handoff import CeleryEmailPublisher, request_plan_shards, request_send_now

log = logging.getLogger(__name__)


@cache
def _auth() -> AuthClient:
    client = AuthClient.from_settings(get_settings())
    client.circuit.when_closed(
        lambda: auth_outage.release_waiting(utcnow(), partial(request_send_now, celery_app))
    )
    return client


def _digest(periodicity: Periodicity) -> dict[str, Any]:
    """Cut the run into shards and hand each to the jobs queue, where every jobs worker plans."""
    run_id, shards = digests.start_run(periodicity, settings=get_settings(), now=utcnow())
    request_plan_shards(celery_app, periodicity, run_id, shards)
    return {"periodicity": periodicity, "run_id": str(run_id), "shards": shards}


@celery_app.task(name=DAILY_DIGEST)
def daily_digest() -> dict[str, Any]:
    """Plan today's daily digests, then trim the timelines' received events to their retention."""
    report = _digest("daily")
    report["received_events_pruned"] = retention.prune_timeline(
        settings=get_settings(), now=utcnow()
    )
    return report


@celery_app.task(name=WEEKLY_DIGEST)
def weekly_digest() -> dict[str, Any]:
    """Plan this week's weekly digests."""
    return _digest("weekly")


def _outage_countdown(task: Task, exc: Exception) -> float:
    """When a task an outage stopped runs again: at the next probe of an open circuit (parked),
    else after its own backoff, never longer than RETRY_MAX_WAIT_S."""
    if isinstance(exc, AuthUnavailable):
        circuit = _auth().circuit
        if circuit.state != "closed":
            circuits.parked(circuit.name)
            return circuit.park_countdown()
    wait_s = get_settings().retry_max_wait_s
    return sending.retry_delay(task.request.retries + 1, base_s=1.0, max_s=wait_s)


@celery_app.task(bind=True, name=PLAN_SHARD, max_retries=None)  # outages delay, never drop
def plan_shard(
    self: Task, periodicity: str, run_id: str, shard: int, shards: int
) -> dict[str, Any]:
    """Plan one shard of a daily or weekly run, then enqueue what is due right away."""
    try:
        report = digests.plan_shard(
            one_of(periodicity, PERIODICITIES, "periodicity"),
            run_id=uuid.UUID(run_id),
            shard=shard,
            shards=shards,
            auth=_auth(),
            settings=get_settings(),
            now=utcnow(),
        )
    except (AuthUnavailable, OperationalError) as exc:
        raise self.retry(countdown=_outage_countdown(self, exc)) from exc
    except Exception as exc:
        digests.fail_shard(uuid.UUID(run_id), shard, error=faults.describe(exc, 500))
        raise
    for decision, count in report.by_status.items():
        metrics.PLANNED.labels(periodicity, decision).inc(count)
    # Whatever is due right away need not wait for the next dispatch tick.
    _dispatch_due()
    return report.as_dict()


@celery_app.task(bind=True, name=SEND_NOW, max_retries=None)  # an outage delays, never drops
def send_now(self: Task, notification_ids: list[str] | str) -> dict[str, int]:
    """Plan and enqueue `once` notifications (the stream agents hand over one batch per task)."""
    ids = [notification_ids] if isinstance(notification_ids, str) else notification_ids
    if self.request.retries and auth_outage.already_released(ids):
        return {"released": len(ids)}  # parked behind Auth, and asked for in a full batch since
    try:
        statuses = digests.plan_once(
            [uuid.UUID(i) for i in ids], auth=_auth(), settings=get_settings(), now=utcnow()
        )
    except (AuthUnavailable, OperationalError) as exc:
        raise self.retry(countdown=_outage_countdown(self, exc)) from exc
    for decision in statuses.values():
        metrics.PLANNED.labels("once", decision).inc()
    if "scheduled" in statuses.values():
        _dispatch_due()
    return dict(Counter(statuses.values()))


@celery_app.task(name=DISPATCH)
def dispatch() -> int:
    """Enqueue what is due, retry lost `once` hand-offs, and sends abandoned in `sending`."""
    sending.release_abandoned(get_settings())
    lost = dispatcher.lost_once_handoffs(now=utcnow())
    if lost:
        log.warning("re-requesting %d once notifications left pending", len(lost))
        request_send_now(celery_app, lost)
    return _dispatch_due()


def _dispatch_due() -> int:
    """Enqueue what is due now (suppressed addresses held, at the send rate, as settings say)."""
    settings = get_settings()
    return dispatcher.dispatch_due(
        publisher=CeleryEmailPublisher(celery_app),
        now=utcnow(),
        hold_transactional=settings.suppress_transactional,
        pace=settings.pace,
    )


@cache
def _backend() -> EmailBackend:
    return get_backend(get_settings())


@celery_app.task(
    bind=True,
    name=SEND_EMAIL,
    # Acked only after the outcome is recorded; a worker killed mid-task gets it redelivered.
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # attempts are counted in deliveries.attempts (EMAIL_MAX_ATTEMPTS)
)
def send_email(self: Task, task: dict[str, Any], accepted: dict[str, Any] | None = None) -> str:
    """Send one e-mail task from the `emails` queue; retry later when the outcome says so.

    `accepted`: the provider took this e-mail on an earlier try; only its recording is left.
    """
    try:
        outcome = sending.deliver(
            task,
            backend=_backend(),
            settings=get_settings(),
            now=utcnow(),
            retries=self.request.retries,
            accepted=accepted,
        )
    except OperationalError as exc:  # database trouble delays mail, it never drops it
        raise self.retry(countdown=_outage_countdown(self, exc)) from exc
    except ContractError as exc:
        metrics.DELIVERIES.labels("invalid").inc()
        log.error("emails: dropping an invalid task: %s", exc)
        return "invalid"
    metrics.DELIVERIES.labels(outcome.result).inc()
    if outcome.result in ("retry", "parked"):
        raise self.retry(countdown=outcome.countdown)
    if outcome.result == "record":
        raise self.retry(
            countdown=outcome.countdown, args=(task,), kwargs={"accepted": outcome.accepted}
        )
    return outcome.result


@celery_app.task(
    bind=True,
    name=SEND_EMAILS,
    # Acked only after every outcome is recorded or handed back; a worker killed mid-chunk gets
    # it redelivered, and the per-delivery claims make the copy send only what was not sent.
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def send_emails(
    self: Task, items: list[dict[str, Any]], accepted: dict[str, dict[str, Any]] | None = None
) -> dict[str, int]:
    """Send a chunk of e-mail tasks from the `emails` queue (app/delivery/chunks.py).

    What is to be tried again goes back as chunks of its own, published before this one is
    acked: `accepted` (delivery id -> what the provider said) marks a chunk whose sends the
    provider took on an earlier try, so only their record is left.
    """
    if not isinstance(items, list):
        metrics.DELIVERIES.labels("invalid").inc()
        log.error("emails: dropping a chunk that is not a list: %.200r", items)
        return {"invalid": 1}
    now = utcnow()
    try:
        # Paced mail too late for its slot, and paced retries, go back for new slots.
        items, reslotted = paced.hold_late(items, now)
        report = chunks.deliver_chunk(
            items, backend=_backend(), settings=get_settings(), now=now, accepted=accepted
        )
        retry, back = paced.split_retries(report.retry, now)
        paced.hand_back(back, now)
    except OperationalError as exc:  # database trouble delays mail, it never drops it
        raise self.retry(countdown=_outage_countdown(self, exc)) from exc
    if reslotted:
        report.counts["reslotted"] += reslotted
    publisher = CeleryEmailPublisher(celery_app)
    if retry:
        publisher.publish_chunks(chunks.retry_chunks(retry, publisher.chunk_size))
    if report.record:
        record_only = [(report.record_items, sending.RECORD_RETRY_S)]
        publisher.publish_chunks(record_only, accepted=report.record)
    for result, count in report.counts.items():
        metrics.DELIVERIES.labels(result).inc(count)
    return dict(report.counts)


@worker_ready.connect
def _release_abandoned_sends(**_kwargs: Any) -> None:
    """At worker start, hand sends abandoned by dead workers back to the dispatcher."""
    try:
        sending.release_abandoned(get_settings())
    except Exception:  # never keep a worker from starting over housekeeping
        log.exception("could not release abandoned sends")
