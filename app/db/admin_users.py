"""Admin portal users, keyword-only with an explicit session."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import AdminUser


def get_by_username(*, session: Session, username: str) -> AdminUser | None:
    return session.scalars(select(AdminUser).where(AdminUser.username == username)).one_or_none()


def is_active(*, session: Session, admin_user_id: uuid.UUID) -> bool:
    query = select(AdminUser.is_active).where(AdminUser.admin_user_id == admin_user_id)
    return bool(session.scalar(query))


def create_or_replace(*, session: Session, username: str, password_hash: str) -> bool:
    """Create the user, or set a new password and re-activate them; True if created."""
    user = get_by_username(session=session, username=username)
    if user is None:
        session.add(AdminUser(username=username, password_hash=password_hash, is_active=True))
        return True
    user.password_hash, user.is_active = password_hash, True
    return False
