"""Mailing campaign pages: list, create (paste or CSV audience), send, follow progress, cancel."""

from __future__ import annotations

import math
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from app.db import campaigns as campaign_store
from app.domain import campaigns as rules
from app.domain.vocabulary import CAP_POLICIES, PERIODICITIES, one_of
from app.jobs import campaigns
from app.kafka.producer import make_producer
from app.portal import campaign_test_mail
from app.portal.api_models import CampaignProgress, Detail
from app.portal.body_guard import MAX_CSV_BYTES
from app.portal.csrf import verified_form
from app.portal.database import Database, DatabaseDep
from app.portal.pages import render_page

router = APIRouter()

SCHEDULE_FIELDS = ("when", "send_at", "local_date", "local_hour")


@router.get("/admin/mailings", include_in_schema=False)
async def list_page(request: Request, db: DatabaseDep) -> Response:
    """List campaigns, newest first."""
    rows = await db.run(campaign_store.list_recent)
    return await render_page(request, "portal/campaigns.html", {"title": "Mailings", "rows": rows})


async def _form_page(
    request: Request, db: Database, values: dict[str, Any], status_code: int = 200
) -> Response:
    context = {
        "title": "New mailing",
        "templates": await db.run(campaign_store.list_templates),
        "periodicities": PERIODICITIES,
        "cap_policies": CAP_POLICIES,
        "values": values,
    }
    return await render_page(request, "portal/campaign_new.html", context, status_code=status_code)


@router.get("/admin/mailings/new", include_in_schema=False)
async def new_page(request: Request, db: DatabaseDep) -> Response:
    """Show the form of a new campaign."""
    return await _form_page(
        request, db, {"periodicity": "once", "template_name": "mailing", "when": "now"}
    )


@router.post("/admin/mailings/new", include_in_schema=False)
async def create(
    request: Request, db: DatabaseDep, form: FormData = Depends(verified_form)
) -> Response:
    """Create a draft campaign; invalid audience entries are kept and listed back."""
    values = {
        key: str(form.get(key, ""))
        for key in (
            "name",
            "template_id",
            "content_value",
            "periodicity",
            "audience",
            "cap_policy",
            *SCHEDULE_FIELDS,
        )
    }
    upload = form.get("audience_csv")
    csv_data = None
    if isinstance(upload, UploadFile) and upload.filename:
        csv_data = await upload.read(MAX_CSV_BYTES + 1)
        if len(csv_data) > MAX_CSV_BYTES:
            values["error"] = "The CSV file is larger than 20 MB."
            return await _form_page(request, db, values, status_code=400)
    audience = rules.parse_audience(values["audience"], csv_data)
    try:
        draft = rules.Draft(
            name=values["name"],
            template_id=uuid.UUID(values["template_id"]),
            content_value=values["content_value"],
            periodicity=one_of(values["periodicity"], PERIODICITIES, "periodicity"),
            schedule=rules.parse_schedule(*(values[key] for key in SCHEDULE_FIELDS)),
            cap_policy=one_of(values["cap_policy"] or "hold", CAP_POLICIES, "cap policy"),
        )
        campaign = await run_in_threadpool(
            lambda: campaigns.create_campaign(
                draft=draft, audience=audience, created_by=request.session.get("admin_username")
            )
        )
    except ValueError as exc:  # CampaignInvalid, a template id that is not a UUID, a periodicity
        error = f"The campaign was not created: {exc}."
        return await _form_page(
            request, db, {**values, "error": error, "invalid": audience.invalid}, status_code=400
        )
    return RedirectResponse(f"/admin/mailings/{campaign.campaign_id}", status_code=303)


async def _progress(request: Request, campaign_id: uuid.UUID) -> tuple[Any, rules.Progress]:
    pace = request.app.state.settings.pace
    try:
        return await run_in_threadpool(
            campaigns.campaign_progress, campaign_id=campaign_id, pace=pace
        )
    except rules.CampaignInvalid as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc


@router.get("/admin/mailings/{campaign_id}", include_in_schema=False)
async def campaign_page(
    request: Request,
    campaign_id: uuid.UUID,
    published: int | None = None,
    failed: int = 0,
    tested: str | None = None,
) -> Response:
    """Show a campaign, its progress bar and its actions."""
    campaign, progress = await _progress(request, campaign_id)
    context = {
        "title": f"Mailing: {campaign.name}",
        "campaign": campaign,
        "schedule": _schedule_of(campaign),
        "progress": progress,
        "just_published": published,
        "just_failed": failed,
        "just_tested": tested,
    }
    return await render_page(request, "portal/campaign.html", context)


@router.get(
    "/admin/api/mailings/{campaign_id}/progress",
    include_in_schema=True,
    response_model=CampaignProgress,
    responses={
        401: {"description": "No live session (login required).", "model": Detail},
        404: {"description": "No such campaign.", "model": Detail},
    },
)
async def progress_api(request: Request, campaign_id: uuid.UUID) -> JSONResponse:
    """The campaign's status and progress counts (the page polls this)."""
    campaign, progress = await _progress(request, campaign_id)
    body = progress.answer(campaign.status)
    return JSONResponse(body)


def _schedule_of(campaign: Any) -> str | None:
    schedule = rules.Schedule(campaign.send_at, campaign.local_send_date, campaign.local_send_hour)
    return schedule.describe() if schedule != rules.Schedule() else None


async def _refused(
    request: Request, campaign_id: uuid.UUID, message: str, status_code: int = 409
) -> Response:
    campaign, progress = await _progress(request, campaign_id)
    context = {
        "title": f"Mailing: {campaign.name}",
        "campaign": campaign,
        "schedule": _schedule_of(campaign),
        "progress": progress,
        "error": message,
    }
    return await render_page(request, "portal/campaign.html", context, status_code=status_code)


@router.post("/admin/mailings/{campaign_id}/send", include_in_schema=False)
async def send(
    request: Request, campaign_id: uuid.UUID, _form: FormData = Depends(verified_form)
) -> Response:
    """Publish one `admin.mailing` event per recipient."""
    settings = request.app.state.settings
    producer = make_producer(settings)
    try:
        report = await run_in_threadpool(
            lambda: campaigns.publish_campaign(
                campaign_id=campaign_id, producer=producer, topic=settings.topic_mailing
            )
        )
    except rules.CampaignError as exc:
        return await _refused(request, campaign_id, str(exc))
    target = f"/admin/mailings/{campaign_id}?published={report.delivered}&failed={report.failed}"
    return RedirectResponse(target, status_code=303)


@router.post("/admin/mailings/{campaign_id}/test", include_in_schema=False)
async def send_test(
    request: Request, campaign_id: uuid.UUID, form: FormData = Depends(verified_form)
) -> Response:
    """Send the campaign's mail once to one address, marked as a test; counted nowhere.

    At most PORTAL_TEST_SEND_LIMITS per portal user: a refused address counts too.
    """
    address = str(form.get("address") or "")
    settings = request.app.state.settings
    user = request.state.portal_user
    wait = request.app.state.test_send_limit.attempt(user.username)
    if wait > 0:
        minutes = max(1, math.ceil(wait / 60))
        message = f"too many test mails: the next one can go in {minutes} min"
        return await _refused(request, campaign_id, message, status_code=429)
    try:
        message_id = await run_in_threadpool(
            lambda: campaign_test_mail.send_test(
                campaign_id=campaign_id, address=address, settings=settings
            )
        )
    except rules.CampaignError as exc:
        return await _refused(request, campaign_id, str(exc))
    except Exception as exc:  # noqa: BLE001 - the provider's refusal, shown to the sender
        return await _refused(request, campaign_id, f"the test mail was not sent: {exc}")
    target = (
        f"/admin/mailings/{campaign_id}?{urlencode({'tested': address, 'message': message_id})}"
    )
    return RedirectResponse(target, status_code=303)


@router.post("/admin/mailings/{campaign_id}/cancel", include_in_schema=False)
async def cancel(
    request: Request, campaign_id: uuid.UUID, _form: FormData = Depends(verified_form)
) -> Response:
    """Cancel the campaign and its deliveries that have not gone out."""
    try:
        await run_in_threadpool(lambda: campaigns.cancel_campaign(campaign_id=campaign_id))
    except rules.CampaignError as exc:
        return await _refused(request, campaign_id, str(exc))
    return RedirectResponse(f"/admin/mailings/{campaign_id}", status_code=303)
