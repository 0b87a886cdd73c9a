"""Property tests: whatever bytes arrive, decoding yields an event or a contract error only."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.contracts import ContractError, Event, decode_event, unstorable_text
from app.stream.ingest import Record, decode_records, reason_of
from harness.fuzzing import (
    KINDS,
    hostile_bytes,
    json_values,
    near_valid_events,
    poison_events,
    valid_value,
)

MAX_BYTES = 64 * 1024
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _decoded_or_refused(kind: str, raw: bytes | None) -> Event | ContractError:
    try:
        return decode_event(kind, raw, max_bytes=MAX_BYTES)  # type: ignore[arg-type]
    except ContractError as exc:
        return exc


def _assert_storable(event: Event) -> None:
    assert isinstance(event.user_id, uuid.UUID)
    assert event.periodicity in ("once", "daily", "weekly")
    assert isinstance(event.content_value, str) and unstorable_text(event.content_value) is None


@FUZZ
@given(kind=st.sampled_from(KINDS), raw=hostile_bytes())
def test_any_bytes_decode_to_an_event_or_a_contract_error(kind: str, raw: bytes | None) -> None:
    outcome = _decoded_or_refused(kind, raw)
    if isinstance(outcome, Event):
        _assert_storable(outcome)
    else:
        assert str(outcome).startswith(f"{kind}: ")


@FUZZ
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_near_valid_events_are_accepted_only_when_storable(data: st.DataObject, kind: str) -> None:
    outcome = _decoded_or_refused(kind, data.draw(near_valid_events(kind)))
    if isinstance(outcome, Event):
        _assert_storable(outcome)
        if kind == "user_registered":
            assert outcome.periodicity == "once"  # registrations are transactional


@FUZZ
@given(values=st.lists(st.one_of(hostile_bytes(), json_values.map(repr).map(str.encode))))
def test_a_batch_splits_into_events_and_dead_letters_with_reasons(values: list[bytes]) -> None:
    records = [Record("t", 0, offset, None, v) for offset, v in enumerate(values)]
    accepted, dead = decode_records("comment_liked", records, max_bytes=MAX_BYTES)
    assert len(accepted) + len(dead) == len(records)
    assert all(d.reason and d.error for d in dead)
    assert unstorable_text(" ".join(d.error for d in dead)) is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(poison_events("mailing")))
def test_every_known_poison_event_is_refused_with_a_reason(kind: str, name: str) -> None:
    raw = poison_events(kind)[name]
    records = [Record("t", 0, 0, None, raw)]
    accepted, dead = decode_records(kind, records, max_bytes=MAX_BYTES)  # type: ignore[arg-type]
    assert accepted == [], name
    assert dead[0].reason and dead[0].error, name


def test_registrations_are_once_whatever_their_periodicity_says() -> None:
    import json

    from harness.fuzzing import valid_value

    for periodicity in ("once", "daily", "weekly"):
        raw = json.dumps({**valid_value("user_registered"), "periodicity": periodicity}).encode()
        assert decode_event("user_registered", raw, max_bytes=MAX_BYTES).periodicity == "once"


# Kafka's default broker limit (message.max.bytes): the largest value a producer can hand us.
BROKER_MAX_BYTES = 1_048_588


@st.composite
def sized_records(draw: st.DrawFn, kind: str) -> bytes:
    """A record of any size up to the broker's limit: a valid event padded out, or filler."""
    size = draw(st.integers(0, BROKER_MAX_BYTES) | st.sampled_from([0, MAX_BYTES, MAX_BYTES + 1]))
    if draw(st.booleans()):
        return draw(st.sampled_from([b"x", b"{", b"\x00", b"\xff"])) * size
    head = json.dumps({**valid_value(kind), "content_value": ""}).encode()[:-3]  # ... "": "
    pad = max(size - len(head) - 3, 0)
    return head + b'"' + b"a" * pad + b'"}'


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_records_of_any_size_up_to_the_broker_limit_decode_or_are_refused_as_too_large(
    data: st.DataObject, kind: str
) -> None:
    raw = data.draw(sized_records(kind))
    outcome = _decoded_or_refused(kind, raw)
    if len(raw) > MAX_BYTES:
        assert isinstance(outcome, ContractError) and reason_of(str(outcome)) == "too_large"
    elif isinstance(outcome, Event):
        _assert_storable(outcome)
    else:
        assert reason_of(str(outcome)) != "too_large"
