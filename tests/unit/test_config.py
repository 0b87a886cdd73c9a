from datetime import time

import pytest
from pydantic import ValidationError

from app.config import Settings, parse_quiet_hours


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
