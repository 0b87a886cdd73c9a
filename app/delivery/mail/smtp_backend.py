"""SMTP through the standard library: plain, STARTTLS or implicit TLS, as SMTP_URL says."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from app.config import Settings
from app.delivery.mail.base import (
    OutgoingEmail,
    PermanentSendError,
    SendResult,
    TransientSendError,
    build_message,
    may_have_arrived,
)

_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpTarget:
    """`smtp://[user:pass@]host[:port][?starttls=1]` or `smtps://...` (implicit TLS, port 465)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError(f"SMTP_URL must look like smtp://host:port or smtps://host, got {url!r}")
    implicit = parts.scheme == "smtps"
    query = parse_qs(parts.query)
    starttls = not implicit and query.get("starttls", ["0"])[0].lower() in _TRUE
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or (465 if implicit else 587 if starttls else 25),
        implicit_tls=implicit,
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _classify(code: int, text: str, *, at_rcpt: bool = False) -> Exception:
    # SMTP's own rule: 4xx is temporary, 5xx is final.
    if code in (421, 451, 452):  # the server: unavailable, a local error, out of storage
        return TransientSendError(f"{code} {text}", outage=True)
    if 400 <= code < 500:
        return TransientSendError(f"{code} {text}")
    # A final refusal at RCPT TO is of the address itself (550 5.1.1 no such user, ...).
    return PermanentSendError(f"{code} {text}", address_refused=at_rcpt)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


class SmtpBackend:
    """One connection per e-mail: simple, thread-safe, and enough for transactional volumes."""

    name = "smtp"

    def __init__(self, target: SmtpTarget, *, sender: str, timeout_s: float) -> None:
        self.target = target
        self.sender = sender
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpBackend:
        return cls(
            parse_smtp_url(settings.smtp_url),
            sender=settings.email_from,
            timeout_s=settings.email_timeout_s,
        )

    def _connect(self) -> smtplib.SMTP:
        t = self.target
        if t.implicit_tls:
            return smtplib.SMTP_SSL(
                t.host, t.port, timeout=self.timeout_s, context=ssl.create_default_context()
            )
        smtp = smtplib.SMTP(t.host, t.port, timeout=self.timeout_s)
        if t.starttls:
            smtp.starttls(context=ssl.create_default_context())
        return smtp

    def send(self, email: OutgoingEmail) -> SendResult:
        """Send one e-mail; 4xx replies and connection trouble are transient, 5xx permanent."""
        message = build_message(email, self.sender)
        try:
            with self._connect() as smtp:
                if self.target.username:
                    smtp.login(self.target.username, self.target.password or "")
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise _classify(code, _text(text), at_rcpt=True) from exc
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, _text(exc.smtp_error)) from exc
        except smtplib.SMTPConnectError as exc:
            raise TransientSendError(f"smtp unreachable: {exc}", outage=True) from exc
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise TransientSendError(
                f"smtp unreachable: {exc}", outage=True, unconfirmed=may_have_arrived(exc)
            ) from exc
        except smtplib.SMTPException as exc:
            raise TransientSendError(f"smtp: {exc}") from exc
        if refused:  # only possible with several recipients; kept for completeness
            code, text = next(iter(refused.values()))
            raise _classify(code, _text(text), at_rcpt=True)
        return SendResult(provider_message_id=message["Message-ID"])
