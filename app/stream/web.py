"""Faust web views over the like table (JSON), and the worker's Prometheus metrics.

Per-user views are routed with `table_route` to the worker owning the user's partition: the
likes topic is keyed by user id and the table is co-partitioned with it, so the user id alone
names the partition (producers use Kafka's murmur2 partitioner: docs/stream-semantics.md).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from faust import web
from prometheus_client import generate_latest

from app.core import health
from app.stream.faust_app import app
from app.stream.like_table import like_counts


def _uuid_or_none(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@app.page("/likes/{user_id}/{content_id}/")
class LikeCount(web.View):
    """The like count of one user and content."""

    # Faust types a routed handler as a function of any View, not as a method of its own view.
    @app.table_route(table=like_counts, match_info="user_id")  # type: ignore[arg-type]
    async def get(self, request: web.Request, user_id: str, content_id: str) -> web.Response:
        user, content = _uuid_or_none(user_id), _uuid_or_none(content_id)
        if user is None or content is None:
            return self.error(400, "user_id and content_id must be uuids")
        key = f"{user}:{content}".encode()
        found = key in like_counts
        count = like_counts[key] if found else 0
        return self.json({"user_id": user, "content_id": content, "count": count, "found": found})


@app.page("/likes/{user_id}/")
class UserLikeCounts(web.View):
    """Every like count of one user, by content id."""

    # Faust types a routed handler as a function of any View, not as a method of its own view.
    @app.table_route(table=like_counts, match_info="user_id")  # type: ignore[arg-type]
    async def get(self, request: web.Request, user_id: str) -> web.Response:
        user = _uuid_or_none(user_id)
        if user is None:
            return self.error(400, "user_id must be a uuid")
        prefix = f"{user}:".encode()
        # A scan of this worker's partitions: fine for a data engineer's lookup, not a hot path.
        counts = {
            k[len(prefix) :].decode(): v for k, v in like_counts.items() if k.startswith(prefix)
        }
        return self.json({"user_id": user, "counts": counts, "total": sum(counts.values())})


@app.page("/likes/")
class LikeTableSize(web.View):
    """The table's size: keys on this worker, and across all workers unless `?local=1`."""

    async def get(self, request: web.Request) -> web.Response:
        changelog = like_counts.changelog_topic.get_topic_name()
        partitions = sorted(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == changelog
        )
        local = {
            "url": str(app.conf.canonical_url),
            "size": len(like_counts),
            "partitions": partitions,
        }
        if request.query.get("local"):
            return self.json(local)
        others = [
            url
            for url in app.router.table_metadata(like_counts.name)
            if url.rstrip("/") != str(app.conf.canonical_url).rstrip("/")
        ]
        remote = await asyncio.gather(*(_local_size(url) for url in others))
        workers = [local, *remote]
        return self.json({"size": sum(w["size"] for w in workers), "workers": workers})


async def _local_size(url: str) -> dict[str, Any]:
    async with app.http_client.get(f"{url.rstrip('/')}/likes/?local=1") as response:
        response.raise_for_status()
        size: dict[str, Any] = await response.json()
        return size


@app.page("/healthz")
class Health(web.View):
    """503 while the worker restarts in a loop (app/core/health.py), else 200."""

    async def get(self, request: web.Request) -> web.Response:
        status, body = health.report()
        return self.json(body, status=status)


@app.page("/metrics")
class Metrics(web.View):
    """Prometheus metrics of this worker."""

    async def get(self, request: web.Request) -> web.Response:
        return self.text(generate_latest().decode(), content_type="text/plain")
