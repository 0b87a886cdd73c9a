"""The current time, from one place, so a whole pipeline can be driven through a clock setting."""

from __future__ import annotations

from datetime import UTC, datetime

from app.config import get_settings


def utcnow() -> datetime:
    """Now in UTC, shifted by CLOCK_OFFSET_S (0 in production; tests and demos move it)."""
    now = datetime.now(UTC)
    offset = get_settings().clock_offset
    return now + offset if offset else now
