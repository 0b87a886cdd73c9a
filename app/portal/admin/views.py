"""SQLAdmin views over our models: templates (checked on save), notifications, deliveries, users."""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from sqladmin import ModelView, action
from sqladmin.filters import OperationColumnFilter, StaticValuesFilter
from sqlalchemy import Select, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.db.models import AdminUser, DeadLetter, Delivery, Notification, Template
from app.domain.rendering import TemplateInvalid, check_template
from app.domain.vocabulary import (
    DEAD_LETTER_STATUSES,
    DELIVERY_STATUSES,
    KINDS,
    NOTIFICATION_STATUSES,
    PERIODICITIES,
)
from app.portal.dead_letters import REPLAY_PAGE
from app.portal.delivery_retry import RETRY_PAGE
from app.portal.template_files import default_templates


def _choices(values: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


def _when(model: Any, attr: Any) -> str:
    value = getattr(model, attr if isinstance(attr, str) else attr.key)
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _to_confirmation(request: Request, page: str) -> Response:
    # SQLAdmin runs list actions as GETs, which a cross-site link could trigger: an action with
    # effects only leads to our page, which asks, and acts on a POST with a form token.
    ids = request.query_params.get("pks", "")
    return RedirectResponse(f"{page}?ids={quote(ids, safe=',')}", status_code=302)


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


class NotificationAdmin(ModelView, model=Notification):
    """Notifications, read-only: search and filter by status, kind, user, period."""

    name, name_plural, icon = "Notification", "Notifications", "fa-solid fa-bell"
    can_create = can_edit = can_delete = False
    column_list = [
        Notification.created_at,
        Notification.kind,
        Notification.user_id,
        Notification.periodicity,
        Notification.status,
        Notification.like_count,
        Notification.campaign_id,
        Notification.last_update,
    ]
    column_details_list = [
        *column_list,
        Notification.notification_id,
        Notification.content_id,
        "message.content_value",
    ]
    column_labels = {
        Notification.created_at: "Created",
        Notification.kind: "Kind",
        Notification.user_id: "User",
        Notification.periodicity: "Periodicity",
        Notification.status: "Status",
        Notification.like_count: "Likes",
        Notification.campaign_id: "Campaign",
        Notification.last_update: "Last update",
    }
    column_formatters = {Notification.created_at: _when, Notification.last_update: _when}
    column_searchable_list = [Notification.user_id, Notification.content_id]
    column_sortable_list = [Notification.created_at, Notification.last_update]
    column_default_sort = (Notification.created_at, True)
    column_filters = [
        StaticValuesFilter(Notification.status, _choices(NOTIFICATION_STATUSES)),
        StaticValuesFilter(Notification.kind, _choices(KINDS)),
        StaticValuesFilter(Notification.periodicity, _choices(PERIODICITIES)),
        OperationColumnFilter(Notification.user_id, title="User"),
        OperationColumnFilter(Notification.created_at, title="Created (ISO date)"),
    ]
    page_size = 50


def _of_notifications(
    query: Select[*tuple[Any, ...]],
    sub: Select[*tuple[Any, ...]],
    untouched: Select[*tuple[Any, ...]],
) -> Select[*tuple[Any, ...]]:
    """Keep the deliveries of the notifications `sub` selects (unless the filter was empty)."""
    if sub is untouched:
        return query
    return query.where(Delivery.notification_id.in_(sub))


class DeliveryUserFilter(OperationColumnFilter):
    """Filter deliveries by their notification's user (one subquery, no join to collide with)."""

    async def get_filtered_query(
        self, query: Select[*tuple[Any, ...]], operation: str, value: Any, model: Any
    ) -> Select[*tuple[Any, ...]]:
        base = select(Notification.notification_id)
        sub = await super().get_filtered_query(base, operation, value, Notification)
        return _of_notifications(query, sub, base)


class DeliveryKindFilter(StaticValuesFilter):
    """Filter deliveries by their notification's kind."""

    async def get_filtered_query(
        self, query: Select[*tuple[Any, ...]], value: Any, model: Any
    ) -> Select[*tuple[Any, ...]]:
        base = select(Notification.notification_id)
        sub = await super().get_filtered_query(base, value, Notification)
        return _of_notifications(query, sub, base)


def _error(model: Delivery, _attr: Any) -> Markup | str:
    return Markup("<code>{}</code>").format(model.error[:200]) if model.error else ""


class DeliveryAdmin(ModelView, model=Delivery):
    """Deliveries, read-only: each shows its attempts and what the provider answered."""

    name, name_plural, icon = "Delivery", "Deliveries", "fa-solid fa-paper-plane"
    can_create = can_edit = can_delete = False
    column_list = [
        Delivery.created_at,
        Delivery.status,
        "notification.kind",
        "notification.user_id",
        Delivery.email,
        Delivery.attempts,
        Delivery.provider_message_id,
        Delivery.error,
    ]
    column_details_list = [
        Delivery.delivery_id,
        Delivery.status,
        Delivery.attempts,
        Delivery.provider_message_id,
        Delivery.error,
        Delivery.email,
        Delivery.subject,
        "notification.kind",
        "notification.user_id",
        Delivery.notification_id,
        Delivery.period_key,
        Delivery.send_at,
        Delivery.enqueued_at,
        Delivery.sent_at,
        Delivery.updated_at,
        Delivery.reported_count,
        Delivery.headers,
        Delivery.body_text,
    ]
    column_labels = {
        "notification.kind": "Kind",
        "notification.user_id": "User",
        Delivery.status: "Status",
        Delivery.created_at: "Created",
        Delivery.email: "E-mail",
        Delivery.attempts: "Attempts",
        Delivery.provider_message_id: "Provider message id",
        Delivery.error: "Provider error",
        Delivery.period_key: "Period",
        Delivery.send_at: "Send at",
    }
    column_formatters = {Delivery.error: _error, Delivery.created_at: _when}
    column_searchable_list = [
        Delivery.email,
        Delivery.provider_message_id,
        Delivery.error,
        "notification.user_id",
    ]
    column_sortable_list = [Delivery.created_at, Delivery.send_at, Delivery.attempts]
    column_default_sort = (Delivery.created_at, True)
    column_filters = [
        StaticValuesFilter(Delivery.status, _choices(DELIVERY_STATUSES)),
        DeliveryKindFilter(Notification.kind, _choices(KINDS), parameter_name="kind"),
        DeliveryUserFilter(Notification.user_id, title="User", parameter_name="user"),
        OperationColumnFilter(Delivery.period_key, title="Period (e.g. 2026-11-25, 2026-W48)"),
        OperationColumnFilter(Delivery.send_at, title="Send time (ISO date)"),
    ]
    page_size = 50

    @action(name="retry", label="Retry", add_in_detail=True, add_in_list=True)
    async def retry(self, request: Request) -> Response:
        """Lead to the confirmation page: the retry itself is a POST with a form token."""
        return _to_confirmation(request, RETRY_PAGE)


def _source(model: DeadLetter, _attr: Any) -> str:
    return f"{model.source_topic}[{model.source_partition}]@{model.source_offset}"


def _bytes_preview(model: DeadLetter, attr: Any) -> Markup | str:
    raw = getattr(model, attr if isinstance(attr, str) else attr.key)
    if raw is None:
        return ""
    return Markup("<code>{}</code>").format(bytes(raw)[:300].decode("utf-8", "replace"))


class DeadLetterAdmin(ModelView, model=DeadLetter):
    """Quarantined input events, read-only; "Replay" re-publishes a selection once."""

    name, name_plural, icon = "Dead letter", "Dead letters", "fa-solid fa-triangle-exclamation"
    identity = "dead-letter"
    can_create = can_edit = can_delete = False
    column_list = [
        DeadLetter.dead_letter_id,
        DeadLetter.created_at,
        DeadLetter.status,
        "source",
        DeadLetter.reason,
        DeadLetter.error,
    ]
    column_details_list = [
        DeadLetter.dead_letter_id,
        DeadLetter.status,
        "source",
        DeadLetter.reason,
        DeadLetter.error,
        DeadLetter.key,
        DeadLetter.value,
        DeadLetter.group_id,
        DeadLetter.created_at,
        DeadLetter.replay_count,
        DeadLetter.replayed_at,
    ]
    column_labels = {
        DeadLetter.dead_letter_id: "Id",
        DeadLetter.created_at: "Created",
        "source": "Source (topic[partition]@offset)",
    }
    column_formatters = {
        "source": _source,
        DeadLetter.created_at: _when,
        DeadLetter.error: _error,
        DeadLetter.value: _bytes_preview,
        DeadLetter.key: _bytes_preview,
    }
    column_formatters_detail = column_formatters
    column_searchable_list = [DeadLetter.error, DeadLetter.source_topic]
    column_sortable_list = [DeadLetter.created_at, DeadLetter.dead_letter_id]
    column_default_sort = (DeadLetter.dead_letter_id, True)
    column_filters = [
        StaticValuesFilter(DeadLetter.status, _choices(DEAD_LETTER_STATUSES)),
        OperationColumnFilter(DeadLetter.reason, title="Reason"),
        OperationColumnFilter(DeadLetter.source_topic, title="Source topic"),
        OperationColumnFilter(DeadLetter.created_at, title="Created (ISO date)"),
    ]
    page_size = 50

    @action(name="replay", label="Replay", add_in_detail=True, add_in_list=True)
    async def replay(self, request: Request) -> Response:
        """Lead to the confirmation page: the replay itself is a POST with a form token."""
        return _to_confirmation(request, REPLAY_PAGE)


class AdminUserAdmin(ModelView, model=AdminUser):
    """Portal users: list and (de)activate; passwords are set with `notify admin create-user`."""

    name, name_plural, icon = "Admin user", "Admin users", "fa-solid fa-user-shield"
    can_create = can_delete = False
    column_list = [AdminUser.username, AdminUser.is_active, AdminUser.created_at]
    column_details_exclude_list = [AdminUser.password_hash]
    form_columns = [AdminUser.is_active]
