"""Benchmark: the portal's user timeline and dashboard on a large database (1,000,000
deliveries by default).

Seeds its own database (notify_bench) in bulk with SQL: notifications of 100,000 users, four
deliveries each (sent, delivered, skipped, failed, with reasons), due over the last 96 hours
(so a quarter of them fall in the dashboard's 24 h), a received event per delivery, provider
events for the delivered ones, and one heavy user with thousands of rows. Then signs in to a
portal app in-process and times, per request (medians of `--requests`):

- the floor, measured in the same run: GET /login, a page through the same middleware stack
  and template layout that reads nothing from the database;
- GET /admin/users/<id> for random users, and for the heavy user;
- GET /admin/users?q=<address> (search by e-mail, then the redirect to the timeline);
- GET /admin/api/dashboard and GET /admin/ (the dashboard's figures, and the page drawn with
  them), with the Kafka / RabbitMQ / metrics probes cached as configured (5 s), and the API
  again with every probe read on each request.

    .venv/bin/python bench/portal_pages.py --deliveries 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_bench"
os.environ.setdefault("DEV_MODE", "true")  # the local stack, on its placeholder secrets
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", BENCH_DB)
sys.path.insert(0, str(REPO))

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.admin_users import create_or_replace  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.portal.app import create_app  # noqa: E402
from app.portal.auth import hash_password  # noqa: E402
from app.portal.template_files import load_default_templates  # noqa: E402

USERS = 100_000
DELIVERIES_PER_NOTIFICATION = 4
HEAVY_NOTIFICATIONS = 2_000  # the heavy user: 8,000 deliveries, 8,000 events
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')

SEED = [
    # Messages and notifications: user i % USERS, likes and mailings, one content id each.
    """
    INSERT INTO messages (message_id, content_id, content_value, template_id)
    SELECT md5('m' || i)::uuid, md5('c' || i)::uuid, 'Comment ' || i, :template_id
    FROM generate_series(1, :notifications) AS i
    """,
    """
    INSERT INTO notifications (notification_id, user_id, message_id, periodicity, status, kind,
                               content_id, like_count, last_update, created_at)
    SELECT md5('n' || i)::uuid,
           CASE WHEN i <= :heavy THEN md5('heavy')::uuid ELSE md5('u' || (i % :users))::uuid END,
           md5('m' || i)::uuid, 'daily', 'sent',
           CASE WHEN i % 2 = 0 THEN 'likes' ELSE 'mailing' END,
           md5('c' || i)::uuid, i % 7, now(), now() - interval '30 days'
    FROM generate_series(1, :notifications) AS i
    """,
    """
    INSERT INTO deliveries (delivery_id, notification_id, period_key, send_at, send_reason, status,
                            email, error, backend, provider_message_id, attempts, created_at,
                            sent_at, updated_at)
    SELECT md5('d' || i || '-' || k)::uuid, md5('n' || i)::uuid,
           to_char(date '2026-11-01' + k, 'YYYY-MM-DD'),
           now() - ((i * :per + k) % 96) * interval '1 hour',
           'daily digest at the send hour 09:00 in Europe/Berlin',
           (ARRAY['sent', 'delivered', 'skipped', 'failed'])[1 + (i + k) % 4],
           CASE WHEN i <= :heavy THEN 'heavy@example.com'
                ELSE 'user' || (i % :users) || '@example.com' END,
           CASE (i + k) % 4 WHEN 2 THEN 'mailing disabled'
                            WHEN 3 THEN 'SendGrid 400: invalid address' END,
           'sendgrid', 'sg-' || i || '-' || k, 1,
           timestamptz '2026-11-01 00:05+00' + k * interval '1 day',
           CASE WHEN (i + k) % 4 < 2
                THEN timestamptz '2026-11-01 09:00+00' + k * interval '1 day' END,
           timestamptz '2026-11-01 09:00+00' + k * interval '1 day'
    FROM generate_series(1, :notifications) AS i, generate_series(0, :per - 1) AS k
    """,
    """
    INSERT INTO delivery_events (delivery_id, status, at)
    SELECT md5('d' || i || '-' || k)::uuid, 'delivered',
           timestamptz '2026-11-01 09:01+00' + k * interval '1 day'
    FROM generate_series(1, :notifications) AS i, generate_series(0, :per - 1) AS k
    WHERE (i + k) % 4 = 1
    """,
    """
    INSERT INTO received_events (user_id, kind, topic, partition, "offset", content_id,
                                 periodicity, received_at)
    SELECT CASE WHEN i <= :heavy THEN md5('heavy')::uuid ELSE md5('u' || (i % :users))::uuid END,
           'comment_liked', 'ugc.comment_liked', i % 4, i * :per + k, md5('c' || i)::uuid, 'daily',
           timestamptz '2026-10-31 12:00+00' + k * interval '1 day'
    FROM generate_series(1, :notifications) AS i, generate_series(0, :per - 1) AS k
    """,
]


def ensure_database(url: str) -> None:
    admin = create_engine(url.rsplit("/", 1)[0] + "/notify", isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def seed(deliveries: int) -> None:
    notifications = deliveries // DELIVERIES_PER_NOTIFICATION
    started = time.perf_counter()
    with session_scope() as session:
        session.execute(
            text(
                "TRUNCATE deliveries, delivery_events, notifications, messages, received_events,"
                " dead_letters, opt_outs CASCADE"
            )
        )
        templates = load_default_templates(session=session)
        template_id = session.execute(
            text("SELECT template_id FROM templates WHERE name = 'likes_digest'")
        ).scalar_one()
        params = {
            "template_id": template_id,
            "notifications": notifications,
            "users": USERS,
            "heavy": HEAVY_NOTIFICATIONS,
            "per": DELIVERIES_PER_NOTIFICATION,
        }
        for statement in SEED:
            session.execute(text(statement), params)
    with session_scope() as session:
        session.execute(text("ANALYZE"))
        counts = {
            table: session.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()  # noqa: S608
            for table in ("notifications", "deliveries", "delivery_events", "received_events")
        }
    print(
        f"seeded in {time.perf_counter() - started:.0f} s ({len(templates)} templates): "
        + ", ".join(f"{table} {count:,}" for table, count in counts.items())
    )


USERNAME, PASSWORD = "bench-admin", "bench-passw0rd"


def create_portal_user() -> None:
    # Once: a new password ends the user's sessions, those of a client signed in before too.
    with session_scope() as session:
        create_or_replace(
            session=session, username=USERNAME, password_hash=hash_password(PASSWORD), role="admin"
        )


def signed_in_client(probe_cache_s: float | None = None) -> TestClient:
    settings = get_settings()
    if probe_cache_s is not None:
        settings = settings.model_copy(update={"dashboard_probe_cache_s": probe_cache_s})
    client = TestClient(create_app(settings))
    client.__enter__()
    token = _TOKEN.search(client.get("/login").text)
    assert token, "no CSRF token on /login"
    form = {"username": USERNAME, "password": PASSWORD, "csrf_token": token.group(1)}
    response = client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 303, response.text[:300]
    return client


def timed_ms(client: TestClient, path: str, expect: int = 200) -> float:
    started = time.perf_counter()
    response = client.get(path, follow_redirects=True)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == expect, (path, response.status_code, response.text[:300])
    return elapsed


def user_ids(sample: int) -> list[str]:
    with session_scope() as session:
        rows = session.execute(
            text(
                "SELECT md5('u' || i)::uuid AS user_id FROM"
                " (SELECT (random() * :users)::int AS i FROM generate_series(1, :n)) AS s"
            ),
            {"users": USERS - 1, "n": sample},
        )
        return [str(row.user_id) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50, help="requests per figure and run")
    parser.add_argument("--no-seed", action="store_true", help="reuse the database as it is")
    args = parser.parse_args()

    ensure_database(os.environ["DATABASE_URL"])
    migrate.upgrade("heads", os.environ["DATABASE_URL"])
    if not args.no_seed:
        seed(args.deliveries)
    create_portal_user()
    client = signed_in_client()
    uncached = signed_in_client(probe_cache_s=0)
    heavy = "/admin/users/" + str(
        session_scope_scalar("SELECT md5('heavy')::uuid")  # the user with thousands of rows
    )
    figures: dict[str, list[float]] = {
        name: [] for name in ("floor", "timeline", "heavy", "search", "dashboard", "home", "cold")
    }
    for run in range(1, args.runs + 1):
        ids = user_ids(args.requests)
        samples = {
            "floor": [timed_ms(client, "/login") for _ in range(args.requests)],
            "timeline": [timed_ms(client, f"/admin/users/{uid}") for uid in ids],
            "heavy": [timed_ms(client, heavy) for _ in range(max(5, args.requests // 5))],
            "search": [
                timed_ms(client, f"/admin/users?q=user{random.randrange(USERS)}@example.com")
                for _ in range(args.requests)
            ],
            "dashboard": [timed_ms(client, "/admin/api/dashboard") for _ in range(args.requests)],
            "home": [timed_ms(client, "/admin/") for _ in range(args.requests)],
            "cold": [
                timed_ms(uncached, "/admin/api/dashboard")
                for _ in range(max(5, args.requests // 5))
            ],
        }
        medians = {name: statistics.median(values) for name, values in samples.items()}
        for name, value in medians.items():
            figures[name].append(value)
        print(
            f"run {run}: "
            + ", ".join(f"{name} p50 {value:.1f} ms" for name, value in medians.items())
            + f"; timeline p95 {statistics.quantiles(samples['timeline'], n=20)[-1]:.1f} ms"
        )
    floor = statistics.median(figures["floor"])
    print(f"\nmedians of {args.runs} runs ({args.deliveries:,} deliveries):")
    for name, values in figures.items():
        value = statistics.median(values)
        print(f"  {name:<9} {value:7.1f} ms   {value / floor:5.1f}x the floor")
    for each in (client, uncached):
        each.__exit__(None, None, None)


def session_scope_scalar(sql: str) -> object:
    with session_scope() as session:
        return session.execute(text(sql)).scalar_one()


if __name__ == "__main__":
    main()
