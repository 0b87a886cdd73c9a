"""PostgreSQL and RabbitMQ over TLS, checked against the local CA (scripts/services.sh)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from kombu.connection import Connection
from kombu.exceptions import OperationalError

from app.config import Settings
from app.jobs.celery_app import broker_tls
from harness.secured import LOCAL_CA, secured

SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def test_postgresql_with_verify_full_is_encrypted(settings: Settings) -> None:
    engine = sa.create_engine(secured(settings).database_url)
    try:
        with engine.connect() as connection:
            ssl, version = connection.execute(
                sa.text("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            ).one()
        assert ssl and version.startswith("TLSv1.")
    finally:
        engine.dispose()


def test_postgresql_refuses_a_server_the_ca_did_not_sign(settings: Settings) -> None:
    url = secured(settings).database_url.replace(str(LOCAL_CA).replace("/", "%2F"), SYSTEM_CAS)
    assert SYSTEM_CAS in url
    engine = sa.create_engine(url)
    with pytest.raises(sa.exc.OperationalError, match="certificate verify failed"):
        engine.connect()
    engine.dispose()


def test_rabbitmq_over_amqps_verifies_the_broker(settings: Settings) -> None:
    tls = secured(settings)
    assert tls.celery_broker_url.startswith("amqps://")
    with Connection(tls.celery_broker_url, ssl=broker_tls(tls), connect_timeout=10) as conn:
        conn.ensure_connection(max_retries=1)
        assert conn.connection.transport.sock.version().startswith("TLSv1.")
    untrusted = tls.model_copy(update={"celery_broker_ca_file": None})
    refused = Connection(tls.celery_broker_url, ssl=broker_tls(untrusted), connect_timeout=10)
    with refused, pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        refused.ensure_connection(max_retries=1)
