"""Provider webhooks: the SendGrid Event Webhook, signature-checked before anything changes."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from app.core.clock import utcnow
from app.delivery import feedback
from app.delivery.mail import sendgrid_events
from app.portal.api_models import SENDGRID_WEBHOOK_OPENAPI, WebhookReceipt, webhook_error
from app.portal.bodies import BodyTooLarge, read_body, too_large

log = logging.getLogger(__name__)

router = APIRouter()


@router.post(
    "/webhooks/sendgrid",
    include_in_schema=True,
    response_model=WebhookReceipt,
    responses={
        400: webhook_error("The body is not a JSON array of events."),
        403: webhook_error("Missing or bad signature, or a timestamp too old or in the future."),
        413: webhook_error("The body is larger than PORTAL_MAX_BODY_BYTES."),
    },
    openapi_extra=SENDGRID_WEBHOOK_OPENAPI,
)
async def sendgrid_events_webhook(request: Request) -> JSONResponse:
    """Apply SendGrid delivery events; a bad or missing signature gets 403 and changes nothing.

    So does a signed request whose timestamp is outside SENDGRID_WEBHOOK_MAX_AGE_S of now (a
    captured request replayed later). A body over PORTAL_MAX_BODY_BYTES gets 413, unread.
    """
    settings = request.app.state.settings
    try:
        body = await read_body(request, settings.portal_max_body_bytes)
    except BodyTooLarge as exc:
        log.warning("sendgrid webhook: refused a body: %s", exc)
        return too_large(exc)
    signed = sendgrid_events.verify(
        settings.sendgrid_webhook_public_key,
        body,
        request.headers.get(sendgrid_events.SIGNATURE_HEADER),
        request.headers.get(sendgrid_events.TIMESTAMP_HEADER),
    )
    if not signed:
        log.warning("sendgrid webhook: refused a request with a bad signature")
        return JSONResponse({"error": "bad signature"}, status_code=403)
    timestamp = request.headers.get(sendgrid_events.TIMESTAMP_HEADER, "")
    if not sendgrid_events.fresh(timestamp, max_age_s=settings.sendgrid_webhook_max_age_s):
        log.warning("sendgrid webhook: refused a signed request of %r (a replay?)", timestamp[:40])
        return JSONResponse({"error": "stale or future timestamp"}, status_code=403)
    try:
        events = sendgrid_events.parse_events(body)
    except ValueError as exc:
        return JSONResponse({"error": f"bad body: {exc}"}, status_code=400)
    # Blocking database work runs off the event loop.
    settings = request.app.state.settings
    done = await run_in_threadpool(
        lambda: feedback.apply_provider_events(events, now=utcnow(), settings=settings)
    )
    return JSONResponse({"received": len(events), "applied": dict(done)})
