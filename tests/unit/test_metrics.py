"""The metrics endpoint of the Celery processes and the database status gauges."""

from __future__ import annotations

import json
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest

from app.core import metrics
from harness.waiting import free_port


def test_serve_answers_metrics_and_health_on_localhost() -> None:
    port = free_port()
    server = metrics.serve(port)
    try:
        metrics.DELIVERIES.labels("sent").inc()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
        assert 'notify_deliveries_total{outcome="sent"}' in body
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert json.load(response) == {"status": "ok"}
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.shutdown()
        server.server_close()


def test_status_gauges_are_read_at_scrape_time() -> None:
    counts = {"n": 1}

    def read() -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        return {("likes", "pending"): counts["n"], ("welcome", "sent"): 7}, {"sent": 7}

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.StatusCollector(read))
    assert (
        'notify_notifications{kind="likes",status="pending"} 1.0'
        in generate_latest(registry).decode()
    )
    counts["n"] = 5
    body = generate_latest(registry).decode()
    assert 'notify_notifications{kind="likes",status="pending"} 5.0' in body
    assert 'notify_deliveries{status="sent"} 7.0' in body


def test_a_scrape_answers_without_status_gauges_when_the_database_is_down() -> None:
    def read() -> tuple[dict[tuple[str, str], int], dict[str, int]]:
        raise ConnectionError("database down")

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics.StatusCollector(read))
    assert "notify_notifications" not in generate_latest(registry).decode()
