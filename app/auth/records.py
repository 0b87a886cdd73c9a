"""The boundary of Auth's answers: JSON read safely, each user record judged on its own.

Whatever one record holds (a 5,000-digit number, nesting deeper than the parser goes, a NaN,
an address of 400 characters, a NUL), it costs only its own user: the record is refused with a
reason, or its display values are clipped, before anything of it reaches a template, a mail
header or a PostgreSQL column (docs/fault-model.md, "Boundaries").
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from app.contracts import validate
from app.domain.bounds import address_problem, clip, storable_text

# A display name goes into subjects: clipped, so one absurd name cannot break the 998-character
# line limit of a mail header for its user (or anyone's chunk).
MAX_NAME_CHARS = 100
# The longest IANA zone name is 32 characters; anything longer is no zone (the default is used).
MAX_TIMEZONE_CHARS = 64


class UnreadableAnswer(ValueError):
    """An answer whose JSON one record can make unreadable as a whole (depth, digits, NaN).

    The caller asks again for fewer users, down to the one whose record it is.
    """


class UnusableRecord(ValueError):
    """One user's record that breaks the contract; the message says why."""


@dataclass(frozen=True, slots=True)
class AuthUser:
    """One user as Auth knows them; `policy` is the raw notification_policy flags."""

    user_id: uuid.UUID
    email: str
    name: str
    timezone: str
    policy: dict[str, bool]


def _refuse_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity, which are not JSON (RFC 8259).
    raise ValueError(f"{name} is not a JSON number")


def parse_answer(content: bytes) -> Any:
    """The JSON of an answer body.

    Raises json.JSONDecodeError when the body is not JSON at all (the whole answer is broken),
    and UnreadableAnswer when it is JSON that Python cannot hold (nesting deeper than the
    parser's recursion limit, an integer over its digit limit, NaN): one record may cause that.
    """
    try:
        # orjson reads a well-formed answer several times faster; whatever it refuses (NaN, an
        # integer past 64 bits, nesting past 1,024, bytes that are not UTF-8) is read again
        # below, which tells a broken answer from a broken record.
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(content, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except RecursionError as exc:
        raise UnreadableAnswer(f"JSON nested too deeply ({exc})") from exc
    except ValueError as exc:  # the integer digit limit, NaN/Infinity, bytes that are not UTF
        raise UnreadableAnswer(f"JSON that cannot be read: {exc}"[:300]) from exc


def read_user(raw: Any) -> AuthUser:
    """One record as a usable user, or UnusableRecord with the reason.

    The address must be one a mail server and our columns take (RFC 5321 sizes, no NUL or
    lone surrogate); the name is clipped and cleaned, the zone name bounded.
    """
    try:
        validate("auth_user", raw)
    except ValueError as exc:
        raise UnusableRecord(str(exc)[:500]) from exc
    except RecursionError as exc:  # a validator walking a deeply nested extra field
        raise UnusableRecord("auth_user: nested too deeply") from exc
    problem = address_problem(raw["email"])
    if problem is not None:
        raise UnusableRecord(f"auth_user: {problem}")
    return AuthUser(
        user_id=uuid.UUID(raw["user_id"]),
        email=raw["email"],
        name=clip(storable_text(raw["name"]), MAX_NAME_CHARS),
        timezone=storable_text(raw["timezone"])[:MAX_TIMEZONE_CHARS],
        policy={key: raw["notification_policy"][key] for key in ("email", "likes", "mailing")},
    )
