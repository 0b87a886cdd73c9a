"""The like table's RocksDB store, which heals when it disagrees with its changelog topic.

A partition's store remembers the changelog offset it has read. When the changelog is shorter
than that (deleted and created again, truncated, or the store was left by another cluster or
another checkout's test run), Faust refuses to start (`ConsistencyError`) on every start, for
good. The table is a mirror of PostgreSQL, so nothing in such a store is worth a crash loop:
it is set aside (renamed, the previous set-aside copy removed), logged and counted, and Faust
rebuilds the partition from the changelog; the mirror then fills it from PostgreSQL
(`table_mirror`, docs/stream-semantics.md). The changelog's topic id is kept in the store too,
so a store of another incarnation of the topic is found even when that one has grown longer.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from faust.stores import rocksdb
from faust.types import TP

from app.core import metrics
from app.stream.kafka_reads import end_offsets, topic_ids

log = logging.getLogger(__name__)

TOPIC_ID_KEY = b"__notify\0changelog_topic_id__"
SET_ASIDE_SUFFIX = ".set-aside"


def why_set_aside(
    persisted: int | None, stored_id: str | None, end_offset: int, topic_id: str | None
) -> str | None:
    """Why a store that read its changelog up to `persisted` cannot be trusted, or None."""
    if persisted is None:
        return None
    if stored_id and topic_id and stored_id != topic_id:
        return "another_topic"
    if persisted >= end_offset:
        return "ahead_of_changelog"
    return None


class Store(rocksdb.Store):
    """Faust's RocksDB store, checked against its changelog before recovery trusts it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._topic_ids: dict[str, str | None] = {}
        self._id_written: set[int] = set()
        # Partitions set aside since the last reseed from PostgreSQL (app/stream/table_reseed).
        self.set_aside: set[int] = set()

    def write_partition(self, partition: int, items: dict[bytes, int], offset: int) -> None:
        """Set keys of one partition and how far that covers the changelog (the reseed's write)."""
        db = self._db_for_partition(partition)
        for key, value in items.items():
            encoded = self._encode_key(key)
            db.put(encoded, self._encode_value(value))
            self._key_index[encoded] = partition
        self.set_persisted_offset(
            TP(self.table.changelog_topic.get_topic_name(), partition), offset
        )

    def _visible_keys(self, db: Any) -> Iterator[bytes]:
        # The topic id is ours, as the persisted offset is Faust's: no key of the table.
        return (key for key in super()._visible_keys(db) if key != TOPIC_ID_KEY)

    def _visible_items(self, db: Any) -> Iterator[tuple[bytes, bytes]]:
        return (item for item in super()._visible_items(db) if item[0] != TOPIC_ID_KEY)

    def persisted_offset(self, tp: TP) -> int | None:
        """The offset this partition's store has read, unless the changelog disagrees."""
        persisted = super().persisted_offset(tp)
        if persisted is None:
            return None
        try:
            end, topic_id = _changelog_state(tp.topic, tp.partition)
        except Exception as exc:  # noqa: BLE001 - Kafka unreachable: Faust's recovery waits too
            log.warning("%s: cannot compare the store with its changelog: %r", tp, exc)
            return persisted
        self._topic_ids[tp.topic] = topic_id
        raw_id = self._db_for_partition(tp.partition).get(TOPIC_ID_KEY)
        stored_id = raw_id.decode() if isinstance(raw_id, bytes) else None
        reason = why_set_aside(persisted, stored_id, end, topic_id)
        if reason is None:
            return persisted
        self._set_aside(tp, reason, f"store read up to {persisted}, the changelog ends at {end}")
        return None

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        super().set_persisted_offset(tp, offset)
        if tp.partition not in self._id_written:
            topic_id = self._topic_ids.get(tp.topic)
            if topic_id is None:
                try:
                    topic_id = self._topic_ids[tp.topic] = _changelog_state(tp.topic, 0)[1]
                except Exception:  # noqa: BLE001 - written with a later offset instead
                    return
            if topic_id:
                self._db_for_partition(tp.partition).put(TOPIC_ID_KEY, topic_id.encode())
                self._id_written.add(tp.partition)

    def _set_aside(self, tp: TP, reason: str, detail: str) -> None:
        db = self._dbs.pop(tp.partition, None)
        if db is not None and hasattr(db, "close"):
            db.close()
        path = Path(self.partition_path(tp.partition))
        aside = path.with_name(path.name + SET_ASIDE_SUFFIX)
        shutil.rmtree(aside, ignore_errors=True)
        if path.exists():
            path.rename(aside)
        self._id_written.discard(tp.partition)
        self.set_aside.add(tp.partition)
        for key in [k for k, p in self._key_index.items() if p == tp.partition]:
            del self._key_index[key]
        metrics.TABLE_STORES_SET_ASIDE.labels(self.table.name, reason).inc()
        log.warning(
            "%s: local table store set aside (%s: %s) at %s; rebuilding it from the changelog "
            "and PostgreSQL",
            tp,
            reason,
            detail,
            aside,
        )


def _changelog_state(topic: str, partition: int) -> tuple[int, str | None]:
    """The changelog partition's end offset and the topic's id, asked fresh from Kafka."""
    end = end_offsets([(topic, partition)])[(topic, partition)]
    topic_id = topic_ids([topic]).get(topic)
    return end, topic_id
