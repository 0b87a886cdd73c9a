"""Roles in the portal (viewer, editor, admin) and the audit log of every change and send."""

from __future__ import annotations

import uuid

from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.cli import main
from app.config import Settings
from app.db.models import AdminUser, AuditEntry, Campaign, Template
from app.db.session import session_scope
from app.portal.app import create_app
from harness.portal import (
    audit_fields,
    form_token,
    log_in,
    mailing_template_id,
    make_admin_user,
    signed_in,
)


def _draft(client: TestClient, csv: bytes | None = None) -> uuid.UUID:
    data = {
        "name": "Roles",
        "template_id": mailing_template_id(),
        "content_value": "Hello!",
        "periodicity": "once",
        "audience": str(uuid.uuid4()),
        "csrf_token": form_token(client),
    }
    # A browser posts this form as multipart/form-data (it has a file field); urlencoded without.
    files = {"audience_csv": ("audience.csv", csv, "text/csv")} if csv is not None else None
    response = client.post("/admin/mailings/new", data=data, files=files, follow_redirects=False)
    assert response.status_code == 303, response.text[:300]
    return uuid.UUID(response.headers["location"].rsplit("/", 1)[1])


def _send(client: TestClient, campaign_id: uuid.UUID):
    page = f"/admin/mailings/{campaign_id}"
    return client.post(f"{page}/send", data={"csrf_token": form_token(client)})


def _status(campaign_id: uuid.UUID) -> str:
    with session_scope() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign.status


def _template_form(name: str) -> dict[str, str]:
    return {
        "name": name,
        "subject": "Hi {{ name }}",
        "body_html": "<p>{{ content_value }}</p>",
        "body_text": "{{ content_value }}",
        "save": "Save",
    }


def _audit(actor: str) -> list[AuditEntry]:
    with session_scope() as session:
        query = select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.audit_id)
        entries = list(session.scalars(query))
        session.expunge_all()
        return entries


def test_a_viewer_reads_everything_and_changes_nothing(portal_settings: Settings) -> None:
    editor, _ = signed_in(portal_settings, "editor")
    viewer, viewer_name = signed_in(portal_settings, "viewer")
    campaign_id = _draft(editor)
    with viewer:
        for page in (
            "/admin/",
            "/admin/mailings",
            f"/admin/mailings/{campaign_id}",
            "/admin/template/list",
            "/admin/audit-entry/list",
            "/admin/schedule",
        ):
            assert viewer.get(page).status_code == 200, page
        assert 'action="/admin/mailings/' not in viewer.get(f"/admin/mailings/{campaign_id}").text
        refused = _send(viewer, campaign_id)
        assert refused.status_code == 403 and "needs the admin role" in refused.json()["detail"]
        assert _status(campaign_id) == "draft"
        name = f"viewer-{uuid.uuid4().hex[:6]}"
        assert viewer.post("/admin/template/create", data=_template_form(name)).status_code == 403
        with session_scope() as session:
            assert session.scalar(select(Template).where(Template.name == name)) is None
        assert "/admin/template/create" not in viewer.get("/admin/template/list").text
    refusals = [(e.target, e.outcome) for e in _audit(viewer_name)]
    assert (f"/admin/mailings/{campaign_id}/send", 403) in refusals


def test_an_editor_prepares_drafts_and_templates_but_cannot_send(
    portal_settings: Settings,
) -> None:
    editor, _ = signed_in(portal_settings, "editor")
    with editor:
        campaign_id = _draft(editor)
        assert _send(editor, campaign_id).status_code == 403
        assert _status(campaign_id) == "draft"
        name = f"editor-{uuid.uuid4().hex[:6]}"
        saved = editor.post(
            "/admin/template/create", data=_template_form(name), follow_redirects=False
        )
        assert saved.status_code == 302
        run_now = editor.post("/admin/schedule/1/run", data={"csrf_token": form_token(editor)})
        assert run_now.status_code == 403


def test_an_admin_sends_and_every_send_and_edit_is_in_the_audit_log(
    portal_settings: Settings,
) -> None:
    admin, admin_name = signed_in(portal_settings, "admin")
    with admin:
        campaign_id = _draft(admin, csv=f"user_id\n{uuid.uuid4()}\n".encode())
        assert _send(admin, campaign_id).status_code == 200
        assert _status(campaign_id) == "published"
        name = f"audited-{uuid.uuid4().hex[:6]}"
        created = admin.post(
            "/admin/template/create", data=_template_form(name), follow_redirects=False
        )
        assert created.status_code == 302
        log = admin.get("/admin/audit-entry/list").text
    entries = _audit(admin_name)
    by_target = {e.target: e for e in entries}
    assert [e.action for e in entries][0] == "login"
    draft = by_target["/admin/mailings/new"]
    assert (draft.action, draft.outcome) == ("POST", 303)
    draft_fields = audit_fields(draft)
    assert draft_fields["name"] == "Roles"
    assert draft_fields["audience_csv"] == "<file 'audience.csv', 45 bytes>"
    assert "csrf_token" not in draft_fields
    sent = by_target[f"/admin/mailings/{campaign_id}/send"]
    assert (sent.action, sent.outcome) == ("POST", 303)
    template = by_target["/admin/template/create"]
    assert template.outcome == 302 and template.detail is not None
    assert audit_fields(template)["name"] == name
    assert all(e.at is not None and e.client for e in entries)
    assert admin_name in log and f"/admin/mailings/{campaign_id}/send" in log


def test_passwords_never_reach_the_audit_log(portal_settings: Settings) -> None:
    username, password = make_admin_user()
    with TestClient(create_app(portal_settings)) as client:
        data = {
            "username": username,
            "password": "not-it",
            "csrf_token": form_token(client, "/login"),
        }
        assert client.post("/login", data=data).status_code == 400  # a failed sign-in, audited
        log_in(client, username, password)
        client.post("/logout", data={"csrf_token": form_token(client)})
    with session_scope() as session:
        texts = [str(e.detail) + e.target for e in session.scalars(select(AuditEntry))]
    assert texts and not any(password in text or "not-it" in text for text in texts)


def test_the_command_line_sets_a_role_and_a_new_password_keeps_it() -> None:
    username = f"cli-{uuid.uuid4().hex[:6]}"
    runner = CliRunner()
    created = runner.invoke(
        main, ["admin", "create-user", username, "--password", "pw-123456", "--role", "viewer"]
    )
    assert created.exit_code == 0 and "created" in created.output
    updated = runner.invoke(main, ["admin", "create-user", username, "--password", "pw-654321"])
    assert updated.exit_code == 0 and "updated" in updated.output
    with session_scope() as session:
        user = session.scalar(select(AdminUser).where(AdminUser.username == username))
        assert user is not None and (user.role, user.session_version) == ("viewer", 2)
    refused = runner.invoke(
        main, ["admin", "create-user", username, "--password", "x" * 9, "--role", "root"]
    )
    assert refused.exit_code == 2 and "'root' is not one of" in refused.output
