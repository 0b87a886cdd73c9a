"""Suppressed addresses: which address is the same address, what each reason reads as on a
timeline, when soft bounces add up, and the CSV an operator exports and imports. Pure.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime

from app.domain.vocabulary import SUPPRESSION_REASONS, SuppressionReason, one_of

# RFC 5321's limit on a path: an address longer than this is no address.
MAX_ADDRESS_CHARS = 320
# White space (str.isspace's, which re's \s is) or a control character: a regex, not a loop over
# the characters, as planning normalises a chunk's thousand addresses.
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
MAX_DETAIL_CHARS = 500
CSV_FIELDS = ("address", "reason", "detail", "first_event_at", "last_event_at", "source")

# How a reason reads after "skipped: the address is suppressed: " (with the date it happened).
_WHAT_HAPPENED: dict[SuppressionReason, str] = {
    "hard bounce": "it bounced on {day}",
    "soft bounces": "it bounced again and again, last on {day}",
    "spam report": "a mail to it was reported as spam on {day}",
    "invalid address": "it was refused as an invalid address on {day}",
    "blocked": "the provider blocked it on {day}",
    "manual": "an operator suppressed it on {day}",
}


class AddressInvalid(ValueError):
    """Not an e-mail address one could suppress."""


def normalise_address(raw: str) -> str:
    """The form an address is stored and compared in: trimmed, lower case.

    Mailbox providers treat the local part without regard to case, and so do the providers'
    own suppression lists: `Bob@Example.com` and `bob@example.com` bounce together.
    """
    address = raw.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or len(address) > MAX_ADDRESS_CHARS:
        raise AddressInvalid(f"{raw[:80]!r} is not an e-mail address")
    if _SPACE_OR_CONTROL.search(address):
        raise AddressInvalid(f"{raw[:80]!r} holds a space or a control character")
    return address


def normalised_or_none(raw: str | None) -> str | None:
    """The normalised address, or None for what is no address (nothing is suppressed under it)."""
    try:
        return normalise_address(raw) if raw else None
    except AddressInvalid:
        return None


@dataclass(frozen=True, slots=True)
class Suppression:
    """Why an address gets no more mail, since when, and what was said about it last."""

    address: str
    reason: SuppressionReason
    first_event_at: datetime
    last_event_at: datetime
    detail: str | None = None
    source: str = "manual"


def skip_detail(suppression: Suppression) -> str:
    """What a skipped delivery's reason says after "address suppressed: "."""
    day = suppression.last_event_at.date().isoformat()
    said = _WHAT_HAPPENED[suppression.reason].format(day=day)
    if suppression.detail:
        said += f" ({suppression.detail[:200]})"
    return said


def clip_detail(detail: str | None) -> str | None:
    """A provider's text as stored: no NUL (PostgreSQL text refuses it), at most 500 chars."""
    if not detail:
        return None
    return detail.replace("\x00", "")[:MAX_DETAIL_CHARS] or None


def soft_bounces_suppress(count_in_window: int, threshold: int) -> bool:
    """Whether this many soft bounces within the window make the address suppressed."""
    return count_in_window >= threshold


@dataclass(frozen=True, slots=True)
class ImportedRow:
    """One row of an imported CSV: an address, and why it is suppressed."""

    address: str
    reason: SuppressionReason
    detail: str | None


def read_csv(text: str, *, max_rows: int = 100_000) -> tuple[list[ImportedRow], list[str]]:
    """The rows of an import (a header with `address`, optionally `reason` and `detail`), and a
    line per refused row: one bad row refuses that row, not the file."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = [f.strip() for f in reader.fieldnames or ()]
    except csv.Error as exc:
        return [], [f"the header is not CSV: {exc}"]
    if "address" not in header:
        return [], ["the file has no `address` column in its header"]
    rows: list[ImportedRow] = []
    problems: list[str] = []
    while True:
        try:
            raw = next(reader, None)
        except csv.Error as exc:  # a broken quote: the rest of the file cannot be read apart
            problems.append(f"line {reader.line_num}: not CSV ({exc}); the rest is left out")
            break
        if raw is None:
            break
        if len(rows) >= max_rows:
            problems.append(f"line {reader.line_num} and after: over {max_rows} rows, left out")
            break
        row = _imported(raw)
        if isinstance(row, str):
            problems.append(f"line {reader.line_num}: {row}")
        else:
            rows.append(row)
    return rows, problems


def _imported(raw: dict[str | None, object]) -> ImportedRow | str:
    """One row as an ImportedRow, or why it is refused."""
    fields = {
        (k or "").strip(): _csv_unsafe(str(v or "").strip())
        for k, v in raw.items()
        if isinstance(k, str) and isinstance(v, str | None)
    }
    try:
        address = normalise_address(fields.get("address", ""))
        reason = one_of(fields.get("reason") or "manual", SUPPRESSION_REASONS, "reason")
    except ValueError as exc:
        return str(exc)
    return ImportedRow(address, reason, clip_detail(fields.get("detail")))


def write_csv(suppressions: list[Suppression]) -> str:
    """Every suppression as CSV, in the columns `read_csv` takes back."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for s in suppressions:
        writer.writerow(
            (
                _csv_safe(s.address),
                s.reason,
                _csv_safe(s.detail or ""),
                s.first_event_at.isoformat(),
                s.last_event_at.isoformat(),
                _csv_safe(s.source),
            )
        )
    return out.getvalue()


# A cell starting with one of these is a formula to a spreadsheet (CSV injection): a provider's
# bounce text is not ours to have evaluated on an operator's machine. Such a cell is written
# behind a quote mark, which reading takes off again.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _csv_unsafe(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_STARTS) else value
