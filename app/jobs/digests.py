"""Plan deliveries in bulk: the daily and weekly digests, and the `once` rows handed off to us.

Plain functions: the Celery tasks in app/tasks.py only call them with real clients and the time.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.auth.client import AuthClient, AuthUser
from app.config import Settings
from app.contracts import AUTH_BATCH_LIMIT
from app.core.clock import utcnow
from app.db import jobs as store
from app.db import planning_shards as shard_store
from app.db import suppressions
from app.db import templates as template_store
from app.db.session import session_scope
from app.domain.frequency import Cap
from app.domain.suppression import Suppression, normalised_or_none
from app.domain.vocabulary import TRANSACTIONAL_KINDS, Periodicity, PlannedStatus
from app.jobs.planning import Candidate, plan_delivery
from app.jobs.shards import EVERY_ID, KeyRange, shard_count, shard_range

log = logging.getLogger(__name__)

# Candidates are built from their rows by position (a tenth of the cost by name), the row's
# template id standing for the template's three texts: the query's columns must be the
# dataclass's fields, in that order.
_TEMPLATE_AT = store.CANDIDATE_FIELDS.index("template_id")
_TEMPLATE_TEXTS = ("subject", "body_html", "body_text")


TemplateTexts = Mapping[uuid.UUID, tuple[str, str, str]]


def candidate_fields_of_rows() -> tuple[str, ...]:
    """The Candidate fields that the candidate query's columns give, in their order."""
    columns = store.CANDIDATE_FIELDS
    return (*columns[:_TEMPLATE_AT], *_TEMPLATE_TEXTS, *columns[_TEMPLATE_AT + 1 :])


if tuple(f.name for f in fields(Candidate)) != candidate_fields_of_rows():
    raise RuntimeError(f"candidate columns {store.CANDIDATE_FIELDS} do not give Candidate's fields")


def _candidate(row: Sequence[Any], templates: TemplateTexts) -> Candidate:
    texts = templates[row[_TEMPLATE_AT]]
    return Candidate(*row[:_TEMPLATE_AT], *texts, *row[_TEMPLATE_AT + 1 :])  # type: ignore[call-arg]


@dataclass
class JobReport:
    periodicity: Periodicity
    chunks: int = 0
    picked: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def count(self, status: PlannedStatus) -> None:
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plan_rows(
    session: Session,
    rows: Sequence[Any],
    *,
    auth: AuthClient,
    settings: Settings,
    now: datetime,
) -> list[tuple[uuid.UUID, PlannedStatus]]:
    """Plan and record a batch of locked candidate rows (one Auth call); (id, status) recorded."""
    user_ids = {row.user_id for row in rows}
    users = auth.get_users(user_ids)
    opted_out = store.opted_out_kinds(session=session, user_ids=user_ids)
    templates = template_store.template_texts(
        session=session, template_ids={row.template_id for row in rows}
    )
    suppressed = suppressions.suppressed_among(
        session=session, addresses=[user.email for user in users.found.values()]
    )
    caps = settings.frequency_caps
    sent = _send_times(session, rows, caps, now)
    plans = []
    for row in rows:
        user = users.found.get(row.user_id)
        plan = plan_delivery(
            _candidate(row, templates),
            user,
            opted_out=opted_out.get(row.user_id, frozenset()),
            now=now,
            settings=settings,
            user_problem=users.invalid.get(row.user_id),
            suppression=_suppression_of(user, suppressed),
            caps=caps,
            others=sent.get(row.user_id, ()),
        )
        if caps and plan.status == "scheduled" and row.kind not in TRANSACTIONAL_KINDS:
            sent.setdefault(row.user_id, []).append(plan.send_at)  # the next row's cap sees it
        plans.append(plan)
    return store.record_plans(session=session, plans=plans, now=now)


def _send_times(
    session: Session, rows: Sequence[Any], caps: Sequence[Cap], now: datetime
) -> dict[uuid.UUID, list[datetime]]:
    """What the chunk's users had and have planned, as far back as the longest cap looks."""
    if not caps:
        return {}
    since = now - max(cap.window for cap in caps)
    # A user with fewer mails than the smallest cap less this chunk's rows of theirs cannot
    # reach any cap: their times are not fetched (most users, most days).
    at_least = min(cap.count for cap in caps) - max(Counter(row.user_id for row in rows).values())
    return store.capped_send_times(
        session=session,
        user_ids={row.user_id for row in rows},
        since=since,
        at_least=max(at_least, 0),
    )


def _suppression_of(
    user: AuthUser | None, suppressed: Mapping[str, Suppression]
) -> Suppression | None:
    if user is None or not suppressed:  # nearly always: no lookup at all
        return None
    address = normalised_or_none(user.email)
    return suppressed.get(address) if address else None


# Called in each chunk's transaction with the chunk's size and counts (a shard's progress).
ChunkHook = Callable[[Session, int, Mapping[str, int]], None]


def run_digest(
    periodicity: Periodicity,
    *,
    auth: AuthClient,
    settings: Settings,
    now: datetime,
    chunk_size: int = AUTH_BATCH_LIMIT,
    key_range: KeyRange = EVERY_ID,
    on_chunk: ChunkHook | None = None,
) -> JobReport:
    """Plan this period's delivery of every due row of `periodicity` in `key_range`, by chunks.

    Each chunk is one transaction that holds its rows (FOR UPDATE SKIP LOCKED), so concurrent
    runs split the work. An Auth outage (AuthUnavailable) rolls the chunk back and stops the run:
    the rows stay due for the next one.
    """
    report = JobReport(periodicity)
    after_id = _just_before(key_range.low)
    while True:
        with session_scope() as session:
            rows = store.lock_digest_candidates(
                session=session,
                periodicity=periodicity,
                after_id=after_id,
                limit=chunk_size,
                below_id=key_range.high,
            )
            if not rows:
                break
            after_id = rows[-1].notification_id
            counts: Counter[str] = Counter()
            for _notification_id, status in _plan_rows(
                session, rows, auth=auth, settings=settings, now=now
            ):
                report.count(status)
                counts[status] += 1
            if on_chunk is not None:
                on_chunk(session, len(rows), counts)
        report.chunks += 1
        report.picked += len(rows)
    log.info("%s digest planned: %s", periodicity, report.by_status, extra=report.as_dict())
    return report


def _just_before(low: uuid.UUID | None) -> uuid.UUID | None:
    """The id before `low`, so that an exclusive `after_id` starts at `low` itself."""
    if low is None or low.int == 0:
        return None
    return uuid.UUID(int=low.int - 1)


def start_run(
    periodicity: Periodicity, *, settings: Settings, now: datetime
) -> tuple[uuid.UUID, int]:
    """Cut this period's run into shards sized from the rows it looks at; return (run id, shards).

    The shards are recorded (queued) in the same transaction, so the run's progress shows from
    its first moment.
    """
    run_id = uuid.uuid4()
    with session_scope() as session:
        rows = shard_store.rows_of_periodicity(session=session, periodicity=periodicity)
        shards = shard_count(
            rows, rows_per_shard=settings.plan_shard_rows, max_shards=settings.plan_max_shards
        )
        shard_store.create_run(
            session=session, run_id=run_id, periodicity=periodicity, shards=shards, expected=rows
        )
    log.info("%s run %s: %d rows in %d shards", periodicity, run_id, rows, shards)
    return run_id, shards


def plan_shard(
    periodicity: Periodicity,
    *,
    run_id: uuid.UUID,
    shard: int,
    shards: int,
    auth: AuthClient,
    settings: Settings,
    now: datetime,
) -> JobReport:
    """Plan one shard of a run; its progress is committed with each chunk's plans.

    A shard run twice (a redelivered task, a retry after an Auth outage) plans only what is
    still due: the first run's chunks are committed and no longer due, its locked ones skipped.
    """
    with session_scope() as session:
        shard_store.start_shard(session=session, run_id=run_id, shard=shard, now=now)

    def progress(session: Session, picked: int, counts: Mapping[str, int]) -> None:
        shard_store.add_progress(
            session=session, run_id=run_id, shard=shard, picked=picked, counts=counts
        )

    report = run_digest(
        periodicity,
        auth=auth,
        settings=settings,
        now=now,
        key_range=shard_range(shard, shards),
        on_chunk=progress,
    )
    with session_scope() as session:
        shard_store.finish_shard(session=session, run_id=run_id, shard=shard, now=utcnow())
    log.info(
        "%s run %s shard %d/%d planned: %s",
        periodicity,
        run_id,
        shard + 1,
        shards,
        report.by_status,
        extra=report.as_dict(),
    )
    return report


def fail_shard(run_id: uuid.UUID, shard: int, *, error: str) -> None:
    """Mark a shard failed for the dashboard; its rows stay due for the next run."""
    with session_scope() as session:
        shard_store.finish_shard(
            session=session, run_id=run_id, shard=shard, now=utcnow(), error=error
        )


def plan_once(
    notification_ids: Sequence[uuid.UUID], *, auth: AuthClient, settings: Settings, now: datetime
) -> dict[uuid.UUID, str]:
    """Plan the deliveries of `once` notifications (one Auth batch call); return their statuses.

    Rows that are not due (already planned, or of a cancelled campaign) are left out.
    """
    with session_scope() as session:
        rows = store.lock_once_candidates(session=session, notification_ids=notification_ids)
        if not rows:
            return {}
        return dict(_plan_rows(session, rows, auth=auth, settings=settings, now=now))
