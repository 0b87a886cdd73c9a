"""SendGrid Event Webhook: check the signature, and read events as our delivery outcomes."""

from __future__ import annotations

import binascii
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from sendgrid.helpers.eventwebhook import EventWebhook

from app.domain.vocabulary import DeliveryStatus, SuppressionReason

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

# SendGrid event -> delivery status (None: the status stays) and whether it turns mail off.
# What an event says about the address itself is `_suppression`'s.
_EVENTS: dict[str, tuple[DeliveryStatus | None, bool]] = {
    "delivered": ("delivered", False),
    "deferred": ("deferred", False),
    "bounce": ("bounced", False),
    "dropped": ("dropped", False),
    "spamreport": ("spam", True),
    "unsubscribe": (None, True),
    "group_unsubscribe": (None, True),
}


@dataclass(frozen=True, slots=True)
class ProviderEvent:
    """One event about one of our deliveries."""

    delivery_id: uuid.UUID
    status: DeliveryStatus | None
    opt_out: bool
    error: str | None
    # What it says about the address: no more mail to it, or one soft bounce to count.
    suppression: SuppressionReason | None = None
    soft_bounce: bool = False


def verify(public_key_b64: str, body: bytes, signature: str | None, timestamp: str | None) -> bool:
    """Whether the body was signed by the key SENDGRID_WEBHOOK_PUBLIC_KEY names."""
    if not (public_key_b64 and signature and timestamp):
        return False
    helper = EventWebhook()
    try:
        key = helper.convert_public_key_to_ecdsa(public_key_b64)
        return bool(helper.verify_signature(body.decode("utf-8"), signature, timestamp, key))
    except (ValueError, UnsupportedAlgorithm, binascii.Error, UnicodeDecodeError) as exc:
        log.warning("webhook signature not checkable: %s", exc)
        return False


def fresh(timestamp: str, *, max_age_s: float, now: float | None = None) -> bool:
    """Whether a webhook timestamp (Unix seconds, signed with the body) is within max_age_s."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    return abs((time.time() if now is None else now) - sent) <= max_age_s


def parse_events(body: bytes) -> list[ProviderEvent]:
    """Our events from a webhook body (a JSON array); raise ValueError if it is not one."""
    try:
        events = json.loads(body)
    except RecursionError as exc:  # deeply nested arrays: not an event batch, whoever signed it
        raise ValueError("the body nests too deeply") from exc
    if not isinstance(events, list):
        raise ValueError("the body must be a JSON array of events")
    return [e for e in (_event(item) for item in events) if e is not None]


def _event(item: Any) -> ProviderEvent | None:
    # Any JSON at all may arrive signed: an `event` that is not a string is not one of ours.
    if not isinstance(item, dict) or not isinstance(item.get("event"), str):
        return None
    if item["event"] not in _EVENTS:
        return None  # processed, open, click...: nothing to record
    try:
        # The custom arg our backend set on the mail; events of other senders have none.
        delivery_id = uuid.UUID(str(item.get("delivery_id")))
    except ValueError:
        return None
    status, opt_out = _EVENTS[item["event"]]
    error = item.get("reason") or item.get("response") if status != "delivered" else None
    # PostgreSQL text holds no NUL character: it would fail the whole batch's transaction.
    text = str(error).replace("\x00", "") if error else None
    suppression, soft = _suppression(item)
    return ProviderEvent(delivery_id, status, opt_out, text or None, suppression, soft)


def _suppression(item: dict[str, Any]) -> tuple[SuppressionReason | None, bool]:
    """What an event says about its address: (a reason to suppress it, a soft bounce).

    A `bounce` is hard unless its `type` is `blocked` (the receiving server refused it for now,
    e.g. a full mailbox or a reputation block); SendGrid `dropped` a mail to an address on its own
    lists, which names an invalid address as such; `deferred` is the provider still trying.
    """
    event = item["event"]
    if event == "bounce":
        return (None, True) if item.get("type") == "blocked" else ("hard bounce", False)
    if event == "dropped":
        invalid = "invalid" in str(item.get("reason") or "").lower()
        return ("invalid address" if invalid else "blocked"), False
    if event == "spamreport":
        return "spam report", False
    return None, False
