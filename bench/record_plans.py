"""Benchmark: recording planned deliveries (`app.db.jobs.record_plans`), the write of planning.

Seeds `--batches` x `--batch` pending notifications (own database, notify_bench), builds one plan
per notification as planning does (a ~1.4 KB rendered mail, its headers), then records the
batches one transaction each and prints our CPU and the wall time per row.

The floor, from the same run: the same rows' bytes written by one plain INSERT over arrays into
a temporary table with no index, no constraint and no conflict handling, i.e. what PostgreSQL
and psycopg2 cost to take the data at all.

    .venv/bin/python bench/record_plans.py --batches 20 --batch 500 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
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

import orjson  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.db import jobs as store  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.portal.template_files import load_default_templates  # noqa: E402
from bench.digest import ensure_database  # noqa: E402
from harness.rows import Spec, insert_notifications  # noqa: E402

BODY_HTML = "<html><body>" + "Hello <b>there</b>, " * 45 + "</body></html>"
BODY_TEXT = "Hello there, " * 40

FLOOR = text(
    """
    INSERT INTO bench_plans
    SELECT * FROM unnest(
        CAST(:ids AS uuid[]), CAST(:notification_ids AS uuid[]), CAST(:send_ats AS timestamptz[]),
        CAST(:emails AS text[]), CAST(:subjects AS text[]), CAST(:htmls AS text[]),
        CAST(:texts AS text[]), CAST(:headers AS jsonb[])
    )
    """
)


def plans_of(ids: list[uuid.UUID], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "notification_id": notification_id,
            "period_key": now.date().isoformat(),
            "send_at": now + timedelta(hours=1),
            "send_reason": "daily digest at the send hour 09:00 in Europe/Berlin",
            "status": "scheduled",
            "email": f"user{i}@example.com",
            "subject": "You have 2 new likes",
            "body_html": BODY_HTML,
            "body_text": BODY_TEXT,
            "headers": {
                "List-Unsubscribe": f"<https://notify.example/u?token={uuid.uuid4().hex * 2}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            },
            "reported_count": 2,
            "error": None,
        }
        for i, notification_id in enumerate(ids)
    ]


def seed(batches: int, size: int, now: datetime) -> list[list[dict[str, Any]]]:
    with session_scope() as session:
        session.execute(text("TRUNCATE deliveries, notifications, messages CASCADE"))
        load_default_templates(session=session)
    seeded = []
    for _ in range(batches):
        specs = [
            Spec(uuid.uuid4(), "likes", "daily", uuid.uuid4(), "x", like_count=2)
            for _ in range(size)
        ]
        with session_scope() as session:
            seeded.append(plans_of(insert_notifications(session, specs), now))
    return seeded


def timed(work: Any) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def record_all(batches: list[list[dict[str, Any]]], now: datetime) -> None:
    for plans in batches:
        with session_scope() as session:
            store.record_plans(session=session, plans=plans, now=now)


def floor_all(batches: list[list[dict[str, Any]]]) -> None:
    with session_scope() as session:
        session.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS bench_plans (id uuid, notification_id uuid,"
                " send_at timestamptz, email text, subject text, body_html text, body_text text,"
                " headers jsonb)"
            )
        )
    for plans in batches:
        with session_scope() as session:
            session.execute(
                FLOOR,
                {
                    "ids": [str(uuid.uuid4()) for _ in plans],
                    "notification_ids": [str(p["notification_id"]) for p in plans],
                    "send_ats": [p["send_at"] for p in plans],
                    "emails": [p["email"] for p in plans],
                    "subjects": [p["subject"] for p in plans],
                    "htmls": [p["body_html"] for p in plans],
                    "texts": [p["body_text"] for p in plans],
                    "headers": [orjson.dumps(p["headers"]).decode() for p in plans],
                },
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    url = get_settings().database_url
    ensure_database(url)
    migrate.upgrade("heads", url)
    rows = args.batches * args.batch
    figures = []
    for run in range(1, args.runs + 1):
        now = datetime.now(UTC)
        batches = seed(args.batches, args.batch, now)
        cpu, wall = timed(lambda b=batches, n=now: record_all(b, n))
        _floor_cpu, floor_wall = timed(lambda b=batches: floor_all(b))
        figures.append((cpu / rows * 1e6, wall / rows * 1e6, floor_wall / rows * 1e6))
        print(
            f"run {run}: {rows} plans in batches of {args.batch}: {figures[-1][0]:.0f} µs CPU/row "
            f"(ours), {figures[-1][1]:.0f} µs wall/row; floor {figures[-1][2]:.0f} µs wall/row"
        )
    cpu, wall, floor = (statistics.median(f[i] for f in figures) for i in range(3))
    print(
        f"median of {args.runs}: {cpu:.0f} µs CPU/row, {wall:.0f} µs wall/row; "
        f"floor {floor:.0f} µs wall/row; ratio wall/floor {wall / floor:.2f}"
    )


if __name__ == "__main__":
    main()
