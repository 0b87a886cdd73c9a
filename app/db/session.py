"""The one owner of database engines and session lifecycles."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings

_engines: dict[tuple[str, bool], Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def get_engine(url: str | None = None, *, autocommit: bool = False) -> Engine:
    """A pooled engine per URL (the settings' DATABASE_URL by default).

    `autocommit` engines keep their connections in autocommit: a pool of their own, so the
    e-mail worker's single statements do not switch a connection's mode per checkout.
    """
    url = url or get_settings().database_url
    key = (url, autocommit)
    if key not in _engines:
        pool_size = get_settings().database_pool_size
        # pool_pre_ping: a connection that died meanwhile (a server restart) is replaced before
        # use, and the pool with it. Not every write in a transaction that follows a send is
        # retried, so none may meet a dead connection (pinging only idle ones measured no
        # faster). The autocommit pool runs only statements that are retried when they fail
        # (the claim, before any send; the record of a send, in its own loop): a dead
        # connection there costs a retry, so it is not pinged before each statement.
        options = {"isolation_level": "AUTOCOMMIT"} if autocommit else {}
        _engines[key] = create_engine(
            url,
            pool_pre_ping=not autocommit,
            pool_size=pool_size,
            max_overflow=pool_size // 2,
            **options,
        )
    return _engines[key]


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
def connection_scope(url: str | None = None, *, autocommit: bool = False) -> Iterator[Connection]:
    """A Core connection as one transaction, for hot paths that need no ORM session.

    With `autocommit`, each statement commits on its own: for a single statement this saves the
    BEGIN and COMMIT round trips (only for single statements: nothing is held between two).
    """
    if autocommit:
        with get_engine(url, autocommit=True).connect() as connection:
            yield connection
        return
    with get_engine(url).begin() as connection:
        yield connection


def dispose_engines() -> None:
    """Close pooled connections (after a fork, or when tests switch databases)."""
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()
    _factories.clear()
