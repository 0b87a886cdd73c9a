"""Prometheus metrics of the stream worker (served by the Faust web server at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
DEAD_LETTERS = Counter(
    "notify_stream_dead_letters_total", "Events sent to the dead-letter topic.", ["topic", "reason"]
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
HANDOFF_FAILURES = Counter(
    "notify_stream_handoff_failures_total",
    "send_now hand-offs that failed (the dispatcher re-requests them).",
)
