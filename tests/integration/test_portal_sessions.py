"""Portal sign-in under attack: throttled guessing, bounded hashing, sessions that can be ended."""

from __future__ import annotations

import time

import httpx2
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from app.config import Settings
from app.db.admin_users import create_or_replace
from app.db.models import AdminUser, AuditEntry
from app.db.session import session_scope
from app.portal.app import create_app
from app.portal.auth import hash_password
from harness.portal import (
    concurrent_wrong_passwords,
    form_token,
    log_in,
    make_admin_user,
    served_settings,
)

ANY_PAGE = "/admin/mailings"


# What starlette's TestClient answers with: an httpx2 response.
def _try_login(client: TestClient, username: str, password: str) -> httpx2.Response:
    data = {"username": username, "password": password, "csrf_token": form_token(client, "/login")}
    return client.post("/login", data=data, follow_redirects=False)


def _locked_count() -> float:
    return (
        REGISTRY.get_sample_value("notify_portal_login_failures_total", {"reason": "locked"}) or 0
    )


def _audit(actor: str) -> list[tuple[str, str, int]]:
    with session_scope() as session:
        query = select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.audit_id)
        return [(e.action, e.target, e.outcome) for e in session.scalars(query)]


def test_a_username_is_locked_after_its_failures_and_free_again_after_the_window(
    portal_settings: Settings,
) -> None:
    settings = portal_settings.model_copy(update={"portal_login_user_limits": "3 per 2 seconds"})
    username, password = make_admin_user()
    locked_before = _locked_count()
    with TestClient(create_app(settings)) as client:
        for _ in range(3):
            assert _try_login(client, username, "wrong").status_code == 400
        locked = _try_login(client, username, password)  # the right password, while locked
        assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
        assert 1 <= int(locked.headers["Retry-After"]) <= 2
        assert _locked_count() == locked_before + 1
        time.sleep(2.1)
        assert _try_login(client, username, password).status_code == 303
    actions = [action for action, _target, _outcome in _audit(username)]
    assert actions == ["login_failed"] * 3 + ["login_locked", "login"]


def test_a_correct_password_resets_the_username_count(portal_settings: Settings) -> None:
    settings = portal_settings.model_copy(update={"portal_login_user_limits": "3 per minute"})
    username, password = make_admin_user()
    with TestClient(create_app(settings)) as client:
        for _ in range(2):
            for _ in range(2):
                assert _try_login(client, username, "wrong").status_code == 400
            assert _try_login(client, username, password).status_code == 303
        assert _try_login(client, username, "wrong").status_code == 400


def test_one_client_address_guessing_many_usernames_is_locked(portal_settings: Settings) -> None:
    settings = portal_settings.model_copy(update={"portal_login_client_limits": "4 per minute"})
    with TestClient(create_app(settings)) as client:
        for i in range(4):
            assert _try_login(client, f"nobody-{i}", "guess").status_code == 400
        username, password = make_admin_user()
        assert _try_login(client, username, password).status_code == 429


def test_password_hashing_is_bounded_and_the_overflow_answered_at_once(
    portal_settings: Settings,
) -> None:
    # Windows wide enough that all eight attempts are counted and none is locked: this is about
    # the hashing bound (the windows count each attempt before it hashes).
    settings = portal_settings.model_copy(
        update={
            "portal_max_concurrent_hashes": 1,
            "portal_max_waiting_logins": 1,
            "portal_login_user_limits": "100 per minute",
            "portal_login_client_limits": "100 per minute",
        }
    )
    username, _password = make_admin_user()
    app = create_app(settings)

    statuses = concurrent_wrong_passwords(app, username, 8)
    # One hashes, one waits for the slot, the rest are told to come back.
    assert sorted(statuses) == [400, 400] + [503] * 6, statuses


def test_a_copied_cookie_is_dead_after_logout(client: TestClient) -> None:
    copied = dict(client.cookies)
    with TestClient(client.app, cookies=copied) as thief:
        assert thief.get(ANY_PAGE).status_code == 200
        client.post("/logout", data={"csrf_token": form_token(client)})
        refused = thief.get(ANY_PAGE, follow_redirects=False)
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    # A second portal process (no cached answer) refuses it too.
    with TestClient(create_app(served_settings(client)), cookies=copied) as elsewhere:
        assert elsewhere.get(ANY_PAGE, follow_redirects=False).status_code == 303


def test_a_copied_cookie_is_dead_after_a_password_change(anonymous: TestClient) -> None:
    username, password = make_admin_user()
    log_in(anonymous, username, password)
    copied = dict(anonymous.cookies)
    with session_scope() as session:
        create_or_replace(
            session=session, username=username, password_hash=hash_password("n3w-pw!")
        )
    # The running portal re-checks within a few seconds; a fresh one at once.
    with TestClient(create_app(served_settings(anonymous)), cookies=copied) as other:
        assert other.get(ANY_PAGE, follow_redirects=False).status_code == 303
        log_in(other, username, "n3w-pw!")
        assert other.get(ANY_PAGE).status_code == 200


def test_a_deactivation_in_the_portal_ends_the_users_sessions_at_once(
    client: TestClient,
) -> None:
    username, password = make_admin_user(role="editor")
    with TestClient(client.app) as victim:  # the same portal process as the admin's
        log_in(victim, username, password)
        assert victim.get(ANY_PAGE).status_code == 200
        with session_scope() as session:
            user_id = session.scalar(
                select(AdminUser.admin_user_id).where(AdminUser.username == username)
            )
        form = {"role": "editor", "save": "Save"}  # is_active unticked
        saved = client.post(f"/admin/admin-user/edit/{user_id}", data=form, follow_redirects=False)
        assert saved.status_code == 302, saved.text[:300]
        assert victim.get(ANY_PAGE, follow_redirects=False).status_code == 303
    with session_scope() as session:
        user = session.scalar(select(AdminUser).where(AdminUser.username == username))
        assert user is not None and not user.is_active and user.session_version == 2


def test_logout_by_get_changes_nothing(client: TestClient) -> None:
    page = client.get("/admin/logout")
    assert page.status_code == 200 and 'action="/logout"' in page.text
    assert client.get(ANY_PAGE).status_code == 200  # still signed in
    no_token = client.post("/logout", follow_redirects=False)
    assert no_token.status_code == 403  # a cross-site form cannot sign anyone out
    assert client.get(ANY_PAGE).status_code == 200
