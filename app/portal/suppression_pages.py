"""The suppressed addresses page: search, add, lift, CSV import and export.

Every role reads it, as every portal page; adding, lifting and importing need an editor
(app/portal/roles.py), and each is in the audit log, as every write.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from starlette.datastructures import FormData, UploadFile
from starlette.responses import RedirectResponse, Response

from app.core.clock import utcnow
from app.db import suppressions
from app.domain.suppression import AddressInvalid, read_csv, write_csv
from app.domain.vocabulary import SUPPRESSION_REASONS, one_of
from app.portal.csrf import verified_form
from app.portal.database import DatabaseDep
from app.portal.pages import render_page

router = APIRouter()
PAGE = "/admin/suppressions"
SHOWN = 200
EXPORTED = 100_000
MAX_IMPORT_BYTES = 2 * 1024 * 1024  # the portal's body limit: about 50,000 addresses
MAX_PROBLEMS_SHOWN = 20


@router.get(PAGE, include_in_schema=False)
async def page(request: Request, db: DatabaseDep, q: str = "", reason: str = "") -> Response:
    """Suppressed addresses, the latest event first, with the forms to change them."""
    return await _render(request, db, q, reason, notice=request.query_params.get("notice"))


async def _render(
    request: Request,
    db: DatabaseDep,
    q: str,
    reason: str,
    *,
    notice: str | None = None,
    problems: list[str] | None = None,
    status_code: int = 200,
) -> Response:
    chosen = reason if reason in SUPPRESSION_REASONS else None
    rows = await db.run(suppressions.search, query=q[:320], reason=chosen, limit=SHOWN)
    context: dict[str, Any] = {
        "title": "Suppressed addresses",
        "rows": rows,
        "total": await db.run(suppressions.count),
        "query": q[:320],
        "reason": chosen or "",
        "reasons": SUPPRESSION_REASONS,
        "shown": SHOWN,
        "notice": notice,
        "notice_is_error": status_code >= 400,
        "problems": (problems or [])[:MAX_PROBLEMS_SHOWN],
        "more_problems": max(len(problems or []) - MAX_PROBLEMS_SHOWN, 0),
    }
    return await render_page(request, "portal/suppressions.html", context, status_code=status_code)


@router.post(PAGE + "/add", include_in_schema=False)
async def add(
    request: Request, db: DatabaseDep, form: FormData = Depends(verified_form)
) -> Response:
    """Suppress one address by hand."""
    address = str(form.get("address") or "")
    try:
        reason = one_of(str(form.get("reason") or "manual"), SUPPRESSION_REASONS, "reason")
        new = await db.run(
            suppressions.suppress,
            address=address,
            reason=reason,
            at=utcnow(),
            source="portal",
            detail=str(form.get("detail") or "") or None,
        )
    except (AddressInvalid, ValueError) as exc:
        return await _render(request, db, "", "", notice=str(exc), status_code=400)
    said = "suppressed" if new else "already suppressed; its reason is updated"
    return _back(f"{address.strip()}: {said}")


@router.post(PAGE + "/remove", include_in_schema=False)
async def remove(
    request: Request, db: DatabaseDep, form: FormData = Depends(verified_form)
) -> Response:
    """Lift one address's suppression: mail goes to it again from the next planning on."""
    address = str(form.get("address") or "")
    try:
        lifted = await db.run(suppressions.lift, address=address)
    except AddressInvalid as exc:
        return await _render(request, db, "", "", notice=str(exc), status_code=400)
    return _back(f"{address}: lifted" if lifted else f"{address}: was not suppressed")


@router.post(PAGE + "/import", include_in_schema=False)
async def import_csv(
    request: Request, db: DatabaseDep, form: FormData = Depends(verified_form)
) -> Response:
    """Suppress every address of an uploaded CSV; bad rows are listed, the rest go in."""
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        return await _render(request, db, "", "", notice="Choose a CSV file.", status_code=400)
    raw = await upload.read(MAX_IMPORT_BYTES + 1)
    if len(raw) > MAX_IMPORT_BYTES:
        notice = f"The file is larger than {MAX_IMPORT_BYTES // 1024} KiB: split it."
        return await _render(request, db, "", "", notice=notice, status_code=400)
    rows, problems = read_csv(raw.decode("utf-8-sig", "replace"))
    added = await db.run(
        suppressions.suppress_many,
        rows=[(r.address, r.reason, r.detail) for r in rows],
        at=utcnow(),
        source="import",
    )
    notice = f"{len(rows)} rows read, {added} newly suppressed, {len(problems)} left out."
    return await _render(request, db, "", "", notice=notice, problems=problems)


@router.get(PAGE + ".csv", include_in_schema=False)
async def export_csv(db: DatabaseDep) -> Response:
    """Every suppressed address as CSV (what the import reads back)."""
    rows = await db.run(suppressions.search, limit=EXPORTED)
    return Response(
        write_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )


def _back(notice: str) -> RedirectResponse:
    return RedirectResponse(f"{PAGE}?{urlencode({'notice': notice[:300]})}", status_code=303)
