"""The recipients' preference page against real PostgreSQL and the Auth API: a signed link, the
choices saved, and the digest jobs following them from the next period."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as settings_of_hypothesis
from hypothesis import strategies as st
from sqlalchemy import text

from app.auth.client import AuthClient
from app.config import Settings
from app.db import timeline as store
from app.db.session import session_scope
from app.domain import timeline
from app.jobs.digests import run_digest
from app.jobs.links import preferences_url
from harness.fuzzing import any_text
from harness.rows import Spec, insert_notifications

NOW = datetime(2026, 11, 25, 0, 5, tzinfo=UTC)  # the daily job's usual moment
CHECKED = re.compile(r'name="(\w+)" value="(\w+)" checked')


def _token(settings: Settings, user_id: uuid.UUID) -> str:
    return preferences_url(settings, user_id, datetime.now(UTC)).split("token=")[1]


def _chosen(page: str) -> dict[str, str]:
    return dict(CHECKED.findall(page))


def _delivery_periods(notification_id: uuid.UUID) -> list[str]:
    with session_scope() as session:
        return list(
            session.scalars(
                text("SELECT period_key FROM deliveries WHERE notification_id = :n ORDER BY 1"),
                {"n": notification_id},
            )
        )


def test_switching_likes_to_weekly_moves_them_out_of_the_daily_digest(
    anonymous: TestClient,
    auth_client: AuthClient,
    auth_users: list[dict[str, Any]],
    settings: Settings,
) -> None:
    user = next(u for u in auth_users if all(u["notification_policy"].values()))
    other = next(u for u in auth_users if all(u["notification_policy"].values()) and u != user)
    uid = uuid.UUID(user["user_id"])
    with session_scope() as session:
        mine, theirs = insert_notifications(
            session,
            [
                Spec(uid, "likes", "daily", uuid.uuid4(), "a comment", like_count=3),
                Spec(
                    uuid.UUID(other["user_id"]), "likes", "daily", uuid.uuid4(), "x", like_count=2
                ),
            ],
        )
    token = _token(settings, uid)

    page = anonymous.get("/preferences", params={"token": token})
    assert page.status_code == 200
    assert _chosen(page.text) == {"likes": "daily", "mailing": "on"}
    saved = anonymous.post(
        "/preferences", data={"token": token, "likes": "weekly", "mailing": "on"}
    )
    assert saved.status_code == 200 and 'id="pref-saved"' in saved.text
    assert _chosen(saved.text) == {"likes": "weekly", "mailing": "on"}

    daily = run_digest("daily", auth=auth_client, settings=settings, now=NOW)
    assert _delivery_periods(mine) == []  # the next daily run skips them
    assert _delivery_periods(theirs) == ["2026-11-25"]  # everyone else as before
    assert daily.picked == 1
    run_digest("weekly", auth=auth_client, settings=settings, now=NOW)
    assert _delivery_periods(mine) == ["2026-W48"]

    with session_scope() as session:
        entries = timeline.build(store.load_user(session=session, user_id=uid))
    assert [(e.outcome, e.title) for e in entries if e.outcome == "preference"] == [
        ("preference", "like digests set to weekly on the preference page")
    ]


def test_turning_mailings_off_is_an_opt_out_and_on_again_lifts_it(
    anonymous: TestClient, settings: Settings
) -> None:
    uid = uuid.uuid4()
    token = _token(settings, uid)
    anonymous.post("/preferences", data={"token": token, "likes": "off", "mailing": "off"})
    with session_scope() as session:
        off = session.execute(
            text("SELECT kind, source FROM opt_outs WHERE user_id = :u ORDER BY kind"), {"u": uid}
        ).all()
    assert [tuple(row) for row in off] == [("likes", "preferences"), ("mailing", "preferences")]
    again = anonymous.post("/preferences", data={"token": token, "likes": "daily", "mailing": "on"})
    assert _chosen(again.text) == {"likes": "daily", "mailing": "on"}
    with session_scope() as session:
        left = session.execute(text("SELECT count(*) FROM opt_outs WHERE user_id = :u"), {"u": uid})
        assert left.scalar_one() == 0
        changes = session.execute(
            text(
                "SELECT kind, choice FROM preference_changes WHERE user_id = :u ORDER BY change_id"
            ),
            {"u": uid},
        ).all()
    assert [tuple(c) for c in changes] == [
        ("likes", "off"),
        ("mailing", "off"),
        ("likes", "daily"),
        ("mailing", "on"),
    ]


def test_a_forged_expired_or_foreign_token_changes_nothing(
    anonymous: TestClient, settings: Settings
) -> None:
    uid = uuid.uuid4()
    good = _token(settings, uid)
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    from app.domain.tokens import make_unsubscribe_token

    unsubscribe = make_unsubscribe_token(
        secret=settings.secret_key.get_secret_value(),
        user_id=uid,
        kind="likes",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    expired = make_unsubscribe_token(
        secret=settings.secret_key.get_secret_value(),
        user_id=uid,
        kind="preferences",
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    for token, reason in (
        (forged, "bad signature"),
        (unsubscribe, "not a preference link"),
        (expired, "expired"),
        ("", "no token"),
    ):
        shown = anonymous.get("/preferences", params={"token": token})
        posted = anonymous.post("/preferences", data={"token": token, "likes": "off"})
        assert (shown.status_code, posted.status_code) == (400, 400), token
        assert reason in posted.text
    bad_choice = anonymous.post("/preferences", data={"token": good, "likes": "hourly"})
    assert bad_choice.status_code == 400
    with session_scope() as session:
        assert (
            session.execute(
                text("SELECT count(*) FROM preference_changes WHERE user_id = :u"), {"u": uid}
            ).scalar_one()
            == 0
        )


@settings_of_hypothesis(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fields=st.dictionaries(
        st.sampled_from(["token", "likes", "mailing", "other"]), any_text, max_size=4
    ),
    raw=st.binary(max_size=200),
)
def test_hostile_forms_are_refused_or_saved_never_a_server_error(
    anonymous: TestClient, settings: Settings, fields: dict[str, str], raw: bytes
) -> None:
    token = _token(settings, uuid.UUID(int=99))
    for body in (
        urlencode({**fields, "token": token}, errors="surrogatepass").encode(),
        urlencode(fields, errors="surrogatepass").encode(),
        raw,
    ):
        response = anonymous.post(
            "/preferences",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code in (200, 400), (body, response.status_code)
    query = urlencode({"token": fields.get("token", "")}, errors="surrogatepass")
    shown = anonymous.get(f"/preferences?{query}")
    assert shown.status_code in (200, 400)
