"""How often one portal user may do an action that reaches outside (a test mail), in windows."""

from __future__ import annotations

import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter


class ActionLimit:
    """Moving windows (`limits` notation, e.g. "20 per hour") of one action, per user."""

    def __init__(self, action: str, windows: str, storage_uri: str = "memory://") -> None:
        self._action = action
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._windows: list[RateLimitItem] = parse_many(windows)

    def attempt(self, username: str) -> float:
        """Count one use by `username`: 0 when it may go on, else seconds until it may."""
        if all(self._limiter.hit(item, self._action, username) for item in self._windows):
            return 0.0
        resets = [
            self._limiter.get_window_stats(item, self._action, username).reset_time
            for item in self._windows
            if not self._limiter.test(item, self._action, username)
        ]
        return max((max(reset - time.time(), 0.01) for reset in resets), default=0.01)
