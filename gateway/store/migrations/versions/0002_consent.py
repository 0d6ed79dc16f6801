"""consent: the rule and outcome on each call, the consent trail, the recordings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Written by hand for both SQLite and PostgreSQL, as 0001. The new ``calls``
columns are nullable, so rows written before this revision stay valid (their
consent fields read as unknown). Downgrade drops both tables, then the
columns; SQLite drops columns by copying the table (Alembic batch mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CALL_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("consent_mode", sa.Text()),
    ("consent_parties", sa.Text()),
    ("consent_rules", sa.JSON()),
    ("policy_version", sa.Text()),
    ("consent_outcome", sa.Text()),
    ("notice_sha256", sa.Text()),
    ("capture_s", sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table("calls") as calls:
        for name, type_ in CALL_COLUMNS:
            calls.add_column(sa.Column(name, type_, nullable=True))

    op.create_table(
        "consent_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("call_record_id", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("party", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("previous", sa.Text(), nullable=True),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("digit", sa.Text(), nullable=True),
        sa.Column("notice_sha256", sa.Text(), nullable=True),
        sa.Column("policy_version", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_consent_events"),
        sa.ForeignKeyConstraint(
            ["call_record_id"],
            ["calls.id"],
            name="fk_consent_events_call_record_id_calls",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("call_record_id", "seq", name="uq_consent_events_call_record_id_seq"),
    )
    op.create_index("ix_consent_events_tenant_at", "consent_events", ["tenant", "at"])

    op.create_table(
        "recordings",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("call_record_id", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recordings"),
        sa.ForeignKeyConstraint(
            ["call_record_id"],
            ["calls.id"],
            name="fk_recordings_call_record_id_calls",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_recordings_call_record_id", "recordings", ["call_record_id"])


def downgrade() -> None:
    op.drop_index("ix_recordings_call_record_id", table_name="recordings")
    op.drop_table("recordings")
    op.drop_index("ix_consent_events_tenant_at", table_name="consent_events")
    op.drop_table("consent_events")
    with op.batch_alter_table("calls") as calls:
        for name, _ in reversed(CALL_COLUMNS):
            calls.drop_column(name)
