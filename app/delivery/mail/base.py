"""The backend interface, the e-mail it sends and the errors it raises."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutgoingEmail:
    """One rendered e-mail to one recipient; `delivery_id` makes the send traceable."""

    to: str
    subject: str
    html: str
    text: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    delivery_id: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider said when it accepted the e-mail, and which backend sent it."""

    provider_message_id: str | None = None
    backend: str | None = None


class SendError(Exception):
    """The provider did not accept the e-mail; the message is the provider's own text."""


class TransientSendError(SendError):
    """Worth trying again: rate limit, server error, timeout, connection trouble.

    `outage` marks what says nothing about the e-mail (throttling, the provider down or
    unreachable): it delays the delivery without using up an attempt, so a long outage of the
    provider never ends in `failed`. Other transient errors count against EMAIL_MAX_ATTEMPTS.
    `unconfirmed` marks a failure after the request may have reached the provider (a timeout,
    a connection lost mid-answer): it is no refusal, and the e-mail may have been accepted.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_at: float | None = None,
        outage: bool = False,
        unconfirmed: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_at = retry_at  # epoch seconds the provider asked us to wait for, if any
        self.outage = outage
        self.unconfirmed = unconfirmed


class UnconfirmedSendError(TransientSendError):
    """The provider may have accepted the e-mail; trying it elsewhere now could send it twice.

    The delivery stays claimed, as after a worker that died in the provider call: a provider
    event records it as sent, or the sweep hands it back after EMAIL_SENDING_TIMEOUT_S.
    """


def may_have_arrived(error: BaseException) -> bool:
    """Whether a transport error leaves open that the provider got (and took) the request.

    Only a connection that was never made (refused, no such host) proves it did not.
    """
    return not isinstance(error, (ConnectionRefusedError, socket.gaierror))


class PermanentSendError(SendError):
    """Sending the same e-mail again cannot succeed (bad request, refused recipient).

    `address_refused` marks a refusal of the recipient's address itself (a permanent 5xx at
    RCPT, the API's "not a valid address"): the address gets no more mail.
    """

    def __init__(self, message: str, *, address_refused: bool = False) -> None:
        super().__init__(message)
        self.address_refused = address_refused


class EmailBackend(Protocol):
    def send(self, email: OutgoingEmail) -> SendResult:
        """Hand one e-mail to the provider; raise TransientSendError or PermanentSendError."""


# CRLF line ends, and lines up to RFC 5322's 998 characters: the default 78 would fold a long
# List-Unsubscribe URL into an RFC 2047 encoded-word, which mailbox providers do not read as a URL.
WIRE_POLICY = policy.SMTP.clone(max_line_length=998)


def build_message(email: OutgoingEmail, sender: str, now: datetime | None = None) -> EmailMessage:
    """The RFC 5322 message: plain-text and HTML alternatives plus the extra headers."""
    message = EmailMessage(policy=WIRE_POLICY)
    message["From"] = sender
    message["To"] = email.to
    message["Subject"] = email.subject
    message["Date"] = format_datetime(now or datetime.now(UTC))
    if email.delivery_id:
        # The same id on every try: mailbox providers collapse copies with one Message-ID.
        domain = parseaddr(sender)[1].rpartition("@")[2] or "notify.local"
        message["Message-ID"] = f"<{email.delivery_id}@{domain}>"
        message["X-Notify-Delivery-Id"] = email.delivery_id
    for name, value in email.headers.items():
        message[name] = value
    if email.text:
        message.set_content(email.text)
        message.add_alternative(email.html, subtype="html")
    else:
        message.set_content(email.html, subtype="html")
    return message


def backend_name(backend: EmailBackend) -> str:
    """The backend's name as deliveries and suppressions record it."""
    return str(getattr(backend, "name", None) or "provider")
