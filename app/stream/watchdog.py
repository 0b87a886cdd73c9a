"""The stall watchdog: a partition of ours holds events but its applied offset stopped moving.

faust-streaming consumers can stop fetching for good (faust-streaming#175, #629, #640);
restarting the process is safe, since PostgreSQL's offsets make every replay harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from app.core import metrics
from app.stream import ingest, stall, topics
from app.stream.faust_app import app, settings
from app.stream.kafka_reads import end_offsets

log = logging.getLogger(__name__)

STALLS = stall.StallDetector(timeout=settings.stream_stall_timeout_s)


async def look_for_stalls() -> list[tuple[str, int]]:
    """Update lag and blocked gauges of our partitions; return the ones that stalled."""
    names = {topic.get_topic_name() for topic in topics.INPUT_TOPICS.values()}
    owned = [(tp.topic, tp.partition) for tp in app.consumer.assignment() if tp.topic in names]
    if not owned:
        return []
    loop = asyncio.get_running_loop()
    # Not through Faust's consumer: a stalled consumer thread would stall this check too.
    ends, (applied, blocked) = await asyncio.wait_for(
        asyncio.gather(
            loop.run_in_executor(None, end_offsets, owned),
            loop.run_in_executor(None, ingest.positions, app.conf.id),
        ),
        timeout=30,
    )
    for (topic, partition), end in ends.items():
        metrics.PARTITION_LAG.labels(topic, str(partition)).set(
            max(end - 1 - applied.get((topic, partition), -1), 0)
        )
    for topic, partition in owned:
        metrics.PARTITION_BLOCKED.labels(topic, str(partition)).set(
            1 if (topic, partition) in blocked else 0
        )
    # A blocked partition is not stalled: it waits for an operator, on purpose.
    waiting = {tp: end for tp, end in ends.items() if tp not in blocked}
    return STALLS.look(applied, waiting, time.monotonic())


async def check() -> None:
    """Exit (to be restarted) when a partition stalled; a failed look is logged and forgotten."""
    try:
        stalled = await look_for_stalls()
    except Exception as exc:  # noqa: BLE001 - the watchdog must outlive any one failed look
        log.warning("stall watchdog could not compare offsets: %r", exc)
        STALLS.forget()
        return
    if stalled:
        log.critical(
            "stream stalled for %.0f s with events waiting on %s: exiting to restart",
            STALLS.waiting_for(time.monotonic()),
            stalled,
        )
        logging.shutdown()
        os._exit(stall.STALL_EXIT_CODE)
