"""Every Kafka client's connection, built from the settings: librdkafka's and Faust's."""

from pathlib import Path
from typing import Any

import pytest
from faust.auth import SASLCredentials, SSLCredentials
from pydantic import ValidationError

from app.config import Settings
from app.kafka.connection import client_config, faust_broker, ssl_context

CA = Path(__file__).parent / "data" / "kafka-ca.pem"


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def test_plaintext_is_the_bootstrap_servers_alone() -> None:
    settings = _settings(kafka_bootstrap_servers="a:9092,b:9092")
    assert client_config(settings) == {
        "bootstrap.servers": "a:9092,b:9092",
        "security.protocol": "plaintext",
    }
    assert faust_broker(settings) == {
        "broker": ["kafka://a:9092", "kafka://b:9092"],
        "broker_credentials": None,
    }


def test_sasl_ssl_with_scram_for_both_libraries() -> None:
    settings = _settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="svc",
        kafka_sasl_password="s3cret",
        kafka_ssl_ca_file=CA,
    )
    config = client_config(settings)
    assert config["security.protocol"] == "sasl_ssl"
    assert (config["sasl.mechanism"], config["sasl.username"], config["sasl.password"]) == (
        "SCRAM-SHA-512",
        "svc",
        "s3cret",
    )
    assert config["ssl.ca.location"] == str(CA)
    credentials = faust_broker(settings)["broker_credentials"]
    assert isinstance(credentials, SASLCredentials)
    assert credentials.mechanism.value == "SCRAM-SHA-512" and credentials.password == "s3cret"
    assert credentials.protocol.value == "SASL_SSL" and credentials.ssl_context is not None
    assert credentials.ssl_context.verify_mode.name == "CERT_REQUIRED"
    assert credentials.ssl_context.check_hostname


def test_sasl_plaintext_has_no_tls() -> None:
    settings = _settings(
        kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="p"
    )
    assert "ssl.ca.location" not in client_config(settings)
    assert ssl_context(settings) is None
    credentials = faust_broker(settings)["broker_credentials"]
    assert credentials.protocol.value == "SASL_PLAINTEXT" and credentials.mechanism.value == "PLAIN"


def test_tls_alone_with_the_system_cas() -> None:
    settings = _settings(kafka_security_protocol="SSL")
    config = client_config(settings)
    assert config["security.protocol"] == "ssl" and "sasl.username" not in config
    assert isinstance(faust_broker(settings)["broker_credentials"], SSLCredentials)


def test_the_password_stays_out_of_the_settings_repr() -> None:
    settings = _settings(
        kafka_security_protocol="SASL_SSL", kafka_sasl_username="u", kafka_sasl_password="hunter2"
    )
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME"),
        ({"kafka_ssl_cert_file": CA}, "go together"),
        ({"kafka_security_protocol": "SASL_TLS"}, "SASL_SSL"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "SCRAM-SHA-512"),
    ],
)
def test_incomplete_or_unknown_security_settings_are_refused(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _settings(**values)
