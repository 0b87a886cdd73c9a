"""Admin portal users, keyword-only with an explicit session."""

from __future__ import annotations

import uuid
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db.models import AdminUser
from app.domain.vocabulary import PortalRole


class SessionState(NamedTuple):
    """What a portal request needs to know about its user, read once per check."""

    username: str
    role: PortalRole
    session_version: int


def get_by_username(*, session: Session, username: str) -> AdminUser | None:
    return session.scalars(select(AdminUser).where(AdminUser.username == username)).one_or_none()


def session_state(*, session: Session, admin_user_id: uuid.UUID) -> SessionState | None:
    """The user's name, role and session version; None when deleted or deactivated."""
    query = select(AdminUser.username, AdminUser.role, AdminUser.session_version).where(
        AdminUser.admin_user_id == admin_user_id, AdminUser.is_active.is_(True)
    )
    row = session.execute(query).one_or_none()
    return SessionState(row.username, row.role, row.session_version) if row else None


def end_sessions(*, session: Session, admin_user_id: uuid.UUID) -> None:
    """End every session of the user: their cookies carry the version this raises."""
    session.execute(
        update(AdminUser)
        .where(AdminUser.admin_user_id == admin_user_id)
        .values(session_version=AdminUser.session_version + 1)
    )


def create_or_replace(
    *, session: Session, username: str, password_hash: str, role: PortalRole | None = None
) -> bool:
    """Create the user (an admin unless `role` says otherwise), or set a new password,
    re-activate them and end their sessions; True if created."""
    user = get_by_username(session=session, username=username)
    if user is None:
        user = AdminUser(username=username, password_hash=password_hash, is_active=True)
        user.role, user.session_version = role or "admin", 1
        session.add(user)
        return True
    user.password_hash, user.is_active = password_hash, True
    user.session_version += 1
    if role is not None:
        user.role = role
    return False
