"""Shared fixtures; integration tests use the real local services and fail (never skip) without."""

from __future__ import annotations

import os

import pytest

from app.config import Settings, get_settings

TEST_DATABASE_URL = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_test"


def pytest_configure(config: pytest.Config) -> None:
    """Point every test at a test database before any app module reads the settings."""
    if not os.environ.get("DATABASE_URL", "").rstrip("/").endswith("_test"):
        os.environ["DATABASE_URL"] = TEST_DATABASE_URL
    get_settings.cache_clear()


@pytest.fixture
def settings() -> Settings:
    return get_settings()
