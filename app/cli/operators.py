"""Operators' actions: a user's story, dead letters, deliveries to retry, stream offsets, portal
users."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

import click

from app.config import get_settings
from app.domain.vocabulary import DEAD_LETTER_STATUSES, PORTAL_ROLES, PortalRole, one_of


def _since(value: str | None) -> datetime | None:
    """`--since`: an ISO time, or an age such as 30m, 2h, 7d."""
    from datetime import UTC, datetime, timedelta

    from dateutil.parser import isoparse

    if value is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        found = isoparse(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: use an ISO time or an age like 2h") from exc
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@click.group("dead-letters")
def dead_letters_group() -> None:
    """Input events that could not be applied: list them, replay them after a fix."""


@dead_letters_group.command("list")
@click.option("--reason", help="Only this reason (e.g. not_json, db_refused, missing_template).")
@click.option("--since", help="Only newer ones: an ISO time or an age like 2h.")
@click.option(
    "--status", type=click.Choice(["dead", "replayed", "all"]), default="dead", show_default=True
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
def dead_letters_list(reason: str | None, since: str | None, status: str, limit: int) -> None:
    """List dead letters, oldest first: id, source position, reason, age, error."""
    from datetime import UTC, datetime

    from app.db import dead_letters
    from app.db.session import session_scope

    with session_scope() as session:
        letters = dead_letters.select(
            session=session,
            status=None if status == "all" else one_of(status, DEAD_LETTER_STATUSES, "status"),
            reason=reason,
            since=_since(since),
            limit=limit,
        )
    now = datetime.now(UTC)
    click.echo(f"{'id':>8}  {'status':<8}  {'source':<40}  {'reason':<16}  {'age':>8}  error")
    for d in letters:
        source = f"{d.source_topic}[{d.source_partition}]@{d.source_offset}"
        age = _age((now - d.created_at).total_seconds())
        click.echo(
            f"{d.dead_letter_id:>8}  {d.status:<8}  {source:<40}  {d.reason:<16}  "
            f"{age:>8}  {d.error[:120]}"
        )
    click.echo(f"{len(letters)} dead letters")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


@dead_letters_group.command("replay")
@click.option("--reason", help="Only this reason.")
@click.option("--since", help="Only newer ones: an ISO time or an age like 2h.")
@click.option("--id", "ids", multiple=True, type=int, help="Only these ids (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=None)
def dead_letters_replay(
    reason: str | None, since: str | None, ids: tuple[int, ...], limit: int | None
) -> None:
    """Re-publish dead letters to their source topic, once each (after fixing the cause)."""
    from app.stream.operations import replay_dead_letters

    report = replay_dead_letters(
        get_settings(), reason=reason, since=_since(since), ids=ids or None, limit=limit
    )
    click.echo(f"replayed {len(report.published)} of {report.selected} dead letters")
    for dead_letter_id, error in sorted(report.failed.items()):
        click.echo(f"  not published: {dead_letter_id}: {error}", err=True)
    if report.failed:
        raise SystemExit(1)


@click.group("deliveries")
def deliveries_group() -> None:
    """E-mail deliveries."""


@deliveries_group.command("retry")
@click.option("--id", "ids", multiple=True, type=click.UUID, help="Only these (repeatable).")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["failed", "skipped"]),
    default=("failed",),
    show_default=True,
)
@click.option("--since", help="Only those updated since: an ISO time or an age like 2h.")
@click.option("--error-contains", help="Only those whose error contains this text.")
def deliveries_retry(
    ids: tuple[uuid.UUID, ...],
    statuses: tuple[str, ...],
    since: str | None,
    error_contains: str | None,
) -> None:
    """Plan failed (or skipped) deliveries again, after fixing the cause."""
    from app.delivery.retry import retry_deliveries

    count = retry_deliveries(
        delivery_ids=ids or None,
        statuses=statuses,
        since=_since(since),
        error_contains=error_contains,
    )
    click.echo(f"retry requested for {count} deliveries")


@click.group("offsets")
def offsets_group() -> None:
    """The stream's stored offsets per consumer group and partition."""


@offsets_group.command("list")
@click.option("--group", help="Only this consumer group (FAUST_APP_ID).")
def offsets_list(group: str | None) -> None:
    """Show each partition's applied offset, and why a blocked one waits."""
    from app.db import stream_offsets
    from app.db.session import session_scope

    with session_scope() as session:
        rows = stream_offsets.list_offsets(session=session, group_id=group)
    for r in rows:
        offset = "-" if r.offset is None else str(r.offset)
        state = f"BLOCKED: {r.blocked_reason}" if r.blocked_reason else "ok"
        click.echo(f"{r.group_id}  {r.topic}[{r.partition}]  {offset:>10}  {state}")


@offsets_group.command("reset")
@click.option("--topic", required=True)
@click.option("--partition", "partitions", multiple=True, type=int, help="Default: all.")
@click.option("--to-start", "to", flag_value="start", help="Apply the whole log as it is now.")
@click.option("--to-end", "to", flag_value="end", help="Skip what the log holds now.")
@click.option(
    "--to-stored",
    "to",
    flag_value="stored",
    help="Keep the stored offsets (or --from-group's) and accept the topic as it is.",
)
@click.option("--from-group", help="With --to-stored: take this group's offsets (old app id).")
@click.option("--group", help="The group to reset (default: FAUST_APP_ID).")
def offsets_reset(
    topic: str,
    partitions: tuple[int, ...],
    to: str | None,
    from_group: str | None,
    group: str | None,
) -> None:
    """Say where the stream goes on in TOPIC, and unblock its partitions."""
    from app.stream.operations import ResetTarget, reset_offsets

    if to is None:
        raise click.UsageError("choose one of --to-start, --to-end, --to-stored")
    if from_group and to != "stored":
        raise click.UsageError("--from-group goes with --to-stored")
    try:
        resets = reset_offsets(
            get_settings(),
            topic=topic,
            to=cast(ResetTarget, to),  # one of the three flag values above
            partitions=partitions,
            group_id=group,
            from_group=from_group,
        )
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    for r in resets:
        before = "-" if r.before is None else r.before
        was = f"  (was blocked: {r.blocked_reason})" if r.blocked_reason else ""
        click.echo(f"{r.topic}[{r.partition}]: {before} -> {r.after}{was}")


@click.group()
def admin() -> None:
    """Admin portal users."""


@admin.command("create-user")
@click.argument("username")
@click.password_option(help="Prompted (twice, hidden) when not given.")
@click.option(
    "--role",
    type=click.Choice(PORTAL_ROLES),
    default=None,
    help="viewer, editor or admin. A new user is an admin unless given; an existing one keeps "
    "their role.",
)
def admin_create_user(username: str, password: str, role: PortalRole | None) -> None:
    """Create a portal user, or set a new password for an existing one (ending their sessions)."""
    from app.db.admin_users import create_or_replace
    from app.db.session import session_scope
    from app.portal.auth import hash_password

    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--password")
    with session_scope() as session:
        created = create_or_replace(
            session=session,
            username=username.strip(),
            password_hash=hash_password(password),
            role=role,
        )
    click.echo(f"admin user {username.strip()} {'created' if created else 'updated'}")


@click.command("explain")
@click.argument("user")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(min=1))
def explain(user: str, limit: int) -> None:
    """Why USER got (or did not get) mail: a user id or e-mail address, its whole story.

    The same story as the portal's page /admin/users/USER_ID.
    """
    from app.db import timeline as store
    from app.db.session import session_scope
    from app.domain import timeline

    with session_scope() as session:
        users = store.find_users(session=session, query=user)
        if not users:
            raise click.ClickException(f"{user!r}: not a user id, and no mail went to that address")
        records = [store.load_user(session=session, user_id=u, limit=limit) for u in users]
    for record in records:
        addresses = ", ".join(record.emails) or "no address known yet"
        click.echo(f"user {record.user_id} ({addresses})")
        entries = timeline.build(record)
        for entry in entries:
            click.echo(f"  {entry.line()}")
        if not entries:
            click.echo("  nothing stored for this user: no event received, no mail planned")


COMMANDS = (explain, dead_letters_group, deliveries_group, offsets_group, admin)
