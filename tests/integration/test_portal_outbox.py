"""The Outbox page: the mail the outbox backend wrote, listed and read back safely."""

from __future__ import annotations

import html
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.config import Settings
from app.db.models import DeliveryContent
from app.db.session import session_scope
from app.delivery.mail import OutgoingEmail
from app.delivery.mail.outbox_backend import OutboxBackend
from app.domain.vocabulary import PortalRole
from app.portal.app import create_app
from app.portal.outbox import read_raw
from harness.campaigns import simulate_deliveries, simulate_stream
from harness.portal import log_in, make_admin_user

SCRIPT_HTML = '<p>Hi &amp; welcome</p><script>alert("pwned")</script>'
_ROW_LINK = re.compile(r'href="/admin/outbox/([A-Za-z0-9_-]+\.eml)"')


@contextmanager
def _client(settings: Settings) -> Iterator[TestClient]:
    """A signed-in client of a portal built with `settings`."""
    with TestClient(create_app(settings)) as client:
        log_in(client, *make_admin_user())
        yield client


@pytest.fixture(name="outbox_dir")
def outbox_dir_fixture(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture(name="outbox_client")
def outbox_client_fixture(
    db: str, portal_settings: Settings, outbox_dir: Path
) -> Iterator[TestClient]:
    """A signed-in client of a portal whose outbox is this test's own directory."""
    settings = portal_settings.model_copy(
        update={"email_backend": "outbox", "outbox_dir": outbox_dir}
    )
    with _client(settings) as client:
        yield client


def _send(
    directory: Path,
    delivery_id: str,
    *,
    mtime: float | None = None,
    headers: dict[str, str] | None = None,
    **fields: str,
) -> Path:
    """One message written by the real backend; `mtime` pins the order the page sorts by."""
    email = OutgoingEmail(
        to=fields.get("to", f"{delivery_id}@example.com"),
        subject=fields.get("subject", f"Subject {delivery_id}"),
        html=fields.get("html", f"<p>{delivery_id}</p>"),
        text=fields.get("text", f"text of {delivery_id}"),
        headers=headers or {},
        delivery_id=delivery_id,
    )
    OutboxBackend(directory, sender="Notify <noreply@notify.local>").send(email)
    path = directory / f"{delivery_id}.eml"
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_the_list_shows_the_newest_messages_first_and_ignores_temporary_files(
    outbox_client: TestClient, outbox_dir: Path
) -> None:
    _send(outbox_dir, "d-old", mtime=1_700_000_000, subject="Oldest news", to="ann@example.com")
    _send(outbox_dir, "d-new", mtime=1_700_000_200, subject="Café ☕ résumé", to="bob@example.com")
    _send(outbox_dir, "d-mid", mtime=1_700_000_100, subject="Middle", to="Cé <cy@example.com>")
    (outbox_dir / ".half-written.tmp").write_bytes(b"Subject: Not finished\r\n\r\n")
    (outbox_dir / "notes.txt").write_text("Subject: not a message\n")

    response = outbox_client.get("/admin/outbox")

    assert response.status_code == 200
    page = html.unescape(response.text)
    assert _ROW_LINK.findall(response.text) == ["d-new.eml", "d-mid.eml", "d-old.eml"]
    # The RFC 2047-encoded non-ASCII subject and display name are shown decoded.
    assert page.index("Café ☕ résumé") < page.index("Middle") < page.index("Oldest news")
    assert "bob@example.com" in page and "Cé <cy@example.com>" in page
    assert "Not finished" not in page and "not a message" not in page
    assert str(outbox_dir) in page and "3 messages" in page
    assert 'href="/admin/outbox"' in response.text  # the menu entry


def test_the_list_stops_at_200_but_counts_every_message(
    outbox_client: TestClient, outbox_dir: Path
) -> None:
    for i in range(205):
        _send(outbox_dir, f"bulk-{i:03d}", mtime=1_700_000_000 + i)

    page = outbox_client.get("/admin/outbox").text

    links = _ROW_LINK.findall(page)
    assert len(links) == 200
    assert links[0] == "bulk-204.eml" and links[-1] == "bulk-005.eml"
    assert "205 messages" in page and "the newest 200 shown" in page


def test_a_missing_outbox_directory_says_there_is_no_mail_yet(
    outbox_client: TestClient, outbox_dir: Path
) -> None:
    assert not outbox_dir.exists()
    response = outbox_client.get("/admin/outbox")
    assert response.status_code == 200
    assert "No mail yet" in response.text and "0 messages" in response.text
    assert _ROW_LINK.findall(response.text) == []


def test_a_message_shows_its_headers_text_and_html_in_an_empty_sandbox(
    outbox_client: TestClient, outbox_dir: Path
) -> None:
    unsubscribe = "<https://notify.example/unsubscribe?token=abc>"
    _send(
        outbox_dir,
        "d-1",
        to="Zoë <zoe@example.com>",
        subject="Your digest <b>today</b>",
        html=SCRIPT_HTML,
        text="Line one\nLine two & more",
        headers={"List-Unsubscribe": unsubscribe},
    )

    response = outbox_client.get("/admin/outbox/d-1.eml")

    assert response.status_code == 200
    body = response.text
    assert "<script>alert" not in body
    assert "alert(" not in re.sub(r'srcdoc="[^"]*"', "", body)  # the mail's code is only in there
    frame = re.search(r'<iframe sandbox="" [^>]*srcdoc="([^"]*)"', body)
    assert frame, "the HTML part must be in an iframe with an empty sandbox"
    assert "&lt;script&gt;" in frame.group(1)
    assert html.unescape(frame.group(1)).rstrip("\n") == SCRIPT_HTML
    text = re.search(r'<pre id="message-text"[^>]*>([^<]*)</pre>', body)
    assert text and html.unescape(text.group(1)) == "Line one\nLine two & more\n"
    page = html.unescape(body)
    assert "Zoë <zoe@example.com>" in page and "Notify <noreply@notify.local>" in page
    assert "Your digest <b>today</b>" in page and "<b>today</b>" not in body
    assert unsubscribe in page and "+0000" in page  # List-Unsubscribe and Date headers


def test_a_message_without_list_unsubscribe_does_not_show_the_header(
    outbox_client: TestClient, outbox_dir: Path
) -> None:
    _send(outbox_dir, "plain")
    body = outbox_client.get("/admin/outbox/plain.eml").text
    assert "Subject plain" in body and "List-Unsubscribe" not in body


@pytest.mark.parametrize(
    "path",
    [
        "/admin/outbox/..%2Foutside.eml",
        "/admin/outbox/..%2F..%2Foutside.eml",
        "/admin/outbox/%2Ftmp%2Foutside.eml",
        "/admin/outbox/present.txt",
        "/admin/outbox/.hidden.eml",
        "/admin/outbox/pres.ent.eml",
        "/admin/outbox/unknown.eml",
        "/admin/outbox/link.eml",
    ],
)
def test_names_outside_the_outbox_or_not_messages_are_not_found(
    outbox_client: TestClient, outbox_dir: Path, path: str
) -> None:
    _send(outbox_dir, "present", html="<p>inside</p>")
    outside = outbox_dir.parent / "outside.eml"
    outside.write_bytes((outbox_dir / "present.eml").read_bytes().replace(b"inside", b"SECRET"))
    for name in ("present.txt", ".hidden.eml", "pres.ent.eml"):
        (outbox_dir / name).write_bytes(outside.read_bytes())
    (outbox_dir / "link.eml").symlink_to(outside)

    response = outbox_client.get(path)

    assert response.status_code == 404, (path, response.status_code)
    assert "SECRET" not in response.text
    assert outbox_client.get("/admin/outbox/present.eml").status_code == 200
    # Nothing the page refuses to open is offered as a link.
    assert _ROW_LINK.findall(outbox_client.get("/admin/outbox").text) == ["present.eml"]


def test_the_reader_refuses_names_that_leave_the_outbox(outbox_dir: Path) -> None:
    inside = _send(outbox_dir, "inside")
    outside = outbox_dir.parent / "outside.eml"
    outside.write_bytes(inside.read_bytes())
    (outbox_dir / "link.eml").symlink_to(outside)

    assert read_raw(outbox_dir, "inside.eml") == inside.read_bytes()
    for name in (
        "../outside.eml",
        str(outside),
        "link.eml",
        "sub/inside.eml",
        "inside.eml\x00",
        "inside",
        ".inside.eml.tmp",
        "",
    ):
        assert read_raw(outbox_dir, name) is None, name


def test_anonymous_visitors_are_sent_to_the_login_page(anonymous: TestClient) -> None:
    for path in ("/admin/outbox", "/admin/outbox/anything.eml"):
        response = anonymous.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next="), path


def test_another_backend_is_named_instead_of_the_outbox(
    db: str, portal_settings: Settings, outbox_dir: Path
) -> None:
    settings = portal_settings.model_copy(
        update={"email_backend": "sendgrid", "outbox_dir": outbox_dir}
    )
    with _client(settings) as client:
        response = client.get("/admin/outbox")
        assert response.status_code == 200
        notice = re.search(r'id="outbox-backend-notice">(.*?)</div>', response.text, re.S)
        assert notice, "the page must say mail does not go to the outbox"
        assert "<strong>sendgrid</strong>" in notice.group(1)
        assert "not the outbox" in notice.group(1)


def test_the_outbox_backend_shows_no_backend_notice(
    outbox_client: TestClient, outbox_dir: Path
) -> None:
    response = outbox_client.get("/admin/outbox")
    assert response.status_code == 200 and "outbox-backend-notice" not in response.text


def test_a_viewer_reads_mail_without_its_recipients_tokens(
    db: str, portal_settings: Settings, outbox_dir: Path
) -> None:
    link = "https://notify.example/unsubscribe?token=eyJ1c2VyIjoxfQ.c2lnbmF0dXJl"
    _send(
        outbox_dir,
        "tokens",
        html=f'<p><a href="{link}&amp;x=1">Unsubscribe</a></p>',
        text=f"Unsubscribe: {link}",
        headers={"List-Unsubscribe": f"<{link}>"},
    )
    settings = portal_settings.model_copy(
        update={"email_backend": "outbox", "outbox_dir": outbox_dir}
    )
    [user_id] = simulate_stream(uuid.uuid4(), [uuid.uuid4()], link=False)
    [delivery_id] = simulate_deliveries({user_id: "sent"}).values()
    with session_scope() as session:
        session.execute(
            insert(DeliveryContent).values(
                delivery_id=delivery_id,
                body_text=f"Unsubscribe: {link}",
                headers={"List-Unsubscribe": f"<{link}>"},
            )
        )
    token = link.split("token=")[1]
    roles: tuple[tuple[PortalRole, bool], ...] = (("viewer", False), ("editor", True))
    for role, sees in roles:
        with TestClient(create_app(settings)) as client:
            log_in(client, *make_admin_user(role=role))
            pages = [
                client.get("/admin/outbox/tokens.eml").text,
                client.get(f"/admin/delivery/details/{delivery_id}").text,
            ]
        for page in pages:
            assert (token in page) is sees, role
            assert ("token=[redacted]" in page) is not sees, role
