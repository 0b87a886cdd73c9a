"""After a table store was set aside: fill its partitions with PostgreSQL's counts.

Faust rebuilds a set-aside partition from the changelog. If the changelog itself was lost
(recreated, truncated), keys nobody likes again would stay missing from the table, though
PostgreSQL holds every count: once recovery is done, the partition's keys are written from
PostgreSQL through the mirror's own path (changelog first, then the store).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable

from aiokafka.partitioner import murmur2

from app.db import ingest as db_ingest
from app.db.session import session_scope
from app.stream import table_mirror
from app.stream.faust_app import app
from app.stream.table_store import Store

log = logging.getLogger(__name__)


def partition_of_user(user_id: uuid.UUID, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2) gives the key str(user_id)."""
    hashed: int = murmur2(str(user_id).encode())
    return (hashed & 0x7FFFFFFF) % partitions


def counts_of_partitions(
    rows: Iterable[tuple[uuid.UUID, uuid.UUID, int]], wanted: set[int], partitions: int
) -> dict[int, dict[bytes, int]]:
    """Like counts of PostgreSQL's rows, by table partition, for the wanted partitions."""
    found: dict[int, dict[bytes, int]] = {partition: {} for partition in wanted}
    for user_id, content_id, count in rows:
        partition = partition_of_user(user_id, partitions)
        if partition in wanted:
            found[partition][f"{user_id}:{content_id}".encode()] = count
    return found


def _load_counts() -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    with session_scope() as session:
        return db_ingest.all_like_counts(session=session)


async def reseed(table: table_mirror.Table, writer: table_mirror.ChangelogWriter) -> None:
    """Write PostgreSQL's counts into the partitions set aside, once recovery is done."""
    store = table.data
    if not isinstance(store, Store) or not store.set_aside:
        return
    # TableManagerT does not declare the recovery service every TableManager has.
    if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
        return  # Faust is still rebuilding from the changelog; the counts go on top, later
    topic = table.changelog_topic.get_topic_name()
    owned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    wanted = store.set_aside & owned
    store.set_aside.clear()  # the wanted ones are refilled now; the rest are their owner's
    if not wanted:
        return
    loop = asyncio.get_running_loop()
    rows = await loop.run_in_executor(None, _load_counts)
    partitions = table.changelog_topic.partitions or app.conf.topic_partitions
    for partition, counts in counts_of_partitions(rows, wanted, partitions).items():
        by_key = {key: (partition, count) for key, count in counts.items()}
        records = table_mirror.changelog_records(table, by_key)
        offsets = await loop.run_in_executor(None, writer.write, topic, records)
        if partition in offsets:
            store.write_partition(partition, counts, offsets[partition])
        log.warning(
            "like table partition %d refilled from PostgreSQL: %d keys", partition, len(counts)
        )
