"""An aiosmtpd handler that keeps every message it accepts, for the SMTP backend's tests."""

from __future__ import annotations

import threading
from typing import Any


class SmtpSink:
    """An SMTP server's side (aiosmtpd handler): keep every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"
