"""Alembic against real PostgreSQL: base <-> head, models match migrations, constraints hold."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.cli import main
from app.config import Settings
from app.db import migrate
from app.db.models import Base, Message, Notification, Template

OUR_TABLES = {
    "templates",
    "messages",
    "campaigns",
    "notifications",
    "deliveries",
    "stream_offsets",
    "opt_outs",
    "admin_users",
}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_to_head(settings: Settings) -> None:
    url = settings.database_url
    migrate.downgrade("base", url)
    assert not (_tables(url) & OUR_TABLES)
    migrate.upgrade("heads", url)
    assert _tables(url) >= OUR_TABLES


def test_models_match_migrations(settings: Settings) -> None:
    migrate.upgrade("heads", settings.database_url)
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_object": _ours}
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def _ours(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and reflected and compare_to is None)


@pytest.fixture
def session(settings: Settings):
    migrate.upgrade("heads", settings.database_url)
    engine = create_engine(settings.database_url)
    with Session(engine) as session:
        yield session
        session.rollback()
    engine.dispose()


def test_one_welcome_per_user_even_without_content_id(session: Session) -> None:
    template = Template(name=f"t-{uuid.uuid4().hex[:6]}", subject="s", body_html="h", body_text="t")
    session.add(template)
    session.flush()
    user_id = uuid.uuid4()
    for _ in range(2):
        message = Message(
            content_id=None, content_value="https://x", template_id=template.template_id
        )
        session.add(message)
        session.flush()
        session.add(
            Notification(
                user_id=user_id,
                message_id=message.message_id,
                periodicity="once",
                kind="welcome",
                content_id=None,
            )
        )
    with pytest.raises(IntegrityError, match="uq_notifications_key"):
        session.flush()


def test_check_constraints_refuse_unknown_values(session: Session) -> None:
    with pytest.raises(IntegrityError, match="ck_notifications_periodicity"):
        session.execute(
            text(
                "INSERT INTO notifications (notification_id, user_id, message_id, periodicity,"
                " status, kind, like_count) VALUES (gen_random_uuid(), gen_random_uuid(),"
                " gen_random_uuid(), 'hourly', 'pending', 'likes', 0)"
            )
        )


def test_templates_load_is_idempotent(settings: Settings) -> None:
    migrate.upgrade("heads", settings.database_url)
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(main, ["templates", "load"])
        assert result.exit_code == 0, result.output
        assert "loaded 3 templates" in result.output
    engine = create_engine(settings.database_url)
    with Session(engine) as session:
        names = session.scalars(
            select(Template.name).where(Template.name.in_(["welcome", "likes_digest", "mailing"]))
        ).all()
    engine.dispose()
    assert sorted(names) == ["likes_digest", "mailing", "welcome"]
