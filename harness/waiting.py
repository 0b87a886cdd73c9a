"""Helpers every kind of test shares: polling for a condition, a free local port, a server's URL."""

from __future__ import annotations

import socket
import socketserver
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.1) -> T:
    """Poll until `check()` is truthy and return it; fail naming `what` after `timeout` seconds.

    A check may answer None for "not yet": what comes back is never None.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what} (last: {result!r})"
            )
        time.sleep(every)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_url(server: socketserver.TCPServer) -> str:
    """`http://host:port` of a local HTTP server (the address a socket server is bound to)."""
    host, port = server.server_address[:2]
    if not isinstance(host, str):  # typed str | bytes; an IPv4 or IPv6 server's host is a str
        host = bytes(host).decode()
    return f"http://{host}:{port}"
