"""The stream worker's hand-off of `once` notifications to Celery, which RabbitMQ may refuse.

A refused hand-off costs nothing of the batch: its rows are committed as pending, and the
dispatcher re-requests lost `once` hand-offs after ONCE_HANDOFF_GRACE (so a worker that dies
with one still to make loses nothing). Until then the refused ones are gathered and asked for
again every second, together, so registrations made during an outage of RabbitMQ are planned
in full batches within a second or two of its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from app.core import metrics
from app.jobs.celery_app import celery_app
from app.jobs.dispatch import ONCE_HANDOFF_GRACE
from app.jobs.handoff import request_send_now

log = logging.getLogger(__name__)

# How often refused hand-offs are asked for again, and for how long before the dispatcher's
# re-sweep of lost `once` hand-offs takes over.
HANDOFF_RETRY_S = 1.0
HANDOFF_RETRY_FOR = ONCE_HANDOFF_GRACE


async def hand_off(notification_ids: Sequence[Any]) -> None:
    """Ask Celery to send these now; if RabbitMQ is out, keep asking in the background."""
    ids = list(notification_ids)
    # While others wait (RabbitMQ was out a moment ago), these join them, asked for together.
    if _handoffs.waiting or not await _request_send_now(ids):
        _handoffs.wait(ids)


class _Handoffs:
    """Hand-offs RabbitMQ refused, asked for again together until it takes them."""

    def __init__(self) -> None:
        self.waiting: list[Any] = []
        self.since = 0.0
        self._retrying: asyncio.Future[None] | None = None

    def wait(self, ids: list[Any]) -> None:
        if not self.waiting:
            self.since = time.monotonic()
        self.waiting += ids
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.ensure_future(self._retry())

    async def _retry(self) -> None:
        while self.waiting:
            await asyncio.sleep(HANDOFF_RETRY_S)
            ids = list(self.waiting)
            if await _request_send_now(ids):
                del self.waiting[: len(ids)]  # those that came in meanwhile go next time
                log.info("send_now hand-off of %d notifications made on a later try", len(ids))
            elif time.monotonic() - self.since > HANDOFF_RETRY_FOR.total_seconds():
                log.warning(
                    "%d notifications left for the dispatcher's re-sweep of lost hand-offs",
                    len(self.waiting),
                )
                self.waiting.clear()


_handoffs = _Handoffs()


async def _request_send_now(ids: list[Any]) -> bool:
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, request_send_now, celery_app, ids)
    except Exception as exc:  # noqa: BLE001 - the rows are pending: asked again below or swept
        metrics.HANDOFF_FAILURES.inc()
        log.warning("send_now hand-off of %d notifications failed: %r", len(ids), exc)
        return False
    return True
