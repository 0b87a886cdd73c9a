"""Periodic task pages: the beat schedule from PostgreSQL; edit cron, enable/disable, run now."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from app.jobs import schedule
from app.jobs.celery_app import celery_app
from app.portal.csrf import verified_form
from app.portal.pages import render_page

router = APIRouter()

_NOTICE = "schedule_notice"


def _done(request: Request, notice: str, *, error: bool = False) -> Response:
    # Post/redirect/get: the notice travels in the (signed) session, not in the URL.
    request.session[_NOTICE] = {"text": notice, "error": error}
    return RedirectResponse("/admin/schedule", status_code=303)


@router.get("/admin/schedule", include_in_schema=False)
async def schedule_page(request: Request) -> Response:
    """List the beat entries with their schedules and actions."""
    url = request.app.state.settings.database_url
    entries = await run_in_threadpool(schedule.list_entries, url)
    notice = request.session.pop(_NOTICE, None)
    context = {"title": "Periodic tasks", "entries": entries, "notice": notice}
    return await render_page(request, "portal/schedule.html", context)


@router.post("/admin/schedule/{entry_id}/cron", include_in_schema=False)
async def edit_cron(
    request: Request, entry_id: int, form: FormData = Depends(verified_form)
) -> Response:
    """Give a cron entry a new schedule (beat reloads it within seconds)."""
    fields = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year", "timezone")
    url = request.app.state.settings.database_url
    try:
        cron = schedule.parse_cron(**{name: str(form.get(name, "")) for name in fields})
        entry = await run_in_threadpool(schedule.set_cron, entry_id, cron, url)
    except schedule.ScheduleError as exc:
        return _done(request, f"Schedule not changed: {exc}", error=True)
    return _done(request, f"{entry.name} now runs at {entry.cron}.")


@router.post("/admin/schedule/{entry_id}/enabled", include_in_schema=False)
async def set_enabled(
    request: Request, entry_id: int, form: FormData = Depends(verified_form)
) -> Response:
    """Enable or disable an entry."""
    enabled = form.get("enabled") == "1"
    url = request.app.state.settings.database_url
    try:
        entry = await run_in_threadpool(schedule.set_enabled, entry_id, enabled, url)
    except schedule.ScheduleError as exc:
        return _done(request, str(exc), error=True)
    return _done(request, f"{entry.name} {'enabled' if entry.enabled else 'disabled'}.")


@router.post("/admin/schedule/{entry_id}/run", include_in_schema=False)
async def run_now(
    request: Request, entry_id: int, _form: FormData = Depends(verified_form)
) -> Response:
    """Send the entry's task to its queue now."""
    url = request.app.state.settings.database_url
    try:
        task_id = await run_in_threadpool(schedule.run_now, entry_id, celery_app, url)
    except schedule.ScheduleError as exc:
        return _done(request, str(exc), error=True)
    return _done(request, f"Task sent (id {task_id}).")
