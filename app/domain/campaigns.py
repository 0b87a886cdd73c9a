"""Mailing campaigns' rules: an audience read from pasted ids and a CSV, a schedule read from the
form, a draft checked, recipients' states folded into progress. Pure: no I/O.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.domain.vocabulary import PERIODICITIES, CampaignStatus, CapPolicy, Periodicity, statuses_in

MAX_CONTENT_CHARS = 50_000  # schemas/mailing.json: content_value maxLength
_SEPARATORS = re.compile(r"[\s,;]+")
_ID_HEADERS = {"user_id", "userid", "user", "id", "uuid"}

# Delivery states folded into the progress buckets by the vocabulary's outcome groups, and the
# state of a notification that never got a delivery (skipped before planning).
SENT_STATES = frozenset(statuses_in("sent"))
FAILED_STATES = frozenset(statuses_in("failed"))
SKIPPED_STATES = frozenset({*statuses_in("skipped"), "notified:skipped"})
CANCELLED_STATES = frozenset(statuses_in("cancelled"))


class CampaignError(ValueError):
    """A campaign request we refuse; the message is meant for the person who made it."""


class CampaignInvalid(CampaignError):
    """The campaign's fields or audience are not acceptable."""


class CampaignStateError(CampaignError):
    """The campaign is not in a state that allows the action."""


@dataclass(frozen=True, slots=True)
class Audience:
    """Recipients parsed from pasted text and/or a CSV: valid ids (unique, in order), the rest."""

    valid: tuple[uuid.UUID, ...]
    invalid: tuple[str, ...]


def _audience_tokens(pasted: str, csv_data: bytes | None) -> Iterator[str]:
    yield from (token for token in _SEPARATORS.split(pasted.replace("\x00", "")) if token)
    if not csv_data:
        return
    # No NUL: PostgreSQL could not store it among the invalid entries listed back.
    text = csv_data.decode("utf-8-sig", errors="replace").replace("\x00", "")
    try:
        # newline="": the csv module's own line handling (a bare carriage return included).
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:  # a malformed quote, say: read it as lines of ids, one per line
        rows = [[line] for line in text.splitlines()]
    column = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        named = [i for i, cell in enumerate(header) if cell in _ID_HEADERS]
        if named:
            column, rows = named[0], rows[1:]
    for row in rows:
        if len(row) > column and row[column].strip():
            yield row[column].strip()


def parse_audience(pasted: str = "", csv_data: bytes | None = None) -> Audience:
    """Read user ids from pasted text (any separators) and a CSV (a user_id column or the first)."""
    valid: dict[uuid.UUID, None] = {}
    invalid: dict[str, None] = {}
    for token in _audience_tokens(pasted, csv_data):
        try:
            valid[uuid.UUID(token)] = None
        except ValueError:
            invalid[token[:100]] = None
    return Audience(valid=tuple(valid), invalid=tuple(invalid))


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a campaign's mail goes: at one instant, or at a local hour on a day in each
    recipient's own zone. Quiet hours move either out of the night where it would be."""

    send_at: datetime | None = None
    local_date: date | None = None
    local_hour: int | None = None

    def describe(self) -> str:
        if self.send_at is not None:
            return f"at {self.send_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        return f"at {self.local_hour:02d}:00 on {self.local_date} in each recipient's time zone"


def parse_schedule(
    when: str, send_at: str = "", local_date: str = "", local_hour: str = ""
) -> Schedule | None:
    """The schedule of the form's fields: `when` is now, at (an ISO time, UTC unless it says
    otherwise) or local (a date and an hour 0-23); raise CampaignInvalid."""
    try:
        if when in ("", "now"):
            return None
        if when == "at":
            instant = datetime.fromisoformat(send_at.strip())
            return Schedule(send_at=instant if instant.tzinfo else instant.replace(tzinfo=UTC))
        if when == "local":
            hour = int(local_hour)
            if not 0 <= hour <= 23:
                raise ValueError("the hour must be 0 to 23")
            return Schedule(local_date=date.fromisoformat(local_date.strip()), local_hour=hour)
    except ValueError as exc:
        raise CampaignInvalid(f"the schedule is not valid: {exc}") from exc
    raise CampaignInvalid(f"unknown schedule {when!r}: now, at or local")


@dataclass(frozen=True, slots=True)
class Draft:
    """The fields of a new campaign as entered."""

    name: str
    template_id: uuid.UUID
    content_value: str
    periodicity: Periodicity
    schedule: Schedule | None = None
    cap_policy: CapPolicy = "hold"  # over a recipient's frequency cap


def validate_draft(draft: Draft, audience: Audience, now: datetime) -> None:
    """Raise CampaignInvalid with every problem found."""
    problems = []
    if not draft.name.strip():
        problems.append("the name is empty")
    if draft.periodicity not in PERIODICITIES:
        problems.append(f"periodicity must be one of {', '.join(PERIODICITIES)}")
    if len(draft.content_value) > MAX_CONTENT_CHARS:
        problems.append(f"the text is longer than {MAX_CONTENT_CHARS} characters")
    if not audience.valid:
        problems.append("the audience has no valid user id")
    problems += _schedule_problems(draft, now)
    if problems:
        raise CampaignInvalid("; ".join(problems))


def _schedule_problems(draft: Draft, now: datetime) -> list[str]:
    schedule = draft.schedule
    if schedule is None:
        return []
    problems = []
    if draft.periodicity != "once":
        problems.append("only a `once` campaign can be scheduled (digests go at the send hour)")
    if schedule.send_at is not None and schedule.send_at <= now:
        problems.append("the send time is in the past")
    # The last zones to reach a day are a day behind UTC: a date before yesterday is past
    # for everyone.
    if schedule.local_date is not None and schedule.local_date < (now - timedelta(days=1)).date():
        problems.append("that day is over in every time zone")
    return problems


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a campaign's recipients are, out of `total`."""

    total: int
    published: int
    notified: int
    sent: int
    failed: int
    skipped: int
    cancelled: int
    # When its waiting mail should all be out (the send rate and the queue ahead allowing);
    # None when none waits.
    eta: datetime | None = None

    @property
    def waiting(self) -> int:
        """Notified but with no final outcome yet."""
        return self.notified - self.sent - self.failed - self.skipped - self.cancelled

    def percent(self, count: int) -> float:
        """`count` as a percentage of the total (0 for an empty campaign)."""
        return round(100.0 * count / self.total, 1) if self.total else 0.0

    @property
    def done(self) -> int:
        """Recipients with a final outcome."""
        return self.sent + self.failed + self.skipped + self.cancelled

    def counts(self) -> dict[str, int]:
        """Every bucket by name, `waiting` included: what the progress API answers."""
        return {bucket: getattr(self, bucket) for bucket in PROGRESS_COUNTS}

    def percents(self) -> dict[str, float]:
        """The buckets the page draws, each as a percentage of the total."""
        return {bucket: self.percent(getattr(self, bucket)) for bucket in PROGRESS_PERCENTS}

    def answer(self, status: CampaignStatus) -> dict[str, Any]:
        """The progress API's answer for a campaign in `status`."""
        return {
            "status": status,
            **self.counts(),
            "percent": self.percents(),
            "eta": self.eta.isoformat() if self.eta else None,
        }


# The progress API's fields, defined once: its response model is built from these.
PROGRESS_COUNTS = (
    "total",
    "published",
    "notified",
    "sent",
    "failed",
    "skipped",
    "cancelled",
    "waiting",
)
PROGRESS_PERCENTS = ("sent", "failed", "skipped", "cancelled", "waiting", "published", "notified")


def progress_of(total: int, published: int, states: Mapping[str, int]) -> Progress:
    """Fold per-state notification counts into the progress buckets."""

    def count(states_in: frozenset[str]) -> int:
        return sum(n for state, n in states.items() if state in states_in)

    return Progress(
        total=total,
        published=published,
        notified=sum(states.values()),
        sent=count(SENT_STATES),
        failed=count(FAILED_STATES),
        skipped=count(SKIPPED_STATES),
        cancelled=count(CANCELLED_STATES),
    )


def test_recipient_allowed(address: str, allowed: str) -> bool:
    """Whether PORTAL_TEST_RECIPIENTS (addresses and @domains, comma-separated) has `address`."""
    address = address.casefold()
    domain = "@" + address.rpartition("@")[2]
    entries = {entry.strip().casefold() for entry in allowed.split(",") if entry.strip()}
    return address in entries or domain in entries
