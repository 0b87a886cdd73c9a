"""Benchmark: like events per second from Kafka into PostgreSQL through the Faust worker.

Each run produces N like events to fresh topics, then measures
  * produce: the raw produce rate (confluent-kafka, idempotent),
  * baseline: a plain confluent-kafka consumer doing the same ingest per 1,000-event batch
    (app.ingest.apply_batch: decode + pre-aggregated INSERT ... ON CONFLICT + offsets),
  * worker: `notify worker` as a subprocess, from its first applied event to its last
    (start-up and group join excluded), read from its stream_offsets rows.
The worker's rate is reported with its ratio to both references; medians over the runs.

    DATABASE_URL=... CELERY_BROKER_URL=... python bench/ingest.py --events 200000 --runs 3
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
sys.path.insert(0, str(REPO))

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.config import REPO_ROOT, get_settings  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.kafka.admin import ensure_topics  # noqa: E402
from app.stream.ingest import Record, apply_batch  # noqa: E402
from harness.waiting import free_port  # noqa: E402


def produce(topic: str, n: int, keys: int) -> float:
    """Produce n like events over `keys` (user, content) keys; return events/s."""
    bootstrap = get_settings().kafka_bootstrap_servers
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
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


def baseline(topic: str, n: int, group: str) -> float:
    """A plain consumer applying 1,000-event batches with the same ingest flow; events/s."""
    consumer = Consumer(
        {
            "bootstrap.servers": get_settings().kafka_bootstrap_servers,
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
        started = started or time.perf_counter()
        records = [
            Record(m.topic(), m.partition(), m.offset(), m.key(), m.value()) for m in messages
        ]
        apply_batch("comment_liked", records, group_id=group, max_bytes=65536)
        consumer.commit(asynchronous=True)
        done += len(messages)
    elapsed = time.perf_counter() - started
    consumer.close()
    return n / elapsed


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


def worker(prefix: str, topic: str, n: int, tmp: Path) -> float:
    """Run `notify worker` over the produced events; events/s from first to last applied."""
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
                first = (time.perf_counter(), done)
            if done >= n:
                return (n - first[1]) / (time.perf_counter() - first[0])
            time.sleep(0.05)
        raise RuntimeError(f"worker did not finish; see {tmp / f'{prefix}.log'}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def run(n: int, keys: int, tmp: Path) -> dict[str, float]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}.likes"
    bootstrap = get_settings().kafka_bootstrap_servers
    ensure_topics(bootstrap, [topic], partitions=get_settings().topic_partitions)
    try:
        result = {"produce": produce(topic, n, keys)}
        result["baseline"] = baseline(topic, n, f"{prefix}-baseline")
        forget(f"{prefix}-baseline")
        result["worker"] = worker(prefix, topic, n, tmp)
        return result
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        ours = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        admin.delete_topics(ours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=300, help="(user, content) keys liked")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for i in range(args.runs):
            r = run(args.events, args.keys, Path(tmp))
            runs.append(r)
            print(
                f"run {i + 1}: produce {r['produce']:,.0f}/s  baseline {r['baseline']:,.0f}/s"
                f"  worker {r['worker']:,.0f}/s"
                f"  worker/baseline {r['worker'] / r['baseline']:.2f}"
                f"  worker/produce {r['worker'] / r['produce']:.2f}",
                flush=True,
            )
    med = {k: statistics.median(r[k] for r in runs) for k in ("produce", "baseline", "worker")}
    ratio_b = statistics.median(r["worker"] / r["baseline"] for r in runs)
    ratio_p = statistics.median(r["worker"] / r["produce"] for r in runs)
    print(f"median of {len(runs)} runs, {args.events:,} like events over {args.keys:,} keys:")
    print(f"  worker into PostgreSQL   {med['worker']:>10,.0f} events/s")
    print(f"  baseline (plain consumer){med['baseline']:>10,.0f} events/s  ratio {ratio_b:.2f}")
    print(f"  raw produce              {med['produce']:>10,.0f} events/s  ratio {ratio_p:.2f}")


if __name__ == "__main__":
    main()
