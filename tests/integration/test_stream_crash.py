"""Crash and failover of real worker processes: kill -9 mid-stream, two workers sharing partitions.

Every PostgreSQL count and every Faust table count must equal what was produced.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from collections import Counter
from functools import partial

from sqlalchemy import create_engine, text

from harness.kafka import produce
from harness.stream import (
    StreamEnv,
    Worker,
    event,
    like_counts_in_db,
    total_likes_in_db,
)
from harness.waiting import wait_for

log = logging.getLogger(__name__)

Key = tuple[uuid.UUID, uuid.UUID]
Item = tuple[str, str, bytes]  # (topic, key, value), as produce() takes them


def _likes(s: StreamEnv, keys: list[Key], n: int, seed: int) -> tuple[list[Item], Counter[Key]]:
    rng = random.Random(seed)
    picked = [rng.choice(keys) for _ in range(n)]
    items = [(s.liked, str(u), event(u, c, "liked", "daily")) for u, c in picked]
    return items, Counter(picked)


def _produce_slowly(
    s: StreamEnv, items: list[Item], *, slices: int, pause: float
) -> threading.Thread:
    """Produce in slices with pauses from a thread, so kills land while events still arrive."""

    def run() -> None:
        size = -(-len(items) // slices)
        for start in range(0, len(items), size):
            produce(s.settings, items[start : start + size])
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _likes_reach(total: int) -> bool:
    return total_likes_in_db() >= total


def _table_matches(worker: Worker, expected: Counter[Key]) -> bool:
    users: dict[str, dict[str, int]] = {}
    for (user, content), count in expected.items():
        users.setdefault(str(user), {})[str(content)] = count
    try:
        return all(worker.get(f"/likes/{u}/")["counts"] == c for u, c in users.items())
    except OSError:
        return False  # the worker is between generations: not serving yet


def _replayed(worker: Worker) -> int:
    return sum(int(n) for n in re.findall(r"skipped (\d+) replayed records", worker.log_text()))


def test_kill_9_three_times_loses_nothing_and_counts_nothing_twice(stream_env: StreamEnv) -> None:
    s = stream_env
    keys = [(uuid.uuid4(), uuid.uuid4()) for _ in range(300)]
    items, expected = _likes(s, keys, 50_000, seed=1)
    worker = s.worker()
    worker.wait_ready()
    started = time.monotonic()
    # Faster than the worker applies them: it is busy (mid-batch) whenever a kill lands.
    producing = _produce_slowly(s, items, slices=10, pause=1.0)

    kills = []
    rng = random.Random(4)
    for threshold in (10_000, 22_000, 34_000):
        wait_for(partial(_likes_reach, threshold), timeout=90, what=f"{threshold}")
        # Anywhere in the cycle: mid-transaction, between commit and table, before Kafka's commit.
        time.sleep(rng.uniform(0, 0.6))
        worker.kill9()
        kills.append(total_likes_in_db())
        worker.start()
    producing.join(120)
    assert not producing.is_alive()

    wait_for(lambda: total_likes_in_db() >= 50_000, timeout=120, what="all 50,000 likes")
    assert like_counts_in_db() == expected
    assert all(k < 50_000 for k in kills), f"a kill came after the stream had ended: {kills}"
    worker.wait_ready()
    wait_for(lambda: _table_matches(worker, expected), timeout=60, what="Faust table counts")
    assert worker.get("/likes/")["size"] == len(expected)
    log.warning(
        f"crash test: kills at PostgreSQL totals {kills}, {worker.starts} starts "
        f"({worker.stall_restarts} after a stall), "
        f"{_replayed(worker)} replayed events skipped, {time.monotonic() - started:.0f} s"
    )


def test_two_workers_share_partitions_and_one_takes_over(stream_env: StreamEnv) -> None:
    s = stream_env
    keys = [(uuid.uuid4(), uuid.uuid4()) for _ in range(200)]
    first, expected = _likes(s, keys, 5_000, seed=2)
    second, more = _likes(s, keys, 15_000, seed=3)
    w1, w2 = s.worker("w1"), s.worker("w2")

    def split() -> bool:
        a, b = w1.partitions(), w2.partitions()
        return bool(a and b and not set(a) & set(b) and sorted(a + b) == [0, 1, 2, 3])

    wait_for(split, timeout=90, every=0.5, what="partitions split between two workers")
    produce(s.settings, first)
    wait_for(lambda: like_counts_in_db() == expected, timeout=60, what="first 5,000 likes")
    # Either worker answers for every user: table_route forwards to the partition owner.
    wait_for(lambda: _table_matches(w1, expected), timeout=30, what="table via w1")
    assert _table_matches(w2, expected)

    producing = _produce_slowly(s, second, slices=15, pause=0.5)
    wait_for(lambda: total_likes_in_db() >= 9_000, timeout=60, what="second wave under way")
    w1.kill9()
    wait_for(lambda: w2.partitions() == [0, 1, 2, 3], timeout=60, every=0.5, what="takeover")
    producing.join(120)
    expected += more
    wait_for(lambda: total_likes_in_db() >= 20_000, timeout=90, what="all 20,000 likes")
    assert like_counts_in_db() == expected
    wait_for(lambda: _table_matches(w2, expected), timeout=60, what="table via the survivor")
    assert w2.starts == 1 and w2.alive()


def test_a_stalled_worker_exits_and_its_restart_loses_nothing(stream_env: StreamEnv) -> None:
    s = stream_env
    keys = [(uuid.uuid4(), uuid.uuid4()) for _ in range(50)]
    first, expected = _likes(s, keys, 2_000, seed=5)
    worker = s.worker()
    worker.wait_ready()
    produce(s.settings, first)
    wait_for(lambda: total_likes_in_db() >= 2_000, timeout=60, what="the first 2,000 likes")

    # Hold the group's offset rows: every batch now waits on the lock, so no progress is made
    # while events wait, which is what a stalled consumer looks like from the outside.
    engine = create_engine(s.settings.database_url)
    with engine.connect() as conn, conn.begin():
        conn.execute(
            text("SELECT 1 FROM stream_offsets WHERE group_id = :g FOR UPDATE"), {"g": s.prefix}
        )
        second, more = _likes(s, keys, 1_000, seed=6)
        produce(s.settings, second)
        wait_for(lambda: worker.stall_restarts >= 1, timeout=60, what="the stall watchdog exit")
    engine.dispose()
    assert "stream stalled" in worker.log_text()

    wait_for(lambda: total_likes_in_db() >= 3_000, timeout=90, what="all 3,000 likes")
    assert like_counts_in_db() == expected + more
    worker.wait_ready()
    wait_for(lambda: _table_matches(worker, expected + more), timeout=60, what="table counts")
