"""E-mail backends: the only modules that put mail on the wire."""

from app.delivery.mail.base import (
    EmailBackend,
    OutgoingEmail,
    PermanentSendError,
    SendError,
    SendResult,
    TransientSendError,
)
from app.delivery.mail.factory import get_backend

__all__ = [
    "EmailBackend",
    "OutgoingEmail",
    "PermanentSendError",
    "SendError",
    "SendResult",
    "TransientSendError",
    "get_backend",
]
