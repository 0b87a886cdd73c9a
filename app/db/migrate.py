"""Alembic, driven from code so `notify db ...` works from an installed package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.config import get_settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    """An Alembic config pointing at our migrations and the given (or configured) database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    # ConfigParser interpolation would choke on '%' in passwords.
    url = database_url or get_settings().database_url
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(revision: str = "heads", database_url: str | None = None) -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(revision: str = "base", database_url: str | None = None) -> None:
    command.downgrade(alembic_config(database_url), revision)


def revision(message: str, database_url: str | None = None) -> None:
    """Autogenerate a migration from the difference between the models and the database."""
    command.revision(alembic_config(database_url), message=message, autogenerate=True)
