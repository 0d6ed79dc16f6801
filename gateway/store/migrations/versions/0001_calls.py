"""calls: one record per call.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written by hand for both SQLite and PostgreSQL: text columns without length,
``DateTime(timezone=True)`` (``timestamptz`` on PostgreSQL, UTC text on
SQLite) and the generic JSON type.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("call_id", sa.Text(), nullable=False),
        sa.Column("b_call_id", sa.Text(), nullable=True),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("source_number", sa.Text(), nullable=True),
        sa.Column("source_uri", sa.Text(), nullable=False),
        sa.Column("destination_number", sa.Text(), nullable=True),
        sa.Column("destination_uri", sa.Text(), nullable=False),
        sa.Column("source_addr", sa.Text(), nullable=False),
        sa.Column("destination_addr", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("billable_s", sa.Float(), nullable=True),
        sa.Column("disposition", sa.Text(), nullable=True),
        sa.Column("final_status", sa.Integer(), nullable=True),
        sa.Column("hangup_by", sa.Text(), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.Column("media_stats", sa.JSON(), nullable=True),
        sa.Column("gateway_instance", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_calls"),
    )
    op.create_index("ix_calls_tenant_started_at", "calls", ["tenant", "started_at"])
    op.create_index("ix_calls_call_id", "calls", ["call_id"])
    op.create_index("ix_calls_gateway_instance_ended_at", "calls", ["gateway_instance", "ended_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_gateway_instance_ended_at", table_name="calls")
    op.drop_index("ix_calls_call_id", table_name="calls")
    op.drop_index("ix_calls_tenant_started_at", table_name="calls")
    op.drop_table("calls")
