"""What every SQLAdmin view of the portal shares."""

from __future__ import annotations

from typing import Any

from sqladmin import ModelView
from sqlalchemy import Select
from starlette.exceptions import HTTPException


class PortalView(ModelView):
    """A view whose pages answer 404, not 500, for an id that cannot be one (`/details/x`)."""

    def _stmt_by_identifier(self, identifier: str) -> Select[Any]:
        # SQLAdmin 0.32 (pinned) turns the id from the URL into the key's type here, and lets
        # the ValueError of a malformed one through.
        try:
            return super()._stmt_by_identifier(identifier)
        except ValueError as exc:
            raise HTTPException(status_code=404) from exc
