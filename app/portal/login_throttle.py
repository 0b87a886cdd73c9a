"""Failed sign-ins counted per username and per client address, in moving windows.

The windows are `limits` rate limits (e.g. "5 per minute; 20 per hour"): a key that used up any
of them is locked until that window has room again, so a few mistakes cost a minute and a
guessing run costs hours. A locked attempt is answered before any password hashing, so a flood
of them costs nothing. The counts live in `limits` storage: memory by default (per portal
process), or a shared one (e.g. redis://) when several portal processes serve the same users.
"""

from __future__ import annotations

import logging
import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Counter

log = logging.getLogger(__name__)

LOGIN_FAILURES = Counter(
    "notify_portal_login_failures",
    "Portal sign-ins refused: a wrong password, or a locked username or client address",
    ["reason"],
)


class LoginThrottle:
    """Per-username and per-client windows of failed sign-ins."""

    def __init__(self, *, per_user: str, per_client: str, storage_uri: str = "memory://") -> None:
        self._limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))
        self._per_user: list[RateLimitItem] = parse_many(per_user)
        self._per_client: list[RateLimitItem] = parse_many(per_client)

    def locked_for(self, username: str, client: str) -> float:
        """Seconds until this username and address may try again; 0 when they may now."""
        waits = [self._wait(item, "user", username.casefold()) for item in self._per_user] + [
            self._wait(item, "client", client) for item in self._per_client
        ]
        wait = max(waits, default=0.0)
        if wait > 0:
            LOGIN_FAILURES.labels("locked").inc()
            log.warning("sign-in locked for %.0f s: user %r from %s", wait, username, client)
        return wait

    def failed(self, username: str, client: str) -> None:
        """Count a wrong password against both the username and the address."""
        LOGIN_FAILURES.labels("password").inc()
        log.warning("sign-in failed: user %r from %s", username, client)
        for item in self._per_user:
            self._limiter.hit(item, "user", username.casefold())
        for item in self._per_client:
            self._limiter.hit(item, "client", client)

    def succeeded(self, username: str) -> None:
        """A correct password resets the username's count (not the address's)."""
        for item in self._per_user:
            self._limiter.clear(item, "user", username.casefold())

    def _wait(self, item: RateLimitItem, *key: str) -> float:
        if self._limiter.test(item, *key):
            return 0.0
        reset_at = self._limiter.get_window_stats(item, *key).reset_time
        return max(reset_at - time.time(), 0.01)
