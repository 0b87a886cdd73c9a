"""Write decoded events to PostgreSQL, one kind at a time, isolating the events it refuses.

A batch is tried whole inside a savepoint. When PostgreSQL (or anything short of an outage)
refuses it, the batch is split in halves and each half tried again, down to single events: the
events that fail alone are the batch's dead letters, everything else is applied, in offset order,
in the same transaction. An outage (`faults.is_transient`) is never isolated: it aborts the
whole transaction so the batch is retried later (docs/fault-model.md).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from app.contracts import Event, storable_text
from app.core import faults
from app.db import ingest
from app.db.ingest import LikeDelta, TextItem
from app.domain.periods import ONCE_DUE_STATUSES as ONCE_DUE
from app.domain.vocabulary import KIND_OF_EVENT, TEMPLATE_OF_KIND, EventKind
from app.stream.records import Record

log = logging.getLogger(__name__)

Accepted = tuple[Record, Event]


@dataclass
class Effects:
    """What applied events lead to after the commit: hand-offs and like counts to mirror."""

    send_now: list[uuid.UUID] = field(default_factory=list)
    # Faust table key -> (source partition, count stored in PostgreSQL).
    like_counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def merge(self, other: Effects) -> None:
        self.send_now.extend(i for i in other.send_now if i not in self.send_now)
        self.like_counts.update(other.like_counts)  # later halves hold the later counts


@dataclass(frozen=True, slots=True)
class Refused:
    """An event that PostgreSQL (or our apply code) refused on its own, with the reason."""

    record: Record
    error: str
    reason: str


def table_key(user_id: uuid.UUID, content_id: uuid.UUID) -> str:
    """The like table's key of a (user, content) pair."""
    return f"{user_id}:{content_id}"


def reason_of_failure(error: BaseException) -> str:
    """A short, bounded reason for an event its apply refused (a metric label)."""
    if isinstance(error, LookupError):
        return "missing_template"
    if isinstance(error, sa_exc.IntegrityError | sa_exc.DataError):
        return "db_refused"
    if isinstance(error, sa_exc.DBAPIError):
        return "db_error"
    return "apply_failed"


def explain(error: BaseException) -> str:
    """The operator's account of a refusal: PostgreSQL's own message where it gave one."""
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        return storable_text(faults.describe(error.orig))
    return storable_text(faults.describe(error))


def apply_isolated(
    session: Session, kind: EventKind, accepted: Sequence[Accepted]
) -> tuple[list[Accepted], list[Refused], Effects]:
    """Apply `accepted`; return the applied events, the refused ones and the effects."""
    applied: list[Accepted] = []
    refused: list[Refused] = []
    effects = Effects()

    def attempt(items: Sequence[Accepted]) -> None:
        try:
            with session.begin_nested():
                done = _APPLY[kind](session, items)
        except Exception as exc:
            if faults.is_transient(exc):
                raise
            if len(items) == 1:
                record = items[0][0]
                refused.append(Refused(record, explain(exc), reason_of_failure(exc)))
                return
            if len(items) == len(accepted):
                log.warning(
                    "%s: batch of %d refused (%s); isolating the events that cause it",
                    kind,
                    len(items),
                    explain(exc)[:300],
                )
            middle = len(items) // 2
            attempt(items[:middle])
            attempt(items[middle:])
            return
        applied.extend(items)
        effects.merge(done)

    if accepted:
        attempt(accepted)
    return applied, refused, effects


def _apply_likes(session: Session, accepted: Sequence[Accepted]) -> Effects:
    totals: dict[tuple[uuid.UUID, uuid.UUID], list[Any]] = {}  # [count, periodicity, text]
    partition_of: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for record, event in accepted:
        assert event.content_id is not None  # the schema requires a uuid content id for likes
        key = (event.user_id, event.content_id)
        entry = totals.setdefault(key, [0, event.periodicity, event.content_value])
        entry[0] += 1
        entry[1] = event.periodicity  # the latest event's periodicity wins
        partition_of[key] = record.partition
    deltas = [LikeDelta(u, c, n, p, v) for (u, c), (n, p, v) in totals.items()]
    counts = ingest.add_likes(session=session, likes=deltas)
    effects = Effects()
    for (user_id, content_id), count in counts.items():
        effects.like_counts[table_key(user_id, content_id)] = (
            partition_of[(user_id, content_id)],
            count,
        )
    return effects


def mirror_replayed_likes(
    session: Session, replayed: Sequence[Accepted]
) -> dict[str, tuple[int, int]]:
    """The stored counts of replayed likes' keys: their effect is in PostgreSQL already, but
    the crash that replays them may have lost the table update."""
    partition_of: dict[tuple[uuid.UUID, uuid.UUID], int] = {}
    for record, event in replayed:
        assert event.content_id is not None
        partition_of[(event.user_id, event.content_id)] = record.partition
    stored = ingest.get_like_counts(session=session, keys=partition_of)
    return {
        table_key(user_id, content_id): (partition_of[(user_id, content_id)], count)
        for (user_id, content_id), count in stored.items()
    }


def _latest_texts(accepted: Sequence[Accepted]) -> list[TextItem]:
    latest: dict[tuple[uuid.UUID, uuid.UUID | None], TextItem] = {}
    for _record, event in accepted:  # records come in offset order per partition: last wins
        latest[(event.user_id, event.content_id)] = TextItem(
            event.user_id, event.content_id, event.periodicity, event.content_value
        )
    return list(latest.values())


def _texts_of(kind: EventKind) -> Callable[[Session, Sequence[Accepted]], Effects]:
    def apply(session: Session, accepted: Sequence[Accepted]) -> Effects:
        written = ingest.upsert_texts(
            session=session,
            kind=KIND_OF_EVENT[kind],
            template_name=TEMPLATE_OF_KIND[KIND_OF_EVENT[kind]],
            items=_latest_texts(accepted),
        )
        # Welcome mail is transactional: it goes now (its periodicity is always `once`). A
        # mailing goes now when it is `once`; a replaced `once` mailing that was already planned
        # or sent keeps its status, so the new text is stored but not mailed a second time.
        due = [row for row in written if row.periodicity == "once"]
        return Effects(send_now=[row.notification_id for row in due if row.status in ONCE_DUE])

    return apply


_APPLY: dict[str, Callable[[Session, Sequence[Accepted]], Effects]] = {
    "user_registered": _texts_of("user_registered"),
    "comment_liked": _apply_likes,
    "mailing": _texts_of("mailing"),
}
