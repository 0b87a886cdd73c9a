"""SQLAdmin view of quarantined input events; "Replay" leads to the confirmation page."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqladmin import action
from sqladmin.filters import OperationColumnFilter, StaticValuesFilter
from starlette.requests import Request
from starlette.responses import Response

from app.db.models import DeadLetter
from app.domain.vocabulary import (
    DEAD_LETTER_STATUSES,
)
from app.portal.admin.base import PortalView
from app.portal.admin.columns import choices, error_code, to_confirmation, when
from app.portal.dead_letters import REPLAY_PAGE


def _source(model: DeadLetter, _attr: Any) -> str:
    return f"{model.source_topic}[{model.source_partition}]@{model.source_offset}"


def _bytes_preview(model: DeadLetter, attr: Any) -> Markup | str:
    raw = getattr(model, attr if isinstance(attr, str) else attr.key)
    if raw is None:
        return ""
    return Markup("<code>{}</code>").format(bytes(raw)[:300].decode("utf-8", "replace"))


class DeadLetterAdmin(PortalView, model=DeadLetter):
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
        DeadLetter.created_at: when,
        DeadLetter.error: error_code,
        DeadLetter.value: _bytes_preview,
        DeadLetter.key: _bytes_preview,
    }
    column_formatters_detail = column_formatters
    column_searchable_list = [DeadLetter.error, DeadLetter.source_topic]
    column_sortable_list = [DeadLetter.created_at, DeadLetter.dead_letter_id]
    column_default_sort = (DeadLetter.dead_letter_id, True)
    column_filters = [
        StaticValuesFilter(DeadLetter.status, choices(DEAD_LETTER_STATUSES)),
        OperationColumnFilter(DeadLetter.reason, title="Reason"),
        OperationColumnFilter(DeadLetter.source_topic, title="Source topic"),
        OperationColumnFilter(DeadLetter.created_at, title="Created (ISO date)"),
    ]
    page_size = 50

    @action(name="replay", label="Replay", add_in_detail=True, add_in_list=True)
    async def replay(self, request: Request) -> Response:
        """Lead to the confirmation page: the replay itself is a POST with a form token."""
        return to_confirmation(request, REPLAY_PAGE)
