"""Hand work to Celery by task name: e-mail chunks onto `emails`, `once` rows to send_now,
planning shards to every jobs worker."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.entity import PERSISTENT_DELIVERY_MODE
from kombu.messaging import Producer
from kombu.utils.uuid import uuid as new_task_id

from app.config import get_settings
from app.contracts import AUTH_BATCH_LIMIT
from app.core import metrics
from app.domain.vocabulary import Periodicity
from app.jobs.celery_app import EMAILS_QUEUE, JOBS_QUEUE, PLAN_SHARD, SEND_EMAILS, SEND_NOW


def chunked(
    tasks: Sequence[tuple[dict[str, Any], float | None]], size: int, resolution_s: float = 1.0
) -> list[tuple[list[dict[str, Any]], float | None]]:
    """E-mail tasks in chunks of at most `size`, one delay per chunk, in their order.

    A chunk holds tasks due within the same `resolution_s` (a second unless paced): its delay is
    that span's end, so no e-mail of it goes out early and none more than `resolution_s` late.
    """
    chunks: list[tuple[list[dict[str, Any]], float | None]] = []
    for payload, delay_s in tasks:
        delay = _span_end(delay_s, resolution_s)
        if chunks and chunks[-1][1] == delay and len(chunks[-1][0]) < size:
            chunks[-1][0].append(payload)
        else:
            chunks.append(([payload], delay))
    return chunks


def _span_end(delay_s: float | None, resolution_s: float) -> float | None:
    if delay_s is None or delay_s <= 0:
        return None
    # Rounded so that float error never splits one span in two (0.30000000000000004).
    return round(math.ceil(round(delay_s / resolution_s, 9)) * resolution_s, 6)


class CeleryEmailPublisher:
    """Publishes e-mail tasks in chunks, in Celery's own message format, over one channel.

    Each message is one `send_emails` task holding up to EMAIL_CHUNK_SIZE e-mails. `send_task`
    per message spent most of the dispatcher's time merging options, routing and declaring again
    for every message (celery/celery#4529, #6192). Here each message is still built by Celery
    (`amqp.as_task_v2`, task protocol 2, as `send_task` would), and published straight on the
    producer's channel: the queue is declared once per call, and the options are resolved once.
    No per-message confirms. A connection lost midway is re-established and the whole call
    published again, as kombu's publish retry policy would: a duplicate task is harmless (one
    send per delivery), a lost one is not.
    """

    def __init__(self, app: Celery, chunk_size: int | None = None) -> None:
        self.app = app
        self.queue = app.amqp.queues[EMAILS_QUEUE]
        self.chunk_size = chunk_size or get_settings().email_chunk_size

    def publish(
        self,
        tasks: Sequence[tuple[dict[str, Any], float | None]],
        *,
        resolution_s: float = 1.0,
        counted_from: datetime | None = None,
    ) -> None:
        """Put e-mail tasks on the `emails` queue, each with an optional delay in seconds,
        grouped into chunks of tasks due within the same `resolution_s`.

        `counted_from`: the instant (the service's clock) the delays count from; the messages
        then carry that instant plus their delay as an ETA. Paced mail needs it: a countdown
        counts from when each message is built, so a thousand of them would run late by the
        time the claim and the publishing took.
        """
        chunks = chunked(tasks, self.chunk_size, resolution_s)
        self.publish_chunks(chunks, count=len(tasks), counted_from=counted_from)

    def publish_chunks(
        self,
        chunks: Sequence[tuple[list[dict[str, Any]], float | None]],
        *,
        count: int | None = None,
        accepted: dict[str, dict[str, Any]] | None = None,
        counted_from: datetime | None = None,
    ) -> None:
        """Publish ready-made chunks; `accepted` makes them record-only (see `send_emails`)."""
        if not chunks:
            return
        # The worker's clock is real time; the service's may be shifted (CLOCK_OFFSET_S).
        start = counted_from - get_settings().clock_offset if counted_from else None
        policy = self.app.conf.task_publish_retry_policy
        with self.app.producer_or_acquire() as producer:
            publish_all = producer.connection.ensure(producer, self._publish_all, **policy)
            publish_all(producer, chunks, accepted, start)
        metrics.ENQUEUED.inc(count if count is not None else sum(len(c) for c, _d in chunks))

    def _publish_all(
        self,
        producer: Producer,
        chunks: Sequence[tuple[list[dict[str, Any]], float | None]],
        accepted: dict[str, dict[str, Any]] | None,
        start: datetime | None,
    ) -> None:
        producer.maybe_declare(self.queue)
        channel = producer.channel
        parent = self.app.current_worker_task
        root_id = (parent.request.root_id or parent.request.id) if parent else None
        parent_id = parent.request.id if parent else None
        origin = anon_nodename()  # as_task_v2 would work the node name out for every message
        kwargs = {"accepted": accepted} if accepted else {}
        for payloads, delay_s in chunks:
            headers, properties, body, _event = self.app.amqp.as_task_v2(
                new_task_id(),
                SEND_EMAILS,
                args=[payloads],
                kwargs=kwargs,
                # A delay, not an ETA: the worker's clock is real time, while the service's
                # clock may be shifted (CLOCK_OFFSET_S) in tests and demos.
                countdown=delay_s if start is None else None,
                eta=start + timedelta(seconds=delay_s) if start and delay_s else None,
                reply_to=self.app.thread_oid,
                root_id=root_id,
                parent_id=parent_id,
                origin=origin,
                # Celery would otherwise saferepr() every HTML body for its logs.
                argsrepr=_argsrepr(payloads),
                kwargsrepr="{}",
                ignore_result=None,  # as send_task: the task's own setting decides
            )
            channel.basic_publish(
                channel.prepare_message(
                    # orjson: the stdlib encoder was a seventh of the dispatcher's time.
                    orjson.dumps(body),
                    0,
                    "application/json",
                    "utf-8",
                    headers,
                    {**properties, "delivery_mode": PERSISTENT_DELIVERY_MODE},
                ),
                # Celery's route for a direct queue: the default exchange, keyed by queue name.
                exchange="",
                routing_key=EMAILS_QUEUE,
            )


def _argsrepr(payloads: Sequence[dict[str, Any]]) -> str:
    first = payloads[0].get("delivery_id") if payloads else None
    return f"[{len(payloads)} e-mails, first delivery {first}]"


SEND_NOW_CHUNK = AUTH_BATCH_LIMIT  # one Auth lookup per task


def request_send_now(app: Celery, notification_ids: Sequence[uuid.UUID]) -> None:
    """Ask the jobs worker to plan and enqueue these `once` notifications now, in chunks."""
    ids = [str(i) for i in notification_ids]
    with app.producer_or_acquire() as producer:
        for start in range(0, len(ids), SEND_NOW_CHUNK):
            app.send_task(
                SEND_NOW,
                args=[ids[start : start + SEND_NOW_CHUNK]],
                queue=JOBS_QUEUE,
                routing_key=JOBS_QUEUE,
                producer=producer,
            )


def request_plan_shards(
    app: Celery, periodicity: Periodicity, run_id: uuid.UUID, shards: int
) -> None:
    """One planning task per shard of a run, on the jobs queue: any jobs worker takes any shard."""
    with app.producer_or_acquire() as producer:
        for shard in range(shards):
            app.send_task(
                PLAN_SHARD,
                args=[periodicity, str(run_id), shard, shards],
                queue=JOBS_QUEUE,
                routing_key=JOBS_QUEUE,
                producer=producer,
            )
