"""Hand work to Celery by task name: e-mail tasks onto `emails`, `once` rows to send_now."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from celery import Celery

from app.contracts import AUTH_BATCH_LIMIT
from app.core import metrics
from app.jobs.celery_app import EMAILS_QUEUE, JOBS_QUEUE, SEND_EMAIL, SEND_NOW


class CeleryEmailPublisher:
    """Publishes e-mail tasks through one pooled producer per batch (no per-message confirms)."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def publish(self, tasks: Sequence[tuple[dict[str, Any], float | None]]) -> None:
        with self.app.producer_or_acquire() as producer:
            for payload, delay_s in tasks:
                self.app.send_task(
                    SEND_EMAIL,
                    args=[payload],
                    # Celery would otherwise saferepr() the whole HTML body for its logs.
                    argsrepr=f"[delivery {payload.get('delivery_id')}]",
                    kwargsrepr="{}",
                    # A delay, not an ETA: the worker's clock is real time, while the service's
                    # clock may be shifted (CLOCK_OFFSET_S) in tests and demos.
                    countdown=delay_s,
                    queue=EMAILS_QUEUE,
                    routing_key=EMAILS_QUEUE,
                    producer=producer,
                )
        metrics.ENQUEUED.inc(len(tasks))


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
