"""The one owner of database engines and session lifecycles."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings

_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}

# A pooled connection is pinged before use only when it sat idle this long. Under load a
# connection is checked out again within milliseconds, and a ping on every checkout
# (`pool_pre_ping`) was a fifth of the e-mail worker's time. One that dies while in use fails
# its statement instead; SQLAlchemy then invalidates the pool, and the caller retries the work
# as the outage it is (docs/fault-model.md).
PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: Engine) -> None:
    @event.listens_for(engine.pool, "checkin")
    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.pool, "checkout")
    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
            return  # new, or just used
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception as exc:
            raise DisconnectionError("a pooled connection did not answer") from exc


def get_engine(url: str | None = None) -> Engine:
    """A pooled engine per URL (the settings' DATABASE_URL by default)."""
    url = url or get_settings().database_url
    if url not in _engines:
        pool_size = get_settings().database_pool_size
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size // 2)
        _ping_when_idle(engine)
        _engines[url] = engine
    return _engines[url]


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """Commit a new session on success, roll it back on error, always close it."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """Open a session on DATABASE_URL (or `url`) as one transaction."""
    url = url or get_settings().database_url
    if url not in _factories:
        _factories[url] = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    with transaction(_factories[url]()) as session:
        yield session


@contextmanager
def connection_scope(url: str | None = None) -> Iterator[Connection]:
    """A Core connection as one transaction, for hot paths that need no ORM session."""
    with get_engine(url).begin() as connection:
        yield connection


def dispose_engines() -> None:
    """Close pooled connections (after a fork, or when tests switch databases)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()
