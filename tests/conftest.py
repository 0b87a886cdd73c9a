"""Shared fixtures; integration tests use the real local services and fail (never skip) without."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from app.config import Settings, get_settings

TEST_DATABASE_URL = "postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_test"


@pytest.fixture(scope="session", autouse=True)
def _test_database() -> Iterator[None]:
    """Point every test at the test database unless DATABASE_URL already names one."""
    previous = os.environ.get("DATABASE_URL")
    if not previous or not previous.rstrip("/").endswith("_test"):
        os.environ["DATABASE_URL"] = TEST_DATABASE_URL
    get_settings.cache_clear()
    yield
    if previous is None:
        os.environ.pop("DATABASE_URL", None)
    else:
        os.environ["DATABASE_URL"] = previous
    get_settings.cache_clear()


@pytest.fixture
def settings() -> Settings:
    return get_settings()
