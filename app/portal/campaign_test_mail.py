"""A campaign's test mail: rendered with sample values and sent once to an allowed address."""

from __future__ import annotations

import logging
import re
import uuid

from app.config import Settings
from app.db import campaigns as store
from app.db.session import session_scope
from app.delivery.mail.base import OutgoingEmail
from app.delivery.mail.factory import get_backend
from app.domain.campaigns import CampaignInvalid, test_recipient_allowed
from app.domain.rendering import SAMPLE_VARIABLES, render

log = logging.getLogger(__name__)

TEST_SUBJECT_PREFIX = "[Test] "
MAX_ADDRESS_CHARS = 320
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def send_test(*, campaign_id: uuid.UUID, address: str, settings: Settings) -> str:
    """Send the campaign's mail once to `address`, marked as a test; return the provider's id.

    Only to the addresses PORTAL_TEST_RECIPIENTS allows: a test send is any content an editor
    likes, so it must not become a way to mail anyone. Nothing is recorded for the campaign: no
    notification, no delivery, no count.
    """
    address = address.strip()
    if len(address) > MAX_ADDRESS_CHARS or not _ADDRESS.fullmatch(address):
        raise CampaignInvalid("that is not an e-mail address")
    if not test_recipient_allowed(address, settings.portal_test_recipients):
        raise CampaignInvalid(
            "test mail goes only to the addresses in PORTAL_TEST_RECIPIENTS "
            f"({settings.portal_test_recipients or 'none'})"
        )
    with session_scope() as session:
        campaign = store.get(session=session, campaign_id=campaign_id)
        if campaign is None:
            raise CampaignInvalid("no such campaign")
        template = campaign.template
        email = render(
            subject=template.subject,
            body_html=template.body_html,
            body_text=template.body_text,
            variables={
                **SAMPLE_VARIABLES,
                "name": "Test recipient",
                "email": address,
                "content_value": campaign.content_value,
                "content_id": str(campaign.campaign_id),
            },
        )
    outgoing = OutgoingEmail(
        to=address,
        subject=TEST_SUBJECT_PREFIX + email.subject,
        html=email.html,
        text=email.text,
        headers={"X-Notify-Test": "1"},
    )
    result = get_backend(settings).send(outgoing)
    log.info("test mail of campaign %s sent to %s", campaign_id, address)
    return result.provider_message_id or "-"
