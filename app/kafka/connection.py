"""How every Kafka client of ours connects, built in one place from the settings.

Two libraries talk to Kafka: confluent-kafka (librdkafka: our producers, admin client, gap
reader, watchdog) and aiokafka under Faust (the stream worker). Both get the same bootstrap
servers, security protocol, SASL mechanism and credentials, and TLS files from here, so a secured
cluster is one set of settings for all of them.
"""

from __future__ import annotations

import ssl
from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from app.config import Settings


def client_config(settings: Settings) -> dict[str, Any]:
    """librdkafka's connection properties (confluent-kafka Producer, Consumer, AdminClient)."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol.lower(),
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if _uses_tls(settings):
        if settings.kafka_ssl_ca_file is not None:
            config["ssl.ca.location"] = str(settings.kafka_ssl_ca_file)
        if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
            config["ssl.certificate.location"] = str(settings.kafka_ssl_cert_file)
            config["ssl.key.location"] = str(settings.kafka_ssl_key_file)
            password = settings.kafka_ssl_key_password.get_secret_value()
            if password:
                config["ssl.key.password"] = password
    return config


def faust_broker(settings: Settings) -> dict[str, Any]:
    """faust.App's `broker` and `broker_credentials` for the same connection."""
    servers = [
        f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")
    ]
    return {"broker": servers, "broker_credentials": faust_credentials(settings)}


def faust_credentials(settings: Settings) -> CredentialsT | None:
    """aiokafka's credentials: SASL (over TLS or not), TLS alone, or None for PLAINTEXT."""
    context = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        return SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    return SSLCredentials(context) if context is not None else None


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """A verifying TLS context (the CA file, or the system's CAs) when the protocol uses TLS."""
    if not _uses_tls(settings):
        return None
    cafile = str(settings.kafka_ssl_ca_file) if settings.kafka_ssl_ca_file else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if settings.kafka_ssl_cert_file is not None and settings.kafka_ssl_key_file is not None:
        context.load_cert_chain(
            str(settings.kafka_ssl_cert_file),
            str(settings.kafka_ssl_key_file),
            password=settings.kafka_ssl_key_password.get_secret_value() or None,
        )
    return context


def _uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")
