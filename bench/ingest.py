"""Benchmark: like events per second from Kafka into PostgreSQL through the Faust worker.

Each run produces N like events over K (user, content) keys to a fresh topic, then measures
  * produce: the raw produce rate (confluent-kafka, idempotent),
  * plain consumer: a confluent-kafka consumer doing the same ingest per 1,000-event batch
    (`apply_batch`: decode + pre-aggregated INSERT ... ON CONFLICT + offsets),
  * Faust floor: a Faust agent that takes the same batches of raw bytes and does nothing
    (bench/faust_floor.py): the ceiling of any Faust agent on this machine,
  * worker: `notify worker` as a subprocess, from its first applied event to its last
    (start-up and group join excluded), read from its stream_offsets rows.
Rates come with the CPU each process spent per event; the worker's rate with its ratio to the
references measured in the same run; medians over the runs, for each key count.

    .venv/bin/python bench/ingest.py --events 200000 --keys 300,100000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_bench"
os.environ.setdefault("DEV_MODE", "true")  # the local stack, on its placeholder secrets
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", BENCH_DB)
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.config import REPO_ROOT, get_settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.kafka.admin import ensure_topics  # noqa: E402
from app.kafka.connection import client_config  # noqa: E402
from app.stream.ingest import apply_batch  # noqa: E402
from bench import profiles  # noqa: E402
from bench.digest import ensure_database  # noqa: E402
from bench.profiles import cpu_seconds  # noqa: E402
from harness.kafka import record_of  # noqa: E402
from harness.waiting import free_port  # noqa: E402


def own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def produce(topic: str, n: int, keys: int) -> float:
    """Produce n like events over `keys` (user, content) keys; return events/s."""
    producer = Producer(
        {
            **client_config(get_settings()),
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
        }
    )
    pairs = [(str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(keys)]
    values = [
        (
            u,
            json.dumps(
                {"user_id": u, "periodicity": "daily", "content_id": c, "content_value": "nice"}
            ).encode(),
        )
        for u, c in pairs
    ]
    started = time.perf_counter()
    for i in range(n):
        key, value = values[i % keys]
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0
    return n / (time.perf_counter() - started)


def baseline(topic: str, n: int, group: str) -> tuple[float, float]:
    """A plain consumer applying 1,000-event batches with the same ingest flow.

    Returns events/s and this process's CPU seconds per event.
    """
    consumer = Consumer(
        {
            **client_config(get_settings()),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    done, started = 0, None
    while done < n:
        messages = [m for m in consumer.consume(1000, timeout=1.0) if not m.error()]
        if not messages:
            continue
        if started is None:
            started, cpu_started = time.perf_counter(), own_cpu()
        records = [record_of(m) for m in messages]
        apply_batch("comment_liked", records, group_id=group, max_bytes=65536)
        consumer.commit(asynchronous=True)
        done += len(messages)
    assert started is not None  # n > 0: a batch was taken
    elapsed = time.perf_counter() - started
    cpu = own_cpu() - cpu_started
    consumer.close()
    return n / elapsed, cpu / n


def forget(group: str) -> None:
    """Drop a group's stored offsets, so the next group applies the topic as a fresh consumer
    (the stream refuses to start a group over a partition another group applied)."""
    with session_scope() as session:
        session.execute(text("DELETE FROM stream_offsets WHERE group_id = :g"), {"g": group})


def applied(group: str) -> int:
    with session_scope() as session:
        return int(
            session.execute(
                text(
                    'SELECT coalesce(sum("offset" + 1), 0) FROM stream_offsets WHERE group_id = :g'
                ),
                {"g": group},
            ).scalar_one()
        )


def floor(prefix: str, topic: str, n: int, tmp: Path) -> tuple[float, float]:
    """Run the trivial Faust agent over the events; events/s and its CPU seconds per event."""
    out = tmp / f"{prefix}.floor"
    env = {
        **os.environ,
        "FLOOR_APP_ID": f"{prefix}-floor",
        "FLOOR_TOPIC": topic,
        "FLOOR_OUT": str(out),
        "FLOOR_DATA_DIR": str(tmp / f"{prefix}-floor"),
        "KAFKA_BOOTSTRAP_SERVERS": get_settings().kafka_bootstrap_servers,
    }
    argv = [
        str(Path(sys.executable).parent / "faust"),
        "-A",
        "bench.faust_floor",
        "worker",
        "--web-port",
        str(free_port()),
        "--loglevel",
        "info",
    ]
    with (tmp / f"{prefix}-floor.log").open("wb") as log:
        proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 600
        first = None
        while time.monotonic() < deadline and proc.poll() is None:
            lines = out.read_text().split() if out.exists() else []
            if lines and first is None:
                first = (float(lines[0]), int(lines[1]), cpu_seconds(proc.pid))
            if lines and int(lines[-1]) >= n:
                assert first is not None
                rate = (n - first[1]) / (float(lines[-2]) - first[0])
                return rate, (cpu_seconds(proc.pid) - first[2]) / (n - first[1])
            time.sleep(0.05)
        raise RuntimeError(f"the Faust floor did not finish; see {tmp / f'{prefix}-floor.log'}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def worker(
    prefix: str, topic: str, n: int, tmp: Path, profile: Path | None = None
) -> tuple[float, float]:
    """Run `notify worker` over the produced events, from first to last applied.

    Returns events/s and the worker process's CPU seconds per event.
    """
    env = {
        **os.environ,
        "TOPIC_COMMENT_LIKED": topic,
        "FAUST_APP_ID": prefix,
        "TOPIC_USER_REGISTERED": f"{prefix}.reg",
        "TOPIC_MAILING": f"{prefix}.mail",
        "TOPIC_DEAD_LETTER": f"{prefix}.dlq",
        "FAUST_SESSION_TIMEOUT_S": "6",
    }
    with (tmp / f"{prefix}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "notify"),
                "worker",
                "--web-port",
                str(free_port()),
                "--data-dir",
                str(tmp / prefix),
                "--loglevel",
                "info",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 600
        first = None
        while time.monotonic() < deadline and proc.poll() is None:
            done = applied(prefix)
            if first is None and done:
                first = (time.perf_counter(), done, cpu_seconds(proc.pid))
                if profile is not None:
                    spy = profiles.start(proc.pid, 15, profile)
            if done >= n:
                assert first is not None
                cpu = (cpu_seconds(proc.pid) - first[2]) / (n - first[1])
                if profile is not None:
                    spy.wait(60)
                    print(profiles.summarize(profile, top=25), flush=True)
                return (n - first[1]) / (time.perf_counter() - first[0]), cpu
            time.sleep(0.05)
        raise RuntimeError(f"worker did not finish; see {tmp / f'{prefix}.log'}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def run(n: int, keys: int, tmp: Path, profile: Path | None = None) -> dict[str, float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.likes"
    ensure_topics(get_settings(), [topic], partitions=get_settings().topic_partitions)
    try:
        if profile is not None:  # a run of its own: only the worker, sampled
            produce(topic, n, keys)
            worker(prefix, topic, n, tmp, profile)
            return {}
        result = {"produce": produce(topic, n, keys)}
        result["baseline"], result["baseline_cpu"] = baseline(topic, n, f"{prefix}-baseline")
        forget(f"{prefix}-baseline")
        result["floor"], result["floor_cpu"] = floor(prefix, topic, n, tmp)
        result["worker"], result["worker_cpu"] = worker(prefix, topic, n, tmp)
        return result
    finally:
        admin = AdminClient(client_config(get_settings()))
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        admin.delete_topics(ours)


def report(runs: list[dict[str, float]], events: int, keys: int) -> None:
    def med(name: str) -> float:
        return statistics.median(r[name] for r in runs)

    def ratio(name: str) -> float:
        return statistics.median(r["worker"] / r[name] for r in runs)

    print(f"median of {len(runs)} runs, {events:,} like events over {keys:,} keys:")
    print(
        f"  worker into PostgreSQL   {med('worker'):>9,.0f} events/s  "
        f"CPU {1e6 * med('worker_cpu'):>5.0f} us/event"
    )
    print(
        f"  Faust floor (no work)    {med('floor'):>9,.0f} events/s  "
        f"CPU {1e6 * med('floor_cpu'):>5.0f} us/event  worker ratio {ratio('floor'):.2f}"
    )
    print(
        f"  plain consumer, same code{med('baseline'):>9,.0f} events/s  "
        f"CPU {1e6 * med('baseline_cpu'):>5.0f} us/event  worker ratio {ratio('baseline'):.2f}"
    )
    print(
        f"  raw produce              {med('produce'):>9,.0f} events/s  "
        f"                   worker ratio {ratio('produce'):.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", default="300,100000", help="(user, content) keys, comma list")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy the worker of one extra run")
    parser.add_argument("--profile-keys", type=int, default=100_000)
    args = parser.parse_args()
    ensure_database(get_settings().database_url)
    migrate.upgrade("heads", get_settings().database_url)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        if args.profile:
            run(args.events, args.profile_keys, Path(tmp), args.profile)
        for keys in (int(k) for k in args.keys.split(",")):
            runs = []
            for i in range(args.runs):
                r = run(args.events, keys, Path(tmp))
                runs.append(r)
                print(
                    f"{keys:,} keys, run {i + 1}: produce {r['produce']:,.0f}/s  plain consumer "
                    f"{r['baseline']:,.0f}/s  Faust floor {r['floor']:,.0f}/s  worker "
                    f"{r['worker']:,.0f}/s ({1e6 * r['worker_cpu']:.0f} us CPU/event)  "
                    f"worker/floor {r['worker'] / r['floor']:.2f}",
                    flush=True,
                )
            report(runs, args.events, keys)


if __name__ == "__main__":
    main()
