"""Queries of planning runs: their shards, each shard's progress, the latest runs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from app.db.models import Notification, PlanningShard
from app.domain.vocabulary import PERIODICITIES, Periodicity, one_of

# What a shard counts: the planning statuses that a run's progress shows.
COUNTED = ("scheduled", "skipped", "failed")


def rows_of_periodicity(*, session: Session, periodicity: Periodicity) -> int:
    """About how many rows a run of this periodicity looks at (its size, to cut it into shards).

    The rows' own periodicity: a preference that moves a row to the other digest is not counted.
    """
    return session.execute(
        select(func.count())
        .select_from(Notification)
        .where(Notification.periodicity == periodicity)
    ).scalar_one()


def create_run(
    *, session: Session, run_id: uuid.UUID, periodicity: Periodicity, shards: int, expected: int
) -> None:
    per_shard = -(-expected // shards)
    session.execute(
        insert(PlanningShard),
        [
            {
                "run_id": run_id,
                "shard": shard,
                "shards": shards,
                "periodicity": periodicity,
                "expected": per_shard,
            }
            for shard in range(shards)
        ],
    )


def start_shard(*, session: Session, run_id: uuid.UUID, shard: int, now: datetime) -> None:
    session.execute(
        update(PlanningShard)
        .where(PlanningShard.run_id == run_id, PlanningShard.shard == shard)
        .values(status="running", started_at=func.coalesce(PlanningShard.started_at, now))
    )


def add_progress(
    *, session: Session, run_id: uuid.UUID, shard: int, picked: int, counts: Mapping[str, int]
) -> None:
    """Add a chunk's counts in its own transaction: progress and plans commit together."""
    values = {
        name: getattr(PlanningShard, name) + counts.get(name, 0)
        for name in COUNTED
        if counts.get(name)
    }
    session.execute(
        update(PlanningShard)
        .where(PlanningShard.run_id == run_id, PlanningShard.shard == shard)
        .values(picked=PlanningShard.picked + picked, **values)
    )


def finish_shard(
    *, session: Session, run_id: uuid.UUID, shard: int, now: datetime, error: str | None = None
) -> None:
    session.execute(
        update(PlanningShard)
        .where(PlanningShard.run_id == run_id, PlanningShard.shard == shard)
        .values(status="failed" if error else "done", finished_at=now, error=error)
    )


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A planning run as the dashboard shows it: its shards' counts added up, and each shard."""

    run_id: uuid.UUID
    periodicity: Periodicity
    started: datetime
    shards: int
    done: int
    failed_shards: int
    expected: int
    picked: int
    scheduled: int
    skipped: int
    failed: int
    per_shard: Sequence[PlanningShard]


def latest_runs(*, session: Session, limit: int = 3) -> list[RunProgress]:
    run_ids = session.execute(
        select(PlanningShard.run_id)
        .group_by(PlanningShard.run_id)
        .order_by(func.max(PlanningShard.created_at).desc())
        .limit(limit)
    ).scalars()
    runs = []
    for run_id in list(run_ids):
        shards = list(
            session.execute(
                select(PlanningShard)
                .where(PlanningShard.run_id == run_id)
                .order_by(PlanningShard.shard)
            ).scalars()
        )
        runs.append(
            RunProgress(
                run_id=run_id,
                periodicity=one_of(shards[0].periodicity, PERIODICITIES, "periodicity"),
                started=min(s.created_at for s in shards),
                shards=shards[0].shards,
                done=sum(s.status == "done" for s in shards),
                failed_shards=sum(s.status == "failed" for s in shards),
                expected=sum(s.expected for s in shards),
                picked=sum(s.picked for s in shards),
                scheduled=sum(s.scheduled for s in shards),
                skipped=sum(s.skipped for s in shards),
                failed=sum(s.failed for s in shards),
                per_shard=shards,
            )
        )
    return runs
