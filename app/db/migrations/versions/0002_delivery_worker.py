"""delivery worker: provider outcome statuses on deliveries

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("scheduled", "enqueued", "sending", "sent", "delivered", "failed", "skipped", "cancelled")
AFTER = (*BEFORE[:5], "deferred", "bounced", "dropped", "spam", *BEFORE[5:])


def _check(statuses: tuple[str, ...]) -> None:
    op.drop_constraint(op.f("ck_deliveries_status"), "deliveries", type_="check")
    op.create_check_constraint(
        op.f("ck_deliveries_status"),
        "deliveries",
        f"status IN ({', '.join(repr(s) for s in statuses)})",
    )


def upgrade() -> None:
    _check(AFTER)


def downgrade() -> None:
    # Provider outcomes fold back into the statuses the old schema knows.
    op.execute(
        "UPDATE deliveries SET status = 'sent' WHERE status IN ('deferred', 'bounced', 'dropped', 'spam')"
    )
    _check(BEFORE)
