from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.policy import Decision, Policy, decide
from app.domain.vocabulary import TRANSACTIONAL_KINDS, UNSUBSCRIBABLE_KINDS, Kind

ALL_ON = Policy(email=True, likes=True, mailing=True)
NOTHING: frozenset[str] = frozenset()


def test_kind_sets() -> None:
    assert frozenset({"welcome"}) == TRANSACTIONAL_KINDS
    assert frozenset({"likes", "mailing"}) == UNSUBSCRIBABLE_KINDS
    assert not TRANSACTIONAL_KINDS & UNSUBSCRIBABLE_KINDS


def test_policy_from_the_auth_api_object() -> None:
    data = {"email": True, "likes": False, "mailing": True, "sms": True}  # extras are ignored
    assert Policy.from_dict(data) == Policy(email=True, likes=False, mailing=True)


@pytest.mark.parametrize(
    "data",
    [
        {"likes": True, "mailing": True},
        {"email": True, "likes": True, "mailing": "false"},  # a truthy string must not pass
        {"email": 1, "likes": True, "mailing": True},
        {"email": True, "likes": None, "mailing": True},
        {},
    ],
)
def test_policy_refuses_missing_or_non_boolean_flags(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="notification_policy"):
        Policy.from_dict(data)


def test_policy_and_decision_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALL_ON.email = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Decision(True, "ok").allowed = False  # type: ignore[misc]


@pytest.mark.parametrize("kind", ["likes", "mailing"])
def test_everything_on_is_allowed(kind: Kind) -> None:
    assert decide(kind=kind, policy=ALL_ON, opted_out=NOTHING) == Decision(True, "ok")


@pytest.mark.parametrize(
    "policy",
    [ALL_ON, Policy(email=False, likes=False, mailing=False)],
)
def test_welcome_is_transactional_and_ignores_policy_and_opt_outs(policy: Policy) -> None:
    opted_out = frozenset({"welcome", "likes", "mailing"})
    assert decide(kind="welcome", policy=policy, opted_out=opted_out) == Decision(
        True, "transactional"
    )


@pytest.mark.parametrize("kind", ["likes", "mailing"])
def test_email_off_turns_off_everything_but_transactional(kind: Kind) -> None:
    policy = Policy(email=False, likes=True, mailing=True)
    assert decide(kind=kind, policy=policy, opted_out=NOTHING) == Decision(False, "email disabled")


def test_likes_off() -> None:
    policy = Policy(email=True, likes=False, mailing=True)
    assert decide(kind="likes", policy=policy, opted_out=NOTHING) == Decision(
        False, "likes disabled"
    )
    assert decide(kind="mailing", policy=policy, opted_out=NOTHING) == Decision(True, "ok")


def test_mailing_off() -> None:
    policy = Policy(email=True, likes=True, mailing=False)
    assert decide(kind="mailing", policy=policy, opted_out=NOTHING) == Decision(
        False, "mailing disabled"
    )
    assert decide(kind="likes", policy=policy, opted_out=NOTHING) == Decision(True, "ok")


def test_opt_out_is_per_kind_and_accepts_plain_sets() -> None:
    assert decide(kind="likes", policy=ALL_ON, opted_out={"likes"}) == Decision(False, "opted out")
    assert decide(kind="mailing", policy=ALL_ON, opted_out={"likes"}) == Decision(True, "ok")
    assert decide(kind="mailing", policy=ALL_ON, opted_out=frozenset({"mailing"})) == Decision(
        False, "opted out"
    )


def test_the_auth_policy_reason_wins_over_an_opt_out() -> None:
    policy = Policy(email=True, likes=False, mailing=True)
    assert decide(kind="likes", policy=policy, opted_out={"likes"}) == Decision(
        False, "likes disabled"
    )


@pytest.mark.parametrize("kind", ["sms", "", "Welcome", "digest"])
def test_unknown_kind_is_refused(kind: Any) -> None:  # any value: its refusal is under test
    with pytest.raises(ValueError, match="kind"):
        decide(kind=kind, policy=ALL_ON, opted_out=NOTHING)


policies = st.builds(Policy, email=st.booleans(), likes=st.booleans(), mailing=st.booleans())
opt_outs = st.frozensets(st.sampled_from(["welcome", "likes", "mailing", "sms"]))


@given(policy=policies, opted_out=opt_outs, kind=st.sampled_from(["welcome", "likes", "mailing"]))
def test_non_transactional_mail_needs_every_consent(
    policy: Policy, opted_out: frozenset[str], kind: Kind
) -> None:
    decision = decide(kind=kind, policy=policy, opted_out=opted_out)
    if kind in TRANSACTIONAL_KINDS:
        assert decision == Decision(True, "transactional")
        return
    consents = policy.email and getattr(policy, kind) and kind not in opted_out
    assert decision.allowed == consents
    assert (decision.reason == "ok") == consents
