"""The portal's audit log, keyword-only with an explicit session."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.models import AuditEntry


def add(
    *,
    session: Session,
    actor: str | None,
    action: str,
    target: str,
    outcome: int,
    client: str | None,
    detail: dict[str, object] | None = None,
) -> None:
    session.add(
        AuditEntry(
            actor=actor,
            action=action,
            target=target[:500],
            outcome=outcome,
            client=client,
            detail=detail,
        )
    )
