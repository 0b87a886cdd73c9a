"""Benchmark: N due digest rows -> planned deliveries -> e-mail tasks on the `emails` queue.

Baseline, measured in the same run: a raw kombu publish of one message per e-mail, of one
e-mail's size, to a queue on the same broker (no confirms), i.e. the cost of the transport alone
for one message per mail. Dispatch publishes a message per chunk of e-mails, so its mails/s can
exceed it. Uses its own
database (notify_bench) and a dev Auth server in a separate process, as in production.

    .venv/bin/python bench/digest.py --rows 50000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_bench"
os.environ.setdefault("DEV_MODE", "true")  # the local stack, on its placeholder secrets
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", BENCH_DB)
sys.path.insert(0, str(REPO))

from kombu.connection import Connection  # noqa: E402
from kombu.entity import Exchange, Queue  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from app.auth.client import AuthClient  # noqa: E402
from app.auth.dev_server import generate_users  # noqa: E402
from app.config import get_settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.jobs import digests, dispatch  # noqa: E402
from app.jobs.celery_app import EMAILS_QUEUE, celery_app  # noqa: E402
from app.jobs.handoff import CeleryEmailPublisher  # noqa: E402
from app.portal.template_files import load_default_templates  # noqa: E402
from bench import profiles  # noqa: E402
from harness.rows import Spec, insert_notifications  # noqa: E402
from harness.waiting import free_port  # noqa: E402

NOW = datetime(2026, 11, 25, 0, 5, tzinfo=UTC)
AFTER_ALL_SEND_TIMES = NOW + timedelta(days=2)


def ensure_database(url: str) -> None:
    admin = create_engine(url.rsplit("/", 1)[0] + "/notify", isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def reset(rows: int, users: list[dict[str, Any]], deliverability: bool = False) -> None:
    with session_scope() as session:
        session.execute(text("TRUNCATE deliveries, notifications, messages, opt_outs CASCADE"))
        load_default_templates(session=session)
        if deliverability:
            seed_deliverability(session, users)
        user_ids = [uuid.UUID(u["user_id"]) for u in users]
        specs = [
            Spec(
                user_ids[i % len(user_ids)],
                "likes",
                "daily",
                uuid.uuid4(),
                f"Comment {i}",
                like_count=1 + i % 7,
            )
            if i % 2
            else Spec(user_ids[i % len(user_ids)], "mailing", "daily", uuid.uuid4(), f"News {i}")
            for i in range(rows)
        ]
        insert_notifications(session, specs)
    with session_scope() as session:
        session.execute(text("ANALYZE"))


# --deliverability: what suppression and caps read in production. A share of the users'
# addresses suppressed among many more addresses, and each user's mail of the past week.
SUPPRESSED_SHARE = 0.02
OTHER_SUPPRESSIONS = 20_000
HISTORY_PER_USER = 2
BENCH_CAPS = "20/1d,50/7d"  # looked at for every row, met by none: the cost of the check


def seed_deliverability(session: Any, users: list[dict[str, Any]]) -> None:
    """Suppressions and a week of sent mail, for every run of --deliverability."""
    session.execute(text("TRUNCATE suppressions, soft_bounces"))
    addresses = [u["email"].lower() for u in users[: int(len(users) * SUPPRESSED_SHARE)]]
    addresses += [f"gone{i}@elsewhere.example" for i in range(OTHER_SUPPRESSIONS)]
    session.execute(
        text(
            "INSERT INTO suppressions (address, reason, source, first_event_at, last_event_at)"
            " SELECT a, 'hard bounce', 'bench', now(), now() FROM unnest(CAST(:a AS text[])) a"
        ),
        {"a": addresses},
    )
    specs = [
        Spec(uuid.UUID(u["user_id"]), "mailing", "once", uuid.uuid4(), "Earlier news")
        for u in users
        for _ in range(HISTORY_PER_USER)
    ]
    ids = insert_notifications(session, specs)
    session.execute(
        text(
            "INSERT INTO deliveries (delivery_id, notification_id, period_key, send_at, status)"
            " SELECT gen_random_uuid(), n, 'once', CAST(:now AS timestamptz)"
            "   - (random() * interval '6 days'), 'sent'"
            " FROM unnest(CAST(:ids AS uuid[])) n"
        ),
        {"ids": [str(i) for i in ids], "now": NOW},
    )
    session.execute(
        text(
            "UPDATE notifications SET status = 'sent'"
            " WHERE notification_id = ANY(CAST(:ids AS uuid[]))"
        ),
        {"ids": [str(i) for i in ids]},
    )


def start_dev_auth(users_file: Path, port: int, token: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "--log-level",
            "WARNING",
            "dev-auth",
            "--users-file",
            str(users_file),
            "--port",
            str(port),
        ],
        cwd=REPO,
        env={**os.environ, "AUTH_API_TOKEN": token},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("dev Auth server did not start")


def prepare(users: int) -> tuple[list[dict[str, Any]], subprocess.Popen[bytes], int]:
    """The bench database at head and a dev Auth server over `users` generated users."""
    settings = get_settings()
    ensure_database(settings.database_url)
    migrate.upgrade("heads", settings.database_url)
    generated = generate_users(users)
    users_file = REPO / "var" / "bench" / "users.json"
    users_file.parent.mkdir(parents=True, exist_ok=True)
    users_file.write_text(json.dumps(generated))
    port = free_port()
    server = start_dev_auth(users_file, port, settings.auth_api_token.get_secret_value())
    return generated, server, port


def purge_emails(broker: str, expect: int = 0) -> int:
    """Empty the `emails` queue; first wait (10 s at most) for `expect` messages to land in it."""
    queue = Queue(
        EMAILS_QUEUE, Exchange(EMAILS_QUEUE, "direct", durable=True), EMAILS_QUEUE, durable=True
    )
    with Connection(broker) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        deadline = time.monotonic() + 10
        # Unconfirmed publishes may still be on their way when the publisher returns.
        count: int  # queue_declare answers (name, messages, consumers), untyped
        while (count := bound.queue_declare(passive=True)[1]) < expect:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        bound.purge()
        return count


def pipeline_run(
    rows: int,
    users: list[dict[str, Any]],
    auth: AuthClient,
    profile: Path | None = None,
    deliverability: bool = False,
) -> dict[str, float]:
    settings = get_settings()
    reset(rows, users, deliverability)
    purge_emails(settings.celery_broker_url)
    t0 = time.perf_counter()
    report = digests.run_digest("daily", auth=auth, settings=settings, now=NOW)
    t1 = time.perf_counter()
    # The dispatch alone, sampled in this process (its sampler is stopped as dispatch returns).
    spy = profiles.start(os.getpid(), 600, profile) if profile else None
    sent = dispatch.dispatch_due(
        publisher=CeleryEmailPublisher(celery_app), now=AFTER_ALL_SEND_TIMES
    )
    t2 = time.perf_counter()
    if spy is not None and profile is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        spy.wait(30)
        print(profiles.summarize(profile, top=30))
    # One message per chunk of at most EMAIL_CHUNK_SIZE mails due in the same second.
    fewest = -(-sent // settings.email_chunk_size)
    queued = purge_emails(settings.celery_broker_url, expect=fewest)
    if report.by_status.get("scheduled", 0) != sent or not fewest <= queued <= sent:
        raise RuntimeError(f"lost work: {report.by_status} dispatched={sent} queued={queued}")
    return {
        "plan_s": t1 - t0,
        "dispatch_s": t2 - t1,
        "total_s": t2 - t0,
        "enqueued": sent,
        "messages": queued,
    }


def baseline_run(count: int, payload: dict[str, Any]) -> float:
    """Seconds to publish `count` messages of the e-mail task's size with kombu, no confirms."""
    settings = get_settings()
    exchange = Exchange("bench.raw", "direct", durable=True)
    queue = Queue("bench.raw", exchange, "bench.raw", durable=True)
    body = json.dumps(payload)
    with Connection(settings.celery_broker_url) as conn:
        bound = queue(conn.default_channel)
        bound.declare()
        bound.purge()
        producer = conn.Producer(serializer="json")
        t0 = time.perf_counter()
        for _ in range(count):
            producer.publish(
                body, exchange=exchange, routing_key="bench.raw", delivery_mode="persistent"
            )
        elapsed = time.perf_counter() - t0
        bound.purge()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy the dispatch of one extra run")
    parser.add_argument(
        "--deliverability",
        action="store_true",
        help=f"suppressions, a week of sent mail and FREQUENCY_CAP={BENCH_CAPS} to look at",
    )
    args = parser.parse_args()
    if args.deliverability:
        os.environ["FREQUENCY_CAP"] = BENCH_CAPS
        get_settings.cache_clear()

    settings = get_settings()
    users, server, port = prepare(args.users)
    auth = AuthClient(f"http://127.0.0.1:{port}", settings.auth_api_token.get_secret_value())
    sample = {
        "notification_id": str(uuid.uuid4()),
        "email": "user0001@example.com",
        "subject": "User 0001, your comment got 3 new likes",
        "body": "x" * 1500,
        "delivery_id": str(uuid.uuid4()),
        "text": "x" * 300,
        "headers": {},
    }
    results, baselines = [], []
    try:
        if args.profile:  # a run of its own: the sampler's CPU must not count in measured runs
            pipeline_run(args.rows, users, auth, args.profile)
        for run in range(1, args.runs + 1):
            result = pipeline_run(args.rows, users, auth, deliverability=args.deliverability)
            base = baseline_run(int(result["enqueued"]), sample)
            results.append(result)
            baselines.append(int(result["enqueued"]) / base)
            print(
                f"run {run}: {args.rows} due rows -> {int(result['enqueued'])} e-mail tasks in "
                f"{result['total_s']:.2f} s (plan {result['plan_s']:.2f} s, dispatch "
                f"{result['dispatch_s']:.2f} s, {int(result['messages'])} messages) = "
                f"{args.rows / result['total_s']:,.0f} rows/s; "
                f"raw kombu publish {baselines[-1]:,.0f} msg/s"
            )
    finally:
        auth.close()
        server.terminate()
        server.wait(10)
    rows_per_s = statistics.median(args.rows / r["total_s"] for r in results)
    plan_per_s = statistics.median(args.rows / r["plan_s"] for r in results)
    dispatch_per_s = statistics.median(r["enqueued"] / r["dispatch_s"] for r in results)
    raw = statistics.median(baselines)
    print(
        f"median over {args.runs} runs: pipeline {rows_per_s:,.0f} rows/s "
        f"(planning {plan_per_s:,.0f} rows/s incl. Auth lookups + rendering; dispatch "
        f"{dispatch_per_s:,.0f} e-mails/s); raw kombu publish {raw:,.0f} msg/s; "
        f"ratio pipeline/raw = {rows_per_s / raw:.2f}, dispatch/raw = {dispatch_per_s / raw:.2f}"
    )


if __name__ == "__main__":
    main()
