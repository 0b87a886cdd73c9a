"""admin portal: campaign audiences, invalid ids kept, campaign timestamps

Revision ID: 0004
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "campaigns",
        sa.Column(
            "invalid_recipients",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("campaigns", sa.Column("created_by", sa.String(length=100), nullable=True))
    op.add_column("campaigns", sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("campaigns", sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.campaign_id"],
            name=op.f("fk_campaign_recipients_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "user_id", name=op.f("pk_campaign_recipients")),
    )
    op.create_index(
        "ix_notifications_mailing_content",
        "notifications",
        ["content_id"],
        unique=False,
        postgresql_where=sa.text("kind = 'mailing'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_notifications_mailing_content",
        table_name="notifications",
        postgresql_where=sa.text("kind = 'mailing'"),
    )
    op.drop_table("campaign_recipients")
    op.drop_column("campaigns", "cancelled_at")
    op.drop_column("campaigns", "published_at")
    op.drop_column("campaigns", "created_by")
    op.drop_column("campaigns", "invalid_recipients")
