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


@main.command("dev-auth")
@click.option("--users-file", type=click.Path(dir_okay=False), help="JSON list of users to serve.")
@click.option("--users", "count", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default: the port of AUTH_API_URL.")
@click.option("--write-users", type=click.Path(dir_okay=False), help="Write the fixture, exit.")
def dev_auth(
    users_file: str | None, count: int, host: str, port: int | None, write_users: str | None
) -> None:
    """Run the dev Auth server (the Auth internal API over a fixture of users)."""
    from urllib.parse import urlsplit

    from app import devauth

    if write_users:
        devauth.write_users(write_users, devauth.generate_users(count))
        click.echo(f"wrote {count} users to {write_users}")
        return
    settings = get_settings()
    port = port if port is not None else (urlsplit(settings.auth_api_url).port or 8081)
    users = devauth.load_users(users_file) if users_file else devauth.generate_users(count)
    devauth.serve_users(users, token=settings.auth_api_token, host=host, port=port)


@main.group()
def schedule() -> None:
    """The Celery beat schedule stored in PostgreSQL."""


@schedule.command("seed")
def schedule_seed() -> None:
    """Create the default entries (daily, weekly, dispatch) that are missing; keep edited ones."""
    from app.schedule import seed_schedule

    created = seed_schedule()
    click.echo(f"schedule entries created: {', '.join(created) or 'none (all present)'}")


if __name__ == "__main__":
    main()
