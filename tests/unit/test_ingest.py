"""Pure parts of the ingest flow: decoding into events or dead letters with a bounded reason."""

from __future__ import annotations

import json
import uuid

import pytest

from app.stream.ingest import DeadLetter, Record, decode_records, reason_of, table_key

GOOD = {
    "user_id": "3f1c1f2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
    "periodicity": "daily",
    "content_id": "9b2e7c4d-1a2b-4c3d-9e8f-7a6b5c4d3e2f",
    "content_value": "https://x.example/1",
}


def _record(value: bytes | None, offset: int = 7) -> Record:
    return Record("ugc.comment_liked", 2, offset, b"key", value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{nope", "not_json"),
        (b"\xff\xfe", "not_json"),
        (None, "empty"),
        (json.dumps({**GOOD, "user_id": "u-1"}).encode(), "bad_uuid"),
        (json.dumps({**GOOD, "content_id": "c-1"}).encode(), "bad_uuid"),
        (json.dumps({**GOOD, "periodicity": "hourly"}).encode(), "bad_periodicity"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "user_id"}).encode(), "schema"),
        (json.dumps([1, 2]).encode(), "schema"),
        (json.dumps({**GOOD, "content_value": "x" * 400}).encode(), "too_large"),
    ],
)
def test_malformed_records_become_dead_letters_with_a_reason(
    value: bytes | None, reason: str
) -> None:
    accepted, dead = decode_records("comment_liked", [_record(value)], max_bytes=300)
    assert accepted == []
    assert [d.reason for d in dead] == [reason]
    assert dead[0].record.value == value


def test_valid_records_pass_in_order_and_extra_fields_are_ignored() -> None:
    records = [_record(json.dumps({**GOOD, "extra": i}).encode(), offset=i) for i in range(3)]
    accepted, dead = decode_records("comment_liked", records, max_bytes=65536)
    assert dead == []
    assert [r.offset for r, _ in accepted] == [0, 1, 2]
    assert accepted[0][1].user_id == uuid.UUID(GOOD["user_id"])


def test_dead_letter_headers_carry_the_source_position() -> None:
    letter = DeadLetter(_record(b"{nope", offset=41), "comment_liked: not JSON (x)", "not_json")
    assert dict(letter.headers()) == {
        "error": b"comment_liked: not JSON (x)",
        "reason": b"not_json",
        "source_topic": b"ugc.comment_liked",
        "source_partition": b"2",
        "source_offset": b"41",
    }


def test_reason_of_unknown_schema_errors_is_schema() -> None:
    assert reason_of("mailing: data.content_value must be string") == "schema"


def test_table_key_joins_user_and_content() -> None:
    user, content = uuid.uuid4(), uuid.uuid4()
    assert table_key(user, content) == f"{user}:{content}"


def test_lagging_partitions_ignore_a_trailing_transaction_marker() -> None:
    from app.stream.stall import lagging_partitions

    applied = {("t", 0): 99, ("t", 1): 41, ("t", 2): -1}
    ends = {("t", 0): 101, ("t", 1): 50, ("t", 2): 0, ("t", 3): 7}
    # t/0: only offset 100 past the applied 99 (may be a marker); t/2: empty; t/3: never applied.
    assert lagging_partitions(applied, ends) == [("t", 1), ("t", 3)]


def test_the_stream_worker_can_read_every_kafka_compression_codec() -> None:
    # Producers choose the codec (our campaign producer uses lz4); aiokafka needs cramjam for
    # lz4, zstd and snappy, and without it the fetcher crashes on the first such batch.
    from aiokafka import codec

    assert codec.has_lz4() and codec.has_zstd() and codec.has_snappy() and codec.has_gzip()


def test_a_partition_stalls_only_after_its_applied_offset_stays_put_past_the_timeout() -> None:
    from app.stream.stall import StallDetector

    detector = StallDetector(timeout=10)
    ends = {("t", 0): 100, ("t", 1): 100}
    assert detector.look({("t", 0): 50, ("t", 1): 50}, ends, now=0) == []
    # Partition 0 moves on, partition 1 does not: only partition 1 stalls.
    assert detector.look({("t", 0): 60, ("t", 1): 50}, ends, now=6) == []
    assert detector.look({("t", 0): 70, ("t", 1): 50}, ends, now=11) == [("t", 1)]
    assert detector.waiting_for(11) == 11


def test_progress_or_catching_up_resets_a_partitions_clock() -> None:
    from app.stream.stall import StallDetector

    detector = StallDetector(timeout=10)
    ends = {("t", 0): 100}
    detector.look({("t", 0): 50}, ends, now=0)
    detector.look({("t", 0): 51}, ends, now=9)  # moved: the clock starts again
    assert detector.look({("t", 0): 51}, ends, now=18) == []
    assert detector.look({("t", 0): 51}, ends, now=19.5) == [("t", 0)]
    detector.look({("t", 0): 98}, ends, now=20)  # caught up (99 is a transaction marker)
    assert detector.look({("t", 0): 98}, ends, now=40) == []
    assert detector.waiting_for(40) == 0


def test_a_newly_owned_partition_starts_its_clock_at_its_first_look() -> None:
    from app.stream.stall import StallDetector

    detector = StallDetector(timeout=10)
    detector.look({}, {("t", 0): 5}, now=0)
    # Taken over from another worker at t=100 with an old applied offset: not stalled at once.
    assert detector.look({("t", 0): 3}, {("t", 0): 5, ("t", 1): 500}, now=100) == []
    assert detector.look({("t", 0): 3}, {("t", 0): 5, ("t", 1): 500}, now=111) == [("t", 1)]


def test_gaps_are_the_offsets_between_the_stored_one_and_a_batch_and_inside_it() -> None:
    from app.stream.gaps import Gap, find_gaps

    stored = {("t", 0): 99, ("t", 1): 9}
    offsets = [("t", 0, 100), ("t", 0, 101), ("t", 1, 15), ("t", 1, 16), ("t", 1, 20)]
    assert find_gaps(stored, offsets) == [Gap("t", 1, 10, 15), Gap("t", 1, 17, 20)]


def test_a_partition_never_applied_starts_where_the_consumer_group_stands() -> None:
    from app.stream.gaps import Gap, find_gaps

    # None is what lock_offsets returns for a partition this database has not seen yet.
    assert find_gaps({("t", 0): None}, [("t", 0, 500), ("t", 0, 501)]) == []
    assert find_gaps({}, [("t", 0, 500)]) == []
    assert find_gaps({("t", 0): 0}, [("t", 0, 5), ("t", 0, 5)]) == [Gap("t", 0, 1, 5)]


def test_a_partition_reset_to_the_start_of_its_log_reads_back_from_offset_zero() -> None:
    from app.stream.gaps import Gap, find_gaps

    # -1 is what `notify offsets reset --to-start` stores for a log that starts at offset 0.
    assert find_gaps({("t", 0): -1}, [("t", 0, 500)]) == [Gap("t", 0, 0, 500)]


def test_time_in_an_outage_does_not_count_as_a_stall() -> None:
    from app.stream.stall import StallDetector

    detector = StallDetector(timeout=10)
    detector.look({("t", 0): 3}, {("t", 0): 50}, now=0)
    detector.forget()  # looks failed from t=1 to t=30: PostgreSQL was down
    assert detector.look({("t", 0): 3}, {("t", 0): 50}, now=31) == []
    assert detector.look({("t", 0): 3}, {("t", 0): 50}, now=42) == [("t", 0)]
