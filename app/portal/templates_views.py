"""Template preview: rendered in the sandbox with sample variables or a real user's."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from app.auth.client import AuthClient, AuthError
from app.db import templates as template_store
from app.domain.rendering import SAMPLE_VARIABLES, TemplateInvalid, render
from app.portal.database import DatabaseDep
from app.portal.pages import render_page

router = APIRouter()


def _user_variables(settings: Any, raw_user_id: str) -> dict[str, Any]:
    """Name and e-mail of a real user from the Auth API; ValueError with a readable reason."""
    try:
        user_id = uuid.UUID(raw_user_id.strip())
    except ValueError:
        raise ValueError(f"{raw_user_id!r} is not a user id") from None
    client = AuthClient.from_settings(settings)
    try:
        user = client.get_user(user_id)
    except AuthError as exc:
        raise ValueError(f"the Auth API did not answer: {exc}") from exc
    finally:
        client.close()
    if user is None:
        raise ValueError(f"the Auth API does not know user {user_id}")
    return {"name": user.name, "email": user.email, "content_id": str(user_id)}


@router.get("/admin/template-preview/{template_id}", include_in_schema=False)
async def preview(
    request: Request, db: DatabaseDep, template_id: uuid.UUID, user_id: str = ""
) -> Response:
    """Show the template rendered with sample variables, or with the given user's."""
    template = await db.run(template_store.get_template, template_id=template_id)
    if template is None:
        raise HTTPException(status_code=404, detail="no such template")
    variables, error, email = dict(SAMPLE_VARIABLES), None, None
    if user_id.strip():
        settings = request.app.state.settings
        try:
            variables.update(await run_in_threadpool(_user_variables, settings, user_id))
        except ValueError as exc:
            error = f"Could not use that user: {exc}."
    try:
        # Off the event loop: a render may use its whole time budget.
        email = await run_in_threadpool(
            lambda: render(
                subject=template.subject,
                body_html=template.body_html,
                body_text=template.body_text,
                variables=variables,
            )
        )
    except TemplateInvalid as exc:
        error = f"The template does not render: {exc}"
    context = {
        "title": f"Preview: {template.name}",
        "template": template,
        "email": email,
        "error": error,
        "user_id": user_id,
        "variables": variables,
    }
    return await render_page(request, "portal/template_preview.html", context)
