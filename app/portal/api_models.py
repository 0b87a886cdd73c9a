"""What the portal's public and JSON endpoints answer, for their OpenAPI description.

The portal serves no schema (`openapi_url=None`); `make security` writes one from these models
and tests the running portal against it (docs/security.md). The handlers build their responses
themselves: these models document them, they do not validate them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, create_model

from app.domain.campaigns import PROGRESS_COUNTS, PROGRESS_PERCENTS
from app.domain.vocabulary import CampaignStatus


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Detail(BaseModel):
    """A refusal by FastAPI or by the portal's middleware (e.g. 401 `login required`)."""

    detail: str


class WebhookError(BaseModel):
    """A refused webhook request: bad signature, stale timestamp, bad or too large body."""

    error: str


class WebhookReceipt(BaseModel):
    received: int = Field(description="Events in the batch that concern our deliveries.")
    applied: dict[str, int] = Field(description="What was done, by outcome.")


# Built from the domain's buckets, so the API's description cannot drift from what it answers.
_PERCENT_FIELDS: dict[str, Any] = {bucket: (float, ...) for bucket in PROGRESS_PERCENTS}
ProgressPercent = create_model("ProgressPercent", **_PERCENT_FIELDS)
_PROGRESS_FIELDS: dict[str, Any] = {
    "status": (CampaignStatus, ...),
    **{bucket: (int, ...) for bucket in PROGRESS_COUNTS},
    "percent": (ProgressPercent, ...),
    "eta": (
        datetime | None,
        Field(
            default=None,
            description="When its waiting mail should all be out, at the send rate in force "
            "(EMAIL_MAX_RATE) behind the due mail ahead of it; null when none waits.",
        ),
    ),
}
CampaignProgress = create_model("CampaignProgress", **_PROGRESS_FIELDS)


def html_page(description: str) -> dict[str, Any]:
    """An HTML response, for `responses=`."""
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def webhook_error(description: str) -> dict[str, Any]:
    return {"description": description, "model": WebhookError}


# The SendGrid Event Webhook: a signed JSON array of event objects. Items the service does not
# use (other events, other senders' mail, anything not an event object) are skipped, not
# refused: SendGrid sends a refused batch again and again.
SENDGRID_WEBHOOK_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "X-Twilio-Email-Event-Webhook-Signature",
            "in": "header",
            "required": True,
            "description": "ECDSA signature (base64) of the timestamp and the body.",
            "schema": {"type": "string"},
        },
        {
            "name": "X-Twilio-Email-Event-Webhook-Timestamp",
            "in": "header",
            "required": True,
            "description": "Unix seconds; outside SENDGRID_WEBHOOK_MAX_AGE_S of now: refused.",
            "schema": {"type": "string"},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {
                        "description": (
                            "A SendGrid event object (event, delivery_id, reason, response, ...)"
                        ),
                    },
                },
                "example": [
                    {
                        "event": "bounce",
                        "delivery_id": "0b0e3f7c-3c9e-4f1a-9d55-6f1d3c1b2a90",
                        "email": "someone@example.com",
                        "timestamp": 1767225600,
                        "reason": "550 5.1.1 The email account does not exist",
                    },
                    {"event": "open", "email": "someone@example.com", "timestamp": 1767225900},
                ],
            }
        },
    },
}

# One-click unsubscribe (RFC 8058): the token in the URL, or in the form a mailbox provider or
# the confirmation page posts.
UNSUBSCRIBE_FORM_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "List-Unsubscribe": {
                            "type": "string",
                            "description": "`One-Click` as RFC 8058 has it; not checked.",
                            "example": "One-Click",
                        },
                        "token": {"type": "string"},
                    },
                }
            }
        },
    }
}
