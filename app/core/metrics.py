"""Every Prometheus metric of the service, named `notify_*`.

Each process serves the ones it updates: the Faust worker through its web server (/metrics), the
Celery workers and beat on METRICS_PORT (`serve`), the portal at /metrics, together with the
database gauges of notifications and deliveries by status (`StatusCollector`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.core import health

log = logging.getLogger(__name__)

EVENTS_CONSUMED = Counter(
    "notify_stream_events_consumed_total", "Input events taken from Kafka.", ["topic"]
)
EVENTS_APPLIED = Counter(
    "notify_stream_events_applied_total", "Input events written to PostgreSQL.", ["topic"]
)
EVENTS_REPLAYED = Counter(
    "notify_stream_events_replayed_total",
    "Redelivered events skipped because PostgreSQL already had them.",
    ["topic"],
)
EVENTS_RECOVERED = Counter(
    "notify_stream_events_recovered_total",
    "Events the consumer skipped (around rebalances) that were read back from Kafka and applied.",
    ["topic"],
)
DEAD_LETTERS = Counter(
    "notify_stream_dead_letters_total",
    "Events refused and quarantined as dead letters, by source topic and reason.",
    ["topic", "reason"],
)
DUPLICATE_REPLAYS = Counter(
    "notify_stream_duplicate_replays_total",
    "Replayed dead letters skipped because an earlier copy of the event was applied.",
    ["topic"],
)
BATCH_RETRIES = Counter(
    "notify_stream_batch_retries_total",
    "Batches retried whole, by cause (outage: PostgreSQL or Kafka unavailable; other).",
    ["topic", "cause"],
)
PARTITION_BLOCKED = Gauge(
    "notify_stream_partition_blocked",
    "1 while an input partition waits for `notify offsets reset` (topic recreated, group renamed).",
    ["topic", "partition"],
)
BATCH_SIZE = Histogram(
    "notify_stream_batch_size",
    "Events per ingest batch.",
    ["topic"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
BATCH_SECONDS = Histogram(
    "notify_stream_batch_seconds", "Time to apply one batch to PostgreSQL.", ["topic"]
)
TABLE_STORES_SET_ASIDE = Counter(
    "notify_stream_table_stores_set_aside_total",
    "Local table stores set aside and rebuilt: ahead of their changelog, or of another one.",
    ["table", "reason"],
)
HANDOFF_FAILURES = Counter(
    "notify_stream_handoff_failures_total",
    "send_now hand-offs that failed (the dispatcher re-requests them).",
)
PARTITION_LAG = Gauge(
    "notify_stream_partition_lag",
    "Events in the log of an owned input partition not yet applied to PostgreSQL.",
    ["topic", "partition"],
)

# Planning (jobs worker): what the digest and send-now jobs decided per notification.
PLANNED = Counter(
    "notify_planned_total",
    "Notifications planned by the jobs, by periodicity and decision.",
    ["periodicity", "decision"],
)
ENQUEUED = Counter("notify_emails_enqueued_total", "E-mail tasks put on the emails queue.")

# Deliveries (emails worker).
DELIVERIES = Counter(
    "notify_deliveries_total",
    "E-mail tasks handled, by outcome (sent, retry, failed, done, missing, skipped, invalid).",
    ["outcome"],
)
PROVIDER_FAILOVER = Gauge(
    "notify_email_failover",
    "1 while the primary e-mail backend is down and mail goes out through the fallback.",
)
SEND_SECONDS = Histogram(
    "notify_email_send_seconds",
    "Duration of one call to the mail backend (provider API, SMTP or outbox).",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# Auth internal API (jobs worker).
AUTH_CALLS = Counter(
    "notify_auth_calls_total",
    "Calls to the Auth internal API by result (ok, not_found, unavailable, contract_error, "
    "circuit_open).",
    ["result"],
)

# Circuits (app/core/circuits.py): one per dependency and process.
CIRCUIT_STATE = Gauge(
    "notify_circuit_state",
    "State of this process's circuit for a dependency: 0 closed, 1 half-open (a probe is out), "
    "2 open (work that needs it is parked).",
    ["dependency"],
)
CIRCUIT_OPENED = Counter(
    "notify_circuit_opened_total", "Times a dependency's circuit opened.", ["dependency"]
)
CIRCUIT_PARKED = Counter(
    "notify_circuit_parked_total",
    "Tasks or e-mails parked behind an open circuit (handed back, no attempt spent).",
    ["dependency"],
)


class StatusCollector(Collector):
    """Gauges read from PostgreSQL at scrape time: notifications and deliveries by status."""

    def __init__(self, read: Callable[[], tuple[dict[tuple[str, str], int], dict[str, int]]]):
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        notifications = GaugeMetricFamily(
            "notify_notifications", "Notifications by kind and status.", labels=["kind", "status"]
        )
        deliveries = GaugeMetricFamily(
            "notify_deliveries", "Deliveries by status.", labels=["status"]
        )
        try:
            by_kind_status, by_status = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even with the DB down
            log.warning("status gauges unavailable: %r", exc)
            return
        for (kind, status), count in sorted(by_kind_status.items()):
            notifications.add_metric([kind, status], count)
        for status, count in sorted(by_status.items()):
            deliveries.add_metric([status], count)
        yield notifications
        yield deliveries


class DeadLetterCollector(Collector):
    """Gauge read from PostgreSQL at scrape time: dead letters by reason and status."""

    def __init__(self, read: Callable[[], dict[tuple[str, str], int]]):
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "notify_dead_letters",
            "Quarantined input events by reason and status (dead: not replayed yet).",
            labels=["reason", "status"],
        )
        try:
            counts = self._read()
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even with the DB down
            log.warning("dead-letter gauges unavailable: %r", exc)
            return
        for (reason, status), count in sorted(counts.items()):
            family.add_metric([reason, status], count)
        yield family


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # a scrape every few seconds is not news


def _metrics_and_health() -> WSGIApplication:
    # prometheus_client declares a bare Callable for what is a WSGI application.
    metrics_app = cast(WSGIApplication, make_wsgi_app())

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            status, body = health.report()
            line = "200 OK" if status == 200 else f"{status} Service Unavailable"
            payload = json.dumps(body).encode()
            # A length lets a prober tell a whole answer from one cut off by the process exiting.
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
            start_response(line, headers)
            return [payload]
        return metrics_app(environ, start_response)

    return app


def serve(port: int, host: str = "127.0.0.1") -> WSGIServer:
    """Serve /metrics and /healthz from a daemon thread of this process."""
    server = make_server(host, port, _metrics_and_health(), handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    log.info("metrics on http://%s:%d/metrics", host, port)
    return server
