"""The dashboard's shapes and the next beat runs, without any service."""

from __future__ import annotations

from datetime import UTC, datetime

from app.domain.dashboard import hourly_series, partition_lags, window_start
from app.jobs.schedule import Cron, Entry, next_run

NOW = datetime(2026, 11, 25, 10, 40, tzinfo=UTC)


def test_hourly_series_fills_24_hours_and_groups_statuses_into_outcomes() -> None:
    rows = [
        (datetime(2026, 11, 25, 10, 0, tzinfo=UTC), "sent", 3),
        (datetime(2026, 11, 25, 10, 0, tzinfo=UTC), "delivered", 2),
        (datetime(2026, 11, 25, 10, 0, tzinfo=UTC), "bounced", 1),
        (datetime(2026, 11, 25, 9, 0, tzinfo=UTC), "failed", 4),
        (datetime(2026, 11, 24, 11, 0, tzinfo=UTC), "skipped", 5),  # the first hour shown
        (datetime(2026, 11, 24, 10, 0, tzinfo=UTC), "sent", 99),  # before the window
        (datetime(2026, 11, 25, 10, 0, tzinfo=UTC), "scheduled", 7),  # no outcome yet
        (datetime(2026, 11, 25, 10, 0, tzinfo=UTC), "cancelled", 8),  # not charted
    ]
    series = hourly_series(rows, NOW)
    assert series.hours[0] == window_start(NOW) == datetime(2026, 11, 24, 11, tzinfo=UTC)
    assert series.hours[-1] == datetime(2026, 11, 25, 10, tzinfo=UTC)
    assert len(series.hours) == 24
    # Bounced counts as failed, as in campaign progress (the vocabulary's outcome groups).
    assert series.counts["sent"][-1] == 5 and sum(series.counts["sent"]) == 5
    assert series.counts["failed"][-2:] == [4, 1] and sum(series.counts["failed"]) == 5
    assert series.counts["skipped"][0] == 5 and sum(series.counts["skipped"]) == 5
    hours = series.as_json()["hours"]
    assert isinstance(hours, list)
    assert hours[-1] == "2026-11-25T10:00:00+00:00"


def _entry(cron: Cron | None = None, every_s: float | None = None, **extra: object) -> Entry:
    values: dict[str, object] = {
        "id": 1,
        "name": "entry",
        "task": "task",
        "description": "",
        "enabled": True,
        "queue": None,
        "cron": cron,
        "every": None,
        "last_run_at": None,
        "total_run_count": 0,
        "every_s": every_s,
    }
    values.update(extra)
    return Entry(**values)  # type: ignore[arg-type]


def test_a_cron_entry_runs_next_in_its_own_zone() -> None:
    daily = Cron(minute="5", hour="0")
    assert next_run(_entry(daily), NOW) == datetime(2026, 11, 26, 0, 5, tzinfo=UTC)
    tokyo = Cron(minute="5", hour="0", timezone="Asia/Tokyo")  # 19:40 there now
    assert next_run(_entry(tokyo), NOW) == datetime(2026, 11, 25, 15, 5, tzinfo=UTC)
    monday = Cron(minute="10", hour="0", day_of_week="1")  # NOW is a Wednesday
    assert next_run(_entry(monday), NOW) == datetime(2026, 11, 30, 0, 10, tzinfo=UTC)


def test_an_interval_entry_runs_after_its_last_run_and_a_disabled_one_never() -> None:
    last = datetime(2026, 11, 25, 10, 39, 55, tzinfo=UTC)
    assert next_run(_entry(every_s=10, last_run_at=last), NOW) == datetime(
        2026, 11, 25, 10, 40, 5, tzinfo=UTC
    )
    overdue = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    assert next_run(_entry(every_s=10, last_run_at=overdue), NOW) == NOW
    assert next_run(_entry(every_s=600, last_run_at=last), NOW) == datetime(
        2026, 11, 25, 10, 49, 55, tzinfo=UTC
    )
    assert next_run(_entry(every_s=10), NOW) == NOW  # never ran
    assert next_run(_entry(Cron(minute="5", hour="0"), enabled=False), NOW) is None


def test_partition_lags_count_from_the_applied_offset_to_the_end() -> None:
    ends = {"t:0": 10, "t:1": 5, "t:2": 0}
    stored = {("t", 0): (6, None), ("t", 1): (None, "held by hand")}
    lags = {row["partition"]: row for row in partition_lags(ends, stored)}
    assert (lags[0]["applied"], lags[0]["lag"], lags[0]["blocked"]) == (6, 3, None)
    # Nothing applied yet: every record up to the end is lag.
    assert (lags[1]["applied"], lags[1]["lag"], lags[1]["blocked"]) == (None, 5, "held by hand")
    assert (lags[2]["applied"], lags[2]["lag"]) == (None, 0)
