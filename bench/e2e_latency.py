"""Benchmark: registration events at a fixed rate -> welcome e-mail at the (fake) SendGrid.

Every process of the service runs as its own OS process (harness/pipeline.py), on its own
topics and the notify_bench database. Latency is from the produce call to the provider call.
Baseline, measured in the same run at the same rate: a bare Kafka round trip (produce -> a plain
confluent-kafka consumer), the floor any Kafka-fed pipeline sits on.

    .venv/bin/python bench/e2e_latency.py --rate 200 --seconds 30
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("DEV_MODE", "true")  # the local stack, on its placeholder secrets
os.environ["DATABASE_URL"] = os.environ.get(
    "BENCH_DATABASE_URL", "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_bench"
)
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.auth.dev_server import generate_users  # noqa: E402
from app.config import get_settings  # noqa: E402
from app.contracts import Event, encode_event  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.kafka.admin import ensure_topics  # noqa: E402
from app.kafka.connection import client_config  # noqa: E402
from app.kafka.producer import make_producer  # noqa: E402
from app.portal.template_files import load_default_templates  # noqa: E402
from bench import profiles  # noqa: E402
from bench.digest import ensure_database  # noqa: E402
from bench.profiles import service_cpu_seconds, tree_cpu_seconds  # noqa: E402
from harness.fakes.sendgrid import FakeSendGrid  # noqa: E402
from harness.pipeline import Pipeline  # noqa: E402
from harness.waiting import wait_for  # noqa: E402


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": ordered[-1]}


def paced(rate: float, count: int):
    """Yield i at `rate` per second (absolute schedule: no drift)."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield i


def kafka_round_trip(rate: float, seconds: float) -> list[float]:
    """Latencies of a bare produce -> consume round trip at the same rate."""
    settings = get_settings()
    topic = f"bench.rtt.{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, [topic], partitions=4)
    consumer = Consumer(
        {
            **client_config(settings),
            "group.id": topic,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    count = int(rate * seconds)
    sent: dict[bytes, float] = {}
    latencies: list[float] = []

    def consume() -> None:
        deadline = time.monotonic() + seconds + 30
        while len(latencies) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.1)
            if msg is not None and not msg.error():
                value = msg.value()
                assert value is not None  # each of the bench's messages has one
                latencies.append(time.time() - sent[value])

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(3)  # let the consumer join before the clock starts
    producer = make_producer(settings)
    for i in paced(rate, count):
        value = str(i).encode()
        sent[value] = time.time()
        producer.produce(topic, value=value)
        producer.poll(0)
    producer.flush(30)
    reader.join()
    consumer.close()
    return latencies


SERVICES = {"kafka": "kafka.Kafka", "postgresql": "postgres", "rabbitmq": "beam.smp"}


def cpu_snapshot(pipeline: Pipeline) -> dict[str, float]:
    """CPU seconds so far of each pipeline process, each service, and this process (producer and
    fake SendGrid)."""
    snapshot = {
        name: tree_cpu_seconds(p.proc.pid) for name, p in pipeline.processes.items() if p.proc
    }
    snapshot.update(service_cpu_seconds(SERVICES))
    own = os.times()
    snapshot["bench (producer, fake SendGrid)"] = own.user + own.system
    return snapshot


# A service that has run for a while: welcome mail already sent, its rows in every table a
# registration touches.
_HISTORY = text(
    """
    WITH m AS (
        INSERT INTO messages (message_id, content_value, template_id)
        SELECT gen_random_uuid(), 'https://x.example/c?t=0', t.template_id
          FROM generate_series(1, :rows),
               (SELECT template_id FROM templates WHERE name = 'welcome') AS t
        RETURNING message_id
    ), n AS (
        INSERT INTO notifications
               (notification_id, user_id, message_id, periodicity, kind, status, last_update)
        SELECT gen_random_uuid(), gen_random_uuid(), message_id, 'once', 'welcome', 'sent', now()
          FROM m
        RETURNING notification_id
    ), d AS (
        INSERT INTO deliveries
               (delivery_id, notification_id, period_key, send_at, status, email, sent_at)
        SELECT gen_random_uuid(), notification_id, 'once', now(), 'sent',
               'past-' || notification_id || '@example.com', now()
          FROM n
        RETURNING delivery_id
    )
    INSERT INTO delivery_contents (delivery_id, subject, body_html, body_text, headers)
    SELECT delivery_id, 'Welcome', repeat('<p>x</p>', 150), repeat('x', 600), '{}' FROM d
    """
)


def reset_database(history: int) -> None:
    """Empty tables, then `history` welcome mails already sent, and fresh statistics.

    Not empty tables alone: PostgreSQL plans for a table's size when it plans, and a plan kept
    for a whole run (a foreign key's check, a prepared statement) that was made while a table
    was empty scans it whole on every use as it fills. No deployment runs on empty tables, and
    runs that started on them measured that warm-up, not the service: from one run to the next
    PostgreSQL spent 0.6 or 1.2 ms per mail.
    """
    settings = get_settings()
    ensure_database(settings.database_url)
    migrate.upgrade("heads", settings.database_url)
    with session_scope() as session:
        session.execute(
            text(
                "TRUNCATE deliveries, notifications, messages, campaign_recipients,"
                " campaigns, opt_outs, stream_offsets CASCADE"
            )
        )
        load_default_templates(session=session)
        if history:
            session.execute(_HISTORY, {"rows": history})
    with session_scope() as session:
        session.execute(text("ANALYZE"))


STEPS = (
    "produce -> notification row (stream)",
    "notification row -> delivery row (send_now: queue, Auth, plan)",
    "delivery row -> provider call (queue, e-mail worker)",
)


def step_latencies(sent: dict[str, float], provider_at: dict[str, float]) -> dict[str, list[float]]:
    """Each registration's time in each step, from the timestamps its rows were written with.

    Both are PostgreSQL's now(), the start of the transaction that wrote the row, on the same
    clock as the bench's (one machine).
    """
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT d.email, extract(epoch FROM n.created_at), extract(epoch FROM d.created_at)"
                " FROM notifications n JOIN deliveries d USING (notification_id)"
            )
        ).all()
    steps: dict[str, list[float]] = {step: [] for step in STEPS}
    for email, stream_at, planned_at in rows:
        if email not in sent or email not in provider_at:
            continue
        marks = (sent[email], float(stream_at), float(planned_at), provider_at[email])
        for step, (start, end) in zip(STEPS, itertools.pairwise(marks), strict=True):
            steps[step].append(end - start)
    return steps


# The processes of ours a profile samples (py-spy, children included), by pipeline name.
PROFILED = ("stream", "jobs", "emails")


def start_profiles(
    pipeline: Pipeline, seconds: float, into: Path
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Sample each of our processes for `seconds` (the run, not its start or drain): each
    sampler with the file it writes."""
    spies = []
    for name in PROFILED:
        process = pipeline.processes.get(name)
        if process is not None and process.proc is not None:
            path = into / f"e2e-{name}.collapsed"
            spies.append((profiles.start(process.proc.pid, seconds, path, subprocesses=True), path))
    return spies


def pipeline_latencies(
    rate: float, seconds: float, tmp: Path, email_processes: int = 1, profile: Path | None = None
) -> tuple[list[float], dict[str, list[float]], dict[str, float], float]:
    """Latencies, per-step latencies, CPU seconds per process over the run, and its wall time.

    `profile`: a folder for py-spy profiles of our processes over the run (they cost CPU, so
    the figures of a profiled run are not comparable with an unprofiled one).
    """
    settings = get_settings()
    count = int(rate * seconds)
    users = generate_users(count, seed=23)
    users_file = tmp / "users.json"
    users_file.write_text(json.dumps(users))
    sendgrid = FakeSendGrid().start()
    pipeline = Pipeline(
        settings,
        tmp,
        users_file,
        sendgrid.url,
        sendgrid.api_key,
        email_processes=email_processes,
    )
    sent: dict[str, float] = {}
    try:
        pipeline.start()
        cpu_before, started = cpu_snapshot(pipeline), time.monotonic()
        spies = start_profiles(pipeline, seconds, profile) if profile is not None else []
        producer = make_producer(settings, **{"linger.ms": 0})
        topic = pipeline.topics["user_registered"]
        for i in paced(rate, count):
            user = users[i]
            event = Event(uuid.UUID(user["user_id"]), "once", None, "https://x.example/c?t=1")
            sent[user["email"]] = time.time()
            producer.produce(topic, key=user["user_id"].encode(), value=encode_event(event))
            producer.poll(0)
        producer.flush(30)
        wait_for(
            lambda: len(sendgrid.accepted()) >= count,
            timeout=300,
            every=0.5,
            what=f"{count} e-mails at the fake SendGrid",
        )
        wall = time.monotonic() - started
        cpu_after = cpu_snapshot(pipeline)
        for spy, path in spies:
            spy.wait(60)
            print(profiles.summarize(path, top=25), "\n")
        cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
        provider_at: dict[str, float] = {}
        for r in sendgrid.accepted():
            assert r.body is not None  # accepted: a JSON object, kept whole
            provider_at[r.body["personalizations"][0]["to"][0]["email"]] = r.at
        latencies = [at - sent[email] for email, at in provider_at.items()]
        return latencies, step_latencies(sent, provider_at), cpu, wall
    finally:
        pipeline.stop()
        sendgrid.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--email-processes",
        type=int,
        default=2,
        help="e-mail worker processes, 16 threads each (2, as the Procfile runs them)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="a folder for py-spy profiles of the stream, jobs and first e-mail worker",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=100_000,
        help="welcome mails already sent before the run (rows in every table it writes)",
    )
    args = parser.parse_args()
    reset_database(args.history)
    with tempfile.TemporaryDirectory(prefix="e2e-latency-") as tmp:
        latencies, steps, cpu, wall = pipeline_latencies(
            args.rate, args.seconds, Path(tmp), args.email_processes, args.profile
        )
    floor = kafka_round_trip(args.rate, min(args.seconds, 10))
    pipe, base = percentiles(latencies), percentiles(floor)
    print(
        f"{len(latencies)} registrations at {args.rate:.0f}/s for {args.seconds:.0f} s -> "
        f"welcome e-mail at the provider (produce -> provider call):"
    )
    print("  " + ", ".join(f"{k} {v * 1000:,.0f} ms" for k, v in pipe.items()))
    print("by step (p50, p99):")
    for step, values in steps.items():
        shares = percentiles(values)
        print(f"  {step:66} {shares['p50'] * 1000:7,.0f} ms {shares['p99'] * 1000:7,.0f} ms")
    print(f"baseline, bare Kafka round trip at the same rate ({len(floor)} messages):")
    print("  " + ", ".join(f"{k} {v * 1000:,.1f} ms" for k, v in base.items()))
    print(
        f"ratio pipeline/Kafka at p50: {pipe['p50'] / base['p50']:.0f}x, "
        f"mean pipeline {statistics.mean(latencies) * 1000:,.0f} ms"
    )
    print(
        f"CPU from the first event to the last e-mail ({wall:.0f} s wall, 2 cores = "
        f"{2 * wall:.0f} CPU-s available), per e-mail:"
    )
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        print(f"  {name:32} {seconds:6.1f} CPU-s  {seconds / len(latencies) * 1000:5.2f} ms")
    total = sum(cpu.values())
    print(f"  {'total':32} {total:6.1f} CPU-s  {total / len(latencies) * 1000:5.2f} ms")


if __name__ == "__main__":
    main()
