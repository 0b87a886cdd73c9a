"""A user's story, in order: what came in for them, what it led to, and why each mail went (or
did not go) when it did. Pure: the rows come from app/db/timeline.py, and the portal page and
`notify explain` both print the entries built here, so they tell the same story.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from app.domain.vocabulary import (
    ChoosableKind,
    DeliveryStatus,
    EventKind,
    Kind,
    NotificationStatus,
    Periodicity,
    SkipReason,
    skip_reason_of,
)

# How each reason for a skip reads on the timeline ({mail}: what the mail is called).
SKIP_WORDING: dict[SkipReason, str] = {
    "email disabled": "skipped by the Auth policy: the user turned e-mail off in Auth",
    "likes disabled": "skipped by the Auth policy: the user turned like notifications off in Auth",
    "mailing disabled": "skipped by the Auth policy: the user turned mailings off in Auth",
    "opted out": "skipped: the user turned {mail}s off here (unsubscribe link or preferences)",
    "unknown user": "skipped: the Auth service does not know this user",
    "unusable Auth record": "skipped: unusable Auth record",
    "address suppressed": "skipped: the address gets no more mail",
    "frequency capped": "skipped: the user had as many mails as the frequency cap allows",
}
MAX_DETAIL_CHARS = 300
# What each kind of mail is called on the timeline.
MAIL_NAMES = {"welcome": "welcome mail", "likes": "like digest", "mailing": "mailing"}


@dataclass(frozen=True, slots=True)
class EventRow:
    at: datetime
    kind: EventKind
    topic: str
    partition: int
    offset: int
    periodicity: Periodicity
    content_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class RefusedRow:
    at: datetime
    topic: str
    partition: int
    offset: int
    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class NotificationRow:
    notification_id: uuid.UUID
    at: datetime
    kind: Kind
    periodicity: Periodicity
    status: NotificationStatus
    content_value: str
    like_count: int
    campaign_name: str | None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: uuid.UUID
    notification_id: uuid.UUID
    kind: Kind
    period_key: str
    created_at: datetime
    send_at: datetime
    send_reason: str | None
    status: DeliveryStatus
    email: str | None
    error: str | None
    backend: str | None
    provider_message_id: str | None
    sent_at: datetime | None
    updated_at: datetime
    attempts: int


@dataclass(frozen=True, slots=True)
class ProviderEventRow:
    delivery_id: uuid.UUID
    at: datetime
    status: DeliveryStatus
    detail: str | None


@dataclass(frozen=True, slots=True)
class OptOutRow:
    at: datetime
    kind: Kind
    source: str


@dataclass(frozen=True, slots=True)
class PreferenceRow:
    at: datetime
    kind: ChoosableKind
    choice: str


@dataclass
class UserRecord:
    """Everything stored about one user, as the queries found it."""

    user_id: uuid.UUID
    events: list[EventRow] = field(default_factory=list)
    refused: list[RefusedRow] = field(default_factory=list)
    notifications: list[NotificationRow] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    provider_events: list[ProviderEventRow] = field(default_factory=list)
    opt_outs: list[OptOutRow] = field(default_factory=list)
    preferences: list[PreferenceRow] = field(default_factory=list)

    @property
    def emails(self) -> list[str]:
        """The addresses this user's mail went to, newest first."""
        seen: dict[str, None] = {}
        for d in sorted(self.deliveries, key=lambda d: d.created_at, reverse=True):
            if d.email:
                seen.setdefault(d.email, None)
        return list(seen)


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the story: when, what happened (`outcome`), to what, and why."""

    at: datetime
    outcome: str
    title: str
    detail: str

    def line(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} UTC  {self.outcome:<10}  {self.title} - {self.detail}"


def clip(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def skip_reason(error: str | None, kind: Kind) -> str:
    """Why a delivery was skipped, in an operator's words."""
    reason, detail = skip_reason_of(error)
    if reason is None:
        return f"skipped: {detail}" if detail else "skipped"
    wording = SKIP_WORDING[reason].format(mail=MAIL_NAMES.get(kind, kind))
    return f"{wording}: {detail}" if detail else wording


def _event_entries(record: UserRecord) -> list[Entry]:
    entries = [
        Entry(
            e.at,
            "received",
            f"{e.kind} event from {e.topic}[{e.partition}] offset {e.offset}",
            f"periodicity {e.periodicity}" + (f", content {e.content_id}" if e.content_id else ""),
        )
        for e in record.events
    ]
    entries += [
        Entry(
            r.at,
            "refused",
            f"event from {r.topic}[{r.partition}] offset {r.offset} went to the dead letters",
            clip(f"{r.reason}: {r.error}"),
        )
        for r in record.refused
    ]
    return entries


def _notification_entries(record: UserRecord) -> list[Entry]:
    entries = []
    for n in record.notifications:
        what = f"{n.kind} notification ({n.periodicity})"
        if n.campaign_name:
            what += f" of the campaign {n.campaign_name!r}"
        detail = f"{n.like_count} likes so far" if n.kind == "likes" else clip(n.content_value)
        entries.append(Entry(n.at, "created", what, detail or "(no text)"))
    return entries


def _delivery_entries(d: DeliveryRow, events: list[ProviderEventRow]) -> list[Entry]:
    mail = f"{MAIL_NAMES.get(d.kind, d.kind)} ({d.period_key})"
    if d.status == "skipped":
        return [Entry(d.created_at, "skipped", mail, skip_reason(d.error, d.kind))]
    when = f"for {d.send_at:%Y-%m-%d %H:%M} UTC"
    planned = Entry(
        d.created_at,
        "scheduled",
        f"{mail} {when}" + (f" to {d.email}" if d.email else ""),
        d.send_reason or "(planned before reasons were recorded)",
    )
    entries = [planned]
    if d.status == "failed" and d.sent_at is None:
        tries = f" after {d.attempts} attempt{'s' if d.attempts != 1 else ''}" if d.attempts else ""
        entries.append(Entry(d.updated_at, "failed", f"{mail}{tries}", clip(d.error or "failed")))
    elif d.status == "cancelled":
        entries.append(Entry(d.updated_at, "cancelled", mail, clip(d.error or "cancelled")))
    if d.sent_at is not None:
        via = f" via {d.backend}" if d.backend else ""
        entries.append(
            Entry(
                d.sent_at,
                "sent",
                f"{mail}{via}" + (f" to {d.email}" if d.email else ""),
                f"provider message id {d.provider_message_id}"
                if d.provider_message_id
                else "accepted by the provider",
            )
        )
    entries += [
        Entry(e.at, e.status, f"{mail}: the provider reports {e.status}", clip(e.detail or "-"))
        for e in events
    ]
    return entries


def build(record: UserRecord) -> list[Entry]:
    """The user's story, oldest first (ties keep cause before effect)."""
    events_of: dict[uuid.UUID, list[ProviderEventRow]] = {}
    for event in sorted(record.provider_events, key=lambda e: e.at):
        events_of.setdefault(event.delivery_id, []).append(event)
    entries = _event_entries(record) + _notification_entries(record)
    for d in record.deliveries:
        entries += _delivery_entries(d, events_of.get(d.delivery_id, []))
    entries += [
        Entry(o.at, "opted out", f"{MAIL_NAMES.get(o.kind, o.kind)}s turned off", f"by {o.source}")
        for o in record.opt_outs
    ]
    entries += [
        Entry(
            p.at,
            "preference",
            f"{MAIL_NAMES.get(p.kind, p.kind)}s set to {p.choice} on the preference page",
            "planning follows it from the next period on",
        )
        for p in record.preferences
    ]
    # A stable sort: entries of one instant stay in the order built (event, notification, ...).
    return sorted(entries, key=lambda e: e.at)
