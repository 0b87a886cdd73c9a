"""The dev Auth server in a thread, and an Auth client pointed at it, for tests that need one."""

from __future__ import annotations

import threading
from typing import Any

from app.auth.client import AuthClient
from app.auth.dev_server import DevAuthServer
from app.config import Settings
from harness.waiting import server_url


def serve_in_thread(server: DevAuthServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def client_for(server: DevAuthServer, settings: Settings, **kwargs: Any) -> AuthClient:
    """A client of `server` that retries once and never sleeps, unless `kwargs` say otherwise."""
    options: dict[str, Any] = {"retries": 1, "sleep": lambda _s: None, **kwargs}
    return AuthClient(server_url(server), settings.auth_api_token.get_secret_value(), **options)
