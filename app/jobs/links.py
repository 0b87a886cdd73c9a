"""The signed links a mail carries (one-click unsubscribe, the preference page) and the
List-Unsubscribe headers that name them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from app.config import Settings
from app.domain.preferences import PREFERENCES_TOKEN_KIND
from app.domain.tokens import make_unsubscribe_token
from app.domain.vocabulary import Kind, TokenKind

UNSUBSCRIBE_TOKEN_TTL = timedelta(days=60)


def _signed_link(
    settings: Settings, path: str, user_id: uuid.UUID, kind: TokenKind, now: datetime
) -> str:
    token = make_unsubscribe_token(
        secret=settings.secret_key.get_secret_value(),
        user_id=user_id,
        kind=kind,
        expires_at=now + UNSUBSCRIBE_TOKEN_TTL,
    )
    # The token's alphabet (URL-safe base64 and ".") needs no escaping in a query string.
    return f"{settings.public_base_url.rstrip('/')}{path}?token={token}"


def unsubscribe_url(settings: Settings, user_id: uuid.UUID, kind: Kind, now: datetime) -> str:
    """The one-click unsubscribe link for this user and kind of mail."""
    return _signed_link(settings, "/unsubscribe", user_id, kind, now)


def preferences_url(settings: Settings, user_id: uuid.UUID, now: datetime) -> str:
    """The signed link to this user's preference page (how often, per kind of mail)."""
    return _signed_link(settings, "/preferences", user_id, PREFERENCES_TOKEN_KIND, now)


def unsubscribe_headers(link: str) -> dict[str, str]:
    """RFC 8058 one-click unsubscribe, required by large mailbox providers for bulk mail."""
    if not link:
        return {}
    return {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
