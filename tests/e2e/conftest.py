"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.fakes.sendgrid import FakeSendGrid


@pytest.fixture(scope="module")
def sendgrid() -> Iterator[FakeSendGrid]:
    """The fake SendGrid (its real HTTP contract) for one module's pipeline."""
    fake = FakeSendGrid().start()
    yield fake
    fake.stop()
