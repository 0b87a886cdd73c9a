"""the rendered mail of a delivery in a table of its own, out of the row that changes state

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _headers() -> sa.Column[dict[str, str]]:
    return sa.Column(
        "headers",
        postgresql.JSONB(astext_type=sa.Text()),
        server_default=sa.text("'{}'::jsonb"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "delivery_contents",
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column("body_text", sa.Text(), nullable=True),
        _headers(),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.delivery_id"],
            name=op.f("fk_delivery_contents_delivery_id_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_delivery_contents")),
    )
    # Every delivery keeps its mail, a skipped or failed one its NULLs, as planning writes them.
    op.execute(
        "INSERT INTO delivery_contents (delivery_id, subject, body_html, body_text, headers)"
        " SELECT delivery_id, subject, body_html, body_text, headers FROM deliveries"
    )
    for column in ("subject", "body_html", "body_text", "headers"):
        op.drop_column("deliveries", column)


def downgrade() -> None:
    op.add_column("deliveries", sa.Column("subject", sa.Text(), nullable=True))
    op.add_column("deliveries", sa.Column("body_html", sa.Text(), nullable=True))
    op.add_column("deliveries", sa.Column("body_text", sa.Text(), nullable=True))
    op.add_column("deliveries", _headers())
    op.execute(
        "UPDATE deliveries d SET (subject, body_html, body_text, headers) ="
        " (c.subject, c.body_html, c.body_text, c.headers)"
        " FROM delivery_contents c WHERE c.delivery_id = d.delivery_id"
    )
    op.drop_table("delivery_contents")
