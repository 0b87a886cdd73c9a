"""A user's timeline in the portal, and the search that finds it (by user id or e-mail).

The page prints the entries of app/domain/timeline.py, the same ones `notify explain` prints.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from app.db import timeline as store
from app.db.session import session_scope
from app.domain import timeline
from app.portal.pages import render_page

router = APIRouter()
SEARCH_PAGE = "/admin/users"
MAX_QUERY_CHARS = 320  # the longest e-mail address


def _find(query: str) -> list[uuid.UUID]:
    with session_scope() as session:
        return store.find_users(session=session, query=query)


def _story(user_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        record = store.load_user(session=session, user_id=user_id)
    return {"record": record, "entries": timeline.build(record)}


@router.get(SEARCH_PAGE, include_in_schema=False)
async def search(request: Request, q: str = "") -> Response:
    """Find users by id or address: one match opens its timeline, several are listed."""
    query = q.strip()[:MAX_QUERY_CHARS]
    found = await run_in_threadpool(_find, query) if query else []
    if len(found) == 1:
        return RedirectResponse(f"{SEARCH_PAGE}/{found[0]}", status_code=303)
    context = {"title": "Find a user", "query": query, "found": found}
    return await render_page(request, "portal/users_search.html", context)


@router.get(SEARCH_PAGE + "/{user_id}", include_in_schema=False)
async def user_page(request: Request, user_id: str) -> Response:
    """Every event, notification and delivery of one user, with each decision's reason."""
    try:
        parsed = uuid.UUID(user_id)
    except ValueError as exc:
        raise HTTPException(status_code=404, detail="not a user id") from exc
    story = await run_in_threadpool(_story, parsed)
    context = {"title": f"User {parsed}", "user_id": parsed, **story}
    return await render_page(request, "portal/user.html", context)
