"""a user's timeline: received events, provider events, why a delivery goes when it does

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deliveries", sa.Column("send_reason", sa.Text(), nullable=True))
    op.create_table(
        "delivery_events",
        sa.Column("event_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.delivery_id"],
            name=op.f("fk_delivery_events_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_delivery_events")),
    )
    op.create_index(
        op.f("ix_delivery_events_delivery_id"), "delivery_events", ["delivery_id"], unique=False
    )
    op.create_table(
        "received_events",
        sa.Column("event_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("content_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column("periodicity", sa.String(length=10), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_received_events")),
    )
    op.create_index(
        "ix_received_events_user", "received_events", ["user_id", "received_at"], unique=False
    )
    op.create_index("ix_dead_letters_key", "dead_letters", ["key"], unique=False)
    op.create_index("ix_notifications_user_id", "notifications", ["user_id"], unique=False)
    op.create_index("ix_deliveries_email", "deliveries", ["email"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deliveries_email", table_name="deliveries")
    op.drop_index("ix_notifications_user_id", table_name="notifications")
    op.drop_index("ix_dead_letters_key", table_name="dead_letters")
    op.drop_index("ix_received_events_user", table_name="received_events")
    op.drop_table("received_events")
    op.drop_index(op.f("ix_delivery_events_delivery_id"), table_name="delivery_events")
    op.drop_table("delivery_events")
    op.drop_column("deliveries", "send_reason")
