"""The boundary rules, fuzzed: every delay finite and bounded, every stored text storable, every
address one a mail server and our columns take, every provider answer classified."""

from __future__ import annotations

import math
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from python_http_client.exceptions import HTTPError

from app.auth.client import AuthClient
from app.delivery.mail.base import OutgoingEmail, PermanentSendError, TransientSendError
from app.delivery.mail.sendgrid_backend import MAX_RESET_AHEAD_S, SendGridBackend, error_text
from app.delivery.mail.sendgrid_backend import rate_limit_reset as reset_of
from app.delivery.sending import MAX_COUNTDOWN_S, retry_delay
from app.domain.bounds import (
    MAX_ADDRESS_CHARS,
    MAX_ERROR_CHARS,
    MAX_ID_CHARS,
    address_problem,
    bounded_epoch,
    bounded_seconds,
    clip_id,
    clip_text,
    unstorable_text,
)
from harness.fuzzing import any_text

# What a header or a JSON number may hold: any text, and numbers of every kind.
header_texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**400), 10**400)
raw_delays = (
    st.none()
    | st.booleans()
    | numbers
    | numbers.map(str)
    | header_texts
    | st.sampled_from(["nan", "NaN", "inf", "-inf", "1e400", "-1e400", " 7 ", "", "0x10"])
)


@settings(max_examples=500)
@given(raw=raw_delays, maximum=st.floats(0, 1e6))
def test_bounded_seconds_is_none_or_finite_within_its_bounds(raw: Any, maximum: float) -> None:
    seconds = bounded_seconds(raw, maximum=maximum)
    assert seconds is None or (math.isfinite(seconds) and 0.0 <= seconds <= maximum)


@settings(max_examples=500)
@given(raw=raw_delays, now=st.floats(0, 4e9))
def test_bounded_epoch_is_none_or_finite_and_never_past_its_horizon(raw: Any, now: float) -> None:
    instant = bounded_epoch(raw, now_ts=now, maximum_wait=3600)
    assert instant is None or (math.isfinite(instant) and instant <= now + 3600)


def test_the_known_hostile_delays() -> None:
    assert bounded_seconds("nan", maximum=5) is None
    assert bounded_seconds("inf", maximum=5) == 5
    assert bounded_seconds("-3", maximum=5) == 0
    assert bounded_seconds("Wed, 21 Oct 2026 07:28:00 GMT", maximum=5) is None
    assert bounded_epoch("nan", now_ts=100, maximum_wait=10) is None
    assert bounded_epoch("1e400", now_ts=100, maximum_wait=10) == 110
    assert bounded_epoch("-1e400", now_ts=100, maximum_wait=10) is None
    assert bounded_epoch("50", now_ts=100, maximum_wait=10) == 50  # past: no wait


@settings(max_examples=300)
@given(raw=raw_delays)
def test_any_rate_limit_reset_gives_a_finite_celery_countdown(raw: Any) -> None:
    # X-RateLimit-Reset goes through the backend's reading, then the retry delay, to Celery.
    reset = reset_of({"X-RateLimit-Reset": raw}, now_ts=1_800_000_000)
    assert reset is None or reset <= 1_800_000_000 + MAX_RESET_AHEAD_S
    for attempt in (0, 1, 50):
        delay = retry_delay(
            attempt, base_s=2, max_s=300, retry_at=reset, now_ts=1_800_000_000, rng=random.Random(1)
        )
        assert math.isfinite(delay) and 0.0 <= delay <= MAX_COUNTDOWN_S


@settings(max_examples=300)
@given(raw=raw_delays)
def test_any_retry_after_from_auth_is_slept_as_finite_bounded_seconds(raw: Any) -> None:
    client = AuthClient("http://127.0.0.1:9", "token", backoff_max_s=5.0)
    delay = client._backoff(0, None if raw is None else str(raw))
    assert math.isfinite(delay) and 0.0 <= delay <= 5.0


@given(text=st.text(st.characters(codec=None, exclude_categories=()), max_size=3000))
def test_clipped_texts_are_storable_and_bounded(text: str) -> None:
    assert unstorable_text(clip_text(text)) is None and len(clip_text(text)) <= MAX_ERROR_CHARS
    clipped = clip_id(text)
    assert clipped is None or (unstorable_text(clipped) is None and len(clipped) <= MAX_ID_CHARS)


@given(local=st.text(max_size=80), domain=st.text(max_size=260))
def test_an_accepted_address_fits_rfc_5321_and_postgresql(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    if address_problem(address) is None:
        assert len(address) <= MAX_ADDRESS_CHARS and unstorable_text(address) is None
        assert 0 < len(address.rpartition("@")[0]) <= 64


def test_the_known_hostile_addresses() -> None:
    assert address_problem("ann@example.com") is None
    assert "over RFC 5321's 254" in (address_problem("a" * 390 + "@example.com") or "")
    assert "local part" in (address_problem("l" * 65 + "@example.com") or "")
    assert "NUL" in (address_problem("ann\x00@example.com") or "")
    assert "surrogate" in (address_problem("ann\ud800@example.com") or "")


class _Answer:
    def __init__(self, status: int, headers: dict[str, Any]) -> None:
        self.status_code, self.headers = status, headers


class _Client:
    """Stands in for the library's /mail/send endpoint: returns or raises what the fuzzer drew."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome

    def post(self, request_body: Any) -> Any:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


provider_headers = st.dictionaries(
    st.sampled_from(["X-Message-Id", "X-RateLimit-Reset", "Retry-After", "Content-Type"]),
    raw_delays.map(lambda v: v if isinstance(v, str) else str(v)) | header_texts,
    max_size=4,
)
provider_bodies = st.binary(max_size=300) | any_text.map(lambda t: t.encode("utf-8", "replace"))


@settings(max_examples=400)
@given(status=st.integers(100, 999), headers=provider_headers, body=provider_bodies)
def test_any_provider_answer_is_a_bounded_result_or_a_classified_error(
    status: int, headers: dict[str, Any], body: bytes
) -> None:
    backend = SendGridBackend("SG.key", host="http://127.0.0.1:9", sender="n@x.test", timeout_s=1)
    if status < 300:
        backend.mail_send = _Client(_Answer(status, headers))
    else:
        backend.mail_send = _Client(HTTPError(status, "reason", body, headers))
    email = OutgoingEmail("ann@example.com", "Hi", "<p>x</p>")
    try:
        result = backend.send(email)
    except TransientSendError as exc:
        assert status == 429 or status >= 500 or status < 200
        assert unstorable_text(str(exc)) is None and len(str(exc)) <= MAX_ERROR_CHARS + 10
        assert exc.retry_at is None or math.isfinite(exc.retry_at)
    except PermanentSendError as exc:
        assert 300 <= status < 500 and status != 429
        assert unstorable_text(str(exc)) is None
    else:
        assert 200 <= status < 300
        message_id = result.provider_message_id
        assert message_id is None or (
            len(message_id) <= MAX_ID_CHARS and unstorable_text(message_id) is None
        )


def test_a_long_message_id_and_a_nul_in_an_error_body_are_bounded() -> None:
    backend = SendGridBackend("SG.key", host="http://127.0.0.1:9", sender="n@x.test", timeout_s=1)
    backend.mail_send = _Client(_Answer(202, {"X-Message-Id": "m" * 5000}))
    result = backend.send(OutgoingEmail("ann@example.com", "Hi", "<p>x</p>"))
    assert result.provider_message_id is not None and len(result.provider_message_id) == 200
    assert unstorable_text(error_text(b'{"errors": [{"message": "bad\\u0000"}]}')) is None
    assert unstorable_text(error_text(b"boom\x00")) is None
