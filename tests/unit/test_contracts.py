"""Every schema accepts its valid examples and rejects each invalid one."""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from app.contracts import (
    SCHEMA_NAMES,
    SCHEMAS_DIR,
    ContractError,
    Event,
    decode_event,
    encode_event,
    load_schema,
    validate,
)
from app.domain.vocabulary import EVENT_KINDS

EXAMPLES_DIR = SCHEMAS_DIR / "examples"


def _examples(kind: str) -> list[tuple[str, str, Any]]:
    cases = []
    for name in SCHEMA_NAMES:
        data = json.loads((EXAMPLES_DIR / f"{name}.json").read_text())
        if kind == "valid":
            cases += [(name, f"{name}-valid-{i}", value) for i, value in enumerate(data["valid"])]
        else:
            cases += [(name, f"{name}: {case['why']}", case["value"]) for case in data["invalid"]]
    return cases


VALID = _examples("valid")
INVALID = _examples("invalid")


def _reference_validator(name: str) -> jsonschema.Validator:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_every_schema_has_examples_of_both_kinds() -> None:
    assert {Path(p).stem for p in EXAMPLES_DIR.glob("*.json")} == set(SCHEMA_NAMES)
    for name in SCHEMA_NAMES:
        assert any(n == name for n, _, _ in VALID), name
        assert any(n == name for n, _, _ in INVALID), name


@pytest.mark.parametrize(("name", "case", "value"), VALID, ids=[c for _, c, _ in VALID])
def test_valid_examples_pass(name: str, case: str, value: Any) -> None:
    validate(name, value)
    assert _reference_validator(name).is_valid(value)


@pytest.mark.parametrize(("name", "case", "value"), INVALID, ids=[c for _, c, _ in INVALID])
def test_invalid_examples_fail(name: str, case: str, value: Any) -> None:
    with pytest.raises(ContractError, match=name):
        validate(name, value)
    # The reference implementation agrees, so producers using any validator see the same.
    assert not _reference_validator(name).is_valid(value)


def test_decode_event_round_trip() -> None:
    event = Event(uuid.uuid4(), "daily", uuid.uuid4(), "Nice <b>comment</b>")
    assert decode_event("comment_liked", encode_event(event), max_bytes=4096) == event


def test_decode_event_without_content_id() -> None:
    raw = json.dumps(
        {
            "user_id": str(uuid.uuid4()),
            "periodicity": "once",
            "content_id": "",
            "content_value": "https://auth.example.com/confirm?t=1",
        }
    ).encode()
    assert decode_event("user_registered", raw, max_bytes=4096).content_id is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (None, "empty message"),
        (b'{"user_id": "x"}', "must"),
        (b'"' + b"x" * 5000 + b'"', "over the 4096 limit"),
    ],
)
def test_decode_event_reasons(raw: bytes | None, reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        decode_event("mailing", raw, max_bytes=4096)


def test_event_kinds_are_schemas() -> None:
    assert set(EVENT_KINDS) <= set(SCHEMA_NAMES)
    with pytest.raises(KeyError):
        load_schema("nope")


def _framed(schema_id: int, value: bytes) -> bytes:
    # Confluent's wire format: magic byte 0, the schema id as 4 big-endian bytes, the value.
    return b"\x00" + struct.pack(">I", schema_id) + value


def test_a_schema_registry_framed_event_decodes_like_a_plain_one() -> None:
    event = Event(uuid.uuid4(), "weekly", uuid.uuid4(), "Autumn news")
    plain = encode_event(event)
    assert decode_event("mailing", _framed(7, plain), max_bytes=4096) == event
    assert decode_event("mailing", plain, max_bytes=4096) == event


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00\x00\x01", "Schema Registry frame under 5 bytes"),
        (_framed(1, b"{not json"), "not JSON"),
        (_framed(1, b'{"user_id": "x"}'), "must"),
        (_framed(1, _framed(1, b"{}")), "not JSON"),  # framed twice: the inner zero byte
    ],
)
def test_a_broken_framed_event_is_a_contract_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ContractError, match=reason):
        decode_event("mailing", raw, max_bytes=4096)
