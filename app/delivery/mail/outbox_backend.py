"""The embedded default: one RFC 5322 `.eml` file per delivery under OUTBOX_DIR."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from app.config import Settings
from app.delivery.mail.base import OutgoingEmail, SendResult, TransientSendError, build_message


class OutboxBackend:
    """Writes `<delivery_id>.eml` atomically, so a reader never sees half a message."""

    name = "outbox"

    def __init__(self, directory: Path, *, sender: str) -> None:
        self.directory = Path(directory)
        self.sender = sender

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxBackend:
        return cls(settings.outbox_dir, sender=settings.email_from)

    def path_for(self, delivery_id: str) -> Path:
        return self.directory / f"{delivery_id}.eml"

    def send(self, email: OutgoingEmail) -> SendResult:
        """Write the message file; a full or read-only disk is transient."""
        name = email.delivery_id or str(uuid.uuid4())
        data = build_message(email, self.sender).as_bytes()
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.path_for(name))
        except OSError as exc:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            raise TransientSendError(f"outbox: {exc}") from exc
        return SendResult(provider_message_id=self.path_for(name).name)
