"""Planning one delivery: decisions, timing, rendering and headers, without any service."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from app.auth.client import AuthUser
from app.config import Settings
from app.domain.frequency import Cap
from app.domain.suppression import Suppression
from app.domain.tokens import read_unsubscribe_token
from app.jobs.planning import Candidate, DeliveryPlan, plan_delivery
from app.portal.template_files import default_templates

NOW = datetime(2026, 11, 25, 0, 5, tzinfo=UTC)
TEMPLATES = {t.name: t for t in default_templates()}
TEMPLATE_OF = {"welcome": "welcome", "likes": "likes_digest", "mailing": "mailing"}


@pytest.fixture
def settings() -> Settings:
    return Settings(_env_file=None, public_base_url="https://notify.example.com")


def _candidate(kind: str, periodicity: str, **extra: object) -> Candidate:
    template = TEMPLATES[TEMPLATE_OF[kind]]
    values: dict[str, object] = {
        "notification_id": uuid.uuid4(),
        "user_id": uuid.UUID(int=7),
        "kind": kind,
        "periodicity": periodicity,
        "like_count": 0,
        "content_id": uuid.uuid4() if kind != "welcome" else None,
        "content_value": "https://auth.example/confirm?t=x" if kind == "welcome" else "hello",
        "subject": template.subject,
        "body_html": template.body_html,
        "body_text": template.body_text,
    }
    values.update(extra)
    return Candidate(**values)  # type: ignore[arg-type]


def _user(tz: str = "Europe/Berlin", **policy: bool) -> AuthUser:
    flags = {"email": True, "likes": True, "mailing": True, **policy}
    return AuthUser(uuid.UUID(int=7), "ann@example.com", "Ann", tz, flags)


def test_like_digest_is_scheduled_at_the_local_send_hour(settings: Settings) -> None:
    plan = plan_delivery(
        _candidate("likes", "daily", like_count=25),
        _user("America/New_York"),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert plan.status == "scheduled"
    assert plan.send_at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)  # 09:00 EST
    assert plan.period_key == "2026-11-25"
    assert plan.reported_count == 25
    assert plan.subject is not None
    assert "25 new likes" in plan.subject
    token = plan.headers["List-Unsubscribe"].split("token=")[1].rstrip(">")
    assert (
        read_unsubscribe_token(
            secret=settings.secret_key.get_secret_value(), token=token, now=NOW
        ).kind
        == "likes"
    )
    assert plan.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert plan.body_html is not None
    assert "https://notify.example.com/unsubscribe?token=" in plan.body_html


def test_weekly_key_is_the_iso_week_of_the_send_time(settings: Settings) -> None:
    # Monday 2026-12-28 00:10 UTC; Kiritimati (+14) is past 09:00, so Tuesday 09:00 local.
    now = datetime(2026, 12, 28, 0, 10, tzinfo=UTC)
    plan = plan_delivery(
        _candidate("mailing", "weekly"),
        _user("Pacific/Kiritimati"),
        opted_out=frozenset(),
        now=now,
        settings=settings,
    )
    assert plan.send_at == datetime(2026, 12, 28, 19, 0, tzinfo=UTC)
    assert plan.period_key == "2026-W53"


def test_welcome_goes_now_without_unsubscribe_even_if_email_is_off(settings: Settings) -> None:
    plan = plan_delivery(
        _candidate("welcome", "once"),
        _user("Asia/Tokyo", email=False),
        opted_out=frozenset({"mailing", "likes"}),
        now=NOW,
        settings=settings,
    )
    assert (plan.status, plan.send_at, plan.period_key) == ("scheduled", NOW, "once")
    assert plan.headers == {}
    assert plan.body_text is not None
    assert "https://auth.example/confirm?t=x" in plan.body_text


def test_once_mailing_waits_out_quiet_hours(settings: Settings) -> None:
    # 00:05 UTC is 01:05 in Berlin: quiet until 08:00 CET = 07:00 UTC.
    plan = plan_delivery(
        _candidate("mailing", "once"), _user(), opted_out=frozenset(), now=NOW, settings=settings
    )
    assert plan.send_at == datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    assert plan.period_key == "once"


@pytest.mark.parametrize(
    ("kind", "user", "opted_out", "reason"),
    [
        ("likes", None, frozenset(), "unknown user"),
        ("likes", _user(email=False), frozenset(), "email disabled"),
        ("likes", _user(likes=False), frozenset(), "likes disabled"),
        ("mailing", _user(mailing=False), frozenset(), "mailing disabled"),
        ("mailing", _user(), frozenset({"mailing"}), "opted out"),
    ],
)
def test_skips_say_why(
    settings: Settings, kind: str, user: AuthUser | None, opted_out: frozenset[str], reason: str
) -> None:
    plan = plan_delivery(
        _candidate(kind, "daily", like_count=3),
        user,
        opted_out=opted_out,
        now=NOW,
        settings=settings,
    )
    assert (plan.status, plan.error) == ("skipped", reason)
    assert plan.body_html is None


def test_unknown_zone_falls_back_to_the_default(settings: Settings) -> None:
    plan = plan_delivery(
        _candidate("likes", "daily", like_count=1),
        _user("Mars/Olympus_Mons"),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert plan.send_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_a_broken_template_fails_the_delivery_with_the_reason(settings: Settings) -> None:
    plan = plan_delivery(
        _candidate("mailing", "daily", subject="{{ ''.__class__.__mro__ }}"),
        _user(),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert plan.status == "failed"
    assert plan.error is not None
    assert "subject" in plan.error


def _reason(candidate: Candidate, user: AuthUser, settings: Settings, now: datetime = NOW) -> str:
    plan = plan_delivery(candidate, user, opted_out=frozenset(), now=now, settings=settings)
    return plan.send_reason


def test_a_welcome_mail_says_it_goes_at_once_whatever_the_hour(settings: Settings) -> None:
    # 01:05 in Berlin is inside the quiet hours, which transactional mail ignores.
    reason = _reason(_candidate("welcome", "once"), _user("Europe/Berlin"), settings)
    assert reason == "transactional: at once, whatever the hour"


def test_a_once_mailing_in_quiet_hours_says_until_when_it_is_held(settings: Settings) -> None:
    reason = _reason(_candidate("mailing", "once"), _user("Europe/Berlin"), settings)
    assert reason == (
        "held for quiet hours: 2026-11-25 01:05 Europe/Berlin is inside 22:00-08:00,"
        " so at 2026-11-25 08:00 Europe/Berlin"
    )


def test_a_once_mailing_by_day_says_it_goes_at_once(settings: Settings) -> None:
    # 19:05 on the 24th in New York: outside the quiet hours.
    reason = _reason(_candidate("mailing", "once"), _user("America/New_York"), settings)
    assert reason == "at once: 2026-11-24 19:05 America/New_York is outside quiet hours"


def test_a_digest_names_its_send_hour_and_zone(settings: Settings) -> None:
    reason = _reason(_candidate("likes", "daily", like_count=3), _user("Asia/Tokyo"), settings)
    assert reason == "daily digest at the send hour 09:00 in Asia/Tokyo"


def test_a_digest_moved_by_quiet_hours_says_so() -> None:
    late = Settings(_env_file=None, send_hour_local=23, quiet_hours="22:00-08:00")
    reason = _reason(_candidate("likes", "weekly", like_count=3), _user("UTC"), late)
    assert reason == (
        "weekly digest at the send hour 23:00 in UTC, moved out of quiet hours 22:00-08:00"
        " to 2026-11-26 08:00 UTC"  # 23:00 on the 25th is the next send hour
    )


def test_an_unknown_zone_is_named_in_the_reason(settings: Settings) -> None:
    reason = _reason(_candidate("likes", "daily", like_count=3), _user("Mars/Olympus"), settings)
    assert reason == (
        "daily digest at the send hour 09:00 in UTC (time zone 'Mars/Olympus' unknown: UTC used)"
    )


def test_a_skipped_delivery_keeps_the_time_it_would_have_had(settings: Settings) -> None:
    plan = plan_delivery(
        _candidate("mailing", "daily"),
        _user("Asia/Tokyo", mailing=False),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert (plan.status, plan.error) == ("skipped", "mailing disabled")
    assert plan.send_reason == "daily digest at the send hour 09:00 in Asia/Tokyo"


def _scheduled(**schedule: object) -> Candidate:
    return _candidate("mailing", "once", **schedule)


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Europe/Berlin", datetime(2026, 11, 26, 8, 0, tzinfo=UTC)),
        ("America/New_York", datetime(2026, 11, 26, 14, 0, tzinfo=UTC)),
        ("Asia/Tokyo", datetime(2026, 11, 26, 0, 0, tzinfo=UTC)),
    ],
)
def test_a_campaign_at_a_local_hour_goes_at_that_hour_in_each_zone(
    settings: Settings, zone: str, expected: datetime
) -> None:
    plan = plan_delivery(
        _scheduled(campaign_local_date=date(2026, 11, 26), campaign_local_hour=9),
        _user(zone),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert plan.send_at == expected
    assert plan.send_reason == f"the campaign's 09:00 local time: 2026-11-26 09:00 {zone}"


def test_a_campaign_hour_inside_quiet_hours_goes_when_they_end(settings: Settings) -> None:
    plan = plan_delivery(
        _scheduled(campaign_local_date=date(2026, 11, 26), campaign_local_hour=23),
        _user("UTC"),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert plan.send_at == datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
    assert plan.send_reason == (
        "the campaign's 23:00 local time: 2026-11-26 23:00 UTC, moved out of quiet hours"
        " 22:00-08:00 to 2026-11-27 08:00 UTC"
    )


def test_a_campaign_whose_hour_has_passed_goes_as_soon_as_allowed(settings: Settings) -> None:
    # 09:00 on the 25th in Tokyo was at 00:00 UTC: five minutes before NOW.
    plan = plan_delivery(
        _scheduled(campaign_local_date=date(2026, 11, 25), campaign_local_hour=9),
        _user("Asia/Tokyo"),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert plan.send_at == NOW
    assert plan.send_reason.startswith("the campaign's 09:00 local time (2026-11-25 09:00")
    assert plan.send_reason.endswith("had passed when planned: as soon as allowed")


def test_a_campaign_at_an_instant_waits_for_it(settings: Settings) -> None:
    at = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
    plan = plan_delivery(
        _scheduled(campaign_send_at=at),
        _user("America/New_York"),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert plan.send_at == at
    assert plan.send_reason == "the campaign's send time: 2026-11-25 10:30 America/New_York"


def test_likes_and_mailings_link_to_the_preference_page(settings: Settings) -> None:
    plan = plan_delivery(
        _candidate("likes", "daily", like_count=2),
        _user(),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
    )
    assert plan.body_html is not None
    assert "https://notify.example.com/preferences?token=" in plan.body_html
    token = plan.body_html.split("preferences?token=")[1].split('"')[0]
    found = read_unsubscribe_token(
        secret=settings.secret_key.get_secret_value(), token=token, now=NOW
    )
    assert (found.user_id, found.kind) == (uuid.UUID(int=7), "preferences")
    welcome = plan_delivery(
        _candidate("welcome", "once"), _user(), opted_out=frozenset(), now=NOW, settings=settings
    )
    assert welcome.body_html is not None
    assert "preferences?token=" not in welcome.body_html


BOUNCED = Suppression(
    "ann@example.com", "hard bounce", NOW, NOW, "550 5.1.1 user unknown", "sendgrid"
)


@pytest.mark.parametrize("kind", ["likes", "mailing", "welcome"])
def test_a_suppressed_address_is_skipped_with_what_happened_to_it(
    settings: Settings, kind: str
) -> None:
    plan = plan_delivery(
        _candidate(kind, "once" if kind == "welcome" else "daily", like_count=1),
        _user(),
        opted_out=frozenset(),
        now=NOW,
        settings=settings,
        suppression=BOUNCED,
    )
    assert (plan.status, plan.subject, plan.body_html) == ("skipped", None, None)
    assert plan.error == ("address suppressed: it bounced on 2026-11-25 (550 5.1.1 user unknown)")


def test_welcome_mail_may_be_let_through_to_suppressed_addresses(settings: Settings) -> None:
    lenient = settings.model_copy(update={"suppress_transactional": False})
    welcome = _candidate("welcome", "once")
    plan = plan_delivery(
        welcome, _user(), opted_out=frozenset(), now=NOW, settings=lenient, suppression=BOUNCED
    )
    assert plan.status == "scheduled"
    digest = plan_delivery(
        _candidate("likes", "daily", like_count=1),
        _user(),
        opted_out=frozenset(),
        now=NOW,
        settings=lenient,
        suppression=BOUNCED,
    )
    assert digest.status == "skipped"  # only transactional mail is let through


def test_the_users_own_choice_is_the_reason_shown_before_a_suppression(
    settings: Settings,
) -> None:
    plan = plan_delivery(
        _candidate("mailing", "daily"),
        _user(),
        opted_out=frozenset({"mailing"}),
        now=NOW,
        settings=settings,
        suppression=BOUNCED,
    )
    assert (plan.status, plan.error) == ("skipped", "opted out")


THREE_A_DAY = (Cap(3, timedelta(days=1)),)


def _under_cap(
    settings: Settings, candidate: Candidate, went: list[datetime], now: datetime = NOW
) -> DeliveryPlan:
    """Ann's plan of `candidate` under 3/1d, after mails at the times `went`."""
    return plan_delivery(
        candidate,
        _user(),
        opted_out=frozenset(),
        now=now,
        settings=settings,
        caps=THREE_A_DAY,
        others=went,
    )


def test_a_fourth_mail_in_a_day_is_held_to_the_next_free_slot(settings: Settings) -> None:
    # Three mails went out in Berlin's morning; the campaign's once mail would be the fourth.
    went = [datetime(2026, 11, 25, h, 0, tzinfo=UTC) for h in (8, 9, 10)]
    now = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # 12:00 in Berlin
    plan = _under_cap(settings, _candidate("mailing", "once"), went, now)
    assert plan.status == "scheduled"
    assert plan.send_at == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # when the first leaves
    assert plan.send_reason.endswith(
        "; held by the frequency cap 3/1d: at 2026-11-26 09:00 Europe/Berlin"
    )


def test_a_held_digest_counts_for_the_day_it_goes_and_stays_out_of_quiet_hours(
    settings: Settings,
) -> None:
    # Berlin's 09:00 digest; three mails since 22:30 the evening before, the first at 22:30 UTC
    # (23:30 in Berlin): the free slot, 22:30 UTC the next day, is in quiet hours (until 08:00).
    went = [datetime(2026, 11, 24, 22, 30, tzinfo=UTC), *[NOW.replace(hour=h) for h in (5, 6)]]
    plan = _under_cap(settings, _candidate("likes", "daily", like_count=2), went)
    assert plan.status == "scheduled"
    assert plan.send_at == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)  # 08:00 Berlin, quiet ends
    assert plan.period_key == "2026-11-26"


@pytest.mark.parametrize(
    ("policy", "kind", "status"),
    [
        ("skip", "mailing", "skipped"),
        ("exempt", "mailing", "scheduled"),
        (None, "welcome", "scheduled"),
    ],
)
def test_a_campaign_may_skip_or_be_exempt_and_welcome_mail_is_never_capped(
    settings: Settings, policy: str | None, kind: str, status: str
) -> None:
    went = [NOW.replace(hour=h) for h in (1, 2, 3)]
    candidate = _candidate(kind, "once", campaign_cap_policy=policy)
    plan = _under_cap(settings, candidate, went)
    assert plan.status == status
    if status == "skipped":
        assert plan.error == "frequency capped: 3/1d; its campaign skips rather than waits"
    else:
        assert plan.send_at <= NOW + timedelta(hours=9)  # not held to another day
