"""api: keys, the audit log, policy versions, store secrets and number indexes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Written by hand for both SQLite and PostgreSQL, as 0001 and 0002.

- ``api_keys``: bearer keys bound to one tenant; only a SHA-256 of the key is
  kept (keys are 256 random bits, so a fast hash cannot be reversed by search).
- ``audit_log``: every read of personal data and every erase, with the key.
- ``tenant_policies``: consent policies set through the API, one row per
  version; the newest row of a tenant is in force, the config's until then.
- ``store_secrets``: secrets every instance on the store must share (the key
  of the hash that replaces an erased number).
- indexes for the API's filters: a party's number, and the keyset order.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])

    op.create_table(
        "audit_log",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_tenant_at", "audit_log", ["tenant", "at"])

    op.create_table(
        "tenant_policies",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tenant_policies"),
        sa.UniqueConstraint("tenant", "revision", name="uq_tenant_policies_tenant_revision"),
    )

    op.create_table(
        "store_secrets",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_store_secrets"),
    )

    op.create_index(
        "ix_calls_tenant_source_number", "calls", ["tenant", "source_number", "started_at"]
    )
    op.create_index(
        "ix_calls_tenant_destination_number",
        "calls",
        ["tenant", "destination_number", "started_at"],
    )
    op.create_index("ix_calls_tenant_started_at_id", "calls", ["tenant", "started_at", "id"])
    op.drop_index("ix_calls_tenant_started_at", table_name="calls")


def downgrade() -> None:
    op.create_index("ix_calls_tenant_started_at", "calls", ["tenant", "started_at"])
    op.drop_index("ix_calls_tenant_started_at_id", table_name="calls")
    op.drop_index("ix_calls_tenant_destination_number", table_name="calls")
    op.drop_index("ix_calls_tenant_source_number", table_name="calls")
    op.drop_table("store_secrets")
    op.drop_table("tenant_policies")
    op.drop_index("ix_audit_log_tenant_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
