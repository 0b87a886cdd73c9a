"""Plan one delivery: who, when, and what it says. Pure: the jobs do the I/O around it.

Every reason a delivery is skipped or failed is decided here, side by side; when it goes out,
and why then, is app/jobs/timing.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from app.auth.client import AuthUser
from app.config import Settings
from app.domain import policy, sendtime
from app.domain.frequency import Cap
from app.domain.rendering import TemplateInvalid, render
from app.domain.suppression import Suppression, skip_detail
from app.domain.vocabulary import (
    TRANSACTIONAL_KINDS,
    UNSUBSCRIBABLE_KINDS,
    CapPolicy,
    Kind,
    Periodicity,
    PlannedStatus,
    skip_text,
)
from app.jobs.email_task import unsendable
from app.jobs.links import preferences_url, unsubscribe_headers, unsubscribe_url
from app.jobs.timing import Schedule, cap_hold, delivery_time

log = logging.getLogger(__name__)

# A display name from Auth goes into subjects: clip it, so one absurd name cannot break the
# 998-character line limit of a mail header for its user (or anyone's chunk).
MAX_NAME_CHARS = 100


def clip_name(name: str) -> str:
    """A display name of at most MAX_NAME_CHARS characters (an ellipsis marks a cut)."""
    return name if len(name) <= MAX_NAME_CHARS else name[: MAX_NAME_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A notification row with its message and template, as the jobs read it."""

    notification_id: uuid.UUID
    user_id: uuid.UUID
    kind: Kind
    periodicity: Periodicity
    like_count: int
    content_id: uuid.UUID | None
    content_value: str
    subject: str
    body_html: str
    body_text: str
    # A mailing of a scheduled campaign: at this instant, or at this local hour on this day.
    campaign_send_at: datetime | None = None
    campaign_local_date: date | None = None
    campaign_local_hour: int | None = None
    # A campaign's mail over a frequency cap: held (None too), skipped, or exempt.
    campaign_cap_policy: CapPolicy | None = None


class _PlanBase(TypedDict):
    """The fields every plan of one notification and period shares."""

    notification_id: uuid.UUID
    period_key: str
    send_at: datetime
    send_reason: str


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """What the jobs record in `deliveries` for one notification and period."""

    notification_id: uuid.UUID
    period_key: str
    send_at: datetime
    send_reason: str  # why then: zone, send hour, quiet hours (the user's timeline shows it)
    status: PlannedStatus  # "scheduled" | "skipped" | "failed"
    email: str | None = None
    subject: str | None = None
    body_html: str | None = None
    body_text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reported_count: int = 0
    error: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {
            "notification_id": self.notification_id,
            "period_key": self.period_key,
            "send_at": self.send_at,
            "send_reason": self.send_reason,
            "status": self.status,
            "email": self.email,
            "subject": self.subject,
            "body_html": self.body_html,
            "body_text": self.body_text,
            "headers": self.headers,
            "reported_count": self.reported_count,
            "error": self.error,
        }


def _schedule(candidate: Candidate) -> Schedule:
    return Schedule(
        candidate.kind in TRANSACTIONAL_KINDS,
        candidate.periodicity,
        candidate.campaign_send_at,
        candidate.campaign_local_date,
        candidate.campaign_local_hour,
    )


def plan_delivery(
    candidate: Candidate,
    user: AuthUser | None,
    *,
    opted_out: frozenset[str],
    now: datetime,
    settings: Settings,
    user_problem: str | None = None,
    suppression: Suppression | None = None,
    caps: Sequence[Cap] = (),
    others: Sequence[datetime] = (),
) -> DeliveryPlan:
    """Decide, time and render one delivery of `candidate` to `user` (None: unknown user).

    Whatever goes wrong is this delivery's alone: an unusable Auth record (`user_problem`) is
    skipped, and a template that fails, or an e-mail that would break the task contract, is
    failed, each with the reason stored. `suppression`: the user's address gets no more mail;
    `caps` (FREQUENCY_CAP) against `others`, the send times of the user's other mail.
    """
    skipped, tz = _timed(candidate, user, now, settings)

    if user_problem is not None:
        return DeliveryPlan(
            **skipped, status="skipped", error=skip_text("unusable Auth record", user_problem)
        )
    if user is None:
        return DeliveryPlan(**skipped, status="skipped", error=skip_text("unknown user"))
    refused = _refused(candidate, user, opted_out, suppression, settings)
    timed = refused or _within_caps(candidate, skipped, tz, caps, others, settings)
    if isinstance(timed, str):  # why it may not go (policy, opt-out, suppression, a cap)
        return DeliveryPlan(**skipped, status="skipped", email=user.email, error=timed)

    link, preferences = _links(candidate, user, settings, now)
    headers = unsubscribe_headers(link)
    try:
        email = render(
            subject=candidate.subject,
            body_html=candidate.body_html,
            body_text=candidate.body_text,
            variables=_variables(candidate, user, link, preferences),
        )
    except TemplateInvalid as exc:
        log.error("cannot render notification %s: %s", candidate.notification_id, exc)
        return DeliveryPlan(**skipped, status="failed", email=user.email, error=str(exc)[:2000])
    problem = unsendable(candidate.notification_id, user.email, email, headers)
    if problem is not None:
        log.error("notification %s cannot be sent: %s", candidate.notification_id, problem)
        return DeliveryPlan(**skipped, status="failed", email=None, error=problem)
    return DeliveryPlan(
        **timed,
        status="scheduled",
        email=user.email,
        subject=email.subject,
        body_html=email.html,
        body_text=email.text,
        headers=headers,
        reported_count=candidate.like_count if candidate.kind == "likes" else 0,
    )


def _links(
    candidate: Candidate, user: AuthUser, settings: Settings, now: datetime
) -> tuple[str, str]:
    """The mail's one-click unsubscribe and preference links (none for transactional mail)."""
    if candidate.kind not in UNSUBSCRIBABLE_KINDS:
        return "", ""
    return (
        unsubscribe_url(settings, user.user_id, candidate.kind, now),
        preferences_url(settings, user.user_id, now),
    )


def _refused(
    candidate: Candidate,
    user: AuthUser,
    opted_out: frozenset[str],
    suppression: Suppression | None,
    settings: Settings,
) -> str | None:
    """Why this mail may not go to this user (the Auth policy, our opt-outs, a suppressed
    address), or None."""
    decision = policy.decide(
        kind=candidate.kind, policy=policy.Policy.from_dict(user.policy), opted_out=opted_out
    )
    if not decision.allowed:
        return decision.reason
    transactional = candidate.kind in TRANSACTIONAL_KINDS
    if suppression is not None and (settings.suppress_transactional or not transactional):
        return skip_text("address suppressed", skip_detail(suppression))
    return None


def _within_caps(
    candidate: Candidate,
    timed: _PlanBase,
    tz: ZoneInfo,
    caps: Sequence[Cap],
    others: Sequence[datetime],
    settings: Settings,
) -> _PlanBase | str:
    """The delivery's time within the user's frequency caps: as planned, held to the next free
    slot, or why it is skipped instead (its campaign says so, or no slot is free)."""
    policy = candidate.campaign_cap_policy or "hold"
    if not caps or candidate.kind in TRANSACTIONAL_KINDS or policy == "exempt":
        return timed
    quiet = settings.quiet_hours_window
    hold = cap_hold(timed["send_at"], others, caps, tz, quiet, candidate.periodicity)
    if hold is None:
        return timed
    if isinstance(hold, Cap):
        return skip_text("frequency capped", f"{hold}, and no time within 60 days is free")
    if policy == "skip":
        return skip_text("frequency capped", f"{hold.cap}; its campaign skips rather than waits")
    return {
        "notification_id": timed["notification_id"],
        "period_key": hold.period_key,
        "send_at": hold.send_at,
        "send_reason": f"{timed['send_reason']}; {hold.reason}",
    }


def _timed(
    candidate: Candidate, user: AuthUser | None, now: datetime, settings: Settings
) -> tuple[_PlanBase, ZoneInfo]:
    """When the delivery goes, in the user's zone (the default one, said so, if theirs is not
    known), the period it counts for, and the zone."""
    tz, fell_back = sendtime.resolve_zone(
        user.timezone if user else None, settings.default_timezone
    )
    if user and fell_back:
        log.warning("unknown time zone %r for user %s; using %s", user.timezone, user.user_id, tz)
    send_at, send_reason, key = delivery_time(
        _schedule(candidate), tz, settings.quiet_hours_window, settings.send_hour_local, now
    )
    if user and fell_back:
        send_reason += f" (time zone {user.timezone!r} unknown: {tz.key} used)"
    return {
        "notification_id": candidate.notification_id,
        "period_key": key,
        "send_at": send_at,
        "send_reason": send_reason,
    }, tz


def _variables(
    candidate: Candidate, user: AuthUser, unsubscribe: str, preferences: str
) -> dict[str, Any]:
    """What the template of `candidate` may use (app.domain.rendering.SAMPLE_VARIABLES' names)."""
    return {
        "name": clip_name(user.name),
        "email": user.email,
        "content_value": candidate.content_value,
        "content_id": str(candidate.content_id) if candidate.content_id else "",
        "unsubscribe_url": unsubscribe,
        "preferences_url": preferences,
        "count": candidate.like_count,
    }
