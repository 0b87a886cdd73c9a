"""The Celery app: RabbitMQ broker, a jobs queue and the separate `emails` queue, DB-backed beat.

Other processes hand work over by task name (`send_task`), so they never import the job code.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from celery.signals import beat_init, setup_logging, worker_init
from kombu.entity import Exchange, Queue

from app.config import Settings, get_settings
from app.core import logs, metrics

JOBS_QUEUE = "jobs"
EMAILS_QUEUE = "emails"
# Debian's bundle of the system's CAs (ca-certificates), when Python names no CA file of its own.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# Task names: the contract between processes.
DAILY_DIGEST = "notify.daily_digest"
WEEKLY_DIGEST = "notify.weekly_digest"
DISPATCH = "notify.dispatch"
PLAN_SHARD = "notify.plan_shard"  # one shard of a daily or weekly run
SEND_NOW = "notify.send_now"
SEND_EMAIL = "notify.send_email"  # one e-mail: still consumed, no longer published
SEND_EMAILS = "notify.send_emails"  # a chunk of e-mails

# sqlalchemy-celery-beat's tables carry this placeholder schema; it becomes a real PostgreSQL schema
# so the scheduler's tables stay apart from ours (and out of our migrations).
BEAT_SCHEMA = "celery_schema"


def create_app() -> Celery:
    """Build the Celery app from the settings."""
    settings = get_settings()
    app = Celery("notify", broker=settings.celery_broker_url, include=["app.tasks"])
    jobs = Exchange(JOBS_QUEUE, type="direct", durable=True)
    emails = Exchange(EMAILS_QUEUE, type="direct", durable=True)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=JOBS_QUEUE,
        task_default_exchange=JOBS_QUEUE,
        task_default_routing_key=JOBS_QUEUE,
        task_default_delivery_mode="persistent",
        task_queues=(
            Queue(JOBS_QUEUE, jobs, routing_key=JOBS_QUEUE, durable=True),
            Queue(EMAILS_QUEUE, emails, routing_key=EMAILS_QUEUE, durable=True),
        ),
        task_routes={
            name: {"queue": EMAILS_QUEUE, "routing_key": EMAILS_QUEUE}
            for name in (SEND_EMAIL, SEND_EMAILS)
        },
        # A job that dies with its worker is picked up again; the database makes re-runs harmless.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # After a broker restart with a task in flight, Celery lowers the prefetch count and
        # raises it again as tasks finish, each step a blocking basic.qos round trip in the
        # consumer's loop. Measured here: one such round trip never returned, and the jobs
        # worker consumed nothing for five minutes until RabbitMQ dropped it for missed
        # heartbeats. Our tasks are idempotent, so prefetching the full count at once is safe.
        worker_enable_prefetch_count_reduction=False,
        broker_connection_retry_on_startup=True,
        timezone="UTC",
        enable_utc=True,
        beat_scheduler="sqlalchemy_celery_beat.schedulers:DatabaseScheduler",
        beat_dburi=settings.database_url,
        beat_schema=BEAT_SCHEMA,
        beat_max_loop_interval=5,
        broker_use_ssl=broker_tls(settings),
    )
    return app


def broker_tls(settings: Settings) -> dict[str, Any] | bool:
    """Celery's `broker_use_ssl` for an amqps:// broker: the server checked against the CA file
    (CELERY_BROKER_CA_FILE, else the system's CAs) and its name; False for plain amqp://."""
    url = urlsplit(settings.celery_broker_url)
    if url.scheme != "amqps":
        return False
    ca_file = settings.celery_broker_ca_file or ssl.get_default_verify_paths().cafile
    return {
        "cert_reqs": ssl.CERT_REQUIRED,
        "ca_certs": str(ca_file) if ca_file else SYSTEM_CA_BUNDLE,
        "server_hostname": url.hostname,
    }


celery_app = create_app()


@setup_logging.connect
def _logging(loglevel: Any = "INFO", **_kwargs: Any) -> None:
    """Our log format instead of Celery's (connecting here keeps Celery from configuring)."""
    logs.configure(get_settings().log_format, loglevel or "INFO")
    logs.quiet_per_task_lines()


@worker_init.connect
@beat_init.connect
def _serve_metrics(**_kwargs: Any) -> None:
    """/metrics and /healthz on METRICS_PORT (thread pools: every task runs in this process)."""
    port = get_settings().metrics_port
    if port:
        metrics.serve(port)
