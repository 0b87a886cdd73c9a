"""What the Kafka-using commands check first: that Kafka accepts our credentials."""

from __future__ import annotations

import click

from app.config import Settings


def require_kafka(settings: Settings) -> None:
    """Stop with one clear message when Kafka refuses our credentials or fails our TLS check."""
    from app.kafka.admin import KafkaRefused, check_connection

    try:
        check_connection(settings)
    except KafkaRefused as exc:
        raise click.ClickException(str(exc)) from exc
