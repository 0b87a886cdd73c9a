"""Queries of the periodic jobs: candidates by the due rule, planned deliveries recorded.

The dispatcher's claims of due deliveries are app/db/dispatch.py.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Exists, Row, Select, and_, exists, func, or_, select, text
from sqlalchemy.orm import Session, aliased

from app.db.models import (
    Campaign,
    Message,
    Notification,
    Preference,
)
from app.domain.periods import IN_FLIGHT_STATUSES, ONCE_DUE_STATUSES, REPLANNED_DELIVERY_STATUSES
from app.domain.vocabulary import (
    PLANNED_STATUSES,
    TRANSACTIONAL_KINDS,
    Periodicity,
    PlannedStatus,
    one_of,
)

# A mailing's campaign, for its schedule (an alias: _of_cancelled_campaign's subquery correlates
# on the Campaign entity itself).
_SCHEDULE = aliased(Campaign)
# A recipient's chosen periodicity comes ahead of the producer's (the preference center).
_periodicity = func.coalesce(Preference.periodicity, Notification.periodicity)
# The join of a notification to its recipient's choice for its kind (an outer join: most chose
# nothing).
_CHOICE_OF_ROW = and_(
    Preference.user_id == Notification.user_id, Preference.kind == Notification.kind
)

_CANDIDATE_COLUMNS = (
    Notification.notification_id,
    Notification.user_id,
    Notification.kind,
    _periodicity.label("periodicity"),
    Notification.like_count,
    Message.content_id,
    Message.content_value,
    # The template's texts come apart, once per batch (db/templates.template_texts): a row
    # each would carry the same kilobytes of source from PostgreSQL hundreds of times over.
    Message.template_id,
    _SCHEDULE.send_at.label("campaign_send_at"),
    _SCHEDULE.local_send_date.label("campaign_local_date"),
    _SCHEDULE.local_send_hour.label("campaign_local_hour"),
    _SCHEDULE.cap_policy.label("campaign_cap_policy"),
)


# The candidate rows' columns, in order: planning builds its Candidate from them positionally.
CANDIDATE_FIELDS: tuple[str, ...] = tuple(select(*_CANDIDATE_COLUMNS).selected_columns.keys())


def _candidates() -> Select[*tuple[Any, ...]]:
    return (
        select(*_CANDIDATE_COLUMNS)
        .join(Message, Message.message_id == Notification.message_id)
        .outerjoin(Preference, _CHOICE_OF_ROW)
        .outerjoin(
            _SCHEDULE,
            and_(
                Notification.kind == "mailing",
                _SCHEDULE.campaign_id
                == func.coalesce(Notification.campaign_id, Notification.content_id),
            ),
        )
    )


def _of_cancelled_campaign() -> Exists:
    """A mailing whose campaign was cancelled (mailings carry the campaign as content id)."""
    return exists().where(
        Notification.kind == "mailing",
        Campaign.campaign_id == func.coalesce(Notification.campaign_id, Notification.content_id),
        Campaign.status == "cancelled",
    )


def lock_digest_candidates(
    *,
    session: Session,
    periodicity: Periodicity,
    after_id: uuid.UUID | None,
    limit: int,
    below_id: uuid.UUID | None = None,
) -> Sequence[Row[*tuple[Any, ...]]]:
    """Lock the next chunk of rows that may be due; rows another job holds are skipped.

    Whether a row is due in its user's current period is settled when its delivery is recorded
    (one delivery per notification and period), since the period depends on the user's zone.
    `after_id` .. `below_id`: the ids still to look at (a shard's range), both exclusive.
    """
    query = (
        _candidates()
        .where(
            _periodicity == periodicity,
            # Transactional mail goes once, at once: never in a digest, whatever its row says.
            Notification.kind.notin_(TRANSACTIONAL_KINDS),
            Notification.status.notin_(IN_FLIGHT_STATUSES),
            # A like digest with nothing to report is not due.
            or_(Notification.kind != "likes", Notification.like_count > 0),
            ~_of_cancelled_campaign(),
        )
        .order_by(Notification.notification_id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=Notification)
    )
    if after_id is not None:
        query = query.where(Notification.notification_id > after_id)
    if below_id is not None:
        query = query.where(Notification.notification_id < below_id)
    # On the Core connection: plain rows, without the ORM's result machinery (a tenth of
    # planning a row went to it).
    return session.connection().execute(query).all()


def lock_once_candidates(
    *, session: Session, notification_ids: Sequence[uuid.UUID]
) -> Sequence[Row[*tuple[Any, ...]]]:
    """Lock the `once` notifications among these that still have to go out (pending or failed)."""
    query = (
        _candidates()
        .where(
            Notification.notification_id.in_(list(notification_ids)),
            Notification.status.in_(ONCE_DUE_STATUSES),
            ~_of_cancelled_campaign(),
        )
        .order_by(Notification.notification_id)
        .with_for_update(skip_locked=True, of=Notification)
    )
    return session.connection().execute(query).all()


def pending_once_ids(*, session: Session, older_than: datetime, limit: int) -> list[uuid.UUID]:
    """`once` notifications still pending after a while: their hand-off was lost.

    Failed ones are left alone: the e-mail worker already retried them, and a permanent refusal
    (say a 400) would otherwise be planned again every few minutes forever.
    """
    query = (
        select(Notification.notification_id)
        .outerjoin(Preference, _CHOICE_OF_ROW)
        .where(
            _periodicity == "once",
            Notification.status == "pending",
            ~_of_cancelled_campaign(),
            Notification.created_at < older_than,
            or_(Notification.last_update.is_(None), Notification.last_update < older_than),
        )
        .order_by(Notification.created_at)
        .limit(limit)
    )
    return list(session.scalars(query))


# What counts against a frequency cap: mail that went, or is planned to go, to the user.
_NOT_HEARD = ("skipped", "failed", "cancelled")


# A chunk's reads of its thousand users run as plain SQL with one array parameter: built by
# SQLAlchemy with an IN list they cost twice as much, most of it compiling and binding the
# thousand parameters (bench/digest.py --deliverability).
_CAPPED_SEND_TIMES = (
    "SELECT n.user_id, array_agg(d.send_at)"
    " FROM notifications n JOIN deliveries d ON d.notification_id = n.notification_id"
    " WHERE n.user_id = ANY(%(user_ids)s::uuid[]) AND n.kind <> ALL(%(transactional)s)"
    "   AND d.status <> ALL(%(not_heard)s) AND d.send_at > %(since)s"
    " GROUP BY n.user_id HAVING count(*) >= %(at_least)s"
)
_OPTED_OUT_KINDS = "SELECT user_id, kind FROM opt_outs WHERE user_id = ANY(%(user_ids)s::uuid[])"


def _user_ids(user_ids: Iterable[uuid.UUID]) -> list[str]:
    return sorted({str(u) for u in user_ids})


def capped_send_times(
    *, session: Session, user_ids: Iterable[uuid.UUID], since: datetime, at_least: int = 0
) -> dict[uuid.UUID, list[datetime]]:
    """The send times since `since` (past and planned) of each user's non-transactional mail:
    what frequency caps count, for a whole chunk in one query. Users with fewer than `at_least`
    such mails are left out: the caller knows they cannot reach a cap."""
    rows = session.connection().exec_driver_sql(
        _CAPPED_SEND_TIMES,
        {
            "user_ids": _user_ids(user_ids),
            "transactional": list(TRANSACTIONAL_KINDS),
            "not_heard": list(_NOT_HEARD),
            "since": since,
            "at_least": at_least,
        },
    )
    return {uuid.UUID(str(user_id)): list(times) for user_id, times in rows}


def opted_out_kinds(
    *, session: Session, user_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, frozenset[str]]:
    """The kinds of mail each user turned off through us (unsubscribe link, provider events)."""
    found: dict[uuid.UUID, set[str]] = defaultdict(set)
    rows = session.connection().exec_driver_sql(_OPTED_OUT_KINDS, {"user_ids": _user_ids(user_ids)})
    for user_id, kind in rows:
        found[uuid.UUID(str(user_id))].add(kind)
    return {user_id: frozenset(kinds) for user_id, kinds in found.items()}


# The rendered mail: in `delivery_contents`, written once per plan, never by a state change.
CONTENT_COLUMNS = ("subject", "body_html", "body_text", "headers")
# A batch of plans in one statement, one round trip: the deliveries (a period that already has
# one is left alone unless it failed: then it is planned again), their mail in
# `delivery_contents` (written once per plan, never by a state change), and the notifications'
# status. The batch travels as one JSON document, which orjson writes in C: as bound parameters
# (or arrays of them) psycopg2 quoted every value with the GIL held, and passing the rows cost
# as much as planning them. Foreign keys to the rows of a sibling CTE hold: they are checked at
# the end of the statement.
_RECORD_PLANS = text(
    """
    WITH plan AS (
        SELECT gen_random_uuid() AS delivery_id, p.*
          FROM json_to_recordset(CAST(:plans AS json)) AS p(
               notification_id uuid, period_key text, send_at timestamptz, send_reason text,
               status text, email text, reported_count integer, error text, subject text,
               body_html text, body_text text, headers jsonb)
    ), recorded AS (
        INSERT INTO deliveries AS d (delivery_id, notification_id, period_key, send_at,
                                     send_reason, status, email, reported_count, error)
        SELECT delivery_id, notification_id, period_key, send_at, send_reason, status, email,
               reported_count, error
          FROM plan
        ON CONFLICT ON CONSTRAINT uq_deliveries_period DO UPDATE
           SET send_at = excluded.send_at, send_reason = excluded.send_reason,
               status = excluded.status, email = excluded.email,
               reported_count = excluded.reported_count, error = excluded.error,
               attempts = 0, deferrals = 0, updated_at = now()
         WHERE d.status = ANY(CAST(:replanned AS text[]))
        RETURNING d.delivery_id, d.notification_id, d.period_key, d.status
    ), contents AS (
        INSERT INTO delivery_contents AS c (delivery_id, subject, body_html, body_text, headers)
        SELECT r.delivery_id, p.subject, p.body_html, p.body_text,
               coalesce(p.headers, '{}')
          FROM recorded r JOIN plan p USING (notification_id, period_key)
        ON CONFLICT (delivery_id) DO UPDATE
           SET subject = excluded.subject, body_html = excluded.body_html,
               body_text = excluded.body_text, headers = excluded.headers
    ), marked AS (
        -- A scheduled delivery queues its notification; skipped and failed carry over.
        UPDATE notifications n
           SET status = CASE r.status WHEN 'scheduled' THEN 'queued' ELSE r.status END,
               last_update = :now
          FROM recorded r
         WHERE n.notification_id = r.notification_id
    )
    SELECT notification_id, status FROM recorded
    """
)


def record_plans(
    *, session: Session, plans: Sequence[object], now: datetime
) -> list[tuple[uuid.UUID, PlannedStatus]]:
    """Insert one delivery per notification and period; return (notification_id, status) recorded.

    Each plan is a mapping or a dataclass with the fields of planning's DeliveryPlan (orjson
    writes either).

    A period that already has a delivery is left alone unless that delivery failed, in which
    case it is planned again (its mail rewritten, skipped and failed plans with their NULLs, so a
    re-planned delivery never keeps the mail of the plan it replaces): that is what makes two
    concurrent or repeated runs harmless.
    """
    if not plans:
        return []
    rows = session.execute(
        _RECORD_PLANS,
        {
            "plans": orjson.dumps(plans).decode(),
            "replanned": list(REPLANNED_DELIVERY_STATUSES),
            "now": now,
        },
    )
    return [(row.notification_id, one_of(row.status, PLANNED_STATUSES, "status")) for row in rows]
