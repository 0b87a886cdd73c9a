"""The limits an outside value must fit before it goes further: delays, addresses, texts, ids.

Every outside source (a Kafka record, an Auth record, a provider's answer, a template) hands us
values that later steps (PostgreSQL columns, Celery countdowns, `time.sleep`, mail headers) can
only hold within limits. These pure functions clip or refuse a value where it enters, so no
later step meets one it cannot hold (docs/fault-model.md, "Boundaries").
"""

from __future__ import annotations

import math
import re

# RFC 5321 §4.5.3.1: a path is at most 256 octets with its angle brackets, so an address at most
# 254; its local part at most 64 octets, its domain at most 255.
MAX_ADDRESS_CHARS = 254
MAX_LOCAL_PART_CHARS = 64
# An id or a short label from outside (a provider's message id): deliveries.provider_message_id.
MAX_ID_CHARS = 200
# An error text kept for an operator (deliveries.error, dead_letters.error).
MAX_ERROR_CHARS = 2000

# PostgreSQL text holds any Unicode but NUL, and UTF-8 cannot encode a lone surrogate.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# White space (str.isspace's, which re's \s is) or a control character.
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")


def unstorable_text(value: str) -> str | None:
    """Why PostgreSQL's text type cannot hold `value` (NUL, a lone surrogate), or None."""
    if value.isascii() and "\x00" not in value:
        return None  # the common case, without the regex: isascii() reads one flag
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    char = found.group()
    what = "NUL character" if char == "\x00" else f"lone surrogate U+{ord(char):04X}"
    return f"{what} at index {found.start()}"


def storable_text(value: str) -> str:
    """`value` with what PostgreSQL cannot store replaced by U+FFFD (for our own messages)."""
    return _UNSTORABLE.sub("\ufffd", value)


def clip(value: str, limit: int) -> str:
    """`value` cut to at most `limit` characters, an ellipsis marking a cut."""
    return value if len(value) <= limit else value[: limit - 1] + "…"


def clip_text(value: str, limit: int = MAX_ERROR_CHARS) -> str:
    """A text PostgreSQL can store, of at most `limit` characters (errors, provider texts)."""
    return clip(storable_text(value), limit)


def clip_id(value: object) -> str | None:
    """An outside id as a storable string of at most MAX_ID_CHARS, or None when there is none.

    An id over the limit is cut rather than refused: the thing it names (an accepted send)
    happened, and losing the record of it would cost more than a shortened id.
    """
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = text.strip()
    return clip_text(text, MAX_ID_CHARS) if text else None


def _number(raw: object) -> float | None:
    """A number from outside (a header's text, a JSON number), or None when it is none."""
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return float(raw) if isinstance(raw, (int, float)) else float(str(raw).strip())
    except (ValueError, OverflowError):
        return None


def bounded_seconds(raw: object, *, maximum: float) -> float | None:
    """A delay from outside (a header, a number) as finite seconds in [0, maximum], or None.

    None for what is not a number at all (an HTTP date, garbage, nothing), NaN included: the
    caller falls back to its own backoff. ±inf and huge values are clipped, negatives are 0.
    """
    seconds = _number(raw)
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), maximum)


def bounded_epoch(raw: object, *, now_ts: float, maximum_wait: float) -> float | None:
    """An epoch-seconds instant from outside (X-RateLimit-Reset), at most `maximum_wait` ahead.

    None for what is not a number, NaN and -inf included; +inf and the far future are
    `now_ts + maximum_wait`. A past instant is kept: waiting for it means not waiting.
    """
    instant = _number(raw)
    if instant is None or math.isnan(instant) or instant == -math.inf:
        return None
    return min(instant, now_ts + maximum_wait)


def address_problem(address: str) -> str | None:
    """Why `address` cannot be used as a recipient (RFC 5321 sizes, unstorable text), or None."""
    why = unstorable_text(address)
    if why is not None:
        return f"address holds a {why}"
    if _SPACE_OR_CONTROL.search(address):
        return "address holds white space or a control character"
    if len(address) > MAX_ADDRESS_CHARS:
        return f"address of {len(address)} characters is over RFC 5321's {MAX_ADDRESS_CHARS}"
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        return "address has no local part and domain"
    if len(local) > MAX_LOCAL_PART_CHARS:
        return (
            f"address local part of {len(local)} characters is over RFC 5321's "
            f"{MAX_LOCAL_PART_CHARS}"
        )
    return None
