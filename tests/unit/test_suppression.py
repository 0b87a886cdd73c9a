"""Suppressed addresses, the pure part: one address in one form, reasons worded, soft bounces
adding up, and the CSV an operator exports and imports (fuzzed: no row refuses the file)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.domain.suppression import (
    AddressInvalid,
    Suppression,
    normalise_address,
    read_csv,
    skip_detail,
    soft_bounces_suppress,
    write_csv,
)
from app.domain.vocabulary import SUPPRESSION_REASONS

AT = datetime(2026, 12, 6, 10, 30, tzinfo=UTC)


def test_one_address_whatever_its_case_and_spaces() -> None:
    assert normalise_address("  Bob.Smith@Example.COM ") == "bob.smith@example.com"
    assert normalise_address("a@b") == "a@b"


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "no-at-sign", "@example.com", "bob@", "bo b@example.com", "a\x00@b", "a" * 330],
)
def test_what_is_no_address_is_refused(raw: str) -> None:
    with pytest.raises(AddressInvalid):
        normalise_address(raw)


def test_each_reason_reads_with_its_day_and_the_providers_words() -> None:
    s = Suppression("a@b.c", "hard bounce", AT, AT, "550 5.1.1 user unknown", "sendgrid")
    assert skip_detail(s) == "it bounced on 2026-12-06 (550 5.1.1 user unknown)"
    for reason in SUPPRESSION_REASONS:
        said = skip_detail(Suppression("a@b.c", reason, AT, AT))
        assert "2026-12-06" in said and "{" not in said


def test_soft_bounces_suppress_at_the_threshold() -> None:
    assert [soft_bounces_suppress(n, 3) for n in (1, 2, 3, 4)] == [False, False, True, True]


def test_export_then_import_gives_the_same_addresses_and_reasons() -> None:
    rows = [
        Suppression("-dash@example.com", "manual", AT, AT, "=HYPERLINK(evil)", "portal"),
        Suppression("b@example.com", "spam report", AT, AT, 'says "no", twice', "sendgrid"),
    ]
    text = write_csv(rows)
    assert "'=HYPERLINK" in text  # never a formula in a spreadsheet
    back, problems = read_csv(text)
    assert problems == []
    assert [(r.address, r.reason, r.detail) for r in back] == [
        ("-dash@example.com", "manual", "=HYPERLINK(evil)"),
        ("b@example.com", "spam report", 'says "no", twice'),
    ]


def test_a_bad_row_refuses_that_row_only() -> None:
    text = "address,reason\nok@example.com,\nnot an address,manual\nx@example.com,whatever\n"
    rows, problems = read_csv(text)
    assert [(r.address, r.reason) for r in rows] == [("ok@example.com", "manual")]
    assert len(problems) == 2 and problems[0].startswith("line 3:")
    assert problems[1].startswith("line 4:")


def test_a_file_without_an_address_column_is_refused_whole() -> None:
    assert read_csv("email,reason\na@b.c,manual\n") == (
        [],
        ["the file has no `address` column in its header"],
    )


@given(st.text(max_size=2000))
def test_any_text_imports_without_raising(text: str) -> None:
    rows, problems = read_csv(text, max_rows=50)
    assert len(rows) <= 50
    for row in rows:
        assert row.address == normalise_address(row.address)
        assert row.reason in SUPPRESSION_REASONS


def test_the_address_check_refuses_every_space_and_control_character_and_nothing_else() -> None:
    """The check is a regular expression; the rule it stands for is the character loop."""
    from app.domain import bounds, suppression

    for pattern in (suppression._SPACE_OR_CONTROL, bounds._SPACE_OR_CONTROL):
        differing = [
            hex(code)
            for code in range(sys.maxunicode + 1)
            if (chr(code).isspace() or code < 0x20 or code == 0x7F)
            != bool(pattern.search(chr(code)))
        ]
        assert differing == []
