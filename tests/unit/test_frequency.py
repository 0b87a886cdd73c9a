"""Frequency caps, pure: parsing, which windows a mail would overfill, and the next free slot
(checked against a brute force over random schedules)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.frequency import Cap, breaks_a_cap, next_free_slot, parse_caps

DAY = timedelta(days=1)
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_caps_parse_from_their_setting() -> None:
    assert parse_caps("3/1d, 10/7d") == (Cap(3, DAY), Cap(10, 7 * DAY))
    assert parse_caps("5/12h,1/d,2/30m") == (
        Cap(5, timedelta(hours=12)),
        Cap(1, DAY),
        Cap(2, timedelta(minutes=30)),
    )
    assert parse_caps("") == () and parse_caps(" , ") == ()
    assert [str(c) for c in parse_caps("3/1d,5/12h")] == ["3/1d", "5/12h"]


@pytest.mark.parametrize("text", ["3", "3/1w", "a/1d", "3/0d", "-1/1d", "3/1d;4/2d"])
def test_a_cap_that_is_none_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_caps(text)


def test_the_fourth_mail_of_a_day_waits_for_the_first_to_leave_the_window() -> None:
    caps = parse_caps("3/1d")
    sent = [T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    fourth = T0 + timedelta(hours=3)
    assert breaks_a_cap(fourth, sent, caps) == Cap(3, DAY)
    assert next_free_slot(fourth, sent, caps) == T0 + DAY
    assert breaks_a_cap(T0 + DAY, sent, caps) is None


def test_a_mail_planned_later_counts_against_an_earlier_one() -> None:
    caps = parse_caps("2/1d")
    planned = [T0 + timedelta(hours=20), T0 + timedelta(hours=21)]  # tomorrow morning's
    assert breaks_a_cap(T0, planned, caps) == Cap(2, DAY)
    assert next_free_slot(T0, planned, caps) is not None


def test_no_slot_within_the_longest_hold_is_none() -> None:
    assert next_free_slot(T0, [T0], parse_caps("0/1d")) is None


def _brute_ok(at: datetime, others: list[datetime], caps: tuple[Cap, ...]) -> bool:
    everyone = sorted([*others, at])
    return all(
        sum(1 for t in everyone if end - cap.window < t <= end) <= cap.count
        for cap in caps
        for end in everyone
    )


hours = st.integers(min_value=0, max_value=24 * 10)


@given(
    st.lists(hours, max_size=12),
    hours,
    st.lists(
        st.tuples(st.integers(1, 4), st.integers(1, 72)).map(
            lambda p: Cap(p[0], timedelta(hours=p[1]))
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_the_slot_found_breaks_no_cap_and_none_earlier_would(
    offsets: list[int], at_h: int, caps: list[Cap]
) -> None:
    others = [T0 + timedelta(hours=h) for h in offsets]
    capped = tuple(caps)
    if not all(_brute_ok(t, [o for o in others if o is not t], capped) for t in others):
        return  # the schedule breaks its caps already: nothing to place into
    at = T0 + timedelta(hours=at_h)
    slot = next_free_slot(at, others, capped)
    assert (breaks_a_cap(at, others, capped) is None) == _brute_ok(at, others, capped)
    if slot is None:
        return
    assert slot >= at and _brute_ok(slot, others, capped)
    earlier = [
        at + timedelta(minutes=30 * k) for k in range(int((slot - at) / timedelta(minutes=30)))
    ]
    assert not any(_brute_ok(t, others, capped) for t in earlier if t < slot)
