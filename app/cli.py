"""`notify ...`: the command line of the service."""

from __future__ import annotations

import logging

import click

from app.config import get_settings


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
def main(log_level: str) -> None:
    """Kafka-native notification service."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
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


@main.group()
def templates() -> None:
    """E-mail templates."""


@templates.command("load")
def templates_load() -> None:
    """Load (create or replace) the default templates from templates/ into the database."""
    from app.db.session import session_scope
    from app.db.store import upsert_template
    from app.domain.rendering import check_template
    from app.template_files import default_templates

    sources = default_templates()
    for source in sources:
        check_template(source.subject, source.body_html, source.body_text)
    with session_scope() as session:
        for source in sources:
            upsert_template(
                session=session,
                name=source.name,
                subject=source.subject,
                body_html=source.body_html,
                body_text=source.body_text,
            )
    click.echo(f"loaded {len(sources)} templates: {', '.join(s.name for s in sources)}")


@main.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create the input and dead-letter topics (partitions: TOPIC_PARTITIONS)."""
    from app.kafka_admin import ensure_topics

    settings = get_settings()
    names = [*settings.input_topics, settings.topic_dead_letter]
    created = ensure_topics(
        settings.kafka_bootstrap_servers, names, partitions=settings.topic_partitions
    )
    click.echo(f"topics ready: {', '.join(names)} (created: {', '.join(created) or 'none'})")


if __name__ == "__main__":
    main()
