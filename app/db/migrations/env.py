"""Alembic environment: online migrations against the configured database."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.schema import SchemaItem

from app.db.models import Base

config = context.config
target_metadata = Base.metadata


def include_object(
    obj: SchemaItem, name: str | None, type_: str, reflected: bool, compare_to: SchemaItem | None
) -> bool:
    """Leave tables we do not model alone (e.g. the Celery beat scheduler's own tables)."""
    return not (type_ == "table" and reflected and compare_to is None)


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:  # app.db.migrate's config always has one; a hand-made config may not
        raise RuntimeError("no sqlalchemy.url in the Alembic config: use app.db.migrate")
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            include_object=include_object,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
