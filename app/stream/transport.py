"""Faust's aiokafka transport with the stream consumer's fetch batching as a setting.

Faust builds its consumer with `fetch_max_wait_ms=1500` and aiokafka's `fetch_min_bytes=1`,
and neither is a Faust setting: every fetch returns as soon as one record is there, so at a few
hundred events a second the consumer thread encodes, sends and decodes a fetch for every handful
of records. Those fetches were most of the stream worker's CPU (docs/benchmarks.md). Asking the
broker to wait for `STREAM_FETCH_MIN_BYTES`, at most `STREAM_FETCH_MAX_WAIT_MS`, hands over the
same events in fewer, fuller fetches; the wait bounds the latency it adds when traffic is light.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

from app.config import get_settings


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        settings = get_settings()
        # Read by AIOKafkaConsumer.start() when it builds its fetcher, so set before start.
        consumer._fetch_min_bytes = settings.stream_fetch_min_bytes
        consumer._fetch_max_wait_ms = settings.stream_fetch_max_wait_ms
        return consumer


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


def install() -> None:
    """Make `kafka://` brokers use this transport (before the app creates its consumer)."""
    TRANSPORTS.aliases["kafka"] = f"{__name__}:Transport"
