"""planning runs split into shards, with their progress

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _count(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    op.create_table(
        "planning_shards",
        sa.Column("run_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("shards", sa.Integer(), nullable=False),
        sa.Column("periodicity", sa.String(length=10), nullable=False),
        _count("expected"),
        sa.Column("status", sa.String(length=10), server_default="queued", nullable=False),
        _count("picked"),
        _count("scheduled"),
        _count("skipped"),
        _count("failed"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')",
            name=op.f("ck_planning_shards_status"),
        ),
        sa.PrimaryKeyConstraint("run_id", "shard", name=op.f("pk_planning_shards")),
    )
    op.create_index("ix_planning_shards_created", "planning_shards", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_planning_shards_created", table_name="planning_shards")
    op.drop_table("planning_shards")
