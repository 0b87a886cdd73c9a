"""The backend the settings name: one module that knows every backend, so none imports it back."""

from __future__ import annotations

from app.config import Settings
from app.delivery.mail.base import EmailBackend
from app.delivery.mail.failover import FailoverBackend, ProviderCircuit
from app.delivery.mail.outbox_backend import OutboxBackend
from app.delivery.mail.sendgrid_backend import SendGridBackend
from app.delivery.mail.smtp_backend import SmtpBackend


def get_backend(settings: Settings) -> EmailBackend:
    """The backend EMAIL_BACKEND names, behind failover when EMAIL_FALLBACK_BACKEND names one."""
    primary = backend_named(settings.email_backend, settings)
    fallback = settings.email_fallback_backend
    if not fallback or fallback == settings.email_backend:
        return primary
    circuit = ProviderCircuit(
        window_s=settings.email_failover_window_s, probe_s=settings.email_failover_probe_s
    )
    return FailoverBackend(primary, backend_named(fallback, settings), circuit)


def backend_named(name: str, settings: Settings) -> EmailBackend:
    """One backend: `sendgrid`, `smtp` or `outbox`."""
    if name == "sendgrid":
        return SendGridBackend.from_settings(settings)
    if name == "smtp":
        return SmtpBackend.from_settings(settings)
    return OutboxBackend.from_settings(settings)
