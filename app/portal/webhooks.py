"""Provider webhooks: the SendGrid Event Webhook, signature-checked before anything changes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.core.clock import utcnow
from app.delivery import feedback
from app.delivery.mail import sendgrid_events

log = logging.getLogger(__name__)

router = APIRouter()


@router.post("/webhooks/sendgrid")
async def sendgrid_events_webhook(request: Request) -> JSONResponse:
    """Apply SendGrid delivery events; a bad or missing signature gets 403 and changes nothing."""
    body = await request.body()
    settings = request.app.state.settings
    signed = sendgrid_events.verify(
        settings.sendgrid_webhook_public_key,
        body,
        request.headers.get(sendgrid_events.SIGNATURE_HEADER),
        request.headers.get(sendgrid_events.TIMESTAMP_HEADER),
    )
    if not signed:
        log.warning("sendgrid webhook: refused a request with a bad signature")
        return JSONResponse({"error": "bad signature"}, status_code=403)
    try:
        events = sendgrid_events.parse_events(body)
    except ValueError as exc:
        return JSONResponse({"error": f"bad body: {exc}"}, status_code=400)
    # Blocking database work runs off the event loop.
    done = await run_in_threadpool(feedback.apply_provider_events, events, now=utcnow())
    return JSONResponse({"received": len(events), "applied": dict(done)})
