"""SQLAdmin views of what admins edit: e-mail templates (checked on save), portal users and the
audit log; each view shows its edit buttons only to the roles that may use them."""

from __future__ import annotations

from functools import cache
from typing import Any

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.db.models import AdminUser, AuditEntry, Template
from app.domain.rendering import TemplateInvalid, check_template
from app.domain.vocabulary import PORTAL_ROLES, PortalRole
from app.portal.admin.base import PortalView
from app.portal.admin.columns import choices, when
from app.portal.roles import may
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


class RoleGatedView(PortalView):
    """Create, edit and delete buttons only for `editing_role` and above.

    The buttons are a courtesy: RoleRequiredMiddleware refuses the requests themselves.
    """

    editing_role: PortalRole = "admin"

    def _may_edit(self, request: Request) -> bool:
        user = getattr(request.state, "portal_user", None)
        return user is not None and may(user.role, self.editing_role)

    async def check_can_create(self, request: Request) -> bool:
        return self._may_edit(request) and await super().check_can_create(request)

    async def check_can_edit(self, request: Request, model: Any) -> bool:
        return self._may_edit(request) and await super().check_can_edit(request, model)

    async def check_can_delete(self, request: Request, model: Any) -> bool:
        return self._may_edit(request) and await super().check_can_delete(request, model)


class TemplateAdmin(RoleGatedView, model=Template):
    """E-mail templates; a save is refused unless the template renders in the sandbox."""

    editing_role = "editor"

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


class AdminUserAdmin(RoleGatedView, model=AdminUser):
    """Portal users: list, (de)activate, set the role; passwords are set with `notify admin
    create-user`. A deactivation or a new role ends the user's sessions."""

    name, name_plural, icon = "Admin user", "Admin users", "fa-solid fa-user-shield"
    can_create = can_delete = False
    column_list = [AdminUser.username, AdminUser.role, AdminUser.is_active, AdminUser.created_at]
    column_details_exclude_list = [AdminUser.password_hash, AdminUser.session_version]
    form_columns = [AdminUser.is_active, AdminUser.role]
    form_choices = {"role": choices(PORTAL_ROLES)}

    async def on_model_change(
        self, data: dict[str, Any], model: Any, is_created: bool, request: Request
    ) -> None:
        """End the user's sessions when they lose access or change role."""
        if data.get("role") != model.role or not data.get("is_active", model.is_active):
            model.session_version += 1

    async def after_model_change(
        self, data: dict[str, Any], model: Any, is_created: bool, request: Request
    ) -> Response | None:
        request.state.session_check.forget(str(model.admin_user_id))
        return None


class AuditLogAdmin(PortalView, model=AuditEntry):
    """Every sign-in, change and send made in the portal, newest first; read-only."""

    name, name_plural, icon = "Audit entry", "Audit log", "fa-solid fa-list-check"
    can_create = can_edit = can_delete = False
    column_list = [
        AuditEntry.at,
        AuditEntry.actor,
        AuditEntry.action,
        AuditEntry.target,
        AuditEntry.outcome,
        AuditEntry.client,
    ]
    column_details_list = [*column_list, AuditEntry.detail]
    column_searchable_list = [AuditEntry.actor, AuditEntry.target]
    column_sortable_list = [AuditEntry.at, AuditEntry.actor, AuditEntry.outcome]
    column_default_sort = (AuditEntry.at, True)
    column_formatters = {AuditEntry.at: when}
