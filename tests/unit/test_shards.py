"""Planning shards: the id space cut into ranges that cover it once, sized from the row count."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.jobs.shards import EVERY_ID, shard_count, shard_range

ids = st.integers(min_value=0, max_value=(1 << 128) - 1).map(lambda n: uuid.UUID(int=n))


@given(shards=st.integers(min_value=1, max_value=1024), notification_id=ids)
def test_every_id_is_in_exactly_one_shard(shards: int, notification_id: uuid.UUID) -> None:
    owners = [s for s in range(shards) if notification_id in shard_range(s, shards)]
    assert len(owners) == 1


@given(shards=st.integers(min_value=1, max_value=1024))
def test_shards_are_contiguous_and_open_at_both_ends(shards: int) -> None:
    ranges = [shard_range(s, shards) for s in range(shards)]
    assert ranges[0].low is None and ranges[-1].high is None
    for before, after in zip(ranges, ranges[1:], strict=False):
        assert before.high is not None and before.high == after.low
    assert shard_range(0, 1) == EVERY_ID


def test_uuid4_ids_spread_evenly_over_the_shards() -> None:
    counts = [0] * 8
    for _ in range(8000):
        notification_id = uuid.uuid4()
        counts[next(s for s in range(8) if notification_id in shard_range(s, 8))] += 1
    assert min(counts) > 800 and max(counts) < 1200  # 1000 each expected; 6+ sigma apart


@pytest.mark.parametrize(
    ("rows", "expected"),
    [(0, 1), (1, 1), (50_000, 1), (50_001, 2), (1_000_000, 20), (10_000_000, 64)],
)
def test_shard_count_follows_the_rows_within_its_bounds(rows: int, expected: int) -> None:
    assert shard_count(rows, rows_per_shard=50_000, max_shards=64) == expected


def test_a_shard_outside_its_run_is_refused() -> None:
    for shard, shards in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError):
            shard_range(shard, shards)
