"""Outbox page: the `.eml` files the outbox mail backend wrote, listed and rendered for reading."""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser
from pathlib import Path
from typing import cast

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.domain.tokens import redact_tokens
from app.portal.pages import render_page
from app.portal.roles import sees_recipient_tokens

router = APIRouter()

LIST_LIMIT = 200
# The backend's temporary files start with "." and end in ".tmp": the strict pattern keeps them,
# and anything else that could not be a message written by the backend, out of the list.
MESSAGE_NAME = re.compile(r"[A-Za-z0-9_-]+\.eml")
SHOWN_HEADERS = ("From", "To", "Subject", "Date", "List-Unsubscribe")
# Reading stops here, so a stray huge file in the directory cannot exhaust the portal's memory.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MessageSummary:
    name: str
    date: datetime
    to: str
    subject: str


@dataclass(frozen=True, slots=True)
class Listing:
    messages: list[MessageSummary]
    total: int


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    name: str
    headers: list[tuple[str, str]]
    subject: str
    text: str | None
    html: str | None


def _parser() -> BytesParser:
    return BytesParser(policy=policy.default)  # decodes RFC 2047 words in Subject and To


def _header(message: EmailMessage, name: str) -> str:
    value = message.get(name)
    return "" if value is None else str(value)


def _date(message: EmailMessage, mtime: float) -> datetime:
    header = message.get("Date")
    when = getattr(header, "datetime", None)
    return when if when is not None else datetime.fromtimestamp(mtime, UTC)


def list_messages(directory: Path, limit: int = LIST_LIMIT) -> Listing:
    """The newest `limit` messages (by modification time) and how many there are in all."""
    found: list[tuple[float, str]] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                # Symlinks are left out: the message page refuses them, so they would only 404.
                if MESSAGE_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    try:
                        found.append((entry.stat(follow_symlinks=False).st_mtime, entry.name))
                    except FileNotFoundError:  # sent again and replaced while we looked
                        continue
    except (FileNotFoundError, NotADirectoryError):
        return Listing(messages=[], total=0)
    found.sort(reverse=True)
    summaries = []
    for mtime, name in found[:limit]:
        try:
            with (directory / name).open("rb") as fh:
                message = cast(EmailMessage, _parser().parse(fh, headersonly=True))
        except FileNotFoundError:
            continue
        summaries.append(
            MessageSummary(
                name=name,
                date=_date(message, mtime),
                to=_header(message, "To"),
                subject=_header(message, "Subject"),
            )
        )
    return Listing(messages=summaries, total=len(found))


def read_raw(directory: Path, name: str) -> bytes | None:
    """The bytes of message `name` in `directory`; None unless it is a regular file right there."""
    if not MESSAGE_NAME.fullmatch(name):
        return None
    base = directory.resolve()
    path = base / name
    if path.resolve().parent != base:
        return None
    # O_NOFOLLOW refuses a symlink at open time, so it cannot be swapped in after a check.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device would block
            return None
        return fh.read(MAX_MESSAGE_BYTES)


def _content(part: MIMEPart | None) -> str | None:
    if part is None:
        return None
    try:
        content = str(part.get_content())
    except (LookupError, UnicodeError):  # an unknown or wrong charset: show what can be read
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return None
        content = payload.decode("utf-8", "replace")
    return content.replace("\r\n", "\n")  # the file holds wire-format CRLF line ends


def parse_message(name: str, raw: bytes) -> OutboxMessage:
    """Headers worth showing and the plain-text and HTML bodies of one message."""
    message = cast(EmailMessage, _parser().parsebytes(raw))  # what policy.default builds
    headers = [(h, _header(message, h)) for h in SHOWN_HEADERS if message.get(h) is not None]
    return OutboxMessage(
        name=name,
        headers=headers,
        subject=_header(message, "Subject"),
        text=_content(message.get_body(preferencelist=("plain",))),
        html=_content(message.get_body(preferencelist=("html",))),
    )


def load_message(directory: Path, name: str) -> OutboxMessage | None:
    raw = read_raw(directory, name)
    return None if raw is None else parse_message(name, raw)


def redacted(message: OutboxMessage) -> OutboxMessage:
    """The message with the tokens of its unsubscribe and preference links redacted."""

    def clean(text: str | None) -> str | None:
        return None if text is None else redact_tokens(text)

    return OutboxMessage(
        name=message.name,
        headers=[(name, redact_tokens(value)) for name, value in message.headers],
        subject=message.subject,
        text=clean(message.text),
        html=clean(message.html),
    )


@router.get("/admin/outbox", include_in_schema=False)
async def outbox_page(request: Request) -> Response:
    """The newest messages in the outbox directory, or why mail does not land there."""
    settings = request.app.state.settings
    listing = await run_in_threadpool(list_messages, Path(settings.outbox_dir))
    context = {
        "title": "Outbox",
        "listing": listing,
        "outbox_dir": settings.outbox_dir,
        "backend": settings.email_backend,
        "limit": LIST_LIMIT,
    }
    return await render_page(request, "portal/outbox.html", context)


# The link is the file's own name; ".eml" stays literal so the parameter is the bare id.
@router.get("/admin/outbox/{delivery_id}.eml", include_in_schema=False)
async def message_page(request: Request, delivery_id: str) -> Response:
    """One message: its headers, its text part, its HTML part in a frame that runs no script."""
    directory = Path(request.app.state.settings.outbox_dir)
    message = await run_in_threadpool(load_message, directory, f"{delivery_id}.eml")
    if message is None:
        raise HTTPException(status_code=404, detail="no such message")
    if not sees_recipient_tokens(getattr(request.state, "portal_user", None)):
        message = redacted(message)
    context = {"title": f"Outbox: {message.subject or message.name}", "message": message}
    return await render_page(request, "portal/outbox_message.html", context)
