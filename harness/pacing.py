"""A campaign whose mail is all due now, for the send rate's figures (dashboard, progress)."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from app.config import Settings
from app.core.clock import utcnow
from app.db.models import Delivery, Notification
from app.db.session import session_scope
from app.db.templates import get_template_by_name
from app.domain.campaigns import Draft, parse_audience
from app.jobs.campaigns import create_campaign
from harness.delivery import seed


def due_campaign(settings: Settings, recipients: int) -> uuid.UUID:
    """A campaign of `recipients` users, each with its mail planned by the real planner and
    due now (as the stream and planning would leave it once published)."""
    planned = seed(settings, utcnow(), ["mailing"] * recipients)
    with session_scope() as session:
        template_id = get_template_by_name(session=session, name="mailing").template_id
    campaign = create_campaign(
        draft=Draft("Winter news", template_id, "Snow is here", "once"),
        audience=parse_audience("\n".join(str(u.user_id) for _d, u, _k in planned)),
        created_by="test",
    )
    with session_scope() as session:
        notifications = select(Delivery.notification_id).where(
            Delivery.delivery_id.in_([d for d, _u, _k in planned])
        )
        session.execute(
            update(Notification)
            .where(Notification.notification_id.in_(notifications))
            .values(campaign_id=campaign.campaign_id)
        )
    return campaign.campaign_id
