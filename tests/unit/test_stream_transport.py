"""The stream consumer asks the broker for fuller fetches (app/stream/transport.py)."""

from __future__ import annotations

import os
import tempfile

import pytest

from app.config import get_settings

pytestmark = pytest.mark.anyio

os.environ["FAUST_STORE"] = "memory://"
os.environ["FAUST_DATA_DIR"] = tempfile.mkdtemp(prefix="faust-unit-")
get_settings.cache_clear()

from app.stream import transport  # noqa: E402
from app.stream.faust_app import app  # noqa: E402


def test_kafka_brokers_use_our_transport() -> None:
    assert isinstance(app.transport, transport.Transport)
    assert app.transport.Consumer is transport.Consumer


async def test_the_worker_consumer_fetches_with_the_configured_batching(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAM_FETCH_MIN_BYTES", "12345")
    monkeypatch.setenv("STREAM_FETCH_MAX_WAIT_MS", "77")
    get_settings.cache_clear()
    try:
        app_consumer = app.consumer  # typed ConsumerT; the thread takes our delegating one
        assert isinstance(app_consumer, transport.Consumer)
        thread = transport.ConsumerThread(app_consumer, loop=app.loop)
        consumer = thread._create_worker_consumer(app.transport)
    finally:
        get_settings.cache_clear()
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (12345, 77)
    # The rest is Faust's: the group, manual commits.
    assert consumer._group_id == app.conf.id
    assert consumer._enable_auto_commit is False
