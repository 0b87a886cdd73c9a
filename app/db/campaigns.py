"""Campaign reads and writes, keyword-only with an explicit session."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, text, update
from sqlalchemy.orm import Session, joinedload

from app.db.models import Campaign, Template
from app.domain.vocabulary import CampaignStatus, CapPolicy, Periodicity

# The notifications of a campaign: linked by the stream worker, or (older rows) by content id.
_OF_CAMPAIGN = "(n.campaign_id = :cid OR (n.kind = 'mailing' AND n.content_id = :cid))"


def create(
    *,
    session: Session,
    name: str,
    template_id: uuid.UUID,
    content_value: str,
    periodicity: Periodicity,
    user_ids: Sequence[uuid.UUID],
    invalid_recipients: Sequence[str],
    created_by: str | None,
    send_at: datetime | None = None,
    local_send_date: date | None = None,
    local_send_hour: int | None = None,
    cap_policy: CapPolicy = "hold",
) -> Campaign:
    """Insert a draft campaign and its audience; a schedule is `send_at`, or a local date and
    hour in each recipient's zone."""
    campaign = Campaign(
        name=name,
        template_id=template_id,
        content_value=content_value,
        periodicity=periodicity,
        status="draft",
        total_recipients=len(user_ids),
        published_count=0,
        invalid_recipients=list(invalid_recipients),
        created_by=created_by,
        send_at=send_at,
        local_send_date=local_send_date,
        local_send_hour=local_send_hour,
        cap_policy=cap_policy,
    )
    session.add(campaign)
    session.flush()
    # One statement for the whole audience, however large.
    session.execute(
        text(
            "INSERT INTO campaign_recipients (campaign_id, user_id)"
            " SELECT :cid, u FROM unnest(CAST(:ids AS uuid[])) AS u ON CONFLICT DO NOTHING"
        ),
        {"cid": campaign.campaign_id, "ids": [str(u) for u in user_ids]},
    )
    return campaign


def get(*, session: Session, campaign_id: uuid.UUID, lock: bool = False) -> Campaign | None:
    query = select(Campaign).where(Campaign.campaign_id == campaign_id)
    # FOR UPDATE may not take the outer join of an eager load; lockers read no template.
    query = query.with_for_update() if lock else query.options(joinedload(Campaign.template))
    return session.scalars(query).one_or_none()


def list_recent(*, session: Session, limit: int = 200) -> list[Campaign]:
    query = (
        select(Campaign)
        .options(joinedload(Campaign.template))
        .order_by(Campaign.created_at.desc())
        .limit(limit)
    )
    return list(session.scalars(query))


def list_templates(*, session: Session) -> list[tuple[uuid.UUID, str]]:
    """(template_id, name) of every template, by name."""
    rows = session.execute(select(Template.template_id, Template.name).order_by(Template.name))
    return [(row.template_id, row.name) for row in rows]


def recipient_ids(*, session: Session, campaign_id: uuid.UUID) -> list[str]:
    """The audience as canonical UUID strings (no UUID objects: they cost more than the send)."""
    rows = session.execute(
        text("SELECT CAST(user_id AS text) FROM campaign_recipients WHERE campaign_id = :cid"),
        {"cid": campaign_id},
    )
    return [user_id for (user_id,) in rows]


def set_status(*, session: Session, campaign_id: uuid.UUID, status: CampaignStatus) -> None:
    session.execute(
        update(Campaign).where(Campaign.campaign_id == campaign_id).values(status=status)
    )


def finish_publish(
    *, session: Session, campaign_id: uuid.UUID, published: int, complete: bool, now: datetime
) -> bool:
    """Record what Kafka acknowledged; False if the campaign left 'publishing' meanwhile."""
    values: dict[str, object] = {"published_count": published, "published_at": now}
    if complete:
        values["status"] = "published"
    result = session.execute(
        update(Campaign)
        .where(Campaign.campaign_id == campaign_id, Campaign.status == "publishing")
        .values(**values)
    )
    # Session.execute types its result as a plain Result; an UPDATE's is a CursorResult.
    return bool(cast(CursorResult[Any], result).rowcount)


def cancel(*, session: Session, campaign_id: uuid.UUID, now: datetime) -> tuple[int, int]:
    """Cancel the campaign and its unsent deliveries; return (deliveries, notifications) changed."""
    session.execute(
        update(Campaign)
        .where(Campaign.campaign_id == campaign_id)
        .values(status="cancelled", cancelled_at=now)
    )
    # 'enqueued' rows are not claimed by an e-mail worker yet (it claims scheduled|enqueued only),
    # so cancelling them is as safe as cancelling scheduled ones.
    result = session.execute(
        text(
            "UPDATE deliveries d SET status = 'cancelled', updated_at = now()"  # nosec B608  # only the constant _OF_CAMPAIGN is interpolated; values are bound
            f" FROM notifications n WHERE d.notification_id = n.notification_id AND {_OF_CAMPAIGN}"
            " AND d.status IN ('scheduled', 'enqueued')"
        ),
        {"cid": campaign_id},
    )
    deliveries = cast(CursorResult[Any], result).rowcount  # what an UPDATE's result is
    # Pending rows would otherwise be planned (or sent now, for `once`) later on.
    result = session.execute(
        text(
            "UPDATE notifications n SET status = 'skipped', last_update = :now"  # nosec B608  # only the constant _OF_CAMPAIGN is interpolated; values are bound
            f" WHERE {_OF_CAMPAIGN} AND n.status IN ('pending', 'queued', 'failed')"
        ),
        {"cid": campaign_id, "now": now},
    )
    notifications = cast(CursorResult[Any], result).rowcount
    return deliveries, notifications


def outcome_counts(*, session: Session, campaign_id: uuid.UUID) -> dict[str, int]:
    """How many of the campaign's notifications are in each state (their latest delivery's)."""
    rows = session.execute(
        text(
            "SELECT COALESCE(d.status, 'notified:' || n.status) AS state, count(*) AS n"  # nosec B608  # only the constant _OF_CAMPAIGN is interpolated; values are bound
            " FROM notifications n LEFT JOIN LATERAL ("
            "   SELECT status FROM deliveries WHERE notification_id = n.notification_id"
            "   ORDER BY created_at DESC LIMIT 1) d ON true"
            f" WHERE {_OF_CAMPAIGN} GROUP BY 1"
        ),
        {"cid": campaign_id},
    )
    return {row.state: row.n for row in rows}


def waiting_send_times(*, session: Session, campaign_id: uuid.UUID) -> tuple[int, datetime | None]:
    """How many of the campaign's deliveries wait to be sent (`scheduled` or `enqueued`), and
    the latest send time among them."""
    row = session.execute(
        text(
            "SELECT count(*) AS n, max(d.send_at) AS last"  # nosec B608  # only the constant _OF_CAMPAIGN is interpolated; values are bound
            " FROM notifications n JOIN deliveries d ON d.notification_id = n.notification_id"
            f" WHERE {_OF_CAMPAIGN} AND d.status IN ('scheduled', 'enqueued')"
        ),
        {"cid": campaign_id},
    ).one()
    return row.n, row.last
