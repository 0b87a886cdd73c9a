"""The long-running processes: stream worker, Celery workers, portal, dev Auth server."""

from __future__ import annotations

import click

from app.cli.kafka_check import require_kafka
from app.config import get_settings
from app.core import logs


@click.command("dev-auth")
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
        click.echo(
            f"AUTH_API_URL is {settings.auth_api_url}: the services use that Auth "
            "service, so the dev Auth server stays off"
        )
        import signal

        stop = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop)
        signal.sigwait(stop)
        return
    port = port if port is not None else (urlsplit(settings.auth_api_url).port or 8081)
    users = dev_server.load_users(users_file) if users_file else dev_server.generate_users(count)
    dev_server.serve_users(
        users, token=settings.auth_api_token.get_secret_value(), host=host, port=port
    )


@click.command("worker")
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
        # Read by app.stream.faust_app when Faust's CLI imports it below.
        os.environ["FAUST_DATA_DIR"] = data_dir
        get_settings.cache_clear()
    settings = get_settings()
    require_kafka(settings)
    ensure_topics(
        settings,
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


@click.command("portal")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def portal(host: str, port: int) -> None:
    """Serve the portal (admin UI, SendGrid webhook, unsubscribe pages) with uvicorn."""
    import uvicorn

    log_config = logs.uvicorn_logging_config(get_settings().log_format)
    # The app resolves X-Forwarded-For itself, from PORTAL_TRUSTED_PROXIES (app/portal/app.py).
    uvicorn.run(
        "app.portal.app:create_app",
        factory=True,
        host=host,
        port=port,
        log_config=log_config,
        proxy_headers=False,
    )


@click.command("email-worker")
@click.option(
    "--concurrency",
    "-c",
    default=16,
    show_default=True,
    type=click.IntRange(min=1, max=256),
    help="Provider calls out at once (EMAIL_SEND_CONCURRENCY), over the chunks in flight.",
)
@click.option(
    "--name",
    "-n",
    default="emails@%h",
    show_default=True,
    help="Celery node name: one per process (the Procfile runs two, one per core).",
)
@click.option("--loglevel", default="INFO", show_default=True)
def worker_emails(concurrency: int, name: str, loglevel: str) -> None:
    """Run the e-mail worker: queue `emails`, chunks of e-mails sent on a pool of threads.

    One process is held to one core by the GIL: run one per core (the Procfile's `emails` and
    `emails-2`), each with its own `--name` and METRICS_PORT.
    """
    import os

    os.environ["EMAIL_SEND_CONCURRENCY"] = str(concurrency)
    get_settings.cache_clear()
    from app.delivery.send_pool import CHUNKS_IN_FLIGHT
    from app.jobs.celery_app import EMAILS_QUEUE, celery_app

    celery_app.worker_main(
        [
            "worker",
            "-Q",
            EMAILS_QUEUE,
            "-P",
            "threads",
            "-c",
            str(CHUNKS_IN_FLIGHT),
            "-n",
            name,
            "--loglevel",
            loglevel,
        ]
    )


@click.command("jobs-worker")
@click.option(
    "-n",
    "--name",
    default="jobs@%h",
    show_default=True,
    help="Celery node name: one per process (the Procfile runs two).",
)
@click.option("--loglevel", default="INFO", show_default=True)
def worker_jobs(name: str, loglevel: str) -> None:
    """Run the jobs worker: queue `jobs` (planning shards, dispatch, send-now planning), 4 threads.

    Any number of them, on any hosts: each takes whole tasks off the queue, and a daily or weekly
    run is one task per planning shard.
    """
    from app.jobs.celery_app import JOBS_QUEUE, celery_app

    celery_app.worker_main(
        [
            "worker",
            "-Q",
            JOBS_QUEUE,
            "-P",
            "threads",
            "-c",
            "4",
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            loglevel,
        ]
    )


COMMANDS = (dev_auth, worker, portal, worker_emails, worker_jobs)
