"""Shared fixtures; integration tests use the real local services and fail (never skip) without."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import REPO_ROOT, Settings, get_settings

TEST_DATABASE_URL = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_test"


def _use_test_database() -> None:
    """Point every test at a test database before any app module reads the settings.

    Tests run in development mode (as `make test` sets it): the dev Auth server and the
    processes they start use the placeholder secrets.
    """
    os.environ.setdefault("DEV_MODE", "true")
    if not os.environ.get("DATABASE_URL", "").rstrip("/").endswith("_test"):
        os.environ["DATABASE_URL"] = TEST_DATABASE_URL
    # Table stores of every worker a test starts stay out of `make run`'s var/faust/.
    os.environ["FAUST_DATA_DIR"] = tempfile.mkdtemp(prefix="notify-test-faust-")
    get_settings.cache_clear()


# At import, before the plugins below import app modules that read the settings.
_use_test_database()

# Fixtures that live next to their helpers, registered for every test that asks for them.
pytest_plugins = ("harness.portal", "harness.stream")


DEFAULT_FAUST_DIR = REPO_ROOT / "var" / "faust"
# Tests under these folders start or talk to services: `integration`, whatever their module says,
# so `pytest -m "not integration"` (make test-unit) runs with every service stopped.
SERVICE_FOLDERS = ("integration", "e2e", "browser")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests = REPO_ROOT / "tests"
    for item in items:
        folder = item.path.relative_to(tests).parts[0] if item.path.is_relative_to(tests) else ""
        if folder in SERVICE_FOLDERS:
            item.add_marker(pytest.mark.integration)


def _tree(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*")} if root.exists() else set()


@pytest.fixture(scope="session", autouse=True)
def default_table_stores_untouched() -> Iterator[None]:
    """The suite leaves `make run`'s table stores alone: nothing new under var/faust/."""
    before = _tree(DEFAULT_FAUST_DIR)
    yield
    added = sorted(_tree(DEFAULT_FAUST_DIR) - before)
    assert not added, f"the suite wrote under {DEFAULT_FAUST_DIR}: {added[:10]}"


@pytest.fixture
def settings() -> Settings:
    return get_settings()


@pytest.fixture(autouse=True)
def fresh_circuits() -> Iterator[None]:
    """Each test starts with the circuits of a new process: none open from an earlier test."""
    from app.core import circuits

    circuits.forget_all()
    yield
    circuits.forget_all()
