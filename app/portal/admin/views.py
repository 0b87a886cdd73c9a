"""SQLAdmin views of what admins edit: e-mail templates (checked on save) and portal users."""

from __future__ import annotations

from functools import cache
from typing import Any

from markupsafe import Markup
from sqladmin import ModelView
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.db.models import AdminUser, Template
from app.domain.rendering import TemplateInvalid, check_template
from app.portal.template_files import default_templates


def preview_url(template_id: Any) -> str:
    return f"/admin/template-preview/{template_id}"


@cache
def builtin_template_names() -> frozenset[str]:
    """The templates the stream and the jobs use by name (shipped in templates/)."""
    return frozenset(source.name for source in default_templates())


def _builtin_reason(name: str) -> str:
    return (
        f"{name!r} is a built-in template: events and jobs use it by name, so it cannot be "
        "renamed or deleted. Edit its text instead."
    )


class TemplateAdmin(ModelView, model=Template):
    """E-mail templates; a save is refused unless the template renders in the sandbox."""

    name, name_plural, icon = "Template", "Templates", "fa-solid fa-file-lines"
    column_list = [Template.name, Template.subject, Template.updated_at, "preview"]
    column_searchable_list = [Template.name, Template.subject]
    column_sortable_list = [Template.name, Template.updated_at]
    column_default_sort = (Template.name, False)
    column_formatters = {
        "preview": lambda m, _a: Markup('<a href="{}">Preview</a>').format(
            preview_url(m.template_id)
        )
    }
    form_columns = [Template.name, Template.subject, Template.body_html, Template.body_text]
    form_widget_args = {
        "body_html": {"rows": 14, "class": "form-control font-monospace"},
        "body_text": {"rows": 8, "class": "form-control font-monospace"},
    }
    column_labels = {Template.body_html: "HTML body", Template.body_text: "Text body"}

    async def on_model_change(
        self, data: dict[str, Any], model: Any, is_created: bool, request: Request
    ) -> None:
        """Refuse a rename of a built-in template, and a template that does not render.

        SQLAdmin shows the message of an exception raised here above the form. The check
        renders several times under a time budget: off the event loop, so the portal answers.
        """
        if not is_created and model.name in builtin_template_names() and data["name"] != model.name:
            raise ValueError(f"Template not saved. {_builtin_reason(model.name)}")
        parts = (data["subject"] or "", data["body_html"] or "", data["body_text"] or "")
        try:
            await run_in_threadpool(check_template, *parts)
        except TemplateInvalid as exc:
            raise ValueError(f"Template not saved. {exc}") from exc

    async def check_can_delete(self, request: Request, model: Any) -> bool:
        """Built-in templates have no delete button."""
        return model.name not in builtin_template_names() and await super().check_can_delete(
            request, model
        )

    async def on_model_delete(self, model: Any, request: Request) -> None:
        """Refuse to delete a built-in template (the list shows why)."""
        if model.name in builtin_template_names():
            raise ValueError(_builtin_reason(model.name))

    async def after_model_change(
        self, data: dict[str, Any], model: Any, is_created: bool, request: Request
    ) -> Response | None:
        """Show the preview of what was just saved."""
        return RedirectResponse(preview_url(model.template_id), status_code=302)


class AdminUserAdmin(ModelView, model=AdminUser):
    """Portal users: list and (de)activate; passwords are set with `notify admin create-user`."""

    name, name_plural, icon = "Admin user", "Admin users", "fa-solid fa-user-shield"
    can_create = can_delete = False
    column_list = [AdminUser.username, AdminUser.is_active, AdminUser.created_at]
    column_details_exclude_list = [AdminUser.password_hash]
    form_columns = [AdminUser.is_active]
