"""Who may do what in the portal: the least role each request needs.

Reading is open to every role. Writes are listed here by path; a write that matches no rule
needs an admin, so a new form is closed until someone decides who may use it.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from app.domain.vocabulary import PORTAL_ROLES, PortalRole

READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})

# (method pattern, path pattern, least role), first match wins.
WRITE_RULES: Final[tuple[tuple[str, str, PortalRole], ...]] = (
    (r"POST", r"/logout", "viewer"),
    # Templates: SQLAdmin's create, edit and delete forms.
    (r"POST", r"/admin/template/(create|edit/[^/]+)", "editor"),
    (r"DELETE", r"/admin/template/delete", "editor"),
    # A campaign starts as a draft; sending or cancelling it is an admin's decision.
    (r"POST", r"/admin/mailings/new", "editor"),
    # A test mail goes to one address and counts nowhere: editors check their drafts with it.
    (r"POST", r"/admin/mailings/[^/]+/test", "editor"),
    # Suppressed addresses: editors add, lift and import them (each is audited).
    (r"POST", r"/admin/suppressions/(add|remove|import)", "editor"),
)
_COMPILED = tuple(
    (re.compile(method), re.compile(path), role) for method, path, role in WRITE_RULES
)
_RANK: Final[dict[str, int]] = {role: rank for rank, role in enumerate(PORTAL_ROLES)}


class PortalUser(NamedTuple):
    """The signed-in user a request runs as (`request.state.portal_user`)."""

    user_id: str
    username: str
    role: PortalRole


def least_role(method: str, path: str) -> PortalRole:
    """The least role that may make this request."""
    if method in READ_METHODS:
        return "viewer"
    for method_re, path_re, role in _COMPILED:
        if method_re.fullmatch(method) and path_re.fullmatch(path):
            return role
    return "admin"


def may(role: PortalRole, needed: PortalRole) -> bool:
    """True if `role` includes `needed` (each role can do what the ones before it can)."""
    return _RANK.get(role, -1) >= _RANK[needed]


def sees_recipient_tokens(user: PortalUser | None) -> bool:
    """Editors and admins see mail as sent; a viewer gets its unsubscribe tokens redacted."""
    return user is not None and may(user.role, "editor")
