"""Portal access: every admin page and API needs a login; CSRF defences on every form."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from starlette.routing import Mount

from app.config import Settings
from app.db.models import AdminUser, Campaign, Template
from app.db.session import session_scope
from app.portal.app import create_app
from harness.portal import (
    form_token,
    log_in,
    mailing_template_id,
    make_admin_user,
    served_settings,
)
from harness.rows import Spec, insert_notifications

PUBLIC = {"/login", "/healthz", "/metrics", "/unsubscribe", "/webhooks/sendgrid"}
IDENTITIES = ("template", "notification", "delivery", "admin-user", "audit-entry")


def _concrete(path: str) -> str:
    path = re.sub(r"\{[a-z_]*id\}", str(uuid.uuid4()), path)
    path = re.sub(r"\{entry_id\}", "1", path)
    assert "{" not in path, path
    return path


def _our_routes(app) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in PUBLIC:
            assert route.methods is not None  # typed optional; an APIRoute always has them
            found += [(method, _concrete(route.path)) for method in sorted(route.methods)]
    return found


def _admin_routes() -> list[tuple[str, str]]:
    pk = str(uuid.uuid4())
    pages = ["/admin/", "/admin/statics/css/main.css", "/admin/logout"]
    for identity in IDENTITIES:
        pages += [
            f"/admin/{identity}/{page}"
            for page in (
                "list",
                "create",
                f"details/{pk}",
                f"edit/{pk}",
                "export/csv",
                "ajax/lookup?name=x&term=y",
            )
        ]
    posts = [f"/admin/{i}/{p}" for i in IDENTITIES for p in ("create", f"edit/{pk}", "import")]
    return (
        [("GET", p) for p in pages]
        + [("POST", p) for p in posts]
        + [("DELETE", f"/admin/{i}/delete?pks={pk}") for i in IDENTITIES]
    )


def _assert_refused(response, method: str, path: str) -> None:
    if response.status_code == 303:
        assert response.headers["location"].startswith("/login?next="), (method, path)
    else:
        assert response.status_code == 401, (method, path, response.status_code)


def test_every_admin_page_and_api_refuses_anonymous_access(anonymous: TestClient) -> None:
    app = anonymous.app
    assert isinstance(app, FastAPI)
    assert any(isinstance(r, Mount) and r.path == "/admin" for r in app.routes)
    routes = _our_routes(app) + _admin_routes()
    assert len(routes) > 40
    for method, path in routes:
        response = anonymous.request(method, path, follow_redirects=False)
        _assert_refused(response, method, path)
    api = anonymous.get(f"/admin/api/mailings/{uuid.uuid4()}/progress")
    assert api.status_code == 401 and api.json() == {"detail": "login required"}


def test_public_routes_stay_public(anonymous: TestClient) -> None:
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/login").status_code == 200
    # The webhook and unsubscribe answer for themselves (bad signature, bad token), not 401.
    assert anonymous.post("/webhooks/sendgrid", content=b"[]").status_code == 403
    cross_site = {"Origin": "https://mail.example.com", "Sec-Fetch-Site": "cross-site"}
    refused = anonymous.post("/unsubscribe?token=nope", headers=cross_site)
    assert refused.status_code == 400 and "not valid" in refused.text


def _pending_mailings(client: TestClient) -> float:
    response = client.get("/metrics")
    assert response.status_code == 200
    families = text_string_to_metric_families(response.text)
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == "notify_notifications"
        and sample.labels == {"kind": "mailing", "status": "pending"}
    )


def _add_pending_mailings(count: int) -> None:
    with session_scope() as session:
        specs = [Spec(uuid.uuid4(), "mailing", "once", uuid.uuid4(), "hi") for _ in range(count)]
        insert_notifications(session, specs)


def test_metrics_are_public_and_count_notifications_in_the_database(
    portal_settings: Settings,
) -> None:
    uncached = portal_settings.model_copy(update={"portal_metrics_cache_s": 0})
    with TestClient(create_app(uncached)) as anonymous:
        before = _pending_mailings(anonymous)
        _add_pending_mailings(3)
        assert _pending_mailings(anonymous) == before + 3


def test_metrics_read_the_database_at_most_once_per_interval(portal_settings: Settings) -> None:
    cached = portal_settings.model_copy(update={"portal_metrics_cache_s": 3})
    with TestClient(create_app(cached)) as anonymous:
        before = _pending_mailings(anonymous)
        _add_pending_mailings(2)
        assert _pending_mailings(anonymous) == before  # a scrape within the interval: no query
        time.sleep(3.1)
        assert _pending_mailings(anonymous) == before + 2


def test_login_wrong_password_and_logout(anonymous: TestClient) -> None:
    username, password = make_admin_user()
    token = form_token(anonymous, "/login")
    data = {"username": username, "password": "wrong", "csrf_token": token}
    refused = anonymous.post("/login", data=data)
    assert refused.status_code == 400 and "Invalid username or password" in refused.text
    log_in(anonymous, username, password)
    assert anonymous.get("/admin/mailings").status_code == 200
    cookie = anonymous.cookies.get("notify_portal")
    assert cookie
    response = anonymous.post(
        "/logout", data={"csrf_token": form_token(anonymous)}, follow_redirects=False
    )
    assert response.headers["location"] == "/login"
    _assert_refused(anonymous.get("/admin/mailings", follow_redirects=False), "GET", "/")


def test_session_cookie_is_httponly_and_samesite_lax(anonymous: TestClient) -> None:
    username, password = make_admin_user()
    token = form_token(anonymous, "/login")
    data = {"username": username, "password": password, "csrf_token": token}
    response = anonymous.post("/login", data=data, follow_redirects=False)
    cookie = response.headers["set-cookie"].lower()
    assert "notify_portal=" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_deactivated_user_is_refused(anonymous: TestClient) -> None:
    username, password = make_admin_user()
    log_in(anonymous, username, password)
    with session_scope() as session:
        user = session.scalars(select(AdminUser).where(AdminUser.username == username)).one()
        user.is_active = False
    # A fresh app has no cached "active" answer (a running portal re-checks every few seconds).
    with TestClient(create_app(served_settings(anonymous)), cookies=anonymous.cookies) as other:
        _assert_refused(other.get("/admin/", follow_redirects=False), "GET", "/admin/")


def _campaigns() -> int:
    with session_scope() as session:
        return session.execute(select(func.count()).select_from(Campaign)).scalar_one()


def _campaign_form(template_id: str) -> dict[str, str]:
    return {
        "name": "csrf",
        "template_id": template_id,
        "content_value": "x",
        "periodicity": "once",
        "audience": str(uuid.uuid4()),
    }


def test_our_forms_need_their_token(client: TestClient) -> None:
    before = _campaigns()
    data = _campaign_form(mailing_template_id())
    missing = client.post("/admin/mailings/new", data=data)
    assert missing.status_code == 403 and "security token" in missing.json()["detail"]
    wrong = client.post("/admin/mailings/new", data={**data, "csrf_token": "forged"})
    assert wrong.status_code == 403
    assert _campaigns() == before
    good = client.post(
        "/admin/mailings/new",
        data={**data, "csrf_token": form_token(client)},
        follow_redirects=False,
    )
    assert good.status_code == 303 and _campaigns() == before + 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": "http://testserver"},
        {"Referer": "https://evil.example/page"},
    ],
)
def test_cross_site_posts_are_refused_even_with_a_token(
    client: TestClient, headers: dict[str, str]
) -> None:
    name = f"x-{uuid.uuid4().hex[:6]}"
    data = {"name": name, "subject": "s", "body_html": "h", "body_text": "t", "save": "Save"}
    refused = client.post("/admin/template/create", data=data, headers=headers)
    assert refused.status_code == 403 and "Cross-site request refused" in refused.text
    ours = client.post(
        "/admin/mailings/new",
        headers=headers,
        data={**_campaign_form(mailing_template_id()), "csrf_token": form_token(client)},
    )
    assert ours.status_code == 403
    with session_scope() as session:
        assert session.scalar(select(Template).where(Template.name == name)) is None


def test_same_origin_sqladmin_form_is_accepted(client: TestClient) -> None:
    name = f"ok-{uuid.uuid4().hex[:6]}"
    data = {
        "name": name,
        "subject": "Hi {{ name }}",
        "body_html": "<p>{{ content_value }}</p>",
        "body_text": "{{ content_value }}",
        "save": "Save",
    }
    headers = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    response = client.post(
        "/admin/template/create", data=data, headers=headers, follow_redirects=False
    )
    assert response.status_code == 302
    assert response.headers["location"].startswith("/admin/template-preview/")


def test_login_form_survives_the_browsers_other_anonymous_requests(anonymous: TestClient) -> None:
    username, password = make_admin_user()
    token = form_token(anonymous, "/login")
    assert anonymous.get("/favicon.ico", follow_redirects=False).status_code == 303
    data = {"username": username, "password": password, "csrf_token": token}
    assert anonymous.post("/login", data=data, follow_redirects=False).status_code == 303
