"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 20:23:47.231130
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin_users",
        sa.Column("admin_user_id", sa.UUID(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=300), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("admin_user_id", name=op.f("pk_admin_users")),
        sa.UniqueConstraint("username", name=op.f("uq_admin_users_username")),
    )
    op.create_table(
        "opt_outs",
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('welcome', 'likes', 'mailing')", name=op.f("ck_opt_outs_kind")
        ),
        sa.PrimaryKeyConstraint("user_id", "kind", name=op.f("pk_opt_outs")),
    )
    op.create_table(
        "stream_offsets",
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("topic", sa.String(length=249), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition", name=op.f("pk_stream_offsets")),
    )
    op.create_table(
        "templates",
        sa.Column("template_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("template_id", name=op.f("pk_templates")),
        sa.UniqueConstraint("name", name=op.f("uq_templates_name")),
    )
    op.create_table(
        "campaigns",
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("template_id", sa.UUID(), nullable=False),
        sa.Column("content_value", sa.Text(), nullable=False),
        sa.Column("periodicity", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total_recipients", sa.Integer(), nullable=False),
        sa.Column("published_count", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "periodicity IN ('once', 'daily', 'weekly')", name=op.f("ck_campaigns_periodicity")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'publishing', 'published', 'cancelled')",
            name=op.f("ck_campaigns_status"),
        ),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.template_id"],
            name=op.f("fk_campaigns_template_id_templates"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", name=op.f("pk_campaigns")),
    )
    op.create_table(
        "messages",
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("content_id", sa.UUID(), nullable=True),
        sa.Column("content_value", sa.Text(), nullable=False),
        sa.Column("template_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["templates.template_id"],
            name=op.f("fk_messages_template_id_templates"),
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_messages")),
    )
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=False),
        sa.Column("periodicity", sa.String(length=10), nullable=False),
        sa.Column("last_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=10), server_default="pending", nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("content_id", sa.UUID(), nullable=True),
        sa.Column("like_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "kind IN ('welcome', 'likes', 'mailing')", name=op.f("ck_notifications_kind")
        ),
        sa.CheckConstraint(
            "periodicity IN ('once', 'daily', 'weekly')", name=op.f("ck_notifications_periodicity")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'queued', 'sent', 'failed', 'skipped')",
            name=op.f("ck_notifications_status"),
        ),
        sa.CheckConstraint("like_count >= 0", name=op.f("ck_notifications_like_count_nonnegative")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.campaign_id"],
            name=op.f("fk_notifications_campaign_id_campaigns"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.message_id"],
            name=op.f("fk_notifications_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("notification_id", name=op.f("pk_notifications")),
        sa.UniqueConstraint(
            "kind",
            "user_id",
            "content_id",
            name="uq_notifications_key",
            postgresql_nulls_not_distinct=True,
        ),
    )
    op.create_index(
        op.f("ix_notifications_campaign_id"), "notifications", ["campaign_id"], unique=False
    )
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["periodicity", "status", "last_update"],
        unique=False,
    )
    op.create_table(
        "deliveries",
        sa.Column("delivery_id", sa.UUID(), nullable=False),
        sa.Column("notification_id", sa.UUID(), nullable=False),
        sa.Column("period_key", sa.String(length=40), nullable=False),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), server_default="scheduled", nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=True),
        sa.Column(
            "headers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("reported_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("provider_message_id", sa.String(length=200), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'enqueued', 'sending', 'sent', 'delivered', 'failed', 'skipped', 'cancelled')",
            name=op.f("ck_deliveries_status"),
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.notification_id"],
            name=op.f("fk_deliveries_notification_id_notifications"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("notification_id", "period_key", name="uq_deliveries_period"),
    )
    op.create_index(
        "ix_deliveries_status_send_at", "deliveries", ["status", "send_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_status_send_at", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_index("ix_notifications_due", table_name="notifications")
    op.drop_index(op.f("ix_notifications_campaign_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("messages")
    op.drop_table("campaigns")
    op.drop_table("templates")
    op.drop_table("stream_offsets")
    op.drop_table("opt_outs")
    op.drop_table("admin_users")
