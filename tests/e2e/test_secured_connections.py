"""The service with every connection secured, as in production: TLS verified against a CA.

The local stack serves TLS beside its plaintext ports (scripts/services.sh): Kafka's SASL_SSL
listener with SCRAM-SHA-512 users, PostgreSQL (sslmode=verify-full) and RabbitMQ (amqps://).
Here every process of the service connects through them, its secrets handed over as files.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import time as dtime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from app.auth.dev_server import USER_PREFIX, generate_users
from app.config import REPO_ROOT, Settings
from app.contracts import Event, encode_event
from app.db.session import dispose_engines, session_scope
from app.db.templates import get_template_by_name
from app.domain.campaigns import Draft, parse_audience
from app.jobs.campaigns import create_campaign, publish_campaign
from app.kafka.admin import KafkaRefused, check_connection
from app.kafka.producer import make_producer, publish_all
from harness.fakes.sendgrid import FakeSendGrid
from harness.kafka import read_topic, value_of
from harness.pipeline import Pipeline, reset_state
from harness.secured import kafka_env, secured
from harness.waiting import wait_for

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Europe/Lisbon")
USERS = [{**user, "timezone": ZONE.key} for user in generate_users(10, seed=23)]
SECRETS = {
    "secret_key": "e2e-secret-key-" + uuid.uuid4().hex,
    "auth_api_token": "e2e-auth-token-" + uuid.uuid4().hex,
    "kafka_sasl_password": "notify-kafka",  # the local broker's SCRAM user
}


@pytest.fixture(scope="module")
def secured_settings() -> Settings:
    from app.config import get_settings

    return secured(get_settings())


@pytest.fixture(scope="module")
def pipeline(
    secured_settings: Settings, sendgrid: FakeSendGrid, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    reset_state(secured_settings)
    tmp = tmp_path_factory.mktemp("secured")
    users_file = tmp / "users.json"
    users_file.write_text(json.dumps(USERS))
    pipeline = Pipeline(secured_settings, tmp, users_file, sendgrid.url, sendgrid.api_key)
    pipeline.email_backend = "outbox"
    # Every secret as a file, as a container platform hands them over.
    secrets_dir = tmp / "secrets"
    secrets_dir.mkdir()
    for name, value in SECRETS.items():
        (secrets_dir / name).write_text(value + "\n")
        pipeline.extra_env[f"{name.upper()}_FILE"] = str(secrets_dir / name)
    try:
        pipeline.start()
        pipeline.set_local_clock(dtime(12, 0), ZONE, "jobs", "emails", "beat")
        yield pipeline
    finally:
        pipeline.stop()
        dispose_engines()


def test_a_registration_reaches_the_outbox_over_sasl_ssl(pipeline: Pipeline) -> None:
    user = USERS[0]
    link = "https://auth.example.com/confirm?token=secured"
    event = Event(uuid.UUID(user["user_id"]), "once", None, link)
    producer = make_producer(pipeline.settings)
    report = publish_all(
        producer,
        pipeline.topics["user_registered"],
        [(user["user_id"].encode(), encode_event(event))],
    )
    assert report.delivered == 1, report.errors
    (path,) = wait_for(
        lambda: list(Path(pipeline.outbox).glob("*.eml")), timeout=60, what="the welcome e-mail"
    )
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert user["email"] in message["To"]
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert link in text.get_content()


def test_a_campaign_is_published_over_sasl_ssl(pipeline: Pipeline) -> None:
    with session_scope() as session:
        template_id = get_template_by_name(session=session, name="mailing").template_id
    recipients = [u["user_id"] for u in USERS[1:6]]
    campaign = create_campaign(
        draft=Draft("Secured", template_id, "Over TLS", "once"),
        audience=parse_audience("\n".join(recipients)),
        created_by="e2e",
    )
    topic = pipeline.topics["mailing"]
    report = publish_campaign(
        campaign_id=campaign.campaign_id, producer=make_producer(pipeline.settings), topic=topic
    )
    assert report.delivered == 5
    events = [json.loads(value_of(m)) for m in read_topic(pipeline.settings, topic, 5)]
    assert sorted(e["user_id"] for e in events) == sorted(recipients)


def _start_worker(settings: Settings, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
        **kafka_env(settings),
        "FAUST_DATA_DIR": str(tmp),
    }
    return subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "worker"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_wrong_password_stops_the_worker_at_start_up_with_a_clear_error(
    secured_settings: Settings, tmp_path: Path
) -> None:
    wrong = secured_settings.model_copy(
        update={"kafka_sasl_password": SecretStr("not-the-password")}
    )
    # Without the check the worker retries forever: the run's 60 s timeout fails the test.
    done = _start_worker(wrong, tmp_path)
    assert done.returncode == 1
    assert "Kafka at 127.0.0.1:9094 refused the connection" in done.stderr
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout


def test_a_broker_certificate_from_an_unknown_ca_is_a_clear_error(
    secured_settings: Settings,
) -> None:
    untrusted = secured_settings.model_copy(update={"kafka_ssl_ca_file": None})
    with pytest.raises(KafkaRefused, match="certificate verify failed"):
        check_connection(untrusted)
    assert check_connection(secured_settings)


def test_no_process_logs_a_secret(pipeline: Pipeline) -> None:
    logs = {path.name: path.read_text("utf-8", "replace") for path in pipeline.tmp.glob("*.log")}
    assert {"stream.log", "emails.log", "jobs.log", "auth.log"} <= logs.keys(), logs.keys()
    assert all(logs.values())
    for name, log in logs.items():
        for secret in (*SECRETS.values(), "notify:notify@"):
            assert secret not in log, f"{name} logs a secret"


def _auth_status(pipeline: Pipeline, token: str) -> int:
    user_id = USERS[0]["user_id"]
    request = urllib.request.Request(
        f"http://127.0.0.1:{pipeline.auth_port}{USER_PREFIX}{user_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_processes_use_the_secrets_from_their_files(pipeline: Pipeline) -> None:
    # The dev Auth server took its token from AUTH_API_TOKEN_FILE (and the welcome e-mail
    # above shows the jobs used the same one): the placeholder no longer opens it.
    assert _auth_status(pipeline, SECRETS["auth_api_token"]) == 200
    assert _auth_status(pipeline, "dev-auth-token") == 401


def test_the_processes_talk_to_postgresql_over_tls(pipeline: Pipeline) -> None:
    with session_scope() as session:
        encrypted = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                "WHERE ssl AND datname = current_database() AND version LIKE 'TLSv1._'"
            )
        )
    assert encrypted >= 3  # the stream worker, the jobs worker, the e-mail worker at least
