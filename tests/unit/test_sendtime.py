from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from app.domain.sendtime import (
    earliest_send_time,
    in_quiet_hours,
    local_day,
    resolve_zone,
    send_time,
    transactional_send_time,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14
PAGO_PAGO = ZoneInfo("Pacific/Pago_Pago")  # UTC-11
KATHMANDU = ZoneInfo("Asia/Kathmandu")  # UTC+05:45
NIGHT = (time(22, 0), time(8, 0))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# --- resolve_zone ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Europe/Berlin", "Asia/Kathmandu", "UTC", "Etc/GMT+5"])
def test_known_zone_resolves(name: str) -> None:
    assert resolve_zone(name) == (ZoneInfo(name), False)


def test_surrounding_blanks_are_ignored() -> None:
    assert resolve_zone(" Europe/Berlin\n") == (BERLIN, False)


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "   ",
        "Mars/Base",
        "../etc/passwd",
        "/etc/passwd",
        "Europe/../../etc/passwd",
        "Europe",  # a directory of the zone database
        "zone.tab",  # a file of the zone database that is no zone
        "Europe/Berlin\x00",
        "Europe/Berlin/",
        "europe/berlin",
        "x" * 5000,
    ],
)
def test_unknown_zone_falls_back_to_the_default(name: str | None) -> None:
    assert resolve_zone(name) == (ZoneInfo("UTC"), True)
    assert resolve_zone(name, default="Asia/Kathmandu") == (KATHMANDU, True)


def test_a_bad_default_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="default time zone"):
        resolve_zone("Mars/Base", default="Mars/Olympus")


# --- in_quiet_hours --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "quiet"),
    [
        (time(22, 0), True),  # start inclusive
        (time(23, 59, 59), True),
        (time(0, 0), True),
        (time(7, 59, 59), True),
        (time(8, 0), False),  # end exclusive
        (time(12, 0), False),
        (time(21, 59, 59), False),
    ],
)
def test_quiet_window_spanning_midnight(local: time, quiet: bool) -> None:
    assert in_quiet_hours(local, NIGHT) is quiet


@pytest.mark.parametrize(
    ("local", "quiet"),
    [(time(12, 59), False), (time(13, 0), True), (time(14, 29), True), (time(14, 30), False)],
)
def test_quiet_window_within_a_day(local: time, quiet: bool) -> None:
    assert in_quiet_hours(local, (time(13, 0), time(14, 30))) is quiet


@pytest.mark.parametrize("local", [time(0, 0), time(9, 0), time(23, 59)])
def test_no_window_means_no_quiet_hours(local: time) -> None:
    assert not in_quiet_hours(local, None)
    assert not in_quiet_hours(local, (time(9, 0), time(9, 0)))


def test_quiet_hours_ignore_tzinfo_on_the_local_time() -> None:
    assert in_quiet_hours(time(23, 0, tzinfo=BERLIN), NIGHT)


# --- send_time: ordinary days ----------------------------------------------------------------


def test_send_hour_ahead_today() -> None:
    # 10:00 UTC is 12:00 CEST; 18:00 CEST is 16:00 UTC.
    got = send_time(now_utc=utc(2026, 6, 15, 10, 0), tz=BERLIN, send_hour=18, quiet=NIGHT)
    assert got == utc(2026, 6, 15, 16, 0)


def test_send_hour_already_past_waits_for_tomorrows() -> None:
    now = datetime(2026, 6, 15, 10, 20, 30, 987654, tzinfo=UTC)
    got = send_time(now_utc=now, tz=ZoneInfo("UTC"), send_hour=9, quiet=NIGHT)
    assert got == utc(2026, 6, 16, 9, 0)
    assert got.tzinfo is UTC


def test_send_hour_past_late_in_the_evening_goes_out_at_tomorrows_send_hour() -> None:
    # 21:00 UTC is 23:00 CEST: past 09:00; 09:00 CEST next day is 07:00 UTC.
    got = send_time(now_utc=utc(2026, 6, 15, 21, 0), tz=BERLIN, send_hour=9, quiet=NIGHT)
    assert got == utc(2026, 6, 16, 7, 0)


def test_send_hour_past_and_quiet_tomorrow_waits_for_the_end_of_quiet_hours() -> None:
    # 04:00 UTC is 06:00 CEST: past 05:00; tomorrow's 05:00 is inside 22:00-08:00, so 08:00 CEST
    # on the 16th (06:00 UTC).
    got = send_time(now_utc=utc(2026, 6, 15, 4, 0), tz=BERLIN, send_hour=5, quiet=NIGHT)
    assert got == utc(2026, 6, 16, 6, 0)


def test_send_hour_inside_quiet_hours_spanning_midnight_moves_to_next_morning() -> None:
    # 08:00 UTC is 10:00 CEST; 23:00 local is quiet, so 08:00 CEST next day (06:00 UTC).
    got = send_time(now_utc=utc(2026, 6, 15, 8, 0), tz=BERLIN, send_hour=23, quiet=NIGHT)
    assert got == utc(2026, 6, 16, 6, 0)


def test_send_hour_inside_a_daytime_window_moves_to_its_end() -> None:
    got = send_time(
        now_utc=utc(2026, 6, 15, 6, 0), tz=ZoneInfo("UTC"), send_hour=13, quiet=(time(12), time(14))
    )
    assert got == utc(2026, 6, 15, 14, 0)


def test_send_time_accepts_any_aware_now() -> None:
    now = datetime.fromisoformat("2026-06-15T12:00:00+02:00")
    got = send_time(now_utc=now, tz=BERLIN, send_hour=18, quiet=None)
    assert got == utc(2026, 6, 15, 16, 0)
    assert got.utcoffset() == timedelta(0)


def test_send_time_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        send_time(now_utc=datetime(2026, 6, 15), tz=BERLIN, send_hour=9, quiet=None)
    for hour in (-1, 24):
        with pytest.raises(ValueError, match="send_hour"):
            send_time(now_utc=utc(2026, 6, 15), tz=BERLIN, send_hour=hour, quiet=None)


# --- send_time: DST --------------------------------------------------------------------------


def test_berlin_spring_forward_gap_resolves_to_the_end_of_the_gap() -> None:
    # 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC; 02:00 local does not exist.
    now = utc(2026, 3, 28, 23, 30)  # 00:30 CET
    assert send_time(now_utc=now, tz=BERLIN, send_hour=2, quiet=None) == utc(2026, 3, 29, 1, 0)
    assert send_time(now_utc=now, tz=BERLIN, send_hour=3, quiet=None) == utc(2026, 3, 29, 1, 0)
    assert send_time(now_utc=now, tz=BERLIN, send_hour=1, quiet=None) == utc(2026, 3, 29, 0, 0)
    assert send_time(now_utc=now, tz=BERLIN, send_hour=9, quiet=None) == utc(2026, 3, 29, 7, 0)


def test_berlin_quiet_end_inside_the_gap_resolves_to_the_end_of_the_gap() -> None:
    # 21:00 UTC on the 28th is 22:00 CET; quiet until 02:30, which does not exist on the 29th:
    # the first valid instant after the gap is 03:00 CEST = 01:00 UTC (not 03:30 CEST).
    got = send_time(
        now_utc=utc(2026, 3, 28, 21, 0), tz=BERLIN, send_hour=23, quiet=(time(22), time(2, 30))
    )
    assert got == utc(2026, 3, 29, 1, 0)


def test_new_york_spring_forward_gap_resolves_to_the_end_of_the_gap() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00 UTC.
    now = utc(2026, 3, 8, 5, 0)  # 00:00 EST
    assert send_time(now_utc=now, tz=NEW_YORK, send_hour=2, quiet=None) == utc(2026, 3, 8, 7, 0)
    assert send_time(now_utc=now, tz=NEW_YORK, send_hour=1, quiet=None) == utc(2026, 3, 8, 6, 0)
    assert send_time(now_utc=now, tz=NEW_YORK, send_hour=9, quiet=None) == utc(2026, 3, 8, 13, 0)


def test_berlin_fall_back_uses_the_first_occurrence() -> None:
    # 2026-10-25: 03:00 CEST falls back to 02:00 CET at 01:00 UTC; 02:xx local happens twice,
    # first at +02:00 (00:xx UTC), then at +01:00 (01:xx UTC).
    now = utc(2026, 10, 24, 22, 30)  # 00:30 CEST
    assert send_time(now_utc=now, tz=BERLIN, send_hour=2, quiet=None) == utc(2026, 10, 25, 0, 0)
    assert send_time(now_utc=now, tz=BERLIN, send_hour=1, quiet=None) == utc(2026, 10, 24, 23, 0)
    assert send_time(now_utc=now, tz=BERLIN, send_hour=9, quiet=None) == utc(2026, 10, 25, 8, 0)
    # During the first 02:30 (00:30 UTC) the first 02:00 has passed: not the repeated 02:00 of
    # the same day, but 02:00 CET on the 26th (01:00 UTC).
    later = utc(2026, 10, 25, 0, 30)
    assert send_time(now_utc=later, tz=BERLIN, send_hour=2, quiet=None) == utc(2026, 10, 26, 1, 0)


def test_new_york_fall_back_uses_the_first_occurrence() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST at 06:00 UTC; 01:00 local happens at
    # 05:00 UTC (EDT) and again at 06:00 UTC (EST).
    now = utc(2026, 11, 1, 4, 0)  # 00:00 EDT
    assert send_time(now_utc=now, tz=NEW_YORK, send_hour=1, quiet=None) == utc(2026, 11, 1, 5, 0)
    assert send_time(now_utc=now, tz=NEW_YORK, send_hour=9, quiet=None) == utc(2026, 11, 1, 14, 0)
    # Once the first 01:00 has passed, the next is 01:00 EST on the 2nd (06:00 UTC).
    for later in (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 15)):  # 01:30 EDT, 01:15 EST
        got = send_time(now_utc=later, tz=NEW_YORK, send_hour=1, quiet=None)
        assert got == utc(2026, 11, 2, 6, 0)


def test_new_york_quiet_end_in_the_repeated_hour_takes_the_next_occurrence() -> None:
    # 06:10 UTC is 01:10 EST, the second pass through 01:xx, inside 00:00-01:30. The first 01:30
    # (05:30 UTC) is already over, so the window ends at the second 01:30 EST = 06:30 UTC.
    got = earliest_send_time(
        now_utc=utc(2026, 11, 1, 6, 10), tz=NEW_YORK, quiet=(time(0), time(1, 30))
    )
    assert got == utc(2026, 11, 1, 6, 30)


def test_earliest_send_time_is_now_outside_quiet_hours() -> None:
    now = datetime(2026, 6, 15, 10, 20, 30, 5, tzinfo=UTC)  # 12:20 CEST
    assert earliest_send_time(now_utc=now, tz=BERLIN, quiet=NIGHT) == utc(2026, 6, 15, 10, 20, 31)


def test_earliest_send_time_waits_out_quiet_hours_spanning_midnight() -> None:
    # 22:30 UTC is 00:30 CEST on the 16th: quiet until 08:00 CEST = 06:00 UTC.
    got = earliest_send_time(now_utc=utc(2026, 6, 15, 22, 30), tz=BERLIN, quiet=NIGHT)
    assert got == utc(2026, 6, 16, 6, 0)


def test_local_day() -> None:
    instant = utc(2026, 6, 15, 12, 0)
    assert local_day(instant, KIRITIMATI) == date(2026, 6, 16)
    assert local_day(instant, PAGO_PAGO) == date(2026, 6, 15)
    with pytest.raises(ValueError):
        local_day(datetime(2026, 6, 15), BERLIN)


def test_a_day_skipped_by_the_date_line_still_gets_a_send_time() -> None:
    # Kiritimati skipped 1994-12-31: 23:59:59 on the 30th (-10:00) was followed by 1995-01-01
    # 00:00 (+14:00), i.e. 10:00 UTC on the 31st. Quiet until 06:00 on the skipped day ends then.
    got = send_time(
        now_utc=utc(1994, 12, 31, 8, 0), tz=KIRITIMATI, send_hour=23, quiet=(time(22), time(6))
    )
    # 22:00 on the 30th is inside quiet hours; the next 06:00 falls in the skipped day, so the
    # window ends at the first instant after it: 1995-01-01 00:00 +14:00, which is quiet too,
    # so it moves on to 06:00 +14:00 on 1995-01-01 = 16:00 UTC on 1994-12-31.
    assert got == utc(1994, 12, 31, 16, 0)


# --- send_time: far zones --------------------------------------------------------------------


def test_kiritimati_plus_14() -> None:
    # 12:00 UTC is 02:00 on the 16th; 09:00 on the 16th is 19:00 UTC on the 15th.
    now = utc(2026, 6, 15, 12, 0)
    assert send_time(now_utc=now, tz=KIRITIMATI, send_hour=9, quiet=NIGHT) == utc(2026, 6, 15, 19)
    # 23:00 is quiet: 08:00 on the 17th (+14) is 18:00 UTC on the 16th.
    assert send_time(now_utc=now, tz=KIRITIMATI, send_hour=23, quiet=NIGHT) == utc(2026, 6, 16, 18)


def test_pago_pago_minus_11() -> None:
    # 12:00 UTC is 01:00 on the 15th; 09:00 local is 20:00 UTC.
    now = utc(2026, 6, 15, 12, 0)
    assert send_time(now_utc=now, tz=PAGO_PAGO, send_hour=9, quiet=NIGHT) == utc(2026, 6, 15, 20)
    # 00:00 has passed; tomorrow's 00:00 is quiet, so 08:00 local on the 16th = 19:00 UTC.
    assert send_time(now_utc=now, tz=PAGO_PAGO, send_hour=0, quiet=NIGHT) == utc(2026, 6, 16, 19)


def test_kathmandu_plus_05_45() -> None:
    # 00:00 UTC is 05:45 local; 09:00 local is 03:15 UTC.
    now = utc(2026, 6, 15, 0, 0)
    assert send_time(now_utc=now, tz=KATHMANDU, send_hour=9, quiet=NIGHT) == utc(2026, 6, 15, 3, 15)
    # 06:00 is quiet: 08:00 local is 02:15 UTC.
    assert send_time(now_utc=now, tz=KATHMANDU, send_hour=6, quiet=NIGHT) == utc(2026, 6, 15, 2, 15)
    # Past the send hour at 10:00 local (04:15 UTC): 09:00 local tomorrow, 03:15 UTC.
    later = utc(2026, 6, 15, 4, 15, 9)
    got = send_time(now_utc=later, tz=KATHMANDU, send_hour=9, quiet=NIGHT)
    assert got == utc(2026, 6, 16, 3, 15)


# --- transactional_send_time -----------------------------------------------------------------


def test_transactional_mail_goes_now() -> None:
    now = datetime(2026, 6, 15, 23, 30, 5, 999999, tzinfo=UTC)
    assert transactional_send_time(now) == utc(2026, 6, 15, 23, 30, 5)
    aware = datetime.fromisoformat("2026-06-16T01:30:05+02:00")
    assert transactional_send_time(aware) == utc(2026, 6, 15, 23, 30, 5)
    with pytest.raises(ValueError, match="timezone-aware"):
        transactional_send_time(datetime(2026, 6, 15))


# --- properties ------------------------------------------------------------------------------

ZONES = [
    ZoneInfo(name)
    for name in (
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
        "Asia/Kathmandu",
        "Australia/Lord_Howe",  # 30-minute DST
        "Pacific/Chatham",  # +12:45 / +13:45
        "America/Santiago",  # DST changes at midnight
        "Pacific/Apia",  # skipped a whole day in 2011
    )
]
instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1), timezones=st.just(UTC)
)
minutes = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
windows = st.none() | st.tuples(minutes, minutes)


def _window_length(quiet: tuple[time, time] | None) -> timedelta:
    if quiet is None:
        return timedelta(0)
    start, end = (timedelta(hours=t.hour, minutes=t.minute) for t in quiet)
    return (end - start) % timedelta(days=1)


@given(now=instants, tz=st.sampled_from(ZONES), send_hour=st.integers(0, 23), quiet=windows)
@example(now=utc(2026, 3, 28, 21, 0), tz=BERLIN, send_hour=23, quiet=(time(2, 30), time(2, 15)))
def test_send_time_properties(
    now: datetime, tz: ZoneInfo, send_hour: int, quiet: tuple[time, time] | None
) -> None:
    got = send_time(now_utc=now, tz=tz, send_hour=send_hour, quiet=quiet)
    assert got.utcoffset() == timedelta(0)
    assert got.microsecond == 0
    assert got >= now - timedelta(seconds=1)
    assert not in_quiet_hours(got.astimezone(tz).time(), quiet)
    # Today's send hour is at most a day (plus a DST hour) ahead; quiet hours add their length.
    assert got <= now + timedelta(hours=26) + _window_length(quiet)


@given(now=instants, tz=st.sampled_from(ZONES), send_hour=st.integers(0, 23))
def test_without_quiet_hours_it_is_the_next_send_hour(
    now: datetime, tz: ZoneInfo, send_hour: int
) -> None:
    got = send_time(now_utc=now, tz=tz, send_hour=send_hour, quiet=None)
    assert got > now - timedelta(seconds=1)
    local = got.astimezone(tz)
    # The send hour itself, or the end of a DST gap that swallowed it.
    assert local.hour == send_hour or (local.minute == 0 and local.hour == send_hour + 1)
    assert got - now <= timedelta(hours=25)
