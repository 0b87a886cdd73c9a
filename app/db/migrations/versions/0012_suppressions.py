"""suppressed addresses and the soft bounces that add up to one; a campaign's frequency-cap policy

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = "('hard bounce', 'soft bounces', 'spam report', 'invalid address', 'blocked', 'manual')"


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("first_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"reason IN {REASONS}", name=op.f("ck_suppressions_reason")),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_suppressions")),
    )
    op.create_table(
        "soft_bounces",
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("address", "delivery_id", name=op.f("pk_soft_bounces")),
    )
    op.create_index("ix_soft_bounces_address_at", "soft_bounces", ["address", "at"], unique=False)
    op.add_column(
        "campaigns",
        sa.Column("cap_policy", sa.String(length=10), server_default="hold", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_campaigns_cap_policy"), "campaigns", "cap_policy IN ('hold', 'skip', 'exempt')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_campaigns_cap_policy"), "campaigns", type_="check")
    op.drop_column("campaigns", "cap_policy")
    op.drop_index("ix_soft_bounces_address_at", table_name="soft_bounces")
    op.drop_table("soft_bounces")
    op.drop_table("suppressions")
