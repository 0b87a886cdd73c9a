"""A daily run cut into shards, planned by concurrent workers: every due row planned once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from app.config import Settings
from app.db import planning_shards as shard_store
from app.db.models import Delivery, PlanningShard
from app.db.session import session_scope
from app.jobs import digests
from app.jobs.shards import shard_range
from harness.rows import Spec, insert_notifications

NOW = datetime(2026, 11, 25, 0, 5, tzinfo=UTC)


def _seed(users: list[dict[str, Any]], rows: int) -> list[uuid.UUID]:
    """`rows` daily rows that are all due: mailings and likes with something to report."""
    people = [uuid.UUID(u["user_id"]) for u in users]
    specs = [
        Spec(people[i % len(people)], "likes", "daily", uuid.uuid4(), f"c {i}", like_count=2)
        if i % 2
        else Spec(people[i % len(people)], "mailing", "daily", uuid.uuid4(), f"News {i}")
        for i in range(rows)
    ]
    with session_scope() as session:
        return insert_notifications(session, specs)


def _planned() -> list[tuple[uuid.UUID, str]]:
    with session_scope() as session:
        rows = session.execute(select(Delivery.notification_id, Delivery.period_key))
        return [(notification_id, period_key) for notification_id, period_key in rows]


def _together(*calls: Callable[[], digests.JobReport]) -> list[digests.JobReport]:
    """Run the calls in threads released at once, as jobs workers on other hosts would."""
    barrier = threading.Barrier(len(calls))
    reports: list[digests.JobReport] = []

    def run(call: Callable[[], digests.JobReport]) -> None:
        barrier.wait()
        reports.append(call())

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(reports) == len(calls), "a planning thread did not finish"
    return reports


def test_a_run_in_shards_plans_each_due_row_once_and_shows_its_progress(
    db: str, auth_client, auth_users, settings: Settings
) -> None:
    ids = _seed(auth_users, 1200)
    sharded = settings.model_copy(update={"plan_shard_rows": 200})
    run_id, shards = digests.start_run("daily", settings=sharded, now=NOW)
    assert shards == 6

    def shard_of(shard: int) -> Callable[[], digests.JobReport]:
        return lambda: digests.plan_shard(
            "daily",
            run_id=run_id,
            shard=shard,
            shards=shards,
            auth=auth_client,
            settings=sharded,
            now=NOW,
        )

    # Two workers, three shards each, side by side.
    first = lambda: _sum(shard_of(s)() for s in range(0, shards, 2))  # noqa: E731
    second = lambda: _sum(shard_of(s)() for s in range(1, shards, 2))  # noqa: E731
    reports = _together(first, second)

    planned = _planned()
    assert len(planned) == len(set(planned)) == len(ids)
    assert sum(sum(r.by_status.values()) for r in reports) == len(ids)
    with session_scope() as session:
        [run] = shard_store.latest_runs(session=session)
        assert run.run_id == run_id and run.shards == shards and run.done == shards
        assert run.expected >= len(ids) and run.picked == len(ids)
        assert run.scheduled + run.skipped + run.failed == len(ids)
        for row in run.per_shard:  # each shard counted the rows of its own range
            in_range = sum(i in shard_range(row.shard, shards) for i in ids)
            assert row.status == "done" and row.picked == in_range
            assert row.started_at is not None and row.finished_at is not None


def test_a_duplicated_shard_plans_nothing_twice(
    db: str, auth_client, auth_users, settings: Settings
) -> None:
    ids = _seed(auth_users, 1500)
    sharded = settings.model_copy(update={"plan_shard_rows": 500})
    run_id, shards = digests.start_run("daily", settings=sharded, now=NOW)
    assert shards == 3

    def shard_one() -> digests.JobReport:
        return digests.plan_shard(
            "daily",
            run_id=run_id,
            shard=1,
            shards=shards,
            auth=auth_client,
            settings=sharded,
            now=NOW,
        )

    # The same shard delivered twice at once (a redelivered task), then once more afterwards.
    reports = _together(shard_one, shard_one) + [shard_one()]

    in_range = {i for i in ids if i in shard_range(1, shards)}
    planned = _planned()
    assert len(planned) == len(set(planned)) == len(in_range) > 0
    assert {notification_id for notification_id, _period in planned} == in_range
    assert sum(sum(r.by_status.values()) for r in reports) == len(in_range)
    assert sum(reports[2].by_status.values()) == 0  # nothing left due in its range
    with session_scope() as session:
        counted = session.execute(
            select(
                func.sum(PlanningShard.scheduled + PlanningShard.skipped + PlanningShard.failed)
            ).where(PlanningShard.run_id == run_id, PlanningShard.shard == 1)
        ).scalar_one()
    assert counted == len(in_range)  # progress counts each row once, whoever planned it


def _sum(reports: Any) -> digests.JobReport:
    total = digests.JobReport("daily")
    for report in reports:
        total.picked += report.picked
        for status, count in report.by_status.items():
            total.by_status[status] = total.by_status.get(status, 0) + count
    return total
