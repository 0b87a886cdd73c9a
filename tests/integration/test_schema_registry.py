"""Our schemas in a real Schema Registry (the local stack's, Confluent REST API), and events that
producers framed with confluent-kafka's JSONSerializer applied like plain ones."""

from __future__ import annotations

import json
import struct
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kombu.connection import Connection
from sqlalchemy import text

from app.config import REPO_ROOT, Settings
from app.contracts import REGISTRY_MAGIC, schema_path
from app.db.session import session_scope
from app.kafka.schema_registry import registry_client, value_subjects
from harness.kafka import produce
from harness.stream import BIN, StreamEnv, event, next_emails


def _register(env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [str(BIN / "notify"), "schemas", "register"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.fixture
def registry(stream_env: StreamEnv, settings: Settings) -> Iterator[SchemaRegistryClient]:
    """The local registry; the test's private subjects are deleted afterwards."""
    client = registry_client(settings)
    yield client
    for subject in client.get_subjects():
        if subject.startswith(stream_env.prefix):
            client.delete_subject(subject)
            client.delete_subject(subject, permanent=True)


def test_schemas_register_is_idempotent(
    stream_env: StreamEnv, registry: SchemaRegistryClient
) -> None:
    first = _register(stream_env.env)
    second = _register(stream_env.env)

    assert [line.rsplit(" (", 1)[1] for line in first] == ["registered)"] * 3
    assert [line.rsplit(" (", 1)[1] for line in second] == ["already registered)"] * 3
    # The same subjects, ids and versions both times.
    assert [line.rsplit(" (", 1)[0] for line in first] == [
        line.rsplit(" (", 1)[0] for line in second
    ]
    ours = sorted(s for s in registry.get_subjects() if s.startswith(stream_env.prefix))
    assert ours == sorted(value_subjects(stream_env_settings(stream_env)))
    for subject in ours:
        assert registry.get_versions(subject) == [1], subject
        kind = value_subjects(stream_env_settings(stream_env))[subject]
        stored = registry.get_latest_version(subject).schema.schema_str
        assert stored is not None and json.loads(stored) == json.loads(
            schema_path(kind).read_text(encoding="utf-8")
        )


def stream_env_settings(stream_env: StreamEnv) -> Settings:
    """The settings the test's processes read (its private topic names)."""
    return Settings(
        _env_file=None,
        topic_user_registered=stream_env.registered,
        topic_comment_liked=stream_env.liked,
        topic_mailing=stream_env.mailing,
    )


def test_a_registry_framed_event_is_applied_like_a_plain_one(
    stream_env: StreamEnv,
    registry: SchemaRegistryClient,
    jobs_worker: subprocess.Popen[bytes],
    auth_users: list[dict[str, Any]],
    settings: Settings,
) -> None:
    s = stream_env
    _register(s.env)
    # A producer team's serializer: our schema file, looked up (not registered) under the
    # topic's subject, as a producer without rights to register schemas runs it.
    serializer = JSONSerializer(
        schema_path("user_registered").read_text(encoding="utf-8"),
        registry,
        conf={"auto.register.schemas": False, "use.latest.version": False},
    )
    framed_user, plain_user = auth_users[0], auth_users[1]
    registration = json.loads(
        event(uuid.UUID(framed_user["user_id"]), None, "https://a/framed", "once")
    )
    framed = serializer(registration, SerializationContext(s.registered, MessageField.VALUE))
    assert framed is not None and framed[:1] == REGISTRY_MAGIC
    schema_id = struct.unpack(">I", framed[1:5])[0]
    assert (
        schema_id
        == registry.lookup_schema(
            f"{s.registered}-value", registry.get_latest_version(f"{s.registered}-value").schema
        ).schema_id
    )
    plain = event(uuid.UUID(plain_user["user_id"]), None, "https://a/plain", "once")

    produce(
        s.settings,
        [
            (s.registered, framed_user["user_id"], framed),
            (s.registered, plain_user["user_id"], plain),
        ],
    )
    s.worker().wait_ready()
    with Connection(settings.celery_broker_url) as conn:
        tasks = {t["email"]: t for t in next_emails(conn, 2, timeout=60)}

    assert "https://a/framed" in tasks[framed_user["email"]]["body"]
    assert "https://a/plain" in tasks[plain_user["email"]]["body"]
    rows = _welcome_rows([framed_user["user_id"], plain_user["user_id"]])
    assert rows == {
        framed_user["user_id"]: ("once", "https://a/framed"),
        plain_user["user_id"]: ("once", "https://a/plain"),
    }
    with session_scope() as session:
        dead = session.execute(
            text("SELECT count(*) FROM dead_letters WHERE source_topic = :t"),
            {"t": s.registered},
        ).scalar_one()
    assert dead == 0


def _welcome_rows(user_ids: list[str]) -> dict[str, tuple[str, str]]:
    with session_scope() as session:
        found = session.execute(
            text(
                "SELECT n.user_id, n.periodicity, m.content_value FROM notifications n"
                " JOIN messages m USING (message_id)"
                " WHERE n.kind = 'welcome' AND n.user_id = ANY(CAST(:users AS uuid[]))"
            ),
            {"users": user_ids},
        )
        return {str(row.user_id): (row.periodicity, row.content_value) for row in found}
