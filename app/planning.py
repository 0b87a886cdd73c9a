"""Plan one delivery: who, when, and what it says. Pure: the jobs do the I/O around it."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from app.auth_client import AuthUser
from app.config import Settings
from app.domain import periods, policy, sendtime
from app.domain.rendering import TemplateInvalid, render
from app.domain.tokens import make_unsubscribe_token

log = logging.getLogger(__name__)

UNSUBSCRIBE_TOKEN_TTL = timedelta(days=60)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A notification row with its message and template, as the jobs read it."""

    notification_id: uuid.UUID
    user_id: uuid.UUID
    kind: str
    periodicity: str
    like_count: int
    content_id: uuid.UUID | None
    content_value: str
    subject: str
    body_html: str
    body_text: str


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    """What the jobs record in `deliveries` for one notification and period."""

    notification_id: uuid.UUID
    period_key: str
    send_at: datetime
    status: str  # "scheduled" | "skipped" | "failed"
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
            "status": self.status,
            "email": self.email,
            "subject": self.subject,
            "body_html": self.body_html,
            "body_text": self.body_text,
            "headers": self.headers,
            "reported_count": self.reported_count,
            "error": self.error,
        }


def unsubscribe_url(settings: Settings, user_id: uuid.UUID, kind: str, now: datetime) -> str:
    """The one-click unsubscribe link for this user and kind of mail."""
    token = make_unsubscribe_token(
        secret=settings.secret_key,
        user_id=user_id,
        kind=kind,
        expires_at=now + UNSUBSCRIBE_TOKEN_TTL,
    )
    return f"{settings.public_base_url.rstrip('/')}/unsubscribe?{urlencode({'token': token})}"


def _send_at(candidate: Candidate, tz: Any, settings: Settings, now: datetime) -> datetime:
    if candidate.kind in policy.TRANSACTIONAL_KINDS:
        return sendtime.transactional_send_time(now)
    quiet = settings.quiet_hours_window
    if candidate.periodicity == "once":
        return sendtime.earliest_send_time(now_utc=now, tz=tz, quiet=quiet)
    return sendtime.send_time(now_utc=now, tz=tz, send_hour=settings.send_hour_local, quiet=quiet)


def plan_delivery(
    candidate: Candidate,
    user: AuthUser | None,
    *,
    opted_out: frozenset[str],
    now: datetime,
    settings: Settings,
) -> DeliveryPlan:
    """Decide, time and render one delivery of `candidate` to `user` (None: unknown user)."""
    tz, fell_back = sendtime.resolve_zone(
        user.timezone if user else None, settings.default_timezone
    )
    if user and fell_back:
        log.warning("unknown time zone %r for user %s; using %s", user.timezone, user.user_id, tz)
    send_at = _send_at(candidate, tz, settings, now)
    key = periods.period_key(candidate.periodicity, sendtime.local_day(send_at, tz))
    skipped = {"notification_id": candidate.notification_id, "period_key": key, "send_at": send_at}

    if user is None:
        return DeliveryPlan(**skipped, status="skipped", error="unknown user")
    decision = policy.decide(
        kind=candidate.kind, policy=policy.Policy.from_dict(user.policy), opted_out=opted_out
    )
    if not decision.allowed:
        return DeliveryPlan(**skipped, status="skipped", email=user.email, error=decision.reason)

    headers: dict[str, str] = {}
    link = ""
    if candidate.kind in policy.UNSUBSCRIBABLE_KINDS:
        link = unsubscribe_url(settings, user.user_id, candidate.kind, now)
        # RFC 8058 one-click unsubscribe, required by large mailbox providers for bulk mail.
        headers = {
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    variables = {
        "name": user.name,
        "email": user.email,
        "content_value": candidate.content_value,
        "content_id": str(candidate.content_id) if candidate.content_id else "",
        "unsubscribe_url": link,
        "count": candidate.like_count,
    }
    try:
        email = render(
            subject=candidate.subject,
            body_html=candidate.body_html,
            body_text=candidate.body_text,
            variables=variables,
        )
    except TemplateInvalid as exc:
        log.error("cannot render notification %s: %s", candidate.notification_id, exc)
        return DeliveryPlan(**skipped, status="failed", email=user.email, error=str(exc))
    return DeliveryPlan(
        **skipped,
        status="scheduled",
        email=user.email,
        subject=email.subject,
        body_html=email.html,
        body_text=email.text,
        headers=headers,
        reported_count=candidate.like_count if candidate.kind == "likes" else 0,
    )
