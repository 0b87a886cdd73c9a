"""Mailing campaigns: parse an audience, create a draft, publish one event per recipient, cancel.

No HTTP here: the portal's routes call these functions; Kafka comes in as a producer.
One module for now, over 300 lines: the campaign flow moves out of the portal as its own
feature service with the house's next round.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from confluent_kafka import Producer

from app.config import Settings
from app.contracts import Event, encode_event
from app.core.clock import utcnow
from app.db import campaigns as store
from app.db.models import Campaign
from app.db.session import session_scope
from app.delivery.mail.base import OutgoingEmail
from app.delivery.mail.factory import get_backend
from app.domain.rendering import SAMPLE_VARIABLES, render
from app.domain.vocabulary import PERIODICITIES, Periodicity, one_of, statuses_in
from app.kafka.producer import PublishReport, publish_all

log = logging.getLogger(__name__)

MAX_CONTENT_CHARS = 50_000  # schemas/mailing.json: content_value maxLength
_SEPARATORS = re.compile(r"[\s,;]+")
_ID_HEADERS = {"user_id", "userid", "user", "id", "uuid"}

# Delivery states folded into the progress buckets by the vocabulary's outcome groups, and the
# state of a notification that never got a delivery (skipped before planning).
SENT_STATES = frozenset(statuses_in("sent"))
FAILED_STATES = frozenset(statuses_in("failed"))
SKIPPED_STATES = frozenset({*statuses_in("skipped"), "notified:skipped"})
CANCELLED_STATES = frozenset(statuses_in("cancelled"))


class CampaignError(ValueError):
    """A campaign request we refuse; the message is meant for the person who made it."""


class CampaignInvalid(CampaignError):
    """The campaign's fields or audience are not acceptable."""


class CampaignStateError(CampaignError):
    """The campaign is not in a state that allows the action."""


@dataclass(frozen=True, slots=True)
class Audience:
    """Recipients parsed from pasted text and/or a CSV: valid ids (unique, in order), the rest."""

    valid: tuple[uuid.UUID, ...]
    invalid: tuple[str, ...]


def _audience_tokens(pasted: str, csv_data: bytes | None) -> Iterator[str]:
    yield from (token for token in _SEPARATORS.split(pasted.replace("\x00", "")) if token)
    if not csv_data:
        return
    # No NUL: PostgreSQL could not store it among the invalid entries listed back.
    text = csv_data.decode("utf-8-sig", errors="replace").replace("\x00", "")
    try:
        # newline="": the csv module's own line handling (a bare carriage return included).
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:  # a malformed quote, say: read it as lines of ids, one per line
        rows = [[line] for line in text.splitlines()]
    column = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        named = [i for i, cell in enumerate(header) if cell in _ID_HEADERS]
        if named:
            column, rows = named[0], rows[1:]
    for row in rows:
        if len(row) > column and row[column].strip():
            yield row[column].strip()


def parse_audience(pasted: str = "", csv_data: bytes | None = None) -> Audience:
    """Read user ids from pasted text (any separators) and a CSV (a user_id column or the first)."""
    valid: dict[uuid.UUID, None] = {}
    invalid: dict[str, None] = {}
    for token in _audience_tokens(pasted, csv_data):
        try:
            valid[uuid.UUID(token)] = None
        except ValueError:
            invalid[token[:100]] = None
    return Audience(valid=tuple(valid), invalid=tuple(invalid))


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a campaign's mail goes: at one instant, or at a local hour on a day in each
    recipient's own zone. Quiet hours move either out of the night where it would be."""

    send_at: datetime | None = None
    local_date: date | None = None
    local_hour: int | None = None

    def describe(self) -> str:
        if self.send_at is not None:
            return f"at {self.send_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        return f"at {self.local_hour:02d}:00 on {self.local_date} in each recipient's time zone"


def parse_schedule(
    when: str, send_at: str = "", local_date: str = "", local_hour: str = ""
) -> Schedule | None:
    """The schedule of the form's fields: `when` is now, at (an ISO time, UTC unless it says
    otherwise) or local (a date and an hour 0-23); raise CampaignInvalid."""
    try:
        if when in ("", "now"):
            return None
        if when == "at":
            instant = datetime.fromisoformat(send_at.strip())
            return Schedule(send_at=instant if instant.tzinfo else instant.replace(tzinfo=UTC))
        if when == "local":
            hour = int(local_hour)
            if not 0 <= hour <= 23:
                raise ValueError("the hour must be 0 to 23")
            return Schedule(local_date=date.fromisoformat(local_date.strip()), local_hour=hour)
    except ValueError as exc:
        raise CampaignInvalid(f"the schedule is not valid: {exc}") from exc
    raise CampaignInvalid(f"unknown schedule {when!r}: now, at or local")


@dataclass(frozen=True, slots=True)
class Draft:
    """The fields of a new campaign as entered."""

    name: str
    template_id: uuid.UUID
    content_value: str
    periodicity: Periodicity
    schedule: Schedule | None = None


def validate_draft(draft: Draft, audience: Audience) -> None:
    """Raise CampaignInvalid with every problem found."""
    problems = []
    if not draft.name.strip():
        problems.append("the name is empty")
    if draft.periodicity not in PERIODICITIES:
        problems.append(f"periodicity must be one of {', '.join(PERIODICITIES)}")
    if len(draft.content_value) > MAX_CONTENT_CHARS:
        problems.append(f"the text is longer than {MAX_CONTENT_CHARS} characters")
    if not audience.valid:
        problems.append("the audience has no valid user id")
    problems += _schedule_problems(draft)
    if problems:
        raise CampaignInvalid("; ".join(problems))


def _schedule_problems(draft: Draft) -> list[str]:
    schedule, now = draft.schedule, utcnow()
    if schedule is None:
        return []
    problems = []
    if draft.periodicity != "once":
        problems.append("only a `once` campaign can be scheduled (digests go at the send hour)")
    if schedule.send_at is not None and schedule.send_at <= now:
        problems.append("the send time is in the past")
    # The last zones to reach a day are a day behind UTC: a date before yesterday is past
    # for everyone.
    if schedule.local_date is not None and schedule.local_date < (now - timedelta(days=1)).date():
        problems.append("that day is over in every time zone")
    return problems


def create_campaign(*, draft: Draft, audience: Audience, created_by: str | None) -> Campaign:
    """Store a draft campaign with its valid recipients and the invalid entries listed back."""
    validate_draft(draft, audience)
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


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a campaign's recipients are, out of `total`."""

    total: int
    published: int
    notified: int
    sent: int
    failed: int
    skipped: int
    cancelled: int

    @property
    def waiting(self) -> int:
        """Notified but with no final outcome yet."""
        return self.notified - self.sent - self.failed - self.skipped - self.cancelled

    def percent(self, count: int) -> float:
        """`count` as a percentage of the total (0 for an empty campaign)."""
        return round(100.0 * count / self.total, 1) if self.total else 0.0

    @property
    def done(self) -> int:
        """Recipients with a final outcome."""
        return self.sent + self.failed + self.skipped + self.cancelled


def progress_of(total: int, published: int, states: Mapping[str, int]) -> Progress:
    """Fold per-state notification counts into the progress buckets."""

    def count(states_in: frozenset[str]) -> int:
        return sum(n for state, n in states.items() if state in states_in)

    return Progress(
        total=total,
        published=published,
        notified=sum(states.values()),
        sent=count(SENT_STATES),
        failed=count(FAILED_STATES),
        skipped=count(SKIPPED_STATES),
        cancelled=count(CANCELLED_STATES),
    )


def campaign_progress(*, campaign_id: uuid.UUID) -> tuple[Campaign, Progress]:
    """The campaign and its progress, read in one transaction."""
    with session_scope() as session:
        campaign = store.get(session=session, campaign_id=campaign_id)
        if campaign is None:
            raise CampaignInvalid("no such campaign")
        states = store.outcome_counts(session=session, campaign_id=campaign_id)
        return campaign, progress_of(campaign.total_recipients, campaign.published_count, states)


TEST_SUBJECT_PREFIX = "[Test] "
MAX_ADDRESS_CHARS = 320
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def test_recipient_allowed(address: str, allowed: str) -> bool:
    """Whether PORTAL_TEST_RECIPIENTS (addresses and @domains, comma-separated) has `address`."""
    address = address.casefold()
    domain = "@" + address.rpartition("@")[2]
    entries = {entry.strip().casefold() for entry in allowed.split(",") if entry.strip()}
    return address in entries or domain in entries


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
