import os
import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.config import SECRET_SETTINGS, Settings, parse_quiet_hours


def test_defaults_point_at_the_local_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "CELERY_BROKER_URL", "EMAIL_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert settings.database_url.startswith("postgresql+psycopg2://notify:notify@127.0.0.1:5432/")
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.celery_broker_url == "amqp://notify:notify@127.0.0.1:5672/notify"
    assert settings.email_backend == "outbox"
    assert settings.input_topics == ("auth.user_registered", "ugc.comment_liked", "admin.mailing")


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_BACKEND", "sendgrid")
    monkeypatch.setenv("SEND_HOUR_LOCAL", "7")
    monkeypatch.setenv("TOPIC_COMMENT_LIKED", "likes.v2")
    monkeypatch.setenv("QUIET_HOURS", "23:30-06:15")
    settings = Settings(_env_file=None)
    assert settings.email_backend == "sendgrid"
    assert settings.send_hour_local == 7
    assert settings.topic_comment_liked == "likes.v2"
    assert settings.quiet_hours_window == (time(23, 30), time(6, 15))


@pytest.mark.parametrize(
    ("name", "value"),
    [("EMAIL_BACKEND", "pigeon"), ("SEND_HOUR_LOCAL", "24"), ("QUIET_HOURS", "late")],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_quiet_hours_parse() -> None:
    assert parse_quiet_hours("") is None
    assert parse_quiet_hours("22:00-08:00") == (time(22), time(8))
    with pytest.raises(ValueError, match="QUIET_HOURS"):
        parse_quiet_hours("22-08-01")


REAL_SECRETS = {"SECRET_KEY": "k" * 40, "AUTH_API_TOKEN": "a-real-token"}


def _production(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    monkeypatch.setenv("DEV_MODE", "false")
    for name in ("SECRET_KEY", "AUTH_API_TOKEN", "PORTAL_SECURE_COOKIES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


@pytest.mark.parametrize(
    ("missing", "message"),
    [
        ("SECRET_KEY", "SECRET_KEY is the development placeholder"),
        ("AUTH_API_TOKEN", "AUTH_API_TOKEN is the development placeholder"),
    ],
)
def test_a_placeholder_secret_is_refused_outside_development_mode(
    monkeypatch: pytest.MonkeyPatch, missing: str, message: str
) -> None:
    others = {name: value for name, value in REAL_SECRETS.items() if name != missing}
    with pytest.raises(ValidationError, match=message):
        _production(monkeypatch, **others)


def test_a_short_secret_key_is_refused_outside_development_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError, match="at least 32 characters"):
        _production(monkeypatch, **{**REAL_SECRETS, "SECRET_KEY": "short"})


def test_real_secrets_start_with_secure_cookies(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _production(monkeypatch, **REAL_SECRETS)
    assert settings.secure_cookies
    insecure = _production(monkeypatch, **REAL_SECRETS, PORTAL_SECURE_COOKIES="false")
    assert not insecure.secure_cookies


def test_development_mode_accepts_the_placeholders_over_plain_http(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEV_MODE", "true")
    for name in ("SECRET_KEY", "AUTH_API_TOKEN", "PORTAL_SECURE_COOKIES"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert (
        settings.secret_key.get_secret_value() == "dev-secret-change-me"
        and not settings.secure_cookies
    )


def test_a_malformed_login_window_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_LOGIN_USER_LIMITS", "five a minute")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


def test_a_process_refuses_to_start_on_placeholder_secrets() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DEV_MODE", "SECRET_KEY")}
    started = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 1
    assert "configuration refused: SECRET_KEY is the development placeholder" in started.stderr


@pytest.mark.parametrize("name", SECRET_SETTINGS)
def test_every_secret_setting_reads_a_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str
) -> None:
    value = {"database_url": "postgresql+psycopg2://u:p@db:5432/x", "smtp_url": "smtp://u:p@h:25"}
    secret = value.get(name, "s3cret-from-a-file-" + "x" * 32)
    path = tmp_path / name
    path.write_text(secret + "\n")  # as `echo` writes it
    monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv(f"{name.upper()}_FILE", str(path))
    if name == "kafka_sasl_password":
        monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        monkeypatch.setenv("KAFKA_SASL_USERNAME", "svc")
    got = getattr(Settings(_env_file=None), name)
    assert (got.get_secret_value() if isinstance(got, SecretStr) else got) == secret


def test_a_secret_given_twice_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file")
    monkeypatch.setenv("AUTH_API_TOKEN", "from-env")
    monkeypatch.setenv("AUTH_API_TOKEN_FILE", str(tmp_path / "token"))
    with pytest.raises(ValueError, match="set AUTH_API_TOKEN or AUTH_API_TOKEN_FILE, not both"):
        Settings(_env_file=None)


def test_an_unreadable_secret_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY_FILE", "/no/such/file")
    with pytest.raises(ValueError, match="SENDGRID_API_KEY_FILE: cannot read /no/such/file"):
        Settings(_env_file=None)


REMOTE_DB = "postgresql+psycopg2://notify:pw@db.internal:5432/notify"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"DATABASE_URL": REMOTE_DB}, "DATABASE_URL needs ?sslmode=verify-full"),
        ({"DATABASE_URL": REMOTE_DB + "?sslmode=require"}, "DATABASE_URL needs ?sslmode="),
        (
            {
                "KAFKA_BOOTSTRAP_SERVERS": "kafka-1.internal:9092",
                "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
            },
            "KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        (
            {
                "KAFKA_BOOTSTRAP_SERVERS": "kafka-1.internal:9092",
                "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "KAFKA_SASL_USERNAME": "notify",
            },
            "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        ),
        (
            {"CELERY_BROKER_URL": "amqp://u:p@mq.internal:5672/notify"},
            "CELERY_BROKER_URL is amqp://",
        ),
    ],
)
def test_production_refuses_plaintext_transports_off_this_host(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    with pytest.raises(ValidationError, match=named.replace("?", r"\?")) as refused:
        _production(monkeypatch, **REAL_SECRETS, **env)
    assert "ALLOW_PLAINTEXT_TRANSPORT=true" in str(refused.value)
    # Said on purpose, a trusted network may carry them in the clear.
    _production(monkeypatch, **REAL_SECRETS, **env, ALLOW_PLAINTEXT_TRANSPORT="true")


def test_production_accepts_verified_tls_and_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    secured = {
        "DATABASE_URL": REMOTE_DB + "?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        "KAFKA_BOOTSTRAP_SERVERS": "kafka-1.internal:9093,kafka-2.internal:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "notify",
        "CELERY_BROKER_URL": "amqps://u:p@mq.internal:5671/notify",
    }
    _production(monkeypatch, **REAL_SECRETS, **secured)
    # Loopback and unix sockets never leave the machine (a local proxy, a sidecar).
    loopback = {"DATABASE_URL": "postgresql+psycopg2://notify@/notify?host=/run/postgresql"}
    _production(monkeypatch, **REAL_SECRETS, **loopback)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"CELERY_BROKER_CA_FILE": "/etc/ca.pem", "CELERY_BROKER_URL": "amqp://u:p@127.0.0.1/n"},
            "CELERY_BROKER_CA_FILE is set, but CELERY_BROKER_URL is not amqps://",
        ),
        (
            {"KAFKA_SSL_CA_FILE": "/etc/ca.pem", "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"},
            "KAFKA_SSL_CA_FILE is set, but KAFKA_SECURITY_PROTOCOL is PLAINTEXT",
        ),
    ],
)
def test_a_ca_file_beside_a_plaintext_scheme_is_an_error_in_any_mode(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=named):
        Settings(_env_file=None, dev_mode=True)


def test_no_secret_shows_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = {
        "DATABASE_URL": "postgresql+psycopg2://notify:pg-hunter2@db/notify",
        "CELERY_BROKER_URL": "amqp://notify:mq-hunter2@mq/notify",
        "SMTP_URL": "smtps://mail:smtp-hunter2@mail:465",
        "SECRET_KEY": "key-hunter2-" + "k" * 32,
        "AUTH_API_TOKEN": "auth-hunter2",
        "SENDGRID_API_KEY": "SG.sendgrid-hunter2",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    shown = repr(Settings(_env_file=None, dev_mode=True))
    assert "hunter2" not in shown
