"""The dev Auth server: the Auth internal API contract over a fixture of users, for local runs.

It stands in for the outside Auth service (stdlib only), so the real client talks real HTTP to it.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from app.contracts import AUTH_BATCH_LIMIT, validate

log = logging.getLogger(__name__)

USER_PREFIX = "/api/v1/users/"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://notify.local/devauth/users")
# Whole, half and quarter hour offsets, both date-line edges, and southern-hemisphere DST.
TIMEZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kathmandu",
    "Pacific/Kiritimati",
    "Pacific/Pago_Pago",
    "UTC",
    "Asia/Tokyo",
    "America/Los_Angeles",
    "Australia/Sydney",
    "Asia/Kolkata",
    "America/St_Johns",
    "Europe/London",
)


class DevAuthServer(ThreadingHTTPServer):
    """A threading HTTP server holding the users, the token and request counters for tests."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        users: list[dict[str, Any]],
        token: str,
        handler: type[BaseHTTPRequestHandler] | None = None,
    ) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        for user in users:
            validate("auth_user", user)
            key = str(uuid.UUID(user["user_id"]))
            if key in self.users:
                raise ValueError(f"duplicate user_id {key} in the users fixture")
            self.users[key] = user
        self.token = token
        self.request_count = 0
        self.batch_sizes: list[int] = []
        self._count_lock = threading.Lock()
        super().__init__(address, handler or DevAuthHandler)

    def count(self) -> None:
        """Count one request (tests assert on it)."""
        with self._count_lock:
            self.request_count += 1


class DevAuthHandler(BaseHTTPRequestHandler):
    """The contract's endpoints; subclass it to fake outages in tests."""

    server: DevAuthServer
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    timeout = 30  # close idle keep-alive connections instead of holding a thread forever
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

    def do_GET(self) -> None:
        self.server.count()
        if self.path == "/health":
            self._answer(200, {"status": "ok", "users": len(self.server.users)})
        elif self._authorized():
            key = _canonical(self.path.removeprefix(USER_PREFIX))
            user = self.server.users.get(key) if self.path.startswith(USER_PREFIX) and key else None
            if user is None:
                self._answer(404, {"error": "unknown user"})
            else:
                self._answer(200, user)

    def do_POST(self) -> None:
        self.server.count()
        # Read the body whatever happens, or it would be parsed as the next keep-alive request.
        try:
            body = self.rfile.read(max(0, int(self.headers.get("Content-Length") or 0)))
        except ValueError:
            self.close_connection = True
            body = b""
        if not self._authorized():
            return
        if self.path != USER_PREFIX + "batch":
            self._answer(404, {"error": "not found"})
            return
        try:
            ids = json.loads(body)["user_ids"]
        except (ValueError, TypeError, KeyError):
            ids = None
        if not isinstance(ids, list) or len(ids) > AUTH_BATCH_LIMIT:
            self._answer(400, {"error": f"user_ids must be a list of at most {AUTH_BATCH_LIMIT}"})
            return
        keys = [_canonical(raw) if isinstance(raw, str) else None for raw in ids]
        if None in keys:
            self._answer(400, {"error": "every user id must be a uuid"})
            return
        self.server.batch_sizes.append(len(ids))  # list.append is atomic
        wanted = list(dict.fromkeys(keys))
        users = [self.server.users[key] for key in wanted if key in self.server.users]
        missing = [key for key in wanted if key not in self.server.users]
        self._answer(200, {"users": users, "missing": missing})

    def _authorized(self) -> bool:
        expected = f"Bearer {self.server.token}".encode()
        given = self.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return True
        self._answer(401, {"error": "missing or wrong bearer token"})
        return False

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def _canonical(raw: str) -> str | None:
    """The canonical text of a uuid, or None when `raw` is not one."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


def make_server(
    users: list[dict[str, Any]], *, token: str, host: str = "127.0.0.1", port: int = 0
) -> DevAuthServer:
    """A dev Auth server bound to (host, port), not yet serving; port 0 picks a free one."""
    return DevAuthServer((host, port), users, token)


def serve_users(
    users: list[dict[str, Any]], *, token: str, host: str = "127.0.0.1", port: int = 8081
) -> None:
    """Serve `users` until interrupted."""
    server = make_server(users, token=token, host=host, port=port)
    bound_host, bound_port = server.server_address[:2]
    log.info("dev auth: %d users on http://%s:%d", len(server.users), bound_host, bound_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def serve(users_file: Path, *, token: str, host: str = "127.0.0.1", port: int = 8081) -> None:
    """Serve the users of a JSON fixture file until interrupted."""
    serve_users(load_users(users_file), token=token, host=host, port=port)


def load_users(path: str | Path) -> list[dict[str, Any]]:
    """The users of a JSON fixture file (a list of users in the contract's shape)."""
    users = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(users, list):
        raise ValueError(f"{path}: expected a JSON list of users")
    return users


def write_users(path: str | Path, users: list[dict[str, Any]]) -> None:
    """Write users as a JSON fixture file."""
    Path(path).write_text(json.dumps(users, indent=2) + "\n", encoding="utf-8")


def generate_users(n: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """N deterministic users; `seed` changes the ids only."""
    users = []
    for i in range(1, n + 1):
        # A fixed pattern of opt-outs, so each flag is off for someone in any fixture of 13+ users.
        policy = {"email": i % 50 != 13, "likes": i % 10 != 3, "mailing": i % 10 != 7}
        users.append(
            {
                "user_id": str(uuid.uuid5(NAMESPACE, f"{seed}:{i}")),
                "email": f"user{i:04d}@example.com",
                "name": f"User {i:04d}",
                "timezone": TIMEZONES[(i - 1) % len(TIMEZONES)],
                "notification_policy": policy,
            }
        )
    return users
