"""The suppressed addresses page: editors add, lift and import, everyone reads, all audited;
the export is what the import reads back, and no spreadsheet formula gets out of it."""

from __future__ import annotations

from sqlalchemy import select

from app.config import Settings
from app.core.clock import utcnow
from app.db import suppressions
from app.db.models import AuditEntry
from app.db.session import session_scope
from harness.portal import form_token, signed_in

PAGE = "/admin/suppressions"


def _addresses() -> dict[str, str]:
    with session_scope() as session:
        return {s.address: s.reason for s in suppressions.search(session=session)}


def _audited(username: str) -> list[tuple[str, str, int]]:
    with session_scope() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.target, AuditEntry.outcome)
            .where(AuditEntry.actor == username)
            .order_by(AuditEntry.audit_id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]  # the sign-in first


def test_an_editor_adds_searches_and_lifts_and_each_change_is_audited(
    db: str, settings: Settings
) -> None:
    client, username = signed_in(settings, "editor")
    token = form_token(client, PAGE)
    added = client.post(
        f"{PAGE}/add",
        data={
            "address": " Ann@Example.com",
            "reason": "manual",
            "detail": "asked",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert added.status_code == 303 and _addresses() == {"ann@example.com": "manual"}
    page = client.get(added.headers["location"])
    assert "ann@example.com" in page.text and "suppressed" in page.text
    assert "ann@example.com" not in client.get(PAGE, params={"q": "bob"}).text
    assert "ann@example.com" in client.get(PAGE, params={"q": "ANN@"}).text
    lifted = client.post(f"{PAGE}/remove", data={"address": "ann@example.com", "csrf_token": token})
    assert lifted.status_code == 200 and _addresses() == {}
    assert [(a, t.split("?")[0], o) for a, t, o in _audited(username)][1:] == [
        ("POST", f"{PAGE}/add", 303),
        ("POST", f"{PAGE}/remove", 303),
    ]


def test_a_viewer_reads_but_cannot_change(db: str, settings: Settings) -> None:
    with session_scope() as session:
        suppressions.suppress(
            session=session,
            address="x@example.com",
            reason="spam report",
            at=utcnow(),
            source="sendgrid",
        )
    client, _username = signed_in(settings, "viewer")
    page = client.get(PAGE)
    assert page.status_code == 200 and "x@example.com" in page.text
    assert 'action="/admin/suppressions/remove"' not in page.text  # no button it may not use
    token = form_token(client)  # the page has no form for a viewer: another page's token
    refused = client.post(f"{PAGE}/remove", data={"address": "x@example.com", "csrf_token": token})
    assert refused.status_code == 403 and _addresses() == {"x@example.com": "spam report"}


def test_import_takes_the_good_rows_lists_the_bad_and_the_export_reads_back(
    db: str, settings: Settings
) -> None:
    client, _username = signed_in(settings, "editor")
    upload = (
        b"address,reason,detail\n"
        b"a@example.com,hard bounce,=cmd|' /C calc'!A0\n"
        b"not an address,manual,\n"
        b"b@example.com,,\n"
        b"c@example.com,nonsense,\n"
    )
    answer = client.post(
        f"{PAGE}/import",
        data={"csrf_token": form_token(client, PAGE)},
        files={"file": ("list.csv", upload, "text/csv")},
    )
    assert answer.status_code == 200
    assert "2 rows read, 2 newly suppressed, 2 left out." in answer.text
    assert "line 3:" in answer.text and "line 5:" in answer.text
    assert _addresses() == {"a@example.com": "hard bounce", "b@example.com": "manual"}
    export = client.get(f"{PAGE}.csv")
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    assert ",'=cmd|" in export.text  # a formula leaves as text
    again = client.post(
        f"{PAGE}/import",
        data={"csrf_token": form_token(client, PAGE)},
        files={"file": ("back.csv", export.content, "text/csv")},
    )
    assert "2 rows read, 0 newly suppressed, 0 left out." in again.text
    assert _addresses() == {"a@example.com": "hard bounce", "b@example.com": "manual"}


def test_a_bad_address_is_refused_with_a_reason_not_an_error(db: str, settings: Settings) -> None:
    client, _username = signed_in(settings, "editor")
    answer = client.post(
        f"{PAGE}/add",
        data={"address": "nobody", "reason": "manual", "csrf_token": form_token(client, PAGE)},
    )
    assert answer.status_code == 400 and "is not an e-mail address" in answer.text
    assert _addresses() == {}
