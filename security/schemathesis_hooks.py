"""Schemathesis hooks for `make security`: sign the SendGrid webhook requests it generates.

Unsigned, every webhook request would end at the signature check (403) and the code behind it
would go untested. So a generated request that carries both signature headers is signed, as
SendGrid signs its own, with the private key of the pair whose public half the portal under
test is configured with (SENDGRID_WEBHOOK_PUBLIC_KEY); the headers' generated values are
replaced. A request without them stays unsigned, and must be refused.

    SCHEMATHESIS_HOOKS=security/schemathesis_hooks.py
    SECURITY_SENDGRID_PRIVATE_KEY=path/to/key.pem
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import requests
import schemathesis
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from requests.auth import AuthBase

WEBHOOK_PATH = "/webhooks/sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class SendGridSignature(AuthBase):
    """Signs the request as it goes out: the timestamp followed by the exact body bytes."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self.key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        timestamp = str(int(time.time()))
        signature = self.key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        request.headers[SIGNATURE_HEADER] = base64.b64encode(signature).decode()
        request.headers[TIMESTAMP_HEADER] = timestamp
        return request


def _signer() -> SendGridSignature | None:
    path = os.environ.get("SECURITY_SENDGRID_PRIVATE_KEY")
    if not path:
        return None
    with open(path, "rb") as pem:
        key = serialization.load_pem_private_key(pem.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{path}: not an EC private key")
    return SendGridSignature(key)


SIGNER = _signer()


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    headers = {name.lower() for name in (case.headers or {})}
    signed = {SIGNATURE_HEADER.lower(), TIMESTAMP_HEADER.lower()} <= headers
    if SIGNER is not None and case.operation.path == WEBHOOK_PATH and signed:
        kwargs["auth"] = SIGNER
