"""Benchmark: a daily run planned in shards by N real jobs worker processes.

Each run seeds `--rows` due daily rows (bench/digest.py's mix, its own database notify_bench),
cuts the run into shards (`--shard-rows`, so that every worker has several), publishes one
planning task per shard as the daily job does, and waits until every shard is done. Printed per
run: rows/s from the run's start to its last shard, and the jobs workers' CPU per row (planning,
with its Auth lookups and rendering, plus the dispatch of whatever is due at once).

The floor is the same run with one worker: `--workers 1,2` prints the ratio of two workers to
one, measured in the same invocation.

    .venv/bin/python bench/planning.py --rows 50000 --workers 1,2 --runs 3
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_bench"
os.environ.setdefault("DEV_MODE", "true")  # the local stack, on its placeholder secrets
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", BENCH_DB)
sys.path.insert(0, str(REPO))

from kombu.connection import Connection  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.core.clock import utcnow  # noqa: E402
from app.db.models import PlanningShard  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.jobs import digests  # noqa: E402
from app.jobs.celery_app import EMAILS_QUEUE, JOBS_QUEUE, celery_app  # noqa: E402
from app.jobs.handoff import request_plan_shards  # noqa: E402
from bench import profiles  # noqa: E402
from bench.digest import prepare, reset  # noqa: E402
from bench.profiles import cpu_seconds  # noqa: E402
from harness.waiting import wait_for  # noqa: E402


def purge(broker: str) -> None:
    with Connection(broker) as conn:
        channel = conn.default_channel
        for queue in (JOBS_QUEUE, EMAILS_QUEUE):
            try:
                channel.queue_purge(queue)
            except Exception:  # noqa: BLE001 - a queue not declared yet holds nothing
                channel = conn.channel()


def start_workers(count: int, env: dict[str, str], logs: Path) -> list[subprocess.Popen[bytes]]:
    workers = []
    for i in range(count):
        log_path = logs / f"jobs-{i}.log"
        log = log_path.open("ab")
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "app.cli",
                    "jobs-worker",
                    "--name",
                    f"bench-jobs-{i}-{uuid.uuid4().hex[:6]}@%h",
                    "--loglevel",
                    "INFO",
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log.close()
    for i, worker in enumerate(workers):
        path = logs / f"jobs-{i}.log"

        def ready(worker: subprocess.Popen[bytes] = worker, path: Path = path) -> bool:
            assert worker.poll() is None, path.read_text()[-2000:]
            return b" ready." in path.read_bytes()

        wait_for(ready, timeout=60, what="a jobs worker")
    return workers


def start_daily_run(*, timeout: float, every: float) -> tuple[int, int]:
    """Start a daily run as the daily task does; wait for every shard; (rows picked, shards)."""
    settings = get_settings()
    run_id, shards = digests.start_run("daily", settings=settings, now=utcnow())
    request_plan_shards(celery_app, "daily", run_id, shards)

    def finished() -> int | None:
        with session_scope() as session:
            done, picked = session.execute(
                select(
                    func.count().filter(PlanningShard.status.in_(("done", "failed"))),
                    func.coalesce(func.sum(PlanningShard.picked), 0),
                ).where(PlanningShard.run_id == run_id)
            ).one()
        return int(picked) if done == shards else None

    picked = wait_for(finished, timeout=timeout, what="every shard planned", every=every)
    return int(picked), shards


def run_once(
    rows: int,
    users: list[dict[str, Any]],
    workers: list[subprocess.Popen[bytes]],
    profile: Path | None = None,
) -> dict[str, float]:
    settings = get_settings()
    reset(rows, users)
    purge(settings.celery_broker_url)
    cpu_before = sum(cpu_seconds(w.pid) for w in workers)
    # The sampler stops itself; a run of its own, as its CPU must not count in measured runs.
    spy = profiles.start(workers[0].pid, 60, profile, subprocesses=True) if profile else None
    started = time.monotonic()
    picked, shards = start_daily_run(timeout=1800, every=0.05)
    wall = time.monotonic() - started
    if spy is not None and profile is not None:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
        spy.wait(30)
        print(profiles.summarize(profile, top=30))
    cpu = sum(cpu_seconds(w.pid) for w in workers) - cpu_before
    purge(settings.celery_broker_url)
    if picked != rows:
        raise RuntimeError(f"planned {picked} of {rows} rows")
    return {"rate": rows / wall, "cpu_us": 1e6 * cpu / rows, "shards": shards}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, e.g. 1,2")
    parser.add_argument("--shard-rows", type=int, help="rows per shard (default: rows / 8)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--profile", type=Path, help="py-spy one extra run of the first worker count into this file"
    )
    args = parser.parse_args()

    settings = get_settings()
    users, server, port = prepare(args.users)
    token = settings.auth_api_token.get_secret_value()
    shard_rows = args.shard_rows or max(1, args.rows // 8)
    os.environ["PLAN_SHARD_ROWS"] = str(shard_rows)
    get_settings.cache_clear()
    env = {
        **os.environ,
        "AUTH_API_URL": f"http://127.0.0.1:{port}",
        "AUTH_API_TOKEN": token,
        "PLAN_SHARD_ROWS": str(shard_rows),
        "METRICS_PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    medians: dict[int, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-planning-") as tmp:
            for count in [int(n) for n in args.workers.split(",")]:
                workers = start_workers(count, env, Path(tmp))
                try:
                    if args.profile and count == int(args.workers.split(",")[0]):
                        run_once(args.rows, users, workers, args.profile)
                    results = []
                    for run in range(1, args.runs + 1):
                        result = run_once(args.rows, users, workers)
                        results.append(result)
                        print(
                            f"{count} worker(s), run {run}: {args.rows} rows in "
                            f"{result['shards']} shards, {result['rate']:,.0f} rows/s, "
                            f"jobs workers' CPU {result['cpu_us']:.0f} µs/row",
                            flush=True,
                        )
                finally:
                    for worker in workers:
                        worker.kill()
                        worker.wait(10)
                medians[count] = statistics.median(r["rate"] for r in results)
                cpu = statistics.median(r["cpu_us"] for r in results)
                print(
                    f"{count} worker(s), median of {args.runs}: {medians[count]:,.0f} rows/s, "
                    f"{cpu:.0f} µs CPU/row",
                    flush=True,
                )
    finally:
        server.terminate()
        server.wait(10)
    counts = sorted(medians)
    if len(counts) > 1:
        print(
            f"{counts[-1]} workers / {counts[0]}: "
            f"{medians[counts[-1]] / medians[counts[0]]:.2f}x (same invocation)"
        )


if __name__ == "__main__":
    main()
