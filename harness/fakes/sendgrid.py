"""A fake SendGrid v3 API (POST /v3/mail/send) over real HTTP, and Event Webhook signing.

It checks the Bearer key and the body the way the real API does, answering 400 with
SendGrid-shaped errors; accepts with 202 + X-Message-Id; records everything; and can be told to
answer 429 (with X-RateLimit-* headers) until a moment, to play a script of statuses, or to be slow.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from harness.waiting import server_url

HELP = "https://docs.sendgrid.com/api-reference/mail-send/errors"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_RECIPIENTS = 1000


@dataclass(frozen=True)
class Received:
    """One request the fake answered."""

    at: float
    status: int
    body: dict[str, Any] | None
    message_id: str | None = None

    @property
    def delivery_id(self) -> str | None:
        return ((self.body or {}).get("custom_args") or {}).get("delivery_id")


def _delivery_id_only(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        return None
    custom = body.get("custom_args")
    if not isinstance(custom, dict):
        return None
    return {"custom_args": {"delivery_id": custom.get("delivery_id")}}


def _error(message: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "field": field, "help": HELP}


def validate_mail(body: Any) -> list[dict[str, Any]]:
    """The errors the real API reports for a mail/send body (the subset we can produce)."""
    if not isinstance(body, dict):
        return [_error("Bad Request", None)]
    errors = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            _error(
                "The personalizations field is required and must have at least one "
                "personalization.",
                "personalizations",
            )
        )
        personalizations = []
    recipients = 0
    for i, p in enumerate(personalizations):
        to = p.get("to") if isinstance(p, dict) else None
        if not isinstance(to, list) or not to:
            errors.append(
                _error(
                    "The to array is required for all personalization objects, and "
                    "must have at least one email object with a valid email address.",
                    f"personalizations.{i}.to",
                )
            )
            continue
        for field in ("to", "cc", "bcc"):
            for j, address in enumerate(p.get(field) or []):
                recipients += 1
                if not EMAIL_RE.match(str((address or {}).get("email", ""))):
                    errors.append(
                        _error(
                            "Does not contain a valid address.",
                            f"personalizations.{i}.{field}.{j}.email",
                        )
                    )
    if recipients > MAX_RECIPIENTS:
        errors.append(
            _error(
                "The personalizations field is limited to 1000 recipients per request.",
                "personalizations",
            )
        )
    sender = body.get("from")
    if not isinstance(sender, dict) or not EMAIL_RE.match(str(sender.get("email", ""))):
        errors.append(
            _error(
                "The from object must be provided for every email send. It is an "
                "object that requires an email parameter, but may also contain a "
                "name parameter.",
                "from.email",
            )
        )
    if not body.get("subject") and not all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    ):
        errors.append(
            _error(
                "The subject is required. You can get around this requirement if "
                "you use a template with a subject defined or if every single "
                "personalization has a subject defined.",
                "subject",
            )
        )
    content = body.get("content")
    if not isinstance(content, list) or not content:
        errors.append(
            _error(
                "Unless a valid template_id is provided, the content parameter is "
                "required. There must be at least one defined content block.",
                "content",
            )
        )
        content = []
    for i, block in enumerate(content):
        value = block.get("value") if isinstance(block, dict) else None
        if not isinstance(value, str) or not value:
            errors.append(
                _error(
                    "The content value must be a string at least one character in length.",
                    f"content.{i}.value",
                )
            )
    types = [b.get("type") for b in content if isinstance(b, dict)]
    if "text/plain" in types and types[0] != "text/plain":
        errors.append(
            _error(
                "If present, text/plain content must be first, followed by any other content.",
                "content.0.type",
            )
        )
    for name in ("headers", "custom_args"):
        values = body.get(name) or {}
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            errors.append(_error(f"Invalid type. Expected: string, given: other ({name}).", name))
    return errors


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # Keep-alive, as the real API offers: a client may send many mails over one connection.
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        with self.server.fake.lock:
            self.server.fake.connections += 1

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output readable

    def _answer(self, status: int, payload: Any = None, headers: dict[str, str] | None = None):
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.rstrip("/") != "/v3/mail/send":
            self._answer(404, {"errors": [_error("Not found")]})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        status, payload, headers = fake.decide(self.headers.get("Authorization"), body)
        if fake.delay_s:
            time.sleep(fake.delay_s)
        self._answer(status, payload, headers)
        if fake.drop_connections:
            self.close_connection = True  # silently, as a server's idle timeout would


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    fake: FakeSendGrid

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up waiting (a timeout) is not the fake's error.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class FakeSendGrid:
    """The fake service; `url` is what SENDGRID_HOST should be set to."""

    def __init__(self, api_key: str = "SG.fake-test-key", keep_bodies: bool = True) -> None:
        self.api_key = api_key
        # A million-mail run keeps only each request's delivery id, not gigabytes of bodies.
        self.keep_bodies = keep_bodies
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.connections = 0  # TCP connections accepted
        self.drop_connections = False  # close each connection after one answer, unannounced
        self.delay_s = 0.0
        self._down_until = 0.0
        self._script: deque[int] = deque()
        self._answers: deque[tuple[int, Any, dict[str, str]]] = deque()
        # Answers for one recipient's next requests, whatever order concurrent sends come in.
        self._answers_for: dict[str, deque[tuple[int, Any, dict[str, str]]]] = {}
        self._limited_until: float | None = None
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return server_url(self._server)

    def start(self) -> FakeSendGrid:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def reset(self) -> None:
        """Forget what was received and any failure mode."""
        with self.lock:
            self.received.clear()
            self._script.clear()
            self._answers.clear()
            self._answers_for.clear()
            self._limited_until = None
            self._down_until = 0.0
            self.delay_s = 0.0

    def script(self, *statuses: int) -> None:
        """Answer the next requests (whatever their body) with these statuses, in order."""
        with self.lock:
            self._script.extend(statuses)

    def script_answers(self, *answers: tuple[int, Any, dict[str, str]]) -> None:
        """Answer the next requests with these (status, JSON body, headers), as they are.

        What a provider may send that its documentation does not promise: a NUL in an error
        text, a message id of any length, a rate-limit reset that is no number.
        """
        with self.lock:
            self._answers.extend(answers)

    def down_until(self, epoch: float) -> None:
        """Answer 503 to every request until `epoch` (a provider outage)."""
        with self.lock:
            self._down_until = epoch

    def rate_limit_until(self, reset_epoch: float) -> None:
        """Answer 429 to every request until `reset_epoch` (epoch seconds)."""
        with self.lock:
            self._limited_until = reset_epoch

    def script_answers_for(self, recipient: str, *answers: tuple[int, Any, dict[str, str]]) -> None:
        """Answer the next requests to `recipient` with these (status, JSON body, headers)."""
        with self.lock:
            self._answers_for.setdefault(recipient, deque()).extend(answers)

    def accepted(self) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.status == 202]

    def accepted_counts(self) -> Counter[str | None]:
        """How many times each delivery id was accepted."""
        return Counter(r.delivery_id for r in self.accepted())

    def decide(self, authorization: str | None, body: Any) -> tuple[int, Any, dict[str, str]]:
        """The answer to one request, recorded."""
        with self.lock:
            status, payload, headers = self._decide(authorization, body)
            message_id = headers.get("X-Message-Id")
            kept = body if self.keep_bodies else _delivery_id_only(body)
            self.received.append(Received(time.time(), status, kept, message_id))
        return status, payload, headers

    def _decide(self, authorization: str | None, body: Any) -> tuple[int, Any, dict[str, str]]:
        if authorization != f"Bearer {self.api_key}":
            message = "The provided authorization grant is invalid, expired, or revoked"
            return 401, {"errors": [{"message": message, "field": None, "help": None}]}, {}
        if self._answers:
            return self._answers.popleft()
        scripted = self._answers_for.get(_recipient(body) or "")
        if scripted:
            return scripted.popleft()
        now = time.time()
        if now < self._down_until:
            return 503, {"errors": [_error("service unavailable")]}, {}
        if self._limited_until is not None and now < self._limited_until:
            headers = {
                "X-RateLimit-Limit": "600",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(self._limited_until)),
            }
            return 429, {"errors": [_error("too many requests")]}, headers
        if self._script:
            status = self._script.popleft()
            if status != 202:
                message = {
                    400: "The from address does not match a verified Sender Identity.",
                    500: "internal server error",
                }.get(status, "error")
                return status, {"errors": [_error(message, "from" if status == 400 else None)]}, {}
        errors = validate_mail(body)
        if errors:
            return 400, {"errors": errors}, {}
        return 202, None, {"X-Message-Id": uuid.uuid4().hex[:22]}


def _recipient(body: Any) -> str | None:
    try:
        return str(body["personalizations"][0]["to"][0]["email"])
    except (KeyError, IndexError, TypeError):
        return None


def webhook_keys() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A P-256 key pair: the private key, and the public key as SendGrid shows it (base64 DER)."""
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sign_webhook(
    private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str
) -> dict[str, str]:
    """The headers SendGrid puts on an Event Webhook POST: ECDSA/SHA-256 over timestamp + body."""
    signature = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }
