"""The local stack's secured connections, for tests: TLS everywhere, SASL to Kafka, and the
environment that hands these settings to a child process."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr
from sqlalchemy.engine import make_url

from app.config import REPO_ROOT, Settings

# The CA of the local stack (scripts/services.sh), which signed its servers' certificates.
LOCAL_CA = REPO_ROOT / "var" / "tls" / "ca.pem"
# Kafka's secured listener there: TLS, SCRAM users.
SECURED_LISTENER = {
    "kafka_bootstrap_servers": "127.0.0.1:9094",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "notify",
    "kafka_sasl_password": SecretStr("notify-kafka"),
    "kafka_ssl_ca_file": LOCAL_CA,
}


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
