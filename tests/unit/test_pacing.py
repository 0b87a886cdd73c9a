"""The global send rate's slots, warm-up quotas and drain estimates: pure, no services."""

from __future__ import annotations

import uuid
from bisect import bisect_left
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.delivery.paced import split_late, split_retries
from app.domain.pacing import (
    Pace,
    PacingState,
    Warmup,
    assign_slots,
    describe_drain,
    drain_seconds,
    expected_done,
    parse_warmup,
    room,
)
from app.jobs.handoff import chunked

NOW = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
FRESH = PacingState(next_slot=NOW, day=NOW.date())


def _most_in_one_second(slots: list[datetime]) -> int:
    times = sorted(s.timestamp() for s in slots)
    return max(bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


def test_parse_warmup_reads_a_growth_a_step_or_none() -> None:
    assert parse_warmup("2026-12-10:1000/d,+50%/d") == Warmup(date(2026, 12, 10), 1000, 0.5)
    assert parse_warmup("2026-12-10:1000/d,+500/d") == Warmup(date(2026, 12, 10), 1000, step=500)
    assert parse_warmup("2026-12-10:200/d") == Warmup(date(2026, 12, 10), 200)
    assert parse_warmup("  ") is None
    for bad in ("1000/d", "2026-12-10:0/d", "2026-12-10:1000/h", "2026-13-10:1/d"):
        with pytest.raises(ValueError):
            parse_warmup(bad)


def test_a_warmup_grows_each_day_from_its_start() -> None:
    warmup = Warmup(date(2026, 12, 10), 1000, 0.5)
    assert [warmup.quota(date(2026, 12, d)) for d in (9, 10, 11, 12)] == [1000, 1000, 1500, 2250]
    assert Warmup(date(2026, 12, 10), 1000, step=500).quota(date(2026, 12, 13)) == 2500
    assert warmup.quota(date(2036, 1, 1)) == 10**9  # stops growing, no overflow
    assert str(warmup) == "2026-12-10:1000/d,+50%/d"


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([1.0, 7.5, 50.0, 333.0]),
    offsets=st.lists(st.floats(min_value=-120, max_value=120), min_size=1, max_size=300),
)
def test_slots_keep_to_the_rate_and_never_go_early(rate: float, offsets: list[float]) -> None:
    send_ats = sorted(NOW + timedelta(seconds=o) for o in offsets)
    slots, after = assign_slots(Pace(rate=rate), FRESH, send_ats, NOW)
    assert len(slots) == len(send_ats)
    assert all(slot >= max(at, NOW) for slot, at in zip(slots, send_ats, strict=True))
    gaps = [(b - a).total_seconds() for a, b in zip(slots, slots[1:], strict=False)]
    assert all(gap >= 1 / rate - 1e-6 for gap in gaps)
    assert _most_in_one_second(slots) <= int(rate) + 1
    assert after.next_slot >= slots[-1] + timedelta(seconds=1 / rate) - timedelta(microseconds=1)


def test_the_next_batch_starts_where_the_last_one_ended() -> None:
    pace = Pace(rate=50.0)
    first, state = assign_slots(pace, FRESH, [NOW] * 100, NOW)
    second, _ = assign_slots(pace, state, [NOW] * 100, NOW + timedelta(seconds=1))
    assert (first[-1] - first[0]).total_seconds() == pytest.approx(99 / 50)
    assert (second[0] - first[-1]).total_seconds() == pytest.approx(1 / 50)
    assert _most_in_one_second(first + second) == 50


def test_a_spent_warmup_day_moves_the_rest_to_the_next_midnight() -> None:
    pace = Pace(rate=None, warmup=Warmup(date(2026, 12, 10), 3, 1.0))
    slots, state = assign_slots(pace, FRESH, [NOW] * 10, NOW)
    days = Counter(slot.date() for slot in slots)
    assert days == {date(2026, 12, 10): 3, date(2026, 12, 11): 6, date(2026, 12, 12): 1}
    assert slots[3] == datetime(2026, 12, 11, tzinfo=UTC)
    assert (state.day, state.day_count) == (date(2026, 12, 12), 1)


def test_room_is_what_fits_before_the_lookahead_and_the_days_quota() -> None:
    until = NOW + timedelta(seconds=60)
    assert room(Pace(rate=None), FRESH, NOW, until) is None
    assert room(Pace(rate=50.0), FRESH, NOW, until) == 3001
    late = PacingState(next_slot=NOW + timedelta(seconds=59), day=NOW.date())
    assert room(Pace(rate=50.0), late, NOW, until) == 51
    behind = PacingState(next_slot=NOW + timedelta(seconds=61), day=NOW.date())
    assert room(Pace(rate=50.0), behind, NOW, until) == 0
    warm = Pace(rate=50.0, warmup=Warmup(date(2026, 12, 10), 1000))
    assert room(warm, PacingState(NOW, NOW.date(), day_count=990), NOW, until) == 10


def test_drain_counts_the_slotted_then_the_waiting() -> None:
    assert drain_seconds(Pace(rate=None), FRESH, 10, NOW) is None
    assert drain_seconds(Pace(rate=50.0), FRESH, 1000, NOW) == pytest.approx(999 / 50)
    ahead = PacingState(next_slot=NOW + timedelta(seconds=5), day=NOW.date())
    assert drain_seconds(Pace(rate=50.0), ahead, 0, NOW) == pytest.approx(5)
    assert drain_seconds(Pace(rate=50.0), ahead, 51, NOW) == pytest.approx(6)
    # 1,000 a day from a 990 day: 10 today, 1,000 tomorrow, 1 the day after.
    warm = Pace(rate=None, warmup=Warmup(date(2026, 12, 10), 1000))
    used = PacingState(NOW, NOW.date(), day_count=990)
    assert drain_seconds(warm, used, 1011, NOW) == pytest.approx(39 * 3600)


def test_the_dashboard_says_what_limits_sending() -> None:
    assert Pace(rate=None).describe(NOW.date()) == "unlimited"
    warm = Pace(rate=50.0, warmup=Warmup(date(2026, 12, 10), 1000, 0.5))
    assert warm.describe(date(2026, 12, 11)) == (
        "50 mails/s, warm-up: 1,500 mails today (2026-12-10:1000/d,+50%/d)"
    )


def test_paced_chunks_hold_a_tenth_of_a_second_each() -> None:
    tasks = [({"n": i}, i / 50) for i in range(20)]  # 50 mails/s for 0.4 s
    chunks = chunked(tasks, 50, resolution_s=0.1)
    assert [len(items) for items, _delay in chunks] == [1, 5, 5, 5, 4]
    assert [delay for _items, delay in chunks] == [None, 0.1, 0.2, 0.3, 0.4]
    assert [len(items) for items, _delay in chunked(tasks, 50)] == [1, 19]  # unpaced: by second


def test_a_worker_hands_back_only_paced_mail_off_its_slot() -> None:
    late_id, on_time_id, unpaced_id = (str(uuid.UUID(int=i)) for i in (1, 2, 3))
    items: list[Any] = [
        {"delivery_id": late_id, "slot": (NOW - timedelta(milliseconds=80)).isoformat()},
        {"delivery_id": on_time_id, "slot": (NOW - timedelta(milliseconds=30)).isoformat()},
        {"delivery_id": unpaced_id},
        {"delivery_id": "not an id", "slot": "not a time"},
        "not even a dict",
    ]
    on_time, late = split_late(items, NOW)
    assert late == items[:1]
    assert on_time == items[1:]
    published, back = split_retries([(items[1], 5.0), (items[2], 5.0)], NOW)
    assert published == [(items[2], 5.0)]
    assert back == {uuid.UUID(on_time_id): NOW + timedelta(seconds=5)}


def test_a_chunk_spans_one_slot_within_20_to_100_ms() -> None:
    assert [Pace(rate=r).chunk_span_s for r in (2.0, 10.0, 50.0, 1000.0)] == [0.1, 0.1, 0.02, 0.02]
    assert Pace(rate=None, warmup=Warmup(date(2026, 12, 10), 10)).chunk_span_s == 0.1


def test_a_campaign_is_done_when_its_last_send_time_and_the_queue_ahead_allow() -> None:
    later = NOW + timedelta(hours=3)
    assert expected_done(Pace(rate=None), FRESH, later, 10_000, NOW) == later
    assert expected_done(Pace(rate=None), FRESH, NOW - timedelta(hours=1), 5, NOW) == NOW
    # 10,000 due at 50/s: 200 s; a campaign whose last mail is due in 3 h is not held by it.
    paced = Pace(rate=50.0)
    assert expected_done(paced, FRESH, NOW, 10_000, NOW) == NOW + timedelta(seconds=9_999 / 50)
    assert expected_done(paced, FRESH, later, 10_000, NOW) == later


def test_a_drain_time_is_said_in_its_unit() -> None:
    assert describe_drain(None, limited=False) == "as fast as the workers go (no send rate)"
    assert describe_drain(0.2, limited=True) == "now"
    assert describe_drain(19.98, limited=True) == "about 20 s"
    assert describe_drain(250, limited=True) == "about 4 min"
    assert describe_drain(3 * 3600 + 100, limited=True) == "about 3 h"
    assert describe_drain(39 * 3600, limited=True) == "about 39 h"
    assert describe_drain(5 * 86400, limited=True) == "about 5 d"
