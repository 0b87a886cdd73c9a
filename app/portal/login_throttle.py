"""Sign-in attempts counted per username and per client network, in moving windows.

The windows are `limits` rate limits (e.g. "5 per minute; 20 per hour"): a key that used up any
of them is locked until that window has room again, so a few mistakes cost a minute and a
guessing run costs hours. An attempt is counted *before* its password is checked, in one step
with the check that the key has room: forty concurrent guesses get the window's five, not forty
(counting after the hash let them all pass the check while the first were still hashing). A
correct password gives the username its window back. A locked attempt is answered before any
hashing, so a flood of them costs nothing.

A client is its IPv4 address, or its IPv6 /64: one host is handed a whole /64, and rotating
through it must not reset the count. The counts live in `limits` storage: memory by default (per
portal process), or a shared one (e.g. redis://) when several portal processes serve the users.
"""

from __future__ import annotations

import ipaddress
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

    def attempt(self, username: str, client: str) -> float:
        """Count an attempt against the username and the client's network, before the password
        is checked; seconds until they may try again when either is locked (nothing counted),
        0 when this attempt may go on.

        No await between the check and the count, and `hit` itself is atomic in every `limits`
        storage: concurrent attempts cannot all find room.
        """
        keys = [("user", username.casefold())] * len(self._per_user)
        keys += [("client", client_network(client))] * len(self._per_client)
        items = [*self._per_user, *self._per_client]
        wait = max(
            (self._wait(item, *key) for item, key in zip(items, keys, strict=True)), default=0
        )
        if wait == 0:
            refused = [
                not self._limiter.hit(item, *key) for item, key in zip(items, keys, strict=True)
            ]
            if any(refused):
                wait = max(self._wait(item, *key) for item, key in zip(items, keys, strict=True))
        if wait > 0:
            LOGIN_FAILURES.labels("locked").inc()
            log.warning("sign-in locked for %.0f s from %s", wait, client)
        return wait

    @staticmethod
    def failed(client: str) -> None:
        """A wrong password (already counted by `attempt`). The name typed is not logged: it
        may be a password typed into the wrong field."""
        LOGIN_FAILURES.labels("password").inc()
        log.warning("sign-in failed from %s", client)

    def succeeded(self, username: str) -> None:
        """A correct password resets the username's count (not the network's)."""
        for item in self._per_user:
            self._limiter.clear(item, "user", username.casefold())

    def _wait(self, item: RateLimitItem, *key: str) -> float:
        if self._limiter.test(item, *key):
            return 0.0
        reset_at = self._limiter.get_window_stats(item, *key).reset_time
        return max(reset_at - time.time(), 0.01)


def client_network(address: str) -> str:
    """The key a client's sign-ins are counted under: its IPv4 address, or its IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an address (a test client, a unix socket): itself
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
