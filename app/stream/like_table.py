"""The like table: like counters per user and content, a changelog-backed mirror of PostgreSQL."""

from __future__ import annotations

from app.stream.faust_app import app, settings

# Key b"user_id:content_id" -> like count. Written only by `ingest_likes`, always *set* to the
# count PostgreSQL returned (never incremented), so redelivered batches cannot skew it. Its
# changelog is co-partitioned with the likes topic, whose key is the user id. Keys are bytes so
# they travel raw: `table_route` hashes the raw user id as the producers' partitioner did (a `str`
# key type would be JSON-encoded, quotes included, and route to the wrong worker).
like_counts = app.Table(
    "like_counts",
    default=int,
    key_type=bytes,
    value_type=int,
    partitions=settings.topic_partitions,
    help="Likes per user and content, mirrored from notifications.like_count.",
)
