"""Hand work to Celery by task name: e-mail tasks onto `emails`, `once` rows to send_now."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename
from kombu.entity import PERSISTENT_DELIVERY_MODE
from kombu.messaging import Producer
from kombu.utils.uuid import uuid as new_task_id

from app.contracts import AUTH_BATCH_LIMIT
from app.core import metrics
from app.jobs.celery_app import EMAILS_QUEUE, JOBS_QUEUE, SEND_EMAIL, SEND_NOW


class CeleryEmailPublisher:
    """Publishes e-mail tasks in Celery's own message format, a chunk over one channel.

    `send_task` per message spent most of the dispatcher's time merging options, routing and
    declaring again for every e-mail (celery/celery#4529, #6192). Here each message is still built
    by Celery (`amqp.as_task_v2`, task protocol 2, as `send_task` would), and published straight on
    the producer's channel: the queue is declared once per chunk, and the options are resolved
    once. No per-message confirms. A connection lost mid-chunk is re-established and the whole
    chunk published again, as kombu's publish retry policy would: a duplicate task is harmless
    (one send per delivery), a lost one is not.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.queue = app.amqp.queues[EMAILS_QUEUE]

    def publish(self, tasks: Sequence[tuple[dict[str, Any], float | None]]) -> None:
        if not tasks:
            return
        policy = self.app.conf.task_publish_retry_policy
        with self.app.producer_or_acquire() as producer:
            publish_all = producer.connection.ensure(producer, self._publish_all, **policy)
            publish_all(producer, tasks)
        metrics.ENQUEUED.inc(len(tasks))

    def _publish_all(
        self, producer: Producer, tasks: Sequence[tuple[dict[str, Any], float | None]]
    ) -> None:
        producer.maybe_declare(self.queue)
        channel = producer.channel
        parent = self.app.current_worker_task
        root_id = (parent.request.root_id or parent.request.id) if parent else None
        parent_id = parent.request.id if parent else None
        origin = anon_nodename()  # as_task_v2 would work the node name out for every message
        for payload, delay_s in tasks:
            headers, properties, body, _event = self.app.amqp.as_task_v2(
                new_task_id(),
                SEND_EMAIL,
                args=[payload],
                kwargs={},
                # A delay, not an ETA: the worker's clock is real time, while the service's
                # clock may be shifted (CLOCK_OFFSET_S) in tests and demos.
                countdown=delay_s,
                reply_to=self.app.thread_oid,
                root_id=root_id,
                parent_id=parent_id,
                origin=origin,
                # Celery would otherwise saferepr() the whole HTML body for its logs.
                argsrepr=f"[delivery {payload.get('delivery_id')}]",
                kwargsrepr="{}",
                ignore_result=None,  # as send_task: the task's own setting decides
            )
            channel.basic_publish(
                channel.prepare_message(
                    json.dumps(body),
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
