"""stream fault isolation: dead letters kept for replay, blocked partitions, one history

Revision ID: 0005
Revises: 0002, 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
# Merges the two heads that followed 0001, so the history is linear from here on.
down_revision: str | Sequence[str] | None = ("0002", "0004")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("stream_offsets", "offset", existing_type=sa.BigInteger(), nullable=True)
    # -1 meant "nothing applied yet": now NULL, "no position of this group's own".
    op.execute('UPDATE stream_offsets SET "offset" = NULL WHERE "offset" = -1')
    # Registrations are transactional: a welcome row is `once` whatever its event said.
    op.execute("UPDATE notifications SET periodicity = 'once' WHERE kind = 'welcome'")
    op.add_column("stream_offsets", sa.Column("topic_id", sa.String(length=40), nullable=True))
    op.add_column("stream_offsets", sa.Column("blocked_reason", sa.Text(), nullable=True))
    op.add_column(
        "stream_offsets", sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "dead_letters",
        sa.Column("dead_letter_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("source_topic", sa.String(length=249), nullable=False),
        sa.Column("source_partition", sa.Integer(), nullable=False),
        sa.Column("source_offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("replay_token", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="dead", nullable=False),
        sa.Column("replay_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('dead', 'replayed')", name=op.f("ck_dead_letters_status")),
        sa.PrimaryKeyConstraint("dead_letter_id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "group_id", "source_topic", "source_partition", "source_offset",
            name="uq_dead_letters_source",
        ),
    )  # fmt: skip
    op.create_index("ix_dead_letters_status_created_at", "dead_letters", ["status", "created_at"])
    op.create_table(
        "dead_letter_replays",
        sa.Column("replay_token", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "applied_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("replay_token", name=op.f("pk_dead_letter_replays")),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("dead_letter_replays")
    op.drop_index("ix_dead_letters_status_created_at", table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_column("stream_offsets", "blocked_at")
    op.drop_column("stream_offsets", "blocked_reason")
    op.drop_column("stream_offsets", "topic_id")
    op.execute('UPDATE stream_offsets SET "offset" = -1 WHERE "offset" IS NULL')
    op.alter_column("stream_offsets", "offset", existing_type=sa.BigInteger(), nullable=False)
