"""The Auth boundary fuzzed over real HTTP: one hostile record costs its own user, nobody else.

Each example serves a batch in which one record has a field replaced by arbitrary JSON text
(any value, any type, 5,000-digit numbers, nesting past the parser's limit, NaN, a 400-character
address, NUL, lone surrogates) and checks that the other users are found, the hostile one is
found with bounded values or refused with a reason, and that the client asked a bounded number
of times.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.auth.client import AuthClient, AuthError
from app.auth.dev_server import generate_users
from app.domain.bounds import address_problem, unstorable_text
from harness.fakes.auth import HostileAuthServer
from harness.fuzzing import any_text, json_values

TOKEN = "test-token"
BATCH = 24
FIELDS = ("user_id", "email", "name", "timezone", "notification_policy")

pytestmark = pytest.mark.integration

# JSON texts no `json.dumps` writes, each of which once failed a whole batch or a later step.
HOSTILE_TEXTS = (
    "1" * 5000,
    "-" + "9" * 4301,
    "[" * 100_000 + "]" * 100_000,
    '{"a":' * 50_000 + "1" + "}" * 50_000,
    "NaN",
    "-Infinity",
    '"' + "a" * 390 + '@example.com"',
    '"' + "l" * 65 + '@example.com"',
    '"ann\\u0000@example.com"',
    '"ann\\ud800@example.com"',
    '"\\ud800"',
    '"' + "\ud800" + '"',
    '"a\\u0000b"',
    '"' + "x" * 100_000 + '"',
    "1e400",
    "true",
    "null",
    "{}",
    "[]",
)


def _dumps(value: Any) -> str:
    return json.dumps(value)


field_texts = (
    st.sampled_from(HOSTILE_TEXTS)
    | json_values.map(_dumps)
    | any_text.map(_dumps)
    | st.text(max_size=500).map(lambda s: _dumps(s + "@example.com"))
)


@pytest.fixture(scope="module")
def auth() -> Iterator[tuple[HostileAuthServer, AuthClient, list[dict[str, Any]]]]:
    users = generate_users(BATCH, seed=11)
    server = HostileAuthServer(users, TOKEN).start()
    client = AuthClient(server.url, TOKEN, retries=0, sleep=lambda _s: None)
    yield server, client, users
    client.close()
    server.stop()


def _bounded(found: Any) -> bool:
    return (
        address_problem(found.email) is None
        and len(found.name) <= 100
        and unstorable_text(found.name) is None
        and unstorable_text(found.timezone) is None
        and len(found.timezone) <= 64
    )


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(victim=st.integers(0, BATCH - 1), field=st.sampled_from(FIELDS), raw=field_texts)
def test_one_hostile_field_costs_only_its_own_user(
    auth: tuple[HostileAuthServer, AuthClient, list[dict[str, Any]]],
    victim: int,
    field: str,
    raw: str,
) -> None:
    server, client, users = auth
    victim_id = uuid.UUID(users[victim]["user_id"])
    server.raw_fields = {str(victim_id): {field: raw}}
    server.answers = 0
    ids = [uuid.UUID(u["user_id"]) for u in users]
    client.circuit.record_success()

    lookup = client.get_users(ids)

    others = set(ids) - {victim_id}
    assert others <= lookup.found.keys()
    assert all(_bounded(user) for user in lookup.found.values())
    if victim_id not in lookup.found:
        assert lookup.invalid.get(victim_id), "a refused record carries its reason"
    # One request, or a halving down to the one record: 1 + 2 * ceil(log2(24)) = 11.
    assert server.answers <= 1 + 2 * math.ceil(math.log2(BATCH))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(envelope=field_texts | json_values.map(lambda v: _dumps({"users": v, "missing": []})))
def test_a_hostile_envelope_is_an_auth_error_never_anything_else(
    auth: tuple[HostileAuthServer, AuthClient, list[dict[str, Any]]], envelope: str
) -> None:
    server, client, users = auth
    server.raw_fields = {}
    server.raw_envelope = envelope.encode("utf-8", "surrogatepass")
    server.answers = 0
    client.circuit.record_success()
    ids = [uuid.UUID(u["user_id"]) for u in users]
    try:
        lookup = client.get_users(ids)
    except AuthError:
        pass
    else:
        # An answer it could read: every id is accounted for, none dropped in silence.
        assert set(ids) == lookup.found.keys() | lookup.missing | lookup.invalid.keys()
    finally:
        server.raw_envelope = None
    # An unreadable envelope is halved down to single ids at most: 2 * 24 - 1 requests.
    assert server.answers <= 2 * BATCH - 1
