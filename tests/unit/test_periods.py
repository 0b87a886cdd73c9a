from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.periods import delivery_period_key, is_due, period_key, planned_periodicity
from app.domain.vocabulary import NotificationStatus, Periodicity

BERLIN = ZoneInfo("Europe/Berlin")
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14
PAGO_PAGO = ZoneInfo("Pacific/Pago_Pago")  # UTC-11
ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",
        "Pacific/Apia",
    )
]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- period_key ------------------------------------------------------------------------------


def test_once_has_a_single_period() -> None:
    assert period_key("once", date(2026, 11, 25)) == "once"
    assert period_key("once", date(1999, 1, 1)) == "once"


def test_daily_key_is_the_iso_date() -> None:
    assert period_key("daily", date(2026, 11, 25)) == "2026-11-25"
    assert period_key("daily", date(2027, 1, 1)) == "2027-01-01"


@pytest.mark.parametrize(
    ("day", "key"),
    [
        (date(2026, 11, 25), "2026-W48"),
        (date(2026, 1, 1), "2026-W01"),  # a Thursday: week 1 of its own year
        (date(2025, 12, 29), "2026-W01"),  # a Monday in December already in 2026's week 1
        (date(2026, 1, 5), "2026-W02"),  # zero-padded
        (date(2026, 12, 31), "2026-W53"),
        (date(2027, 1, 1), "2026-W53"),  # ISO year, not calendar year
        (date(2027, 1, 3), "2026-W53"),  # Sunday: last day of 2026-W53
        (date(2027, 1, 4), "2027-W01"),  # Monday: a new ISO year begins
        (date(2020, 12, 31), "2020-W53"),
        (date(2021, 1, 3), "2020-W53"),
        (date(2021, 1, 4), "2021-W01"),
    ],
)
def test_weekly_key_is_the_iso_week(day: date, key: str) -> None:
    assert period_key("weekly", day) == key


@pytest.mark.parametrize("periodicity", ["monthly", "", "Daily", "hourly"])
def test_unknown_periodicity_is_refused(periodicity: Any) -> None:  # its refusal is under test
    with pytest.raises(ValueError, match="periodicity"):
        period_key(periodicity, date(2026, 1, 1))


# --- delivery_period_key ---------------------------------------------------------------------


def test_daily_key_of_one_instant_differs_between_far_zones() -> None:
    # 10:30 UTC is 00:30 on the 16th at UTC+14 and 23:30 on the 14th at UTC-11.
    now = utc(2026, 6, 15, 10, 30)
    assert delivery_period_key("daily", now, KIRITIMATI) == "2026-06-16"
    assert delivery_period_key("daily", now, PAGO_PAGO) == "2026-06-14"
    assert delivery_period_key("daily", now, ZoneInfo("UTC")) == "2026-06-15"


def test_weekly_key_follows_the_local_monday() -> None:
    # 23:30 UTC on Sunday 2026-11-29 is already Monday 00:30 in Berlin (CET, +01:00).
    now = utc(2026, 11, 29, 23, 30)
    assert delivery_period_key("weekly", now, ZoneInfo("UTC")) == "2026-W48"
    assert delivery_period_key("weekly", now, BERLIN) == "2026-W49"
    assert delivery_period_key("weekly", utc(2026, 11, 29, 22, 59, 59), BERLIN) == "2026-W48"


def test_period_key_accepts_any_aware_instant() -> None:
    # Same instant written with another offset: 2026-06-15 20:00-04:00 is 2026-06-16 00:00 UTC.
    now = datetime.fromisoformat("2026-06-15T20:00:00-04:00")
    assert delivery_period_key("daily", now, ZoneInfo("UTC")) == "2026-06-16"


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        delivery_period_key("daily", datetime(2026, 6, 15, 12, 0), BERLIN)


# --- is_due ----------------------------------------------------------------------------------

NOW = utc(2026, 6, 15, 10, 0)  # 12:00 CEST in Berlin, a Monday
DELIVERY_OUTCOMES = ["scheduled", "enqueued", "sending", "sent", "delivered", "skipped", "failed"]


def due_at(
    instant: datetime,
    *,
    periodicity: Periodicity,
    status: NotificationStatus,
    deliveries: dict[str, str],
    tz: ZoneInfo = BERLIN,
) -> bool:
    """The rule as the jobs apply it: the row's delivery for the instant's period, if any."""
    key = delivery_period_key(periodicity, instant, tz)
    return is_due(periodicity=periodicity, status=status, period_delivery=deliveries.get(key))


@pytest.mark.parametrize("periodicity", ["once", "daily", "weekly"])
@pytest.mark.parametrize("status", ["pending", "failed"])
def test_pending_and_failed_rows_are_due_unless_their_period_went_out(
    periodicity: Periodicity, status: NotificationStatus
) -> None:
    assert is_due(periodicity=periodicity, status=status, period_delivery=None)
    assert is_due(periodicity=periodicity, status=status, period_delivery="failed")
    for outcome in ("scheduled", "sent", "skipped"):
        assert not is_due(periodicity=periodicity, status=status, period_delivery=outcome)


@pytest.mark.parametrize("periodicity", ["once", "daily", "weekly"])
@pytest.mark.parametrize("period_delivery", [None, *DELIVERY_OUTCOMES])
def test_queued_rows_are_not_due(periodicity: Periodicity, period_delivery: str | None) -> None:
    assert not is_due(periodicity=periodicity, status="queued", period_delivery=period_delivery)


@pytest.mark.parametrize("status", ["sent", "skipped"])
@pytest.mark.parametrize("period_delivery", [None, *DELIVERY_OUTCOMES])
def test_once_is_done_after_sent_or_skipped(
    status: NotificationStatus, period_delivery: str | None
) -> None:
    assert not is_due(periodicity="once", status=status, period_delivery=period_delivery)


@pytest.mark.parametrize("status", ["sent", "skipped"])
def test_periodic_row_without_a_delivery_this_period_is_due(status: NotificationStatus) -> None:
    assert is_due(periodicity="daily", status=status, period_delivery=None)
    assert is_due(periodicity="weekly", status=status, period_delivery=None)


@pytest.mark.parametrize("status", ["sent", "skipped"])
def test_daily_row_is_due_once_per_local_day(status: NotificationStatus) -> None:
    def due(delivered_at: datetime, tz: ZoneInfo = BERLIN) -> bool:
        deliveries = {delivery_period_key("daily", delivered_at, tz): "sent"}
        return due_at(NOW, periodicity="daily", status=status, deliveries=deliveries, tz=tz)

    assert not due(utc(2026, 6, 15, 6, 0))  # earlier today
    assert due(utc(2026, 6, 14, 21, 59))  # 23:59 CEST yesterday
    # 23:30 UTC on the 14th is 01:30 CEST on the 15th: the same local day in Berlin, not in UTC.
    assert not due(utc(2026, 6, 14, 23, 30))
    assert due(utc(2026, 6, 14, 23, 30), ZoneInfo("UTC"))


def test_weekly_row_is_due_once_per_iso_week() -> None:
    monday = utc(2026, 6, 15, 7, 0)  # Monday 09:00 CEST, 2026-W25
    deliveries = {delivery_period_key("weekly", monday, BERLIN): "delivered"}

    def due(now: datetime) -> bool:
        return due_at(now, periodicity="weekly", status="sent", deliveries=deliveries)

    assert not due(utc(2026, 6, 21, 21, 59))  # Sunday 23:59 CEST, same week
    assert due(utc(2026, 6, 21, 22, 0))  # Monday 00:00 CEST, 2026-W26


def test_a_failed_period_is_planned_again() -> None:
    deliveries = {delivery_period_key("daily", NOW, BERLIN): "failed"}
    assert due_at(NOW, periodicity="daily", status="failed", deliveries=deliveries)


def test_is_due_refuses_bad_input() -> None:
    # Values from outside the vocabulary (a stale row, say): their refusal is under test.
    done: Any = "done"
    monthly: Any = "monthly"
    with pytest.raises(ValueError, match="status"):
        is_due(periodicity="daily", status=done, period_delivery=None)
    with pytest.raises(ValueError, match="periodicity"):
        is_due(periodicity=monthly, status="sent", period_delivery=None)
    with pytest.raises(ValueError, match="delivery status"):
        is_due(periodicity="daily", status="sent", period_delivery="lost")
    with pytest.raises(ValueError, match="now_utc"):
        due_at(datetime(2026, 6, 15), periodicity="daily", status="sent", deliveries={})


# --- properties ------------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)
days = st.dates(min_value=date(1900, 1, 1), max_value=date(9998, 12, 31))


@given(now=instants, delta_s=st.integers(-26 * 3600, 26 * 3600), tz=st.sampled_from(ZONES))
def test_daily_key_is_stable_within_a_local_day(now: datetime, delta_s: int, tz: ZoneInfo) -> None:
    other = now + timedelta(seconds=delta_s)
    same_day = now.astimezone(tz).date() == other.astimezone(tz).date()
    same_key = delivery_period_key("daily", now, tz) == delivery_period_key("daily", other, tz)
    assert same_day == same_key
    if same_day:
        assert delivery_period_key("weekly", now, tz) == delivery_period_key("weekly", other, tz)


@given(day=days)
def test_weekly_key_changes_exactly_on_mondays(day: date) -> None:
    following = day + timedelta(days=1)
    changes = period_key("weekly", day) != period_key("weekly", following)
    assert changes == (following.weekday() == 0)


@given(first=days, second=days, periodicity=st.sampled_from(["daily", "weekly"]))
def test_keys_sort_like_their_days(first: date, second: date, periodicity: Periodicity) -> None:
    # Keys are compared and stored as text: their order must be the calendar's order.
    if first <= second:
        assert period_key(periodicity, first) <= period_key(periodicity, second)


@given(
    sent_at=instants, tz=st.sampled_from(ZONES), periodicity=st.sampled_from(["daily", "weekly"])
)
def test_a_row_sent_now_is_not_due_now(
    sent_at: datetime, tz: ZoneInfo, periodicity: Periodicity
) -> None:
    deliveries = {delivery_period_key(periodicity, sent_at, tz): "sent"}
    assert not due_at(sent_at, periodicity=periodicity, status="sent", deliveries=deliveries, tz=tz)


@pytest.mark.parametrize("producer", ["once", "daily", "weekly"])
@pytest.mark.parametrize("chosen", [None, "daily", "weekly"])
def test_the_recipients_choice_comes_ahead_of_the_producers(
    producer: Periodicity, chosen: Periodicity | None
) -> None:
    assert planned_periodicity(producer, chosen) == (chosen or producer)


def test_a_chosen_digest_follows_the_digest_rule_whatever_the_producer_said() -> None:
    # A `once` like whose mail went out, then the recipient chose daily: a daily row now.
    assert not is_due(periodicity="once", status="sent", period_delivery=None)
    assert is_due(periodicity="once", chosen="daily", status="sent", period_delivery=None)
    assert not is_due(periodicity="once", chosen="daily", status="sent", period_delivery="sent")
    assert not is_due(periodicity="weekly", chosen="daily", status="queued", period_delivery=None)


def test_an_unknown_choice_is_refused() -> None:
    with pytest.raises(ValueError, match="chosen"):
        is_due(periodicity="daily", chosen="hourly", status="pending", period_delivery=None)  # type: ignore[arg-type]
