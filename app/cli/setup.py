"""Set a deployment up: migrations, default templates, topics, schemas, the beat schedule."""

from __future__ import annotations

import click

from app.cli.kafka_check import require_kafka
from app.config import get_settings


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.argument("revision", default="heads")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: every head)."""
    from app.db import migrate

    migrate.upgrade(revision)
    click.echo(f"database at {revision}")


@db.command("downgrade")
@click.argument("revision", default="base")
def db_downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (default: base)."""
    from app.db import migrate

    migrate.downgrade(revision)
    click.echo(f"database at {revision}")


@db.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Autogenerate a migration from the models."""
    from app.db import migrate

    migrate.revision(message)


@click.group()
def templates() -> None:
    """E-mail templates."""


@templates.command("load")
def templates_load() -> None:
    """Load (create or replace) the default templates from templates/ into the database."""
    from app.db.session import session_scope
    from app.portal.template_files import load_default_templates

    with session_scope() as session:
        names = load_default_templates(session=session)
    click.echo(f"loaded {len(names)} templates: {', '.join(names)}")


@click.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create the input and dead-letter topics (partitions: TOPIC_PARTITIONS)."""
    from app.kafka.admin import ensure_topics

    settings = get_settings()
    require_kafka(settings)
    names = [*settings.input_topics, settings.topic_dead_letter]
    created = ensure_topics(settings, names, partitions=settings.topic_partitions)
    click.echo(f"topics ready: {', '.join(names)} (created: {', '.join(created) or 'none'})")


@click.group()
def schemas() -> None:
    """The input topics' JSON Schemas in a Schema Registry (SCHEMA_REGISTRY_URL)."""


@schemas.command("register")
def schemas_register() -> None:
    """Register each input topic's value schema (subject TOPIC-value); unchanged ones are kept."""
    from confluent_kafka.schema_registry import SchemaRegistryError

    from app.kafka.schema_registry import register_schemas

    settings = get_settings()
    try:
        registrations = register_schemas(settings)
    except SchemaRegistryError as exc:
        raise click.ClickException(f"the Schema Registry refused: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the HTTP client's own errors: refused, DNS, TLS
        raise click.ClickException(
            f"the Schema Registry at {settings.schema_registry_url} cannot be reached: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for r in registrations:
        what = "registered" if r.created else "already registered"
        click.echo(f"{r.subject}: schema id {r.schema_id}, version {r.version} ({what})")


@click.group()
def schedule() -> None:
    """The Celery beat schedule stored in PostgreSQL."""


@schedule.command("seed")
def schedule_seed() -> None:
    """Create the default entries (daily, weekly, dispatch) that are missing; keep edited ones."""
    from app.jobs.schedule import seed_schedule

    created = seed_schedule()
    click.echo(f"schedule entries created: {', '.join(created) or 'none (all present)'}")


COMMANDS = (db, templates, topics, schemas, schedule)
