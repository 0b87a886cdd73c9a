"""The campaign flow: create a draft, publish one event per recipient, cancel, read progress.

The portal's routes and `notify demo` call these; the rules they apply are app/domain/campaigns.py.
Kafka comes in as a producer.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import datetime

from confluent_kafka import Producer
from sqlalchemy.orm import Session

from app.config import get_settings
from app.contracts import Event, encode_event
from app.core.clock import utcnow
from app.db import campaigns as store
from app.db import pacing
from app.db.models import Campaign
from app.db.session import session_scope
from app.domain.campaigns import (
    Audience,
    CampaignInvalid,
    CampaignStateError,
    Draft,
    Progress,
    progress_of,
    validate_draft,
)
from app.domain.pacing import Pace, expected_done
from app.domain.vocabulary import PERIODICITIES, Periodicity, one_of
from app.kafka.producer import PublishReport, publish_all

log = logging.getLogger(__name__)


def create_campaign(*, draft: Draft, audience: Audience, created_by: str | None) -> Campaign:
    """Store a draft campaign with its valid recipients and the invalid entries listed back."""
    validate_draft(draft, audience, utcnow())
    with session_scope() as session:
        if draft.template_id not in dict(store.list_templates(session=session)):
            raise CampaignInvalid("the template does not exist")
        return store.create(
            session=session,
            name=draft.name.strip(),
            template_id=draft.template_id,
            content_value=draft.content_value,
            periodicity=draft.periodicity,
            user_ids=audience.valid,
            invalid_recipients=audience.invalid,
            created_by=created_by,
            send_at=draft.schedule.send_at if draft.schedule else None,
            local_send_date=draft.schedule.local_date if draft.schedule else None,
            local_send_hour=draft.schedule.local_hour if draft.schedule else None,
            cap_policy=draft.cap_policy,
        )


def mailing_messages(
    campaign_id: uuid.UUID,
    periodicity: Periodicity,
    content_value: str,
    user_ids: Iterable[uuid.UUID | str],
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of each recipient's `admin.mailing` event: encode_event's bytes, fast.

    The fields every recipient shares are JSON-encoded once; a canonical UUID string needs no
    JSON escaping, so splicing each id into the first (user_id) slot gives the same bytes.
    """
    placeholder = str(uuid.UUID(int=0)).encode()
    shared = encode_event(Event(uuid.UUID(int=0), periodicity, campaign_id, content_value))
    head, tail = shared.split(placeholder, 1)
    for user_id in user_ids:
        key = str(user_id).encode()
        yield key, head + key + tail


def publish_campaign(*, campaign_id: uuid.UUID, producer: Producer, topic: str) -> PublishReport:
    """Publish one event per recipient; the campaign is 'published' once Kafka acked them all.

    A failed or interrupted publish leaves it 'publishing' and may be sent again: the stream
    worker keys mailings by user and campaign, so a second event replaces, never duplicates.
    """
    with session_scope() as session:
        campaign = store.get(session=session, campaign_id=campaign_id, lock=True)
        if campaign is None:
            raise CampaignInvalid("no such campaign")
        if campaign.status not in ("draft", "publishing"):
            raise CampaignStateError(f"the campaign is {campaign.status}; it cannot be sent")
        store.set_status(session=session, campaign_id=campaign_id, status="publishing")
        user_ids = store.recipient_ids(session=session, campaign_id=campaign_id)
        periodicity = one_of(campaign.periodicity, PERIODICITIES, "periodicity")
        content_value = campaign.content_value
    messages = mailing_messages(campaign_id, periodicity, content_value, user_ids)
    report = publish_all(producer, topic, messages)
    with session_scope() as session:
        store.finish_publish(
            session=session,
            campaign_id=campaign_id,
            published=report.delivered,
            complete=report.failed == 0,
            now=utcnow(),
        )
    log.info(
        "campaign %s published to %s: %d delivered, %d failed",
        campaign_id,
        topic,
        report.delivered,
        report.failed,
    )
    return report


def cancel_campaign(*, campaign_id: uuid.UUID) -> tuple[int, int]:
    """Cancel a campaign; return (deliveries, notifications) stopped before they went out."""
    with session_scope() as session:
        campaign = store.get(session=session, campaign_id=campaign_id, lock=True)
        if campaign is None:
            raise CampaignInvalid("no such campaign")
        if campaign.status == "cancelled":
            raise CampaignStateError("the campaign is already cancelled")
        return store.cancel(session=session, campaign_id=campaign_id, now=utcnow())


def campaign_progress(
    *, campaign_id: uuid.UUID, pace: Pace | None = None
) -> tuple[Campaign, Progress]:
    """The campaign and its progress, with when its waiting mail should be out at the send
    rate `pace` (the settings' when None), read in one transaction."""
    with session_scope() as session:
        campaign = store.get(session=session, campaign_id=campaign_id)
        if campaign is None:
            raise CampaignInvalid("no such campaign")
        states = store.outcome_counts(session=session, campaign_id=campaign_id)
        progress = progress_of(campaign.total_recipients, campaign.published_count, states)
        eta = _expected_done(session, campaign_id, pace or get_settings().pace)
        return campaign, replace(progress, eta=eta)


def _expected_done(session: Session, campaign_id: uuid.UUID, pace: Pace) -> datetime | None:
    """When the campaign's waiting mail should all be out, at the send rate in force, behind
    the due mail ahead of it; None when none waits."""
    waiting, last = store.waiting_send_times(session=session, campaign_id=campaign_id)
    if not waiting or last is None:
        return None
    now = utcnow()
    state = pacing.read_state(session=session, now=now)
    ahead = pacing.due_unslotted(session=session, now=now, until=max(last, now))
    return expected_done(pace, state, last, ahead, now)
