"""The portal's audit log, keyword-only with an explicit session."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.db.models import AuditEntry
from app.domain.bounds import clip_text


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
            # Cut to the columns: a 101-character username typed at sign-in is still recorded.
            actor=None if actor is None else clip_text(actor, 100),
            action=clip_text(action, 40),
            target=clip_text(target, 500),
            outcome=outcome,
            client=None if client is None else clip_text(client, 100),
            detail=detail,
        )
    )
