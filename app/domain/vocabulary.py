"""The service's words, each defined once: event kinds, mail kinds, periodicities and statuses.

The database's CHECK constraints, the JSON Schemas' enums and the code all use these: a new value
is added here (and in a migration), nowhere else.
"""

from __future__ import annotations

from typing import Final, Literal, TypeVar, get_args

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
# The kinds a recipient chooses on the preference page (welcome mail is not a choice).
ChoosableKind = Literal["likes", "mailing"]
CHOOSABLE_KINDS: Final[tuple[ChoosableKind, ...]] = get_args(ChoosableKind)
# What a signed link names: a kind of mail to unsubscribe from, or the preference page.
TokenKind = Kind | Literal["preferences"]
TOKEN_KINDS: Final[tuple[TokenKind, ...]] = (*KINDS, "preferences")
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
# What planning makes of a due row: a delivery scheduled, skipped (policy) or failed (template).
PlannedStatus = Literal["scheduled", "skipped", "failed"]
PLANNED_STATUSES: Final[tuple[PlannedStatus, ...]] = get_args(PlannedStatus)
# An e-mail worker may claim a delivery in these: planned, and not yet being sent.
CLAIMABLE_DELIVERY_STATUSES: Final[tuple[DeliveryStatus, ...]] = ("scheduled", "enqueued")
# Deliveries an operator may retry once the cause is fixed.
RETRYABLE_DELIVERY_STATUSES: Final[tuple[DeliveryStatus, ...]] = ("failed", "skipped")

# What became of a delivery, as the dashboard, campaign progress and the tests count it. `None`:
# nothing final yet (planned, queued, being sent, or the provider still trying the recipient).
# Spam counts as sent: the mail reached the inbox before the recipient reported it.
OutcomeGroup = Literal["sent", "failed", "skipped", "cancelled"]
OUTCOME_GROUPS: Final[tuple[OutcomeGroup, ...]] = get_args(OutcomeGroup)
OUTCOME_OF_STATUS: Final[dict[DeliveryStatus, OutcomeGroup | None]] = {
    "scheduled": None,
    "enqueued": None,
    "sending": None,
    "deferred": None,
    "sent": "sent",
    "delivered": "sent",
    "spam": "sent",
    "bounced": "failed",
    "dropped": "failed",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}


def outcome_of(status: str) -> OutcomeGroup | None:
    """The outcome group of a stored status; None while nothing is final (or for no status)."""
    for known in DELIVERY_STATUSES:
        if status == known:
            return OUTCOME_OF_STATUS[known]
    return None


def statuses_in(group: OutcomeGroup) -> tuple[DeliveryStatus, ...]:
    """The delivery statuses of an outcome group, in the vocabulary's order."""
    return tuple(status for status in DELIVERY_STATUSES if OUTCOME_OF_STATUS[status] == group)


# Why a delivery was skipped, as stored (the `error` column), sometimes with a detail after ": ".
# The timeline words each for an operator (app/domain/timeline.py); a test holds it to all of them.
SkipReason = Literal[
    "email disabled",  # the Auth policy: no e-mail at all
    "likes disabled",  # the Auth policy: no like digests
    "mailing disabled",  # the Auth policy: no mailings
    "opted out",  # our own opt-out: an unsubscribe link or the preference page
    "unknown user",  # Auth does not know the user
    "unusable Auth record",  # Auth's record of the user cannot be used (the detail says why)
    "address suppressed",  # the address bounced, reported spam, ... (the detail says what, when)
    "frequency capped",  # the user had as many mails as FREQUENCY_CAP allows (the detail: which)
]
SKIP_REASONS: Final[tuple[SkipReason, ...]] = get_args(SkipReason)


def skip_text(reason: SkipReason, detail: str | None = None) -> str:
    """The stored text of a skip: its reason, and the detail when there is one."""
    return f"{reason}: {detail}" if detail else reason


def skip_reason_of(text: str | None) -> tuple[SkipReason | None, str | None]:
    """The reason and detail of a stored skip text; (None, text) for a text of no known reason."""
    if text is None:
        return None, None
    for reason in SKIP_REASONS:
        if text == reason:
            return reason, None
        if text.startswith(f"{reason}: "):
            return reason, text[len(reason) + 2 :]
    return None, text


# Why an address gets no more mail (the `suppressions` table): what the provider or the
# recipient's server said about it, or an operator's entry.
SuppressionReason = Literal[
    "hard bounce",  # the recipient's server refused the address for good
    "soft bounces",  # refused for a while, SUPPRESS_AFTER_SOFT_BOUNCES times in its window
    "spam report",  # the recipient reported one of our mails as spam
    "invalid address",  # the provider or the SMTP server refused the address itself
    "blocked",  # the provider would not send to it (SendGrid's `dropped`)
    "manual",  # an operator's entry (portal, CLI, CSV import)
]
SUPPRESSION_REASONS: Final[tuple[SuppressionReason, ...]] = get_args(SuppressionReason)

# What a campaign's mail does when it would break a user's frequency cap: wait for the next
# free slot, be skipped, or go regardless (a security notice).
CapPolicy = Literal["hold", "skip", "exempt"]
CAP_POLICIES: Final[tuple[CapPolicy, ...]] = get_args(CapPolicy)

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


# --- reading a word from outside -----------------------------------------------------------------

Word = TypeVar("Word", bound=str)


def one_of(value: object, words: tuple[Word, ...], what: str) -> Word:
    """`value` as one of `words` (a message, a form, a CLI option); ValueError for anything else."""
    for word in words:
        if value == word:
            return word
    raise ValueError(f"unknown {what} {value!r}: expected one of {', '.join(words)}")
