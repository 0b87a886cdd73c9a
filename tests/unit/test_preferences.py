"""What the preference page offers and shows, and the schedule of a campaign, without services."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from app.domain.campaigns import CampaignInvalid, Schedule, parse_schedule
from app.domain.preferences import ChoiceInvalid, check_choice, current_choice
from app.domain.timeline import PreferenceRow, UserRecord, build


@pytest.mark.parametrize(
    ("kind", "choice"),
    [("likes", "daily"), ("likes", "weekly"), ("likes", "off"), ("mailing", "on")],
)
def test_the_offered_choices_are_accepted(kind: str, choice: str) -> None:
    check_choice(kind, choice)


@pytest.mark.parametrize(
    ("kind", "choice"),
    [("likes", "on"), ("mailing", "weekly"), ("welcome", "off"), ("likes", "hourly"), ("x", "")],
)
def test_anything_else_is_refused(kind: str, choice: str) -> None:
    with pytest.raises(ChoiceInvalid):
        check_choice(kind, choice)


def test_the_page_shows_off_first_then_the_chosen_periodicity() -> None:
    assert current_choice("likes", opted_out=True, periodicity="weekly") == "off"
    assert current_choice("likes", opted_out=False, periodicity="weekly") == "weekly"
    assert current_choice("likes", opted_out=False, periodicity=None) == "daily"
    assert current_choice("mailing", opted_out=False, periodicity=None) == "on"
    assert current_choice("mailing", opted_out=True, periodicity=None) == "off"


def test_a_preference_change_is_on_the_timeline() -> None:
    at = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    record = UserRecord(uuid.UUID(int=7), preferences=[PreferenceRow(at, "likes", "weekly")])
    [entry] = build(record)
    assert (entry.outcome, entry.title) == (
        "preference",
        "like digests set to weekly on the preference page",
    )


def test_a_schedule_is_read_from_the_form() -> None:
    assert parse_schedule("now") is None
    assert parse_schedule("at", "2026-12-03T09:30") == Schedule(
        send_at=datetime(2026, 12, 3, 9, 30, tzinfo=UTC)
    )
    local = parse_schedule("local", local_date="2026-12-03", local_hour="9")
    assert local == Schedule(local_date=date(2026, 12, 3), local_hour=9)
    assert local.describe() == "at 09:00 on 2026-12-03 in each recipient's time zone"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (("at", "tomorrow"), "the schedule is not valid"),
        (("local", "", "2026-12-03", "24"), "the hour must be 0 to 23"),
        (("local", "", "", "9"), "the schedule is not valid"),
        (("soon",), "unknown schedule"),
    ],
)
def test_a_bad_schedule_is_refused_with_its_reason(fields: tuple[str, ...], message: str) -> None:
    with pytest.raises(CampaignInvalid, match=message):
        parse_schedule(*fields)
