"""The vocabulary is the only source of the service's words, and every word has its meaning."""

from __future__ import annotations

import itertools

import pytest

from app.domain.policy import Policy, decide
from app.domain.timeline import SKIP_WORDING, skip_reason
from app.domain.vocabulary import (
    DELIVERY_STATUSES,
    KINDS,
    OUTCOME_GROUPS,
    OUTCOME_OF_STATUS,
    PERIODICITIES,
    SKIP_REASONS,
    one_of,
    outcome_of,
    skip_reason_of,
    skip_text,
    statuses_in,
)


def test_every_skip_reason_has_an_operators_wording() -> None:
    assert set(SKIP_WORDING) == set(SKIP_REASONS)
    for reason, kind in itertools.product(SKIP_REASONS, KINDS):
        worded = skip_reason(skip_text(reason), kind)
        assert worded.startswith("skipped") and "{" not in worded, worded
        assert worded != f"skipped: {reason}" or reason == "unusable Auth record", worded


def test_a_stored_skip_reads_back_as_its_reason_and_detail() -> None:
    for reason in SKIP_REASONS:
        assert skip_reason_of(skip_text(reason)) == (reason, None)
        assert skip_reason_of(skip_text(reason, "the detail")) == (reason, "the detail")
    # A text of no known reason (written by an older version) is shown as it is.
    assert skip_reason_of("held by hand") == (None, "held by hand")
    assert skip_reason("held by hand", "likes") == "skipped: held by hand"


def test_every_refusal_of_the_policy_is_a_skip_reason() -> None:
    flags = list(itertools.product([True, False], repeat=3))
    for kind, (email, likes, mailing), opted in itertools.product(KINDS, flags, [set(), {*KINDS}]):
        decision = decide(kind=kind, policy=Policy(email, likes, mailing), opted_out=opted)
        if not decision.allowed:
            assert decision.reason in SKIP_REASONS, decision


def test_every_delivery_status_has_an_outcome_group_or_none_yet() -> None:
    assert set(OUTCOME_OF_STATUS) == set(DELIVERY_STATUSES)
    grouped = [status for group in OUTCOME_GROUPS for status in statuses_in(group)]
    assert sorted(grouped) == sorted(s for s in DELIVERY_STATUSES if OUTCOME_OF_STATUS[s])
    assert len(grouped) == len(set(grouped))  # no status in two groups
    assert {outcome_of(s) for s in ("scheduled", "enqueued", "sending", "deferred")} == {None}
    assert (outcome_of("bounced"), outcome_of("spam"), outcome_of("nonsense")) == (
        "failed",
        "sent",
        None,
    )


@pytest.mark.parametrize("word", PERIODICITIES)
def test_one_of_returns_a_member(word: str) -> None:
    assert one_of(word, PERIODICITIES, "periodicity") == word


@pytest.mark.parametrize("value", ["hourly", "", "DAILY", None, 1])
def test_one_of_refuses_anything_else(value: object) -> None:
    with pytest.raises(ValueError, match="unknown periodicity"):
        one_of(value, PERIODICITIES, "periodicity")
