"""Benchmark: publish a mailing campaign of N recipients (DB read, events, Kafka acks, DB update).

Baseline, measured in the same run: a raw confluent-kafka produce loop of the same (pre-encoded)
messages to the same topic with the same producer settings, then flush, i.e. the transport alone.
Both producers are warmed up first (connections, metadata, idempotent producer id).
Uses its own database (notify_bench, or BENCH_DATABASE_URL) and a topic of its own, deleted after.

    .venv/bin/python bench/campaign.py --recipients 10000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DB = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_bench"
os.environ.setdefault("DEV_MODE", "true")  # the local stack, on its placeholder secrets
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", BENCH_DB)
sys.path.insert(0, str(REPO))

from confluent_kafka.admin import AdminClient  # noqa: E402
from sqlalchemy import create_engine, select, text  # noqa: E402

from app.config import get_settings  # noqa: E402
from app.db import migrate  # noqa: E402
from app.db.models import Template  # noqa: E402
from app.db.session import session_scope  # noqa: E402
from app.domain import campaigns as rules  # noqa: E402
from app.jobs import campaigns  # noqa: E402
from app.kafka.admin import ensure_topics  # noqa: E402
from app.kafka.connection import client_config  # noqa: E402
from app.kafka.producer import make_producer  # noqa: E402
from app.portal.template_files import load_default_templates  # noqa: E402


def ensure_database(url: str) -> None:
    admin = create_engine(url.rsplit("/", 1)[0] + "/notify", isolation_level="AUTOCOMMIT")
    name = url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def prepare() -> uuid.UUID:
    """Migrate, load the default templates; return the `mailing` template's id."""
    migrate.upgrade("heads")
    with session_scope() as session:
        load_default_templates(session=session)
        template_id = session.scalar(select(Template.template_id).where(Template.name == "mailing"))
        assert template_id is not None, "no `mailing` template after loading the defaults"
        return template_id


def warm_producer(topic: str):
    """A producer that already has its connections, metadata and idempotent producer id."""
    producer = make_producer(get_settings())
    producer.produce(topic, value=b"{}", key=b"warm-up")
    assert producer.flush(30) == 0
    return producer


def ours(template_id: uuid.UUID, recipients: int, topic: str) -> tuple[float, uuid.UUID]:
    """Seconds to publish a fresh campaign through the portal's flow."""
    audience = rules.Audience(tuple(uuid.uuid4() for _ in range(recipients)), ())
    draft = rules.Draft("bench", template_id, "Benchmark news " * 10, "weekly")
    campaign = campaigns.create_campaign(draft=draft, audience=audience, created_by="bench")
    producer = warm_producer(topic)
    started = time.perf_counter()
    report = campaigns.publish_campaign(
        campaign_id=campaign.campaign_id, producer=producer, topic=topic
    )
    elapsed = time.perf_counter() - started
    assert (report.delivered, report.failed) == (recipients, 0), report
    return elapsed, campaign.campaign_id


def raw(recipients: int, topic: str) -> float:
    """Seconds for a bare produce loop of the same messages (encoded beforehand), then flush."""
    user_ids = [uuid.uuid4() for _ in range(recipients)]
    messages = list(
        campaigns.mailing_messages(uuid.uuid4(), "weekly", "Benchmark news " * 10, user_ids)
    )
    producer = warm_producer(topic)
    started = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(60)
    elapsed = time.perf_counter() - started
    assert left == 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = get_settings()
    ensure_database(settings.database_url)
    template_id = prepare()
    topic = f"bench.mailing.{uuid.uuid4().hex[:10]}"
    ensure_topics(settings, [topic], partitions=settings.topic_partitions)
    ours_s, raw_s = [], []
    try:
        for run in range(1, args.runs + 1):
            elapsed, campaign_id = ours(template_id, args.recipients, topic)
            ours_s.append(elapsed)
            raw_s.append(raw(args.recipients, topic))
            print(
                f"run {run}: campaign {campaign_id}: {elapsed:.3f} s ours, "
                f"{raw_s[-1]:.3f} s raw produce loop"
            )
    finally:
        AdminClient(client_config(settings)).delete_topics([topic])
    ours_rate = args.recipients / statistics.median(ours_s)
    raw_rate = args.recipients / statistics.median(raw_s)
    print(f"\n{args.recipients:,} recipients, median of {args.runs} runs:")
    print(
        f"  publish_campaign   {ours_rate:>10,.0f} publishes/s  ({statistics.median(ours_s):.3f} s)"
    )
    print(
        f"  raw produce loop   {raw_rate:>10,.0f} messages/s   ({statistics.median(raw_s):.3f} s)"
    )
    print(f"  ratio ours / raw   {ours_rate / raw_rate:.2f}")


if __name__ == "__main__":
    main()
