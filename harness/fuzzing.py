"""Hostile input for the stream: hypothesis strategies and a fixed list of known poison events.

Shared by the decoding property tests, the batch-apply property test and the worker test.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from hypothesis import strategies as st

FIELDS = ("user_id", "periodicity", "content_id", "content_value")
KINDS = ("user_registered", "comment_liked", "mailing")

# Every code point, lone surrogates and NUL included (hypothesis leaves surrogates out by default).
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)


def valid_value(kind: str, user: uuid.UUID | None = None, body: str = "hello") -> dict[str, Any]:
    """A valid event of `kind` as a dict (a registration's text is its confirmation link)."""
    return {
        "user_id": str(user or uuid.uuid4()),
        "periodicity": "daily",
        "content_id": "" if kind == "user_registered" else str(uuid.uuid4()),
        "content_value": f"https://example.test/{body}" if kind == "user_registered" else body,
    }


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


@st.composite
def near_valid_events(draw: st.DrawFn, kind: str) -> bytes:
    """A valid event with some fields replaced by anything, some dropped, extras added."""
    value: dict[str, Any] = valid_value(kind)
    for name in draw(st.sets(st.sampled_from(FIELDS))):
        action = draw(st.sampled_from(["replace", "drop", "text"]))
        if action == "drop":
            value.pop(name)
        elif action == "text":
            value[name] = draw(any_text)
        else:
            value[name] = draw(json_values)
    value.update(draw(st.dictionaries(any_text, json_values, max_size=3)))
    return _dumps(value)


def hostile_bytes() -> st.SearchStrategy[bytes | None]:
    """Anything a producer could put in a record value."""
    return st.one_of(
        st.none(),
        st.binary(max_size=200),
        json_values.map(_dumps),
        st.sampled_from(KINDS).flatmap(near_valid_events),
        st.integers(min_value=1, max_value=40_000).map(lambda n: b"[" * n),
        st.integers(min_value=4_300, max_value=20_000).map(lambda n: b"1" * n),
    )


def poison_events(kind: str) -> dict[str, bytes | None]:
    """Known inputs that once stopped a topic or could, each named for what it does."""
    good = valid_value(kind)

    def with_field(name: str, raw: str) -> bytes:
        text = json.dumps({k: v for k, v in good.items() if k != name})
        return (text[:-1] + f', "{name}": {raw}}}').encode()

    return {
        "nested 30,000 deep": b"[" * 30_000,
        "objects nested 5,000 deep": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
        "NUL in content_value": _dumps({**good, "content_value": "a\u0000b"}),
        "lone high surrogate": with_field("content_value", '"\\ud800"'),
        "lone low surrogate": with_field("content_value", '"x\\udfff"'),
        "5,000-digit integer field": with_field("content_value", "1" * 5_000),
        "5,000-digit integer extra": with_field("extra", "9" * 5_000),
        "NaN literal": with_field("extra", "NaN"),
        "1e999 float": with_field("content_value", "1e999"),
        "invalid UTF-8": b'{"user_id": "\xff\xfe"}',
        "UTF-16 with BOM": json.dumps(good).encode("utf-16"),
        "content_value an object": _dumps({**good, "content_value": {"a": [1, {"b": None}]}}),
        "null value (tombstone)": None,
        "empty bytes": b"",
    }


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice(
            [
                None,
                True,
                0,
                -1,
                2**70,
                1.5e308,
                "",
                "x" * rng.randint(0, 50),
                "\u0000",
                "\ud800",
                "é\u202e",
                "https://",
            ]
        )
    if roll < 0.75:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(FIELDS + ("x", "")): _random_json(rng, depth + 1) for _ in range(3)}


def fuzzed_value(rng: random.Random, kind: str) -> bytes:
    """One seeded random mutation of a valid event (may still be valid: decode decides)."""
    good = valid_value(kind)
    raw = json.dumps(good, ensure_ascii=rng.random() < 0.5).encode()
    mutation = rng.randrange(6)
    if mutation == 0:  # flip bytes
        data = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if mutation == 1:  # cut short
        return raw[: rng.randrange(len(raw))]
    if mutation == 2:  # a field of the wrong type or value
        return json.dumps({**good, rng.choice(FIELDS): _random_json(rng)}).encode()
    if mutation == 3:  # a field missing, extra fields
        good.pop(rng.choice(FIELDS))
        return json.dumps({**good, "extra": _random_json(rng)}).encode()
    if mutation == 4:  # nesting
        depth = rng.randint(100, 20_000)
        return b"[" * depth + b"]" * rng.choice([0, depth])
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))  # noise
