"""Benchmark: planned deliveries -> the real e-mail worker(s) -> a fake SendGrid with latency.

The e-mail worker processes run as in production (`celery ... worker -Q emails -P threads`), send
through the official SendGrid library to a fake SendGrid on this machine that answers every
request after `--latency-ms`, and record each outcome in PostgreSQL (own database, notify_bench).

The floors, from the same run: the ideal rate, processes x concurrency / latency, i.e. every
send slot always waiting on the provider and nothing else costing time; and a plain HTTP client
(as many keep-alive connections as send slots, posting a mail-sized JSON body to the same fake,
no database), i.e. what the fake and this machine allow any client. Printed per run: mails/s at
the provider, the ideal, the ratio, and the e-mail workers' CPU per e-mail.

    .venv/bin/python bench/delivery.py --mails 3000 --latency-ms 50 --concurrency 16 --runs 3
    .venv/bin/python bench/delivery.py --processes 2   # scaling across the two cores
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_bench"
os.environ.setdefault("DEV_MODE", "true")  # the local stack, on its placeholder secrets
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", BENCH_DB)
sys.path.insert(0, str(REPO))

from sqlalchemy import func, select, text  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.models import Delivery  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.domain.vocabulary import Kind  # noqa: E402
from app.portal.template_files import load_default_templates  # noqa: E402
from bench import profiles  # noqa: E402
from bench.digest import ensure_database  # noqa: E402
from bench.profiles import cpu_seconds  # noqa: E402
from harness.delivery import Worker, dispatch, purge_emails_queue, seed  # noqa: E402
from harness.fakes.sendgrid import FakeSendGrid  # noqa: E402


def sent_count() -> int:
    with session_scope() as session:
        return session.execute(
            select(func.count()).select_from(Delivery).where(Delivery.status == "sent")
        ).scalar_one()


def reset(mails: int) -> None:
    with session_scope() as session:
        session.execute(text("TRUNCATE deliveries, notifications, messages, opt_outs CASCADE"))
        load_default_templates(session=session)
    now = datetime.now(UTC)
    kinds: list[Kind] = ["likes" if i % 2 else "mailing" for i in range(mails)]
    seed(get_settings(), now, kinds)


def run_once(args: argparse.Namespace, logs: Path, profile: Path | None) -> dict[str, float]:
    settings = get_settings()
    reset(args.mails)
    purge_emails_queue(settings)
    sendgrid = FakeSendGrid().start()
    sendgrid.delay_s = args.latency_ms / 1000
    env = {
        "email_backend": "sendgrid",
        "sendgrid_host": sendgrid.url,
        "sendgrid_api_key": sendgrid.api_key,
        "email_timeout_s": "30",
    }
    workers = [
        Worker(settings, logs / f"emails-{i}.log", concurrency=args.concurrency, **env).start(60)
        for i in range(args.processes)
    ]
    try:
        assert all(w.proc is not None for w in workers)
        cpu_before = [cpu_seconds(w.proc.pid) for w in workers if w.proc]
        spy = None
        if profile is not None and workers[0].proc is not None:
            expected_s = args.mails * args.latency_ms / 1000 / (args.concurrency * args.processes)
            spy = profiles.start(workers[0].proc.pid, min(max(expected_s, 3.0), 30.0), profile)
        started = time.monotonic()
        dispatched = dispatch(datetime.now(UTC))
        deadline = started + max(120.0, 10 * args.mails * sendgrid.delay_s / args.processes)
        while (done := sent_count()) < args.mails:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {args.mails} sent in time")
            time.sleep(0.1)
        wall = time.monotonic() - started
        cpu = sum(cpu_seconds(w.proc.pid) for w in workers if w.proc) - sum(cpu_before)
        if spy is not None and profile is not None:
            spy.wait(60)
            print(profiles.summarize(profile, top=25))
    finally:
        for worker in workers:
            worker.kill()
        sendgrid.stop()
    accepted = sorted(r.at for r in sendgrid.accepted())
    counts = sendgrid.accepted_counts()
    if dispatched != args.mails or len(counts) != args.mails or set(counts.values()) != {1}:
        raise RuntimeError(f"not one send per delivery: {dispatched} dispatched, {len(counts)}")
    window = accepted[-1] - accepted[0]
    return {
        "rate": (len(accepted) - 1) / window,
        "wall_rate": args.mails / wall,
        "cpu_ms": 1000 * cpu / args.mails,
    }


def raw_client_rate(mails: int, connections: int, latency_ms: float) -> float:
    """Posts per second of plain keep-alive HTTP clients against the same fake SendGrid."""
    sendgrid = FakeSendGrid().start()
    sendgrid.delay_s = latency_ms / 1000
    host, port = sendgrid.url.removeprefix("http://").rsplit(":", 1)
    body = json.dumps(
        {
            "personalizations": [{"to": [{"email": "user0001@example.com"}]}],
            "from": {"email": "noreply@notify.local"},
            "subject": "User 0001, your comment got 3 new likes",
            "content": [
                {"type": "text/plain", "value": "x" * 300},
                {"type": "text/html", "value": "x" * 1500},
            ],
        }
    ).encode()
    headers = {"Authorization": f"Bearer {sendgrid.api_key}", "Content-Type": "application/json"}
    left = [mails]
    lock = threading.Lock()

    def post_until_done() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        while True:
            with lock:
                if left[0] <= 0:
                    break
                left[0] -= 1
            connection.request("POST", "/v3/mail/send", body, headers)
            connection.getresponse().read()
        connection.close()

    threads = [threading.Thread(target=post_until_done) for _ in range(connections)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    sendgrid.stop()
    return mails / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16, help="threads per process")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy one extra run's worker into this file")
    args = parser.parse_args()

    settings = get_settings()
    ensure_database(settings.database_url)
    migrate.upgrade("heads", settings.database_url)
    ideal = args.processes * args.concurrency / (args.latency_ms / 1000)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        if args.profile:
            # A run of its own: the sampler's CPU must not count in the measured runs.
            run_once(args, Path(tmp), args.profile)
        for run in range(1, args.runs + 1):
            result = run_once(args, Path(tmp), None)
            results.append(result)
            print(
                f"run {run}: {args.mails} mails, {args.processes} process(es) x "
                f"{args.concurrency} threads, provider latency {args.latency_ms:.0f} ms: "
                f"{result['rate']:,.0f} mails/s at the provider ({result['wall_rate']:,.0f}/s "
                f"from dispatch to recorded); ideal {ideal:,.0f}/s, ratio "
                f"{result['rate'] / ideal:.2f}; e-mail worker CPU {result['cpu_ms']:.2f} ms/mail",
                flush=True,
            )
    rate = statistics.median(r["rate"] for r in results)
    cpu_ms = statistics.median(r["cpu_ms"] for r in results)
    raw = statistics.median(
        raw_client_rate(args.mails, args.processes * args.concurrency, args.latency_ms)
        for _ in range(args.runs)
    )
    print(
        f"median of {args.runs}: {rate:,.0f} mails/s, ideal {ideal:,.0f}/s, ratio "
        f"{rate / ideal:.2f}; CPU {cpu_ms:.2f} ms per e-mail; plain HTTP clients on as many "
        f"connections {raw:,.0f}/s ({raw / ideal:.2f} of ideal), worker/plain {rate / raw:.2f}"
    )


if __name__ == "__main__":
    main()
