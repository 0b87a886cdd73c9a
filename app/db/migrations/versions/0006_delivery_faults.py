"""delivery fault isolation: outages counted apart from attempts, the backend that sent

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "deliveries",
        sa.Column("deferrals", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("deliveries", sa.Column("backend", sa.String(length=20), nullable=True))


def downgrade() -> None:
    op.drop_column("deliveries", "backend")
    op.drop_column("deliveries", "deferrals")
