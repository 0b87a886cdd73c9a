"""Benchmark: a daily digest end to end, from due rows to every mail accepted and recorded.

The processes of the Procfile that a digest goes through, each a real process: two jobs workers
(planning shards, dispatch), two e-mail workers (`--send-slots` provider calls at once each), the
dev Auth server over `--users` users, and a fake SendGrid in this process answering each request
after `--latency-ms`. The bench starts the daily run as the daily task does (one planning task
per shard) and sends the dispatch task every 10 s as beat does. Own database, notify_bench.

Two phases, timed apart:

- plan: the run's start -> every shard planned (deliveries at each user's next local send hour);
- send: the send hour arrives for every delivery at once (send_at moved to now before the clock
  starts: the worst case, a whole day's digest due in one instant) -> dispatch ticks -> every
  delivery accepted by the fake provider once and recorded `sent`.

Printed: each phase's wall time and rate, and CPU per mail of each group of processes (jobs
workers, e-mail workers, PostgreSQL, RabbitMQ, the dev Auth server, this process's fake SendGrid).
The floor is the ideal sending rate, slots / latency, and the plain-HTTP-client rate of
`bench/delivery.py`.

    .venv/bin/python bench/digest_e2e.py --rows 1000000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_bench"
os.environ.setdefault("DEV_MODE", "true")  # the local stack, on its placeholder secrets
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", BENCH_DB)
sys.path.insert(0, str(REPO))

from sqlalchemy import CursorResult, create_engine, func, select, text  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.db.models import Delivery  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.jobs.celery_app import DISPATCH, celery_app  # noqa: E402
from bench.digest import prepare, reset  # noqa: E402
from bench.e2e_latency import SERVICES  # noqa: E402
from bench.planning import purge, start_daily_run, start_workers  # noqa: E402
from bench.profiles import service_cpu_seconds, tree_cpu_seconds  # noqa: E402
from harness.delivery import Worker  # noqa: E402
from harness.fakes.sendgrid import FakeSendGrid  # noqa: E402
from harness.waiting import wait_for  # noqa: E402

DISPATCH_EVERY_S = 10.0  # the schedule's default for the dispatch entry


def sent_count() -> int:
    with session_scope() as session:
        query = select(func.count()).select_from(Delivery).where(Delivery.status == "sent")
        return int(session.execute(query).scalar_one())


def cpu_by_group(groups: dict[str, list[int]]) -> dict[str, float]:
    snapshot = {name: sum(tree_cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
    snapshot.update(service_cpu_seconds(SERVICES))
    own = os.times()
    snapshot["fake SendGrid (bench)"] = own.user + own.system
    return snapshot


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


def plan_phase(rows: int) -> float:
    """Start the daily run as the daily task does; seconds until every shard is planned."""
    started = time.monotonic()
    picked, _shards = start_daily_run(timeout=7200, every=0.5)
    if picked != rows:
        raise RuntimeError(f"planned {picked} of {rows} rows")
    return time.monotonic() - started


def send_hour_arrives() -> int:
    """Make every scheduled delivery due now (untimed), as the send hour would."""
    with session_scope() as session:
        result = session.execute(
            text("UPDATE deliveries SET send_at = now() WHERE status = 'scheduled'")
        )
        assert isinstance(result, CursorResult)  # what an UPDATE's result is: it has a rowcount
        moved = result.rowcount
    engine = create_engine(get_settings().database_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE deliveries, delivery_contents"))
    engine.dispose()
    return int(moved)


def send_phase(due: int, sendgrid: FakeSendGrid) -> float:
    """Dispatch ticks until every due delivery is accepted once and recorded; seconds taken."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            celery_app.send_task(DISPATCH)
            stop.wait(DISPATCH_EVERY_S)

    ticker = threading.Thread(target=beat, daemon=True)
    started = time.monotonic()
    ticker.start()
    try:
        # The fake's own count first (free), then the database once it is complete.
        wait_for(
            lambda: len(sendgrid.received) >= due or None,
            timeout=7200,
            what="every mail at the provider",
            every=0.5,
        )
        wait_for(
            lambda: sent_count() >= due or None,
            timeout=600,
            what="every mail recorded",
            every=0.5,
        )
        return time.monotonic() - started
    finally:
        stop.set()
        ticker.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--send-slots", type=int, default=32, help="per e-mail worker")
    args = parser.parse_args()

    settings = get_settings()
    t0 = time.monotonic()
    users, server, port = prepare(args.users)
    reset(args.rows, users)
    purge(settings.celery_broker_url)
    print(
        f"seeded {args.rows:,} due daily rows for {args.users:,} users in "
        f"{time.monotonic() - t0:.0f} s",
        flush=True,
    )
    sendgrid = FakeSendGrid(keep_bodies=False).start()
    sendgrid.delay_s = args.latency_ms / 1000
    jobs_env = {
        **os.environ,
        "AUTH_API_URL": f"http://127.0.0.1:{port}",
        "AUTH_API_TOKEN": settings.auth_api_token.get_secret_value(),
        "METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    with tempfile.TemporaryDirectory(prefix="bench-digest-e2e-") as tmp:
        logs = Path(tmp)
        jobs = start_workers(2, jobs_env, logs)
        emails = [
            Worker(
                settings,
                logs / f"emails-{i}.log",
                concurrency=args.send_slots,
                email_backend="sendgrid",
                sendgrid_host=sendgrid.url,
                sendgrid_api_key=sendgrid.api_key,
                email_timeout_s="30",
                metrics_port="0",
            ).start(60)
            for i in range(2)
        ]
        groups = {
            "jobs workers": [w.pid for w in jobs],
            "e-mail workers": [w.proc.pid for w in emails if w.proc],
            "dev Auth": [server.pid],
        }
        try:
            before = cpu_by_group(groups)
            plan_s = plan_phase(args.rows)
            planned = cpu_by_group(groups)
            due = send_hour_arrives()
            ready = cpu_by_group(groups)
            send_s = send_phase(due, sendgrid)
            after = cpu_by_group(groups)
        finally:
            for worker in emails:
                worker.kill()
            for job in jobs:
                job.kill()
                job.wait(10)
            sendgrid.stop()
            server.terminate()
            server.wait(10)
    counts = sendgrid.accepted_counts()
    if len(counts) != due or set(counts.values()) != {1}:
        twice = sum(1 for n in counts.values() if n > 1)
        raise RuntimeError(f"{len(counts)} delivery ids accepted for {due} due, {twice} twice")
    ideal = 2 * args.send_slots / (args.latency_ms / 1000)
    print(f"plan: {args.rows:,} rows in {plan_s:.1f} s = {args.rows / plan_s:,.0f} rows/s")
    print(
        f"send: {due:,} mails in {send_s:.1f} s = {due / send_s:,.0f} mails/s "
        f"(ideal {ideal:,.0f}/s: 2 x {args.send_slots} slots / {args.latency_ms:.0f} ms; "
        f"ratio {due / send_s / ideal:.2f})"
    )
    total = plan_s + send_s
    print(
        f"end to end: {total:.1f} s ({total / 60:.1f} min) = {due / total:,.0f} mails/s; "
        f"every delivery accepted exactly once"
    )
    for phase, (a, b), n in (
        ("plan", (before, planned), args.rows),
        ("send", (ready, after), due),
    ):
        costs = spent(a, b)
        total_ms = 1000 * sum(costs.values()) / n
        parts = ", ".join(
            f"{name} {1000 * seconds / n:.2f}"
            for name, seconds in sorted(costs.items(), key=lambda item: -item[1])
        )
        unit = "row" if phase == "plan" else "mail"
        print(f"{phase} CPU per {unit}: {total_ms:.2f} ms ({parts})")


if __name__ == "__main__":
    main()
