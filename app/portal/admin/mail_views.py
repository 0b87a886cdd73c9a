"""SQLAdmin views of the mail that went (or did not go) out: notifications and deliveries."""

from __future__ import annotations

from typing import Any

from sqladmin import action
from sqladmin.filters import OperationColumnFilter, StaticValuesFilter
from sqlalchemy import Select, select
from sqlalchemy.orm import joinedload
from starlette.requests import Request
from starlette.responses import Response

from app.db.models import Delivery, Notification
from app.domain.tokens import redact_tokens
from app.domain.vocabulary import (
    DELIVERY_STATUSES,
    KINDS,
    NOTIFICATION_STATUSES,
    PERIODICITIES,
)
from app.portal.admin.base import PortalView
from app.portal.admin.columns import choices, error_code, to_confirmation, when
from app.portal.delivery_retry import RETRY_PAGE
from app.portal.roles import sees_recipient_tokens


class NotificationAdmin(PortalView, model=Notification):
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
    column_formatters = {Notification.created_at: when, Notification.last_update: when}
    column_searchable_list = [Notification.user_id, Notification.content_id]
    column_sortable_list = [Notification.created_at, Notification.last_update]
    column_default_sort = (Notification.created_at, True)
    column_filters = [
        StaticValuesFilter(Notification.status, choices(NOTIFICATION_STATUSES)),
        StaticValuesFilter(Notification.kind, choices(KINDS)),
        StaticValuesFilter(Notification.periodicity, choices(PERIODICITIES)),
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


class DeliveryAdmin(PortalView, model=Delivery):
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
        "content.subject",
        "notification.kind",
        "notification.user_id",
        Delivery.notification_id,
        Delivery.period_key,
        Delivery.send_at,
        Delivery.enqueued_at,
        Delivery.sent_at,
        Delivery.updated_at,
        Delivery.reported_count,
        "content.headers",
        "content.body_text",
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
        "content.subject": "Subject",
        "content.headers": "Headers",
        "content.body_text": "Text body",
    }
    column_formatters = {Delivery.error: error_code, Delivery.created_at: when}
    column_searchable_list = [
        Delivery.email,
        Delivery.provider_message_id,
        Delivery.error,
        "notification.user_id",
    ]
    column_sortable_list = [Delivery.created_at, Delivery.send_at, Delivery.attempts]
    column_default_sort = (Delivery.created_at, True)
    column_filters = [
        StaticValuesFilter(Delivery.status, choices(DELIVERY_STATUSES)),
        DeliveryKindFilter(Notification.kind, choices(KINDS), parameter_name="kind"),
        DeliveryUserFilter(Notification.user_id, title="User", parameter_name="user"),
        OperationColumnFilter(Delivery.period_key, title="Period (e.g. 2026-11-25, 2026-W48)"),
        OperationColumnFilter(Delivery.send_at, title="Send time (ISO date)"),
    ]
    page_size = 50

    def details_query(self, request: Request) -> Select[Any]:
        """The delivery with its mail, in one query: redacting it below needs it loaded."""
        return super().details_query(request).options(joinedload(Delivery.content))

    async def get_object_for_details(self, request: Request) -> Any:
        """The delivery; for a viewer, with its body's and headers' recipient tokens redacted
        (the objects are detached from their session by now: nothing of this is written back)."""
        delivery = await super().get_object_for_details(request)
        content = delivery.content if delivery is not None else None
        if content is not None and not sees_recipient_tokens(request.state.portal_user):
            if content.body_text is not None:
                content.body_text = redact_tokens(content.body_text)
            headers = content.headers or {}
            content.headers = {name: redact_tokens(str(value)) for name, value in headers.items()}
        return delivery

    @action(name="retry", label="Retry", add_in_detail=True, add_in_list=True)
    async def retry(self, request: Request) -> Response:
        """Lead to the confirmation page: the retry itself is a POST with a form token."""
        return to_confirmation(request, RETRY_PAGE)
