"""Produce to and read back from the real Kafka in tests and benches: one way of each."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit

from confluent_kafka import Consumer, KafkaError, Message
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from app.config import REPO_ROOT, Settings
from app.kafka.connection import client_config
from app.kafka.producer import make_producer

# The local stack's secured listener (scripts/services.sh): TLS with its own CA, SCRAM users.
SECURED_LISTENER = {
    "kafka_bootstrap_servers": "127.0.0.1:9094",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "notify",
    "kafka_sasl_password": SecretStr("notify-kafka"),
    "kafka_ssl_ca_file": REPO_ROOT / "var" / "tls" / "ca.pem",  # LOCAL_CA
}


LOCAL_CA = REPO_ROOT / "var" / "tls" / "ca.pem"


def secured(settings: Settings, **changes: object) -> Settings:
    """These settings with every connection over TLS, verified against the local CA: Kafka's
    SASL_SSL listener, PostgreSQL with sslmode=verify-full, RabbitMQ over amqps://."""
    database = make_url(settings.database_url).update_query_dict(
        {"sslmode": "verify-full", "sslrootcert": str(LOCAL_CA)}
    )
    broker = urlsplit(settings.celery_broker_url)
    tls_services = {
        "database_url": database.render_as_string(hide_password=False),
        "celery_broker_url": broker._replace(
            scheme="amqps", netloc=broker.netloc.replace(":5672", ":5671")
        ).geturl(),
        "celery_broker_ca_file": LOCAL_CA,
    }
    values = {**settings.model_dump(), **SECURED_LISTENER, **tls_services, **changes}
    return Settings.model_validate(values)


def kafka_env(settings: Settings) -> dict[str, str]:
    """The Kafka connection settings as the environment of a child process."""
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "KAFKA_SASL_PASSWORD": settings.kafka_sasl_password.get_secret_value(),
    }
    files = {
        "KAFKA_SSL_CA_FILE": settings.kafka_ssl_ca_file,
        "KAFKA_SSL_CERT_FILE": settings.kafka_ssl_cert_file,
        "KAFKA_SSL_KEY_FILE": settings.kafka_ssl_key_file,
    }
    env.update({name: str(path) for name, path in files.items() if path is not None})
    return env


def tls_env(settings: Settings) -> dict[str, str]:
    """The broker's CA file, for a child process on an amqps:// broker."""
    ca_file = settings.celery_broker_ca_file
    return {"CELERY_BROKER_CA_FILE": str(ca_file)} if ca_file else {}


def produce(
    settings: Settings, items: Iterable[tuple[str, str | bytes | None, bytes | None]]
) -> int:
    """Produce (topic, key, value) items in order, as a producer team would; return how many.

    Our own producer settings (idempotent, Kafka's murmur2 partitioner), waiting for room when
    the local queue is full, and every message acknowledged before returning.
    """
    producer = make_producer(settings, **{"linger.ms": 20})
    count = 0
    for topic, key, value in items:
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
    assert producer.flush(60) == 0, "messages left unacknowledged after 60 s"
    return count


def read_topic(
    settings: Settings,
    topic: str,
    expected: int,
    *,
    timeout: float = 60,
    isolation: str = "read_committed",
) -> list[Message]:
    """Read a topic from the beginning in a fresh group: exactly `expected` messages, no more.

    Fails when fewer arrive within `timeout`, or when one more shows up within a second after.
    """
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": f"test-read-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    consumer.subscribe([topic])
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < expected and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                continue
            got.append(message)
        extra = consumer.poll(1.0)
        assert extra is None or extra.error(), f"{topic}: more messages than {expected}"
    finally:
        consumer.close()
    assert len(got) == expected, f"{topic}: {len(got)} messages, expected {expected}"
    return got
