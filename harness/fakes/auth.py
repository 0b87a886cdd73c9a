"""A fake Auth service whose records can hold any JSON text: the dev server, made hostile.

Auth is outside our control; what its JSON may hold is not limited by what Python's `json.dumps`
can write (a 5,000-digit number, nesting 100,000 deep, NaN, a raw lone surrogate). Each field
of a record can be given as raw JSON text, written into the answer as it is.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from app.auth.dev_server import DevAuthHandler, DevAuthServer
from harness.waiting import server_url


class HostileAuthServer(DevAuthServer):
    """The dev Auth server; `raw_fields[user_id][field]` is written as raw JSON text."""

    def __init__(self, users: list[dict[str, Any]], token: str) -> None:
        super().__init__(("127.0.0.1", 0), users, token, HostileAuthHandler)
        self.raw_fields: dict[str, dict[str, str]] = {}
        self.raw_envelope: bytes | None = None  # a whole batch answer, if set
        self.answers = 0

    @property
    def url(self) -> str:
        return server_url(self)

    def start(self) -> HostileAuthServer:
        threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class HostileAuthHandler(DevAuthHandler):
    server: HostileAuthServer

    def _answer(self, status: int, payload: Any) -> None:
        self.server.answers += 1
        if status == 200 and self.server.raw_envelope is not None and "users" in payload:
            self._write(status, self.server.raw_envelope)
            return
        marks: dict[str, str] = {}

        def marked(user: dict[str, Any]) -> dict[str, Any]:
            raw = self.server.raw_fields.get(str(user.get("user_id")), {})
            copy = dict(user)
            for field, text in raw.items():
                mark = f"\x01raw{len(marks)}\x01"
                marks[json.dumps(mark)] = text
                copy[field] = mark
            return copy

        if isinstance(payload, dict) and "users" in payload:
            payload = {**payload, "users": [marked(user) for user in payload["users"]]}
        elif isinstance(payload, dict) and "user_id" in payload:
            payload = marked(payload)
        data = json.dumps(payload)
        for mark, text in marks.items():
            data = data.replace(mark, text)
        self._write(status, data.encode("utf-8", "surrogatepass"))

    def _write(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
