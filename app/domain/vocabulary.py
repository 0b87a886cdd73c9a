"""The service's words, each defined once: event kinds, mail kinds, periodicities and statuses.

The database's CHECK constraints, the JSON Schemas' enums and the code all use these: a new value
is added here (and in a migration), nowhere else.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# --- what comes in ------------------------------------------------------------------------------

EventKind = Literal["user_registered", "comment_liked", "mailing"]
EVENT_KINDS: Final[tuple[EventKind, ...]] = get_args(EventKind)

Periodicity = Literal["once", "daily", "weekly"]
PERIODICITIES: Final[tuple[Periodicity, ...]] = get_args(Periodicity)

# --- what goes out ------------------------------------------------------------------------------

Kind = Literal["welcome", "likes", "mailing"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

KIND_OF_EVENT: Final[dict[EventKind, Kind]] = {
    "user_registered": "welcome",
    "comment_liked": "likes",
    "mailing": "mailing",
}
# The default template of each kind (templates/<name>/); a message may name another one.
TEMPLATE_OF_KIND: Final[dict[Kind, str]] = {
    "welcome": "welcome",
    "likes": "likes_digest",
    "mailing": "mailing",
}
# Transactional mail (a confirmation link) ignores policy and opt-outs and goes at once.
TRANSACTIONAL_KINDS: Final[frozenset[Kind]] = frozenset({"welcome"})
UNSUBSCRIBABLE_KINDS: Final[frozenset[Kind]] = frozenset({"likes", "mailing"})

# --- statuses -----------------------------------------------------------------------------------

NotificationStatus = Literal["pending", "queued", "sent", "failed", "skipped"]
NOTIFICATION_STATUSES: Final[tuple[NotificationStatus, ...]] = get_args(NotificationStatus)

DeliveryStatus = Literal[
    "scheduled",  # send time recorded, waiting for it
    "enqueued",  # handed to the `emails` queue
    "sending",  # a worker is calling the provider
    "sent",  # provider accepted it
    "delivered",  # provider reported delivery (webhook)
    "deferred",  # provider is still trying the recipient's server (webhook)
    "bounced",  # the recipient's server refused it (webhook)
    "dropped",  # the provider would not send it, e.g. a suppressed address (webhook)
    "spam",  # the recipient reported it as spam (webhook)
    "failed",  # gave up; the notification is due again next period
    "skipped",  # policy, opt-out or unknown user
    "cancelled",  # e.g. its campaign was cancelled
]
DELIVERY_STATUSES: Final[tuple[DeliveryStatus, ...]] = get_args(DeliveryStatus)
# An e-mail worker may claim a delivery in these: planned, and not yet being sent.
CLAIMABLE_DELIVERY_STATUSES: Final[tuple[DeliveryStatus, ...]] = ("scheduled", "enqueued")
# Deliveries an operator may retry once the cause is fixed.
RETRYABLE_DELIVERY_STATUSES: Final[tuple[DeliveryStatus, ...]] = ("failed", "skipped")

CampaignStatus = Literal["draft", "publishing", "published", "cancelled"]
CAMPAIGN_STATUSES: Final[tuple[CampaignStatus, ...]] = get_args(CampaignStatus)

DeadLetterStatus = Literal["dead", "replayed"]
DEAD_LETTER_STATUSES: Final[tuple[DeadLetterStatus, ...]] = get_args(DeadLetterStatus)

# --- the admin portal ---------------------------------------------------------------------------

# Each role can do what the one before it can: viewers read everything, editors also change
# templates and prepare campaigns as drafts, admins also send campaigns, run and schedule the
# jobs, replay and retry, and manage portal users.
PortalRole = Literal["viewer", "editor", "admin"]
PORTAL_ROLES: Final[tuple[PortalRole, ...]] = get_args(PortalRole)
