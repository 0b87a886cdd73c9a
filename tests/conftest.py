"""Shared fixtures; integration tests use the real local services and fail (never skip) without."""

from __future__ import annotations

import os

import pytest

from app.config import Settings, get_settings

TEST_DATABASE_URL = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_test"


def _use_test_database() -> None:
    """Point every test at a test database before any app module reads the settings.

    Tests run in development mode (as `make test` sets it): the dev Auth server and the
    processes they start use the placeholder secrets.
    """
    os.environ.setdefault("DEV_MODE", "true")
    if not os.environ.get("DATABASE_URL", "").rstrip("/").endswith("_test"):
        os.environ["DATABASE_URL"] = TEST_DATABASE_URL
    get_settings.cache_clear()


# At import, before the plugins below import app modules that read the settings.
_use_test_database()

# Fixtures that live next to their helpers, registered for every test that asks for them.
pytest_plugins = ("tests.integration.portal_support", "tests.integration.stream_support")


@pytest.fixture
def settings() -> Settings:
    return get_settings()
