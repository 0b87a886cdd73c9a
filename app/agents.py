"""The Faust agents and timer of the stream worker: thin, each calls one function of app/stream.

Agent, table and topic names are part of the deployment (Faust's web view and metrics show them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import cast

from faust import Stream
from faust.types import EventT, StreamT

from app.stream import table_reseed, topics, watchdog
from app.stream.batches import HOLD_POLL_S, changelog_writer, release_parked, run_batch
from app.stream.faust_app import app, settings
from app.tables import like_counts


def _batches(
    stream: StreamT[bytes], within: float | None = None
) -> AsyncIterator[Sequence[EventT[bytes]]]:
    within = within if within is not None else settings.ingest_batch_within_s
    # An agent is handed a Stream; StreamT, the type Faust gives agents, lacks take_events.
    return cast(Stream[bytes], stream).take_events(settings.ingest_batch_size, within=within)


@app.agent(topics.user_registered, name="ingest_registrations")
async def ingest_registrations(stream: StreamT[bytes]) -> None:
    """Create welcome notifications and send them now."""
    async for events in _batches(stream):
        await run_batch("user_registered", events, like_counts)


@app.agent(topics.comment_liked, name="ingest_likes")
async def ingest_likes(stream: StreamT[bytes]) -> None:
    """Count likes per user and content in PostgreSQL; mirror the counts in the table."""
    async for events in _batches(stream, settings.ingest_likes_batch_within_s):
        await run_batch("comment_liked", events, like_counts)


@app.agent(topics.mailing, name="ingest_mailings")
async def ingest_mailings(stream: StreamT[bytes]) -> None:
    """Create or replace mailing texts; send `once` mailings now."""
    async for events in _batches(stream):
        await run_batch("mailing", events, like_counts)


@app.timer(interval=5.0)
async def stall_watchdog() -> None:
    """Exit when a partition of ours holds events but its applied offset has stopped moving."""
    await watchdog.check()


@app.timer(interval=HOLD_POLL_S)
async def retry_parked_partitions() -> None:
    """Apply the parked records of blocked partitions once an operator has reset them."""
    await release_parked(like_counts)


@app.timer(interval=5.0)
async def refill_set_aside_likes() -> None:
    """Fill like-table partitions whose local store was set aside with PostgreSQL's counts."""
    await table_reseed.reseed(like_counts, changelog_writer)
