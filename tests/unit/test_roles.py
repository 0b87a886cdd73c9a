"""Who may make which portal request: reads for all, writes by rule, admin by default."""

from typing import Any

import pytest

from app.portal.roles import least_role, may


@pytest.mark.parametrize(
    ("method", "path", "role"),
    [
        ("GET", "/admin/mailings/new", "viewer"),
        ("HEAD", "/admin/admin-user/list", "viewer"),
        ("POST", "/logout", "viewer"),
        ("POST", "/admin/template/create", "editor"),
        ("POST", "/admin/template/edit/3f2b", "editor"),
        ("DELETE", "/admin/template/delete", "editor"),
        ("POST", "/admin/mailings/new", "editor"),
        ("POST", "/admin/mailings/3f2b/send", "admin"),
        ("POST", "/admin/mailings/3f2b/cancel", "admin"),
        ("POST", "/admin/schedule/1/run", "admin"),
        ("POST", "/admin/admin-user/edit/3f2b", "admin"),
        ("POST", "/admin/dead-letters/replay", "admin"),
        ("POST", "/admin/template/edit/3f2b/../../admin-user/edit/1", "admin"),
        ("PUT", "/admin/template/create", "admin"),
        ("POST", "/admin/some-new-form", "admin"),
    ],
)
def test_least_role(method: str, path: str, role: str) -> None:
    assert least_role(method, path) == role


def test_each_role_includes_the_ones_before_it() -> None:
    assert may("admin", "viewer") and may("admin", "editor") and may("editor", "viewer")
    assert not may("viewer", "editor") and not may("editor", "admin")
    root: Any = "root"  # a role from outside the vocabulary (its refusal is under test)
    assert not may(root, "viewer")  # an unknown role may do nothing
