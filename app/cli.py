"""`notify ...`: the command line of the service."""

from __future__ import annotations

import uuid
from datetime import datetime

import click

from app.config import get_settings
from app.core import logs


@click.group()
@click.option("--log-level", default="INFO", show_default=True)
def main(log_level: str) -> None:
    """Kafka-native notification service."""
    logs.configure(get_settings().log_format, log_level)


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
    from app.db.templates import upsert_template
    from app.domain.rendering import check_template
    from app.portal.template_files import default_templates

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
    from app.kafka.admin import ensure_topics

    settings = get_settings()
    names = [*settings.input_topics, settings.topic_dead_letter]
    created = ensure_topics(
        settings.kafka_bootstrap_servers, names, partitions=settings.topic_partitions
    )
    click.echo(f"topics ready: {', '.join(names)} (created: {', '.join(created) or 'none'})")


def _since(value: str | None) -> datetime | None:
    """`--since`: an ISO time, or an age such as 30m, 2h, 7d."""
    from datetime import UTC, datetime, timedelta

    from dateutil.parser import isoparse

    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        found = isoparse(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: use an ISO time or an age like 2h") from exc
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@main.group("dead-letters")
def dead_letters_group() -> None:
    """Input events that could not be applied: list them, replay them after a fix."""


@dead_letters_group.command("list")
@click.option("--reason", help="Only this reason (e.g. not_json, db_refused, missing_template).")
@click.option("--since", help="Only newer ones: an ISO time or an age like 2h.")
@click.option("--status", type=click.Choice(["dead", "replayed", "all"]), default="dead",
              show_default=True)  # fmt: skip
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
def dead_letters_list(reason: str | None, since: str | None, status: str, limit: int) -> None:
    """List dead letters, oldest first: id, source position, reason, age, error."""
    from datetime import UTC, datetime

    from app.db import dead_letters
    from app.db.session import session_scope

    with session_scope() as session:
        letters = dead_letters.select(
            session=session,
            status=None if status == "all" else status,
            reason=reason,
            since=_since(since),
            limit=limit,
        )
    now = datetime.now(UTC)
    click.echo(f"{'id':>8}  {'status':<8}  {'source':<40}  {'reason':<16}  {'age':>8}  error")
    for d in letters:
        source = f"{d.source_topic}[{d.source_partition}]@{d.source_offset}"
        age = _age((now - d.created_at).total_seconds())
        click.echo(f"{d.dead_letter_id:>8}  {d.status:<8}  {source:<40}  {d.reason:<16}  "
                   f"{age:>8}  {d.error[:120]}")  # fmt: skip
    click.echo(f"{len(letters)} dead letters")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@dead_letters_group.command("replay")
@click.option("--reason", help="Only this reason.")
@click.option("--since", help="Only newer ones: an ISO time or an age like 2h.")
@click.option("--id", "ids", multiple=True, type=int, help="Only these ids (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=None)
def dead_letters_replay(
    reason: str | None, since: str | None, ids: tuple[int, ...], limit: int | None
) -> None:
    """Re-publish dead letters to their source topic, once each (after fixing the cause)."""
    from app.stream.operations import replay_dead_letters

    report = replay_dead_letters(
        get_settings(), reason=reason, since=_since(since), ids=ids or None, limit=limit
    )
    click.echo(f"replayed {len(report.published)} of {report.selected} dead letters")
    for dead_letter_id, error in sorted(report.failed.items()):
        click.echo(f"  not published: {dead_letter_id}: {error}", err=True)
    if report.failed:
        raise SystemExit(1)


@main.group("deliveries")
def deliveries_group() -> None:
    """E-mail deliveries."""


@deliveries_group.command("retry")
@click.option("--id", "ids", multiple=True, type=click.UUID, help="Only these (repeatable).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(["failed", "skipped"]),
              default=("failed",), show_default=True)  # fmt: skip
@click.option("--since", help="Only those updated since: an ISO time or an age like 2h.")
@click.option("--error-contains", help="Only those whose error contains this text.")
def deliveries_retry(
    ids: tuple[uuid.UUID, ...], statuses: tuple[str, ...], since: str | None,
    error_contains: str | None,
) -> None:  # fmt: skip
    """Plan failed (or skipped) deliveries again, after fixing the cause."""
    from app.delivery.retry import retry_deliveries

    count = retry_deliveries(delivery_ids=ids or None, statuses=statuses, since=_since(since),
                             error_contains=error_contains)  # fmt: skip
    click.echo(f"retry requested for {count} deliveries")


@main.group("offsets")
def offsets_group() -> None:
    """The stream's stored offsets per consumer group and partition."""


@offsets_group.command("list")
@click.option("--group", help="Only this consumer group (FAUST_APP_ID).")
def offsets_list(group: str | None) -> None:
    """Show each partition's applied offset, and why a blocked one waits."""
    from app.db import stream_offsets
    from app.db.session import session_scope

    with session_scope() as session:
        rows = stream_offsets.list_offsets(session=session, group_id=group)
    for r in rows:
        offset = "-" if r.offset is None else str(r.offset)
        state = f"BLOCKED: {r.blocked_reason}" if r.blocked_reason else "ok"
        click.echo(f"{r.group_id}  {r.topic}[{r.partition}]  {offset:>10}  {state}")


@offsets_group.command("reset")
@click.option("--topic", required=True)
@click.option("--partition", "partitions", multiple=True, type=int, help="Default: all.")
@click.option("--to-start", "to", flag_value="start", help="Apply the whole log as it is now.")
@click.option("--to-end", "to", flag_value="end", help="Skip what the log holds now.")
@click.option(
    "--to-stored",
    "to",
    flag_value="stored",
    help="Keep the stored offsets (or --from-group's) and accept the topic as it is.",
)
@click.option("--from-group", help="With --to-stored: take this group's offsets (old app id).")
@click.option("--group", help="The group to reset (default: FAUST_APP_ID).")
def offsets_reset(
    topic: str, partitions: tuple[int, ...], to: str | None, from_group: str | None,
    group: str | None,
) -> None:  # fmt: skip
    """Say where the stream goes on in TOPIC, and unblock its partitions."""
    from app.stream.operations import reset_offsets

    if to is None:
        raise click.UsageError("choose one of --to-start, --to-end, --to-stored")
    if from_group and to != "stored":
        raise click.UsageError("--from-group goes with --to-stored")
    try:
        resets = reset_offsets(get_settings(), topic=topic, to=to, partitions=partitions,  # type: ignore[arg-type]
                               group_id=group, from_group=from_group)  # fmt: skip
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    for r in resets:
        before = "-" if r.before is None else r.before
        was = f"  (was blocked: {r.blocked_reason})" if r.blocked_reason else ""
        click.echo(f"{r.topic}[{r.partition}]: {before} -> {r.after}{was}")


@main.command("dev-auth")
@click.option("--users-file", type=click.Path(dir_okay=False), help="JSON list of users to serve.")
@click.option("--users", "count", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=None, help="Default: the port of AUTH_API_URL.")
@click.option("--write-users", type=click.Path(dir_okay=False), help="Write the fixture, exit.")
@click.option(
    "--only-at-default-url", is_flag=True, help="Idle unless AUTH_API_URL is its default address."
)
def dev_auth(
    users_file: str | None,
    count: int,
    host: str,
    port: int | None,
    write_users: str | None,
    only_at_default_url: bool,
) -> None:
    """Run the dev Auth server (the Auth internal API over a fixture of users)."""
    from urllib.parse import urlsplit

    from app.auth import dev_server
    from app.config import Settings

    if write_users:
        dev_server.write_users(write_users, dev_server.generate_users(count))
        click.echo(f"wrote {count} users to {write_users}")
        return
    settings = get_settings()
    default_url = Settings.model_fields["auth_api_url"].default
    if only_at_default_url and settings.auth_api_url.rstrip("/") != default_url.rstrip("/"):
        # Idle, not exited: under honcho an exit would stop every other process too.
        click.echo(f"AUTH_API_URL is {settings.auth_api_url}: the services use that Auth "
                   "service, so the dev Auth server stays off")  # fmt: skip
        import signal

        stop = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
        return
    port = port if port is not None else (urlsplit(settings.auth_api_url).port or 8081)
    users = dev_server.load_users(users_file) if users_file else dev_server.generate_users(count)
    dev_server.serve_users(users, token=settings.auth_api_token, host=host, port=port)


@main.command("worker")
@click.option("--web-port", type=int, default=None, help="Default: FAUST_WEB_PORT.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Table state of this worker (default: FAUST_DATA_DIR); one per worker.",
)
@click.option("--loglevel", default="info", show_default=True)
def worker(web_port: int | None, data_dir: str | None, loglevel: str) -> None:
    """Run a Faust stream worker (agents, like table, web view on 127.0.0.1)."""
    import os

    from faust.cli.faust import cli as faust_cli

    from app.kafka.admin import ensure_topics

    if data_dir:
        # Read by app.faust_app when Faust's CLI imports it below.
        os.environ["FAUST_DATA_DIR"] = data_dir
        get_settings.cache_clear()
    settings = get_settings()
    ensure_topics(
        settings.kafka_bootstrap_servers,
        [*settings.input_topics, settings.topic_dead_letter],
        partitions=settings.topic_partitions,
    )
    port = web_port if web_port is not None else settings.faust_web_port
    args = [
        "-A",
        "app.stream.faust_app",
        "--loglevel",
        loglevel,
        "worker",
        "--web-port",
        str(port),
        # --web-host alone does not change the bind address (a Faust quirk); the host
        # is the URL other workers route table requests to.
        "--web-bind",
        "127.0.0.1",
        "--web-host",
        "127.0.0.1",
    ]
    faust_cli.main(args=args, prog_name="notify worker")


@main.group()
def schedule() -> None:
    """The Celery beat schedule stored in PostgreSQL."""


@schedule.command("seed")
def schedule_seed() -> None:
    """Create the default entries (daily, weekly, dispatch) that are missing; keep edited ones."""
    from app.jobs.schedule import seed_schedule

    created = seed_schedule()
    click.echo(f"schedule entries created: {', '.join(created) or 'none (all present)'}")


@main.command("portal")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def portal(host: str, port: int) -> None:
    """Serve the portal (admin UI, SendGrid webhook, unsubscribe pages) with uvicorn."""
    import uvicorn

    log_config = logs.uvicorn_logging_config(get_settings().log_format)
    uvicorn.run(
        "app.portal.app:create_app", factory=True, host=host, port=port, log_config=log_config
    )


@main.group()
def admin() -> None:
    """Admin portal users."""


@admin.command("create-user")
@click.argument("username")
@click.password_option(help="Prompted (twice, hidden) when not given.")
def admin_create_user(username: str, password: str) -> None:
    """Create a portal user, or set a new password for an existing one."""
    from app.db.admin_users import create_or_replace
    from app.db.session import session_scope
    from app.portal.auth import hash_password

    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--password")
    with session_scope() as session:
        created = create_or_replace(
            session=session, username=username.strip(), password_hash=hash_password(password)
        )
    click.echo(f"admin user {username.strip()} {'created' if created else 'updated'}")


@main.command("email-worker")
@click.option("--concurrency", "-c", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--loglevel", default="INFO", show_default=True)
def worker_emails(concurrency: int, loglevel: str) -> None:
    """Run the e-mail worker: queue `emails`, threads (the work is waiting on the provider)."""
    from app.jobs.celery_app import EMAILS_QUEUE, celery_app

    celery_app.worker_main(
        [
            "worker",
            "-Q",
            EMAILS_QUEUE,
            "-P",
            "threads",
            "-c",
            str(concurrency),
            "--loglevel",
            loglevel,
        ]
    )


@main.command("jobs-worker")
@click.option("--loglevel", default="INFO", show_default=True)
def worker_jobs(loglevel: str) -> None:
    """Run the jobs worker: queue `jobs` (digests, dispatch, send-now planning), 4 threads."""
    from app.jobs.celery_app import JOBS_QUEUE, celery_app

    celery_app.worker_main(["worker", "-Q", JOBS_QUEUE, "-P", "threads", "-c", "4", "-n",
                            "jobs@%h", "--without-gossip", "--without-mingle",
                            "--loglevel", loglevel])  # fmt: skip


@main.command("demo")
@click.option("--registrations", default=20, show_default=True, type=click.IntRange(min=1))
@click.option("--likes", default=300, show_default=True, type=click.IntRange(min=0))
@click.option("--comments", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--campaign", "recipients", default=100, show_default=True, type=click.IntRange(1))
@click.option("--wait", "wait_s", default=60.0, show_default=True, help="Seconds to watch.")
def demo(registrations: int, likes: int, comments: int, recipients: int, wait_s: float) -> None:
    """Publish registrations, likes and a campaign to Kafka, then watch them become e-mails."""
    from app import demo as demo_flow

    settings = get_settings()
    plan = demo_flow.DemoPlan(registrations, comments, likes, recipients)
    burst = demo_flow.publish_burst(settings, plan)
    for topic, count in burst.sent.items():
        click.echo(f"published {count:>5} events to {topic}")
    click.echo("watching the pipeline (welcome mail goes now; digests at each user's send hour):")
    done = demo_flow.watch(
        until=demo_flow.transactional_done(burst.registered), timeout_s=wait_s, show=click.echo
    )
    click.echo("all welcome e-mails handled" if done else "still working; look again soon")
    click.echo(f"  outbox (EMAIL_BACKEND=outbox): {settings.outbox_dir}")
    click.echo(f"  the same, rendered: {settings.public_base_url}/admin/outbox")
    click.echo(f"  admin portal:   {settings.public_base_url}/admin")
    click.echo(f"  Faust web view: {settings.faust_web_url}/likes/")
    click.echo(f"  Flower:         {settings.flower_url}")


if __name__ == "__main__":
    main()
