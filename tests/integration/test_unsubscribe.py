"""RFC 8058 one-click unsubscribe on the portal, and the periodic jobs honouring it."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Row, select

from app.config import Settings
from app.core.clock import utcnow
from app.db.models import Delivery, OptOut
from app.db.session import session_scope
from app.domain.vocabulary import Kind
from app.jobs import digests
from app.jobs.links import unsubscribe_url
from app.portal.app import create_app
from harness.rows import Spec, insert_notifications

ONE_CLICK = {
    "content": b"List-Unsubscribe=One-Click",
    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
}


@pytest.fixture
def client(db: str, settings: Settings) -> TestClient:
    return TestClient(create_app(settings))


def _path(settings: Settings, user_id: uuid.UUID, kind: Kind, now: datetime | None = None) -> str:
    parts = urlsplit(unsubscribe_url(settings, user_id, kind, now or utcnow()))
    return f"{parts.path}?{parts.query}"


def _opt_outs() -> Sequence[Row[uuid.UUID, str, str]]:
    with session_scope() as session:
        return session.execute(select(OptOut.user_id, OptOut.kind, OptOut.source)).all()


def test_get_shows_a_confirm_form_and_changes_nothing(client, settings) -> None:
    user_id = uuid.uuid4()
    page = client.get(_path(settings, user_id, "mailing"))
    assert page.status_code == 200
    assert '<form method="post"' in page.text and "Stop receiving mailings" in page.text
    assert _opt_outs() == []
    # The form posts back to the same signed URL.
    action = page.text.split('action="')[1].split('"')[0].replace("&amp;", "&")
    answer = client.post(urlsplit(action).path + "?" + urlsplit(action).query, **ONE_CLICK)
    assert answer.status_code == 200
    assert _opt_outs() == [(user_id, "mailing", "link")]


def test_one_click_post_records_the_opt_out_once(client, settings) -> None:
    user_id = uuid.uuid4()
    for _ in range(2):
        answer = client.post(_path(settings, user_id, "likes"), **ONE_CLICK)
        assert answer.status_code == 200
        assert "no longer receive like digests" in answer.text
    assert _opt_outs() == [(user_id, "likes", "link")]


@pytest.mark.parametrize("case", ["expired", "forged", "malformed", "transactional", "missing"])
def test_bad_tokens_get_a_readable_400_and_change_nothing(client, settings, case) -> None:
    user_id = uuid.uuid4()
    if case == "expired":
        path = _path(settings, user_id, "likes", datetime.now(UTC) - timedelta(days=61))
    elif case == "forged":
        path = _path(
            settings.model_copy(update={"secret_key": SecretStr("not-ours")}), user_id, "likes"
        )
    elif case == "malformed":
        path = "/unsubscribe?token=abc"
    elif case == "transactional":
        path = _path(settings, user_id, "welcome")
    else:
        path = "/unsubscribe"
    for answer in (client.get(path), client.post(path, **ONE_CLICK)):
        assert answer.status_code == 400
        assert "This unsubscribe link is not valid" in answer.text
    assert _opt_outs() == []


def test_the_daily_job_honours_an_unsubscribe(client, settings, auth_client, auth_users) -> None:
    user = next(u for u in auth_users if all(u["notification_policy"].values()))
    user_id = uuid.UUID(user["user_id"])
    with session_scope() as session:
        likes, mailing = insert_notifications(
            session,
            [
                Spec(user_id, "likes", "daily", uuid.uuid4(), "a comment", like_count=2),
                Spec(user_id, "mailing", "daily", uuid.uuid4(), "news"),
            ],
        )
    assert client.post(_path(settings, user_id, "likes"), **ONE_CLICK).status_code == 200
    digests.run_digest("daily", auth=auth_client, settings=settings, now=utcnow())
    with session_scope() as session:
        planned = dict(session.execute(select(Delivery.notification_id, Delivery.status)).all())
        error = session.scalar(select(Delivery.error).where(Delivery.notification_id == likes))
    assert planned == {likes: "skipped", mailing: "scheduled"}
    assert error == "opted out"
