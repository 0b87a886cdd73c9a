"""Our JSON Schemas in a Schema Registry, for producers that frame their events with a schema id.

Confluent's serializers (and many others) look the schema up under the subject of the topic
(TopicNameStrategy: `<topic>-value`) and write a zero byte and its 4-byte id before the JSON.
The stream worker strips that frame and validates against its own copy of the schema
(`app.contracts.without_registry_frame`), so the registry never sits on the ingest path: it is
where producer teams, and serializers configured not to register schemas themselves, find ours.

Registering is idempotent: a subject that already holds the same schema text keeps its id and
version, and only a changed schema adds a version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from app.config import Settings
from app.contracts import schema_path
from app.domain.vocabulary import EVENT_KINDS, EventKind

NOT_FOUND = 404


@dataclass(frozen=True, slots=True)
class Registration:
    """Where one schema stands in the registry after `register_schemas`."""

    subject: str
    schema_id: int
    version: int
    created: bool


def registry_client(settings: Settings) -> SchemaRegistryClient:
    """A client of the registry the settings name (basic auth and CA when set)."""
    config: dict[str, Any] = {"url": settings.schema_registry_url}
    user_info = settings.schema_registry_basic_auth.get_secret_value()
    if user_info:
        config["basic.auth.user.info"] = user_info
    if settings.schema_registry_ca_file is not None:
        config["ssl.ca.location"] = str(settings.schema_registry_ca_file)
    return SchemaRegistryClient(config)


def value_subjects(settings: Settings) -> dict[str, EventKind]:
    """The subject of each input topic's values, with the event kind its schema describes."""
    topics = zip(EVENT_KINDS, settings.input_topics, strict=True)
    return {f"{topic}-value": kind for kind, topic in topics}


def event_schema(kind: EventKind) -> Schema:
    """The registry form of an event's schema: the file's exact text, so producers that load
    schemas/*.json themselves find the same schema (registries compare the text)."""
    return Schema(schema_path(kind).read_text(encoding="utf-8"), "JSON")


def register_schemas(
    settings: Settings, client: SchemaRegistryClient | None = None
) -> list[Registration]:
    """Register each input topic's value schema unless the subject holds it already."""
    client = client or registry_client(settings)
    done = []
    for subject, kind in value_subjects(settings).items():
        schema = event_schema(kind)
        created = False
        found = _lookup(client, subject, schema)
        if found is None:
            client.register_schema(subject, schema)
            created = True
            found = _lookup(client, subject, schema)
            if found is None:  # a registry that forgets what it just accepted
                raise RuntimeError(f"{subject}: registered, but the registry cannot find it")
        schema_id, version = found
        done.append(Registration(subject, schema_id, version, created))
    return done


def _lookup(client: SchemaRegistryClient, subject: str, schema: Schema) -> tuple[int, int] | None:
    try:
        registered = client.lookup_schema(subject, schema)
    except SchemaRegistryError as exc:
        if exc.http_status_code == NOT_FOUND:  # no such subject, or not this schema under it
            return None
        raise
    assert registered.schema_id is not None and registered.version is not None
    return registered.schema_id, registered.version
