"""Parsing a campaign audience: ids from pasted text and CSV, the rest listed back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from app.contracts import Event, encode_event, validate
from app.domain.campaigns import (
    Audience,
    CampaignInvalid,
    Draft,
    parse_audience,
    validate_draft,
)
from app.jobs.campaigns import mailing_messages

A, B, C = (uuid.uuid4() for _ in range(3))
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
HOURLY: Any = "hourly"  # not a periodicity: its refusal is under test


def test_pasted_ids_with_any_separator_keep_order_and_drop_duplicates() -> None:
    audience = parse_audience(f"{A}, {B};{C}\n\t{A}  {str(B).upper()}")
    assert audience == Audience(valid=(A, B, C), invalid=())


def test_invalid_entries_are_listed_back_once() -> None:
    audience = parse_audience(f"{A} bob 1234 bob {str(A)[:-1]}")
    assert audience.valid == (A,)
    assert audience.invalid == ("bob", "1234", str(A)[:-1])


def test_csv_with_a_user_id_column() -> None:
    csv = f"name,user_id\nAnn,{A}\nBob,nope\nCid,\nDee,{B}\n".encode()
    assert parse_audience("", csv) == Audience(valid=(A, B), invalid=("nope",))


def test_csv_without_header_uses_the_first_column_and_a_bom() -> None:
    csv = f"\ufeff{A},x\r\n{B},y\r\n\r\nzzz,w\r\n".encode()
    assert parse_audience("", csv) == Audience(valid=(A, B), invalid=("zzz",))


def test_text_and_csv_combine() -> None:
    assert parse_audience(str(A), f"user_id\n{B}\n{A}\n".encode()).valid == (A, B)


def test_very_long_garbage_is_truncated_for_display() -> None:
    assert parse_audience("x" * 5000).invalid == ("x" * 100,)


@pytest.mark.parametrize(
    ("draft", "audience", "problem"),
    [
        (Draft(" ", A, "t", "once"), Audience((A,), ()), "the name is empty"),
        (Draft("n", A, "t", HOURLY), Audience((A,), ()), "periodicity must be one of"),
        (Draft("n", A, "t" * 50_001, "once"), Audience((A,), ()), "longer than 50000"),
        (Draft("n", A, "t", "once"), Audience((), ("bob",)), "no valid user id"),
    ],
)
def test_validate_draft(draft: Draft, audience: Audience, problem: str) -> None:
    with pytest.raises(CampaignInvalid, match=problem):
        validate_draft(draft, audience, NOW)


def test_events_follow_the_mailing_schema_with_the_campaign_as_content_id() -> None:
    campaign_id = uuid.uuid4()
    messages = list(mailing_messages(campaign_id, "weekly", "Hi <b>all</b>", [A, B]))
    assert [key for key, _ in messages] == [str(A).encode(), str(B).encode()]
    for key, value in messages:
        event = json.loads(value)
        validate("mailing", event)
        assert event == {
            "user_id": key.decode(),
            "periodicity": "weekly",
            "content_id": str(campaign_id),
            "content_value": "Hi <b>all</b>",
        }


def test_fast_encoding_gives_exactly_encode_events_bytes() -> None:
    campaign_id = uuid.uuid4()
    tricky = 'He said "00000000-0000-0000-0000-000000000000" \\ ünïcödé\n\t<script>'
    got = list(mailing_messages(campaign_id, "once", tricky, [A, str(B)]))
    expected = [encode_event(Event(u, "once", campaign_id, tricky)) for u in (A, B)]
    assert [value for _, value in got] == expected
    assert json.loads(got[0][1])["content_value"] == tricky


@pytest.mark.parametrize("newline", [b"\r", b"\r\n", b"\n"])
def test_csv_lines_may_end_in_any_newline(newline: bytes) -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    csv = newline.join([b"user_id", str(a).encode(), str(b).encode()])
    assert parse_audience("", csv).valid == (a, b)


def test_a_csv_with_a_nul_byte_is_read_as_lines() -> None:
    a = uuid.uuid4()
    audience = parse_audience("", f"{a}\n\x00junk\n".encode())
    assert audience.valid == (a,) and audience.invalid == ("junk",)
