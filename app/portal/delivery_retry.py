"""Retry deliveries from the portal: a confirmation page (GET), then the retry (POST, CSRF).

As for dead letters, SQLAdmin's list action (a GET) only leads here.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from app.db import dispatch
from app.delivery.retry import retry_deliveries
from app.domain.vocabulary import RETRYABLE_DELIVERY_STATUSES
from app.portal.csrf import verified_form
from app.portal.database import DatabaseDep
from app.portal.pages import render_page

router = APIRouter()
RETRY_PAGE = "/admin/deliveries/retry"
MAX_SELECTED = 1000


def parse_ids(raw: str) -> list[uuid.UUID]:
    """The delivery ids of a comma-separated selection (anything else is left out)."""
    found = []
    for part in raw.split(","):
        try:
            found.append(uuid.UUID(part.strip()))
        except ValueError:
            continue
    return sorted(set(found))[:MAX_SELECTED]


@router.get(RETRY_PAGE, include_in_schema=False)
async def confirm_page(request: Request, db: DatabaseDep, ids: str = "") -> Response:
    """Show the selected deliveries and ask before planning them again."""
    rows = await db.run(dispatch.deliveries_by_id, delivery_ids=parse_ids(ids))
    retryable = [r for r in rows if r.status in RETRYABLE_DELIVERY_STATUSES]
    context = {
        "title": "Retry deliveries",
        "rows": rows,
        "ids": ",".join(str(r.delivery_id) for r in retryable),
    }
    return await render_page(request, "portal/deliveries_retry.html", context)


@router.post(RETRY_PAGE, include_in_schema=False)
async def retry(request: Request, form: FormData = Depends(verified_form)) -> Response:
    """Plan the selected failed or skipped deliveries again."""
    ids = parse_ids(str(form.get("ids") or ""))
    count = await run_in_threadpool(
        lambda: retry_deliveries(delivery_ids=ids, statuses=RETRYABLE_DELIVERY_STATUSES)
    )
    return RedirectResponse(f"{RETRY_PAGE}?ids={','.join(map(str, ids))}&retried={count}", 303)
