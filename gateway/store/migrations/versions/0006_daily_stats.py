"""daily stats: ``call_stats_daily``, the sums of each tenant's fully settled UTC days.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

Written by hand for both SQLite and PostgreSQL, as the others.

``/v1/stats`` by day or week over a range summed every settled hour of it
(2,160 rows for 90 days, and a sort to group them by day). A day whose 24
hours are settled is now summed once into ``call_stats_daily``;
``call_stats_marks.days_until`` says up to where (null: no day yet). The
rows are filled by the application's next settling of each tenant, from the
hourly rows already kept, so this revision moves no data.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTCOMES = ("granted", "declined", "timed_out", "withdrawn", "pending", "none", "unavailable")
"""The consent outcomes (models.CONSENT_OUTCOMES as of this revision)."""


def upgrade() -> None:
    op.create_table(
        "call_stats_daily",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("day", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("billable_s", sa.Float(), nullable=False),
        *(sa.Column(f"o_{outcome}", sa.Integer(), nullable=False) for outcome in OUTCOMES),
        sa.PrimaryKeyConstraint("tenant", "day", name="pk_call_stats_daily"),
    )
    op.add_column(
        "call_stats_marks", sa.Column("days_until", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("call_stats_marks") as batch:
        batch.drop_column("days_until")
    op.drop_table("call_stats_daily")
