"""A user's timeline in the portal, and the search that finds it (by user id or e-mail).

The page prints the entries of app/domain/timeline.py, the same ones `notify explain` prints.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, HTTPException, Request
from starlette.responses import RedirectResponse, Response

from app.db import timeline as store
from app.domain import timeline
from app.portal.database import DatabaseDep
from app.portal.pages import render_page

router = APIRouter()
SEARCH_PAGE = "/admin/users"
MAX_QUERY_CHARS = 320  # the longest e-mail address


@router.get(SEARCH_PAGE, include_in_schema=False)
async def search(request: Request, db: DatabaseDep, q: str = "") -> Response:
    """Find users by id or address: one match opens its timeline, several are listed."""
    query = q.strip()[:MAX_QUERY_CHARS]
    found = await db.run(store.find_users, query=query) if query else []
    if len(found) == 1:
        return RedirectResponse(f"{SEARCH_PAGE}/{found[0]}", status_code=303)
    context = {"title": "Find a user", "query": query, "found": found}
    return await render_page(request, "portal/users_search.html", context)


@router.get(SEARCH_PAGE + "/{user_id}", include_in_schema=False)
async def user_page(request: Request, db: DatabaseDep, user_id: str) -> Response:
    """Every event, notification and delivery of one user, with each decision's reason."""
    try:
        parsed = uuid.UUID(user_id)
    except ValueError as exc:
        raise HTTPException(status_code=404, detail="not a user id") from exc
    record = await db.run(store.load_user, user_id=parsed)
    context = {
        "title": f"User {parsed}",
        "user_id": parsed,
        "record": record,
        "entries": timeline.build(record),
    }
    return await render_page(request, "portal/user.html", context)
