"""the global send rate's state: the next free send slot and the day's count; how often a
delivery went back for a new slot, too late for its own

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_pacing",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("next_slot", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("day_count", sa.Integer(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_send_pacing_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_send_pacing")),
    )
    op.add_column(
        "deliveries",
        sa.Column("late_reslots", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("deliveries", "late_reslots")
    op.drop_table("send_pacing")
