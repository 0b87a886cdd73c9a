"""`notify suppressions ...`: the addresses that get no more mail, listed, added, lifted,
imported from and exported to CSV (the same as the portal's page)."""

from __future__ import annotations

import sys
from typing import TextIO

import click

from app.domain.vocabulary import SUPPRESSION_REASONS, SuppressionReason, one_of


@click.group("suppressions")
def suppressions_group() -> None:
    """Addresses that get no more mail: hard bounces, spam reports, invalid, blocked, manual."""


@suppressions_group.command("list")
@click.option("--search", "query", default="", help="Only addresses (or details) containing this.")
@click.option("--reason", type=click.Choice(SUPPRESSION_REASONS), help="Only this reason.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--csv", "as_csv", is_flag=True, help="Every column, as CSV (what `import` reads).")
def suppressions_list(query: str, reason: str | None, limit: int, as_csv: bool) -> None:
    """List suppressed addresses, the latest event first."""
    from app.db import suppressions
    from app.db.session import session_scope
    from app.domain.suppression import write_csv

    with session_scope() as session:
        found = suppressions.search(session=session, query=query, reason=reason, limit=limit)
    if as_csv:
        click.echo(write_csv(found), nl=False)
        return
    for s in found:
        when = s.last_event_at.strftime("%Y-%m-%d %H:%M")
        click.echo(f"{s.address:<40}  {s.reason:<16}  {when}  {s.source:<12}  {s.detail or ''}")
    click.echo(f"{len(found)} suppressed addresses")


@suppressions_group.command("add")
@click.argument("address")
@click.option(
    "--reason", type=click.Choice(SUPPRESSION_REASONS), default="manual", show_default=True
)
@click.option("--detail", help="Why, for whoever reads it later.")
def suppressions_add(address: str, reason: str, detail: str | None) -> None:
    """Suppress ADDRESS: no mail goes to it from the next planning on."""
    from app.core.clock import utcnow
    from app.db import suppressions
    from app.db.session import session_scope
    from app.domain.suppression import AddressInvalid

    chosen: SuppressionReason = one_of(reason, SUPPRESSION_REASONS, "reason")
    try:
        with session_scope() as session:
            new = suppressions.suppress(
                session=session,
                address=address,
                reason=chosen,
                at=utcnow(),
                source="cli",
                detail=detail,
            )
    except AddressInvalid as exc:
        raise click.BadParameter(str(exc), param_hint="ADDRESS") from exc
    click.echo(f"{'suppressed' if new else 'already suppressed (updated)'}: {address}")


@suppressions_group.command("remove")
@click.argument("address")
def suppressions_remove(address: str) -> None:
    """Lift the suppression of ADDRESS (its soft bounces are forgotten too)."""
    from app.db import suppressions
    from app.db.session import session_scope
    from app.domain.suppression import AddressInvalid

    try:
        with session_scope() as session:
            lifted = suppressions.lift(session=session, address=address)
    except AddressInvalid as exc:
        raise click.BadParameter(str(exc), param_hint="ADDRESS") from exc
    if lifted is None:
        raise click.ClickException(f"{address} is not suppressed")
    click.echo(f"lifted: {lifted.address} (was {lifted.reason} since {lifted.first_event_at:%F})")


@suppressions_group.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8-sig"))
def suppressions_import(file: TextIO) -> None:
    """Suppress the addresses of a CSV FILE (`-` for stdin): a header with `address`, and
    optionally `reason` and `detail`. A bad row is reported and left out; the rest go in."""
    from app.core.clock import utcnow
    from app.db import suppressions
    from app.db.session import session_scope
    from app.domain.suppression import read_csv

    rows, problems = read_csv(file.read())
    for problem in problems:
        click.echo(f"left out: {problem}", err=True)
    with session_scope() as session:
        added = suppressions.suppress_many(
            session=session,
            rows=[(r.address, r.reason, r.detail) for r in rows],
            at=utcnow(),
            source="import",
        )
    click.echo(f"{len(rows)} rows read, {added} newly suppressed, {len(problems)} left out")
    if problems and not rows:
        sys.exit(1)


COMMANDS = (suppressions_group,)
