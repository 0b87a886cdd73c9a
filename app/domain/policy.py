"""Who may get what: the Auth policy, our own opt-outs, and transactional mail that ignores both."""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Literal

from app.domain.vocabulary import KINDS, TRANSACTIONAL_KINDS, Kind, SkipReason


@dataclass(frozen=True, slots=True)
class Policy:
    """A user's notification policy as the Auth API reports it."""

    email: bool
    likes: bool
    mailing: bool

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """Build from the Auth API's `notification_policy`; refuse missing or non-bool flags."""
        flags: dict[str, bool] = {}
        for name in ("email", "likes", "mailing"):
            value = data.get(name)
            # Strictly bool: a string "false" would be truthy and send mail the user turned off.
            if not isinstance(value, bool):
                raise ValueError(f"notification_policy.{name} must be a boolean, got {value!r}")
            flags[name] = value
        return cls(**flags)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether a kind of mail may go to a user, and why."""

    allowed: bool
    reason: SkipReason | Literal["transactional", "ok"]


def decide(*, kind: Kind, policy: Policy, opted_out: AbstractSet[str]) -> Decision:
    """Decide whether mail of a kind may be sent under the Auth policy and our opt-outs."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    if kind in TRANSACTIONAL_KINDS:
        return Decision(True, "transactional")
    if not policy.email:
        return Decision(False, "email disabled")
    if kind == "likes" and not policy.likes:
        return Decision(False, "likes disabled")
    if kind == "mailing" and not policy.mailing:
        return Decision(False, "mailing disabled")
    if kind in opted_out:
        return Decision(False, "opted out")
    return Decision(True, "ok")
