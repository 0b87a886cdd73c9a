"""Replay dead letters from the portal: a confirmation page (GET), then the replay (POST, CSRF).

SQLAdmin runs list actions as GET requests, which a cross-site link could trigger; so its
"Replay" action only leads here, and the replay itself needs our form token.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from app.db import dead_letters
from app.portal.csrf import verified_form
from app.portal.database import DatabaseDep
from app.portal.pages import render_page
from app.stream.operations import replay_dead_letters

router = APIRouter()
REPLAY_PAGE = "/admin/dead-letters/replay"
MAX_SELECTED = 1000


def parse_ids(raw: str) -> list[int]:
    """The ids of a comma-separated selection (anything else is left out)."""
    ids = [int(part) for part in raw.split(",") if part.strip().isdigit()]
    return sorted(set(ids))[:MAX_SELECTED]


@router.get(REPLAY_PAGE, include_in_schema=False)
async def confirm_page(request: Request, db: DatabaseDep, ids: str = "") -> Response:
    """Show the selected dead letters and ask before replaying them."""
    rows = await db.run(dead_letters.select, status=None, ids=parse_ids(ids), limit=MAX_SELECTED)
    context = {
        "title": "Replay dead letters",
        "rows": rows,
        "ids": ",".join(str(r.dead_letter_id) for r in rows if r.status == "dead"),
    }
    return await render_page(request, "portal/dead_letters_replay.html", context)


@router.post(REPLAY_PAGE, include_in_schema=False)
async def replay(request: Request, form: FormData = Depends(verified_form)) -> Response:
    """Re-publish the selected dead letters to their source topics, once each."""
    ids = parse_ids(str(form.get("ids") or ""))
    settings = request.app.state.settings
    report = await run_in_threadpool(lambda: replay_dead_letters(settings, ids=ids))
    target = f"{REPLAY_PAGE}?ids={','.join(map(str, ids))}&replayed={len(report.published)}"
    return RedirectResponse(target, status_code=303)
