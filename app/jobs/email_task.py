"""The `emails` queue's message for one delivery (schemas/email_task.json), and why a rendered
e-mail could not be one."""

from __future__ import annotations

import uuid
from typing import Any

from app.contracts import ContractError, unstorable_text, validate
from app.domain.rendering import Email


def email_task(
    *,
    notification_id: uuid.UUID,
    delivery_id: uuid.UUID,
    email: str | None,
    subject: str | None,
    body_html: str | None,
    body_text: str | None,
    headers: dict[str, str] | None,
) -> dict[str, Any]:
    """The `emails` queue's message for one delivery (schemas/email_task.json), validated."""
    task = {
        "notification_id": str(notification_id),
        "email": email,
        "subject": subject,
        "body": body_html,
        "delivery_id": str(delivery_id),
        "text": body_text,
        "headers": dict(headers or {}),
    }
    validate("email_task", task)
    return task


def unsendable(
    notification_id: uuid.UUID, address: str, email: Email, headers: dict[str, str]
) -> str | None:
    """Why this e-mail could not go out (its task contract, text PostgreSQL refuses), or None."""
    for part, value in (
        ("subject", email.subject),
        ("HTML body", email.html),
        ("text body", email.text),
        ("address", address),
    ):
        why = unstorable_text(value)
        if why is not None:
            return f"{part} cannot be stored: {why}"
    try:
        email_task(
            notification_id=notification_id,
            delivery_id=notification_id,
            email=address,
            subject=email.subject,
            body_html=email.html,
            body_text=email.text,
            headers=headers,
        )
    except ContractError as exc:
        return f"the e-mail breaks its task contract: {exc}"[:2000]
    return None
