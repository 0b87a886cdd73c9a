"""SendGrid v3 through the official library's client: both parts, extra headers, delivery id arg."""

from __future__ import annotations

import http.client
import json
import logging
import re
import time
from collections.abc import Mapping
from email.utils import parseaddr
from typing import Any

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient

from app.config import Settings
from app.delivery.mail.base import (
    OutgoingEmail,
    PermanentSendError,
    SendResult,
    TransientSendError,
    may_have_arrived,
)
from app.delivery.mail.keepalive import KeepAliveClient
from app.domain.bounds import bounded_epoch, clip_id, clip_text

# The furthest ahead a provider's rate-limit reset is believed (a day); the countdown is capped
# lower still by the sender.
MAX_RESET_AHEAD_S = 86_400.0

log = logging.getLogger(__name__)


def error_text(body: bytes | str | None) -> str:
    """SendGrid's `{"errors": [{"message", "field"}]}` as one readable line."""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        errors = json.loads(raw)["errors"]
        parts = [
            f"{e['field']}: {e['message']}" if e.get("field") else e["message"] for e in errors
        ]
    except (ValueError, KeyError, TypeError, RecursionError):
        return clip_text(raw.strip())
    return clip_text("; ".join(str(part) for part in parts))


# The API names the recipient's address as the field at fault: `personalizations.0.to.0.email`.
_RECIPIENT_FIELD = re.compile(r"personalizations\.\d+\.to\.\d+\.email")


def refuses_address(body: bytes | str | None) -> bool:
    """Whether a 4xx answer refuses the recipient's address itself."""
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
    try:
        errors = json.loads(raw)["errors"]
        return any(_RECIPIENT_FIELD.fullmatch(str(e.get("field") or "")) for e in errors)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return False


def rate_limit_reset(headers: Mapping[str, str] | Any, now_ts: float | None = None) -> float | None:
    """X-RateLimit-Reset (epoch seconds) from a 429 answer: finite, not past, at most a day on."""
    value = headers.get("X-RateLimit-Reset") if headers is not None else None
    now = time.time() if now_ts is None else now_ts
    return bounded_epoch(value, now_ts=now, maximum_wait=MAX_RESET_AHEAD_S)


def address(value: str) -> dict[str, str]:
    """`Name <addr@host>` or a bare address as v3's `{"name", "email"}`, as the library's Email."""
    name, email = parseaddr(value)
    if "@" not in email:  # the library takes such a value for a name
        name, email = email, ""
    parsed = {"name": name} if name else {}
    if email:
        parsed["email"] = email
    return parsed


def mail_json(email: OutgoingEmail, sender: dict[str, str]) -> dict[str, Any]:
    """The v3 /mail/send body, built directly: what the library's Mail(...).get() gives, without
    the helper objects (a quarter of the e-mail worker's CPU went to building them).

    text/plain first, then text/html (SendGrid's rule); the delivery id as a custom arg, which
    SendGrid echoes in every Event Webhook event: how events find the delivery.
    """
    content = [{"type": "text/html", "value": email.html}]
    if email.text:
        content.insert(0, {"type": "text/plain", "value": email.text})
    body: dict[str, Any] = {
        "from": sender,
        "subject": email.subject,
        "personalizations": [{"to": [address(email.to)]}],
        "content": content,
    }
    if email.headers:
        body["headers"] = dict(email.headers)
    if email.delivery_id:
        body["custom_args"] = {"delivery_id": email.delivery_id}
    return body


class SendGridBackend:
    """Sends through POST /v3/mail/send; classifies the answer into sent / retry / failed."""

    name = "sendgrid"

    def __init__(self, api_key: str, *, host: str, sender: str, timeout_s: float) -> None:
        self.client = SendGridAPIClient(api_key, host=host)
        # The library's HTTP client, with kept connections (keepalive.py) and the timeout the
        # library itself has no argument for; same host, headers and API version.
        self.client.client = KeepAliveClient(
            host=self.client.client.host,
            request_headers=self.client.client.request_headers,
            version=3,
            timeout=timeout_s,
        )
        # /v3/mail/send, built once: the library builds its path objects again on every call.
        self.mail_send = self.client.client.mail.send
        self.sender = sender
        self.sender_address = address(sender)

    @classmethod
    def from_settings(cls, settings: Settings) -> SendGridBackend:
        return cls(
            settings.sendgrid_api_key.get_secret_value(),
            host=settings.sendgrid_host,
            sender=settings.email_from,
            timeout_s=settings.email_timeout_s,
        )

    def send(self, email: OutgoingEmail) -> SendResult:
        """Send one e-mail; 2xx returns, 429/5xx/timeouts are transient, other 4xx permanent."""
        try:
            # The library's own request path (what SendGridAPIClient.send calls), on our body.
            response = self.mail_send.post(request_body=mail_json(email, self.sender_address))
        except HTTPError as exc:
            text = f"{exc.status_code} {error_text(exc.body)}"
            if exc.status_code == 429:
                reset = rate_limit_reset(exc.headers)
                raise TransientSendError(text, retry_at=reset, outage=True) from exc
            if exc.status_code >= 500:
                raise TransientSendError(text, outage=True) from exc
            raise PermanentSendError(text, address_refused=refuses_address(exc.body)) from exc
        except (OSError, http.client.HTTPException) as exc:  # timeouts, refused, reset
            raise TransientSendError(
                f"sendgrid unreachable: {exc}", outage=True, unconfirmed=may_have_arrived(exc)
            ) from exc
        if not 200 <= response.status_code < 300:
            raise TransientSendError(f"{response.status_code} unexpected answer")
        # The provider's id is stored with the delivery: bounded and storable, however long.
        message_id = clip_id(response.headers.get("X-Message-Id") if response.headers else None)
        log.debug("sendgrid accepted %s as %s at %.3f", email.delivery_id, message_id, time.time())
        return SendResult(provider_message_id=message_id)
