"""Kafka topic administration through confluent-kafka's AdminClient."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from app.config import Settings
from app.kafka.connection import client_config

log = logging.getLogger(__name__)


def ensure_topics(
    settings: Settings, names: Iterable[str], *, partitions: int, timeout_s: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; return the names it created."""
    admin = AdminClient(client_config(settings))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [n for n in dict.fromkeys(names) if n not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in missing],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            # Another process may have created it between our listing and our request.
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
        log.info("kafka topic ready", extra={"topic": name, "partitions": partitions})
    return created


class KafkaRefused(RuntimeError):
    """Kafka refused our credentials or our TLS check of it failed: retrying cannot help."""


# librdkafka's codes for a refused login and a failed TLS handshake (certificate, hostname).
_FATAL_CONNECT_ERRORS = frozenset({KafkaError._AUTHENTICATION, KafkaError._SSL})


def check_connection(settings: Settings, *, timeout_s: float = 10.0) -> bool:
    """Fail fast when Kafka refuses us; True when it answered, False when it did not in time.

    A wrong password or an untrusted certificate leaves every client retrying forever, logging
    the same line: checked once at start-up, it is one clear error instead. An unreachable
    Kafka is not an error here (it may be starting): the clients wait for it as before.
    """
    refused: list[KafkaError] = []
    config: dict[str, Any] = {
        **client_config(settings),
        "error_cb": refused.append,
        "log_level": 0,  # the error is reported once, below, not logged per retry
    }
    admin = AdminClient(config)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(deadline - time.monotonic(), 0.1)))
            return True
        except KafkaException:
            admin.poll(0)  # serves error_cb
        fatal = [error for error in refused if error.code() in _FATAL_CONNECT_ERRORS]
        if fatal:
            user = settings.kafka_sasl_username or "-"
            raise KafkaRefused(
                f"Kafka at {settings.kafka_bootstrap_servers} refused the connection "
                f"({settings.kafka_security_protocol}, user {user}): {fatal[0].str()}"
            )
    log.warning("kafka did not answer within %.0f s; going on", timeout_s)
    return False


def end_offsets(
    settings: Settings, topics: Iterable[str], *, timeout_s: float = 5.0
) -> dict[tuple[str, int], int]:
    """The end offset of every partition of these topics (topics that do not exist are left out).

    Two requests whatever the partition count: the metadata, then one ListOffsets for all.
    """
    admin = AdminClient(client_config(settings))
    metadata = admin.list_topics(timeout=timeout_s).topics
    partitions = [
        TopicPartition(name, partition)
        for name in topics
        if name in metadata and metadata[name].error is None
        for partition in metadata[name].partitions
    ]
    if not partitions:
        return {}
    futures = admin.list_offsets(
        {tp: OffsetSpec.latest() for tp in partitions}, request_timeout=timeout_s
    )
    return {(tp.topic, tp.partition): future.result().offset for tp, future in futures.items()}
