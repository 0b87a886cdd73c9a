"""scheduled campaigns and recipients' preferences

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("send_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("campaigns", sa.Column("local_send_date", sa.Date(), nullable=True))
    op.add_column("campaigns", sa.Column("local_send_hour", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_campaigns_local_send_hour"), "campaigns", "local_send_hour BETWEEN 0 AND 23"
    )
    op.create_check_constraint(
        op.f("ck_campaigns_local_send_pair"),
        "campaigns",
        "(local_send_date IS NULL) = (local_send_hour IS NULL)",
    )
    op.create_check_constraint(
        op.f("ck_campaigns_one_schedule"), "campaigns", "send_at IS NULL OR local_send_hour IS NULL"
    )
    op.create_table(
        "preferences",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("periodicity", sa.String(length=10), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "kind IN ('welcome', 'likes', 'mailing')", name=op.f("ck_preferences_kind")
        ),
        sa.CheckConstraint(
            "periodicity IN ('once', 'daily', 'weekly')", name=op.f("ck_preferences_periodicity")
        ),
        sa.PrimaryKeyConstraint("user_id", "kind", name=op.f("pk_preferences")),
    )
    op.create_table(
        "preference_changes",
        sa.Column("change_id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("choice", sa.String(length=10), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_preference_changes")),
    )
    op.create_index(
        "ix_preference_changes_user", "preference_changes", ["user_id", "at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_preference_changes_user", table_name="preference_changes")
    op.drop_table("preference_changes")
    op.drop_table("preferences")
    op.drop_constraint(op.f("ck_campaigns_one_schedule"), "campaigns", type_="check")
    op.drop_constraint(op.f("ck_campaigns_local_send_pair"), "campaigns", type_="check")
    op.drop_constraint(op.f("ck_campaigns_local_send_hour"), "campaigns", type_="check")
    op.drop_column("campaigns", "local_send_hour")
    op.drop_column("campaigns", "local_send_date")
    op.drop_column("campaigns", "send_at")
