"""The routes' way to PostgreSQL: a dependency whose `run` calls one storage function (of
app/db, which take `session=`) as one transaction, in the thread pool, so that the event loop
never waits on the database and no view writes its own session helper."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from anyio import CapacityLimiter, to_thread
from fastapi import Depends

from app.db.session import session_scope

T = TypeVar("T")


class Database:
    """One transaction per `run`, on DATABASE_URL."""

    async def run(
        self, work: Callable[..., T], /, *, limiter: CapacityLimiter | None = None, **kwargs: Any
    ) -> T:
        """`work(session=..., **kwargs)` in a transaction of its own; its result. `limiter`
        bounds how many such calls run at once (the shared thread pool's by default)."""

        def in_transaction() -> T:
            with session_scope() as session:
                return work(session=session, **kwargs)

        return await to_thread.run_sync(in_transaction, limiter=limiter)


_DATABASE = Database()


def database() -> Database:
    return _DATABASE


# A route's parameter: `db: DatabaseDep`.
DatabaseDep = Annotated[Database, Depends(database)]
