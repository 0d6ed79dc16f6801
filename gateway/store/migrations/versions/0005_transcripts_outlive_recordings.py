"""transcripts and redactions outlive their recording: ``recording_id`` is set null.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

Written by hand for both SQLite and PostgreSQL, as the others.

A tenant may keep transcripts longer than recordings (``retention.
transcripts_days`` over ``recordings_days``): removing a recording must not
take its redacted transcripts and their redaction spans with it. Their
foreign key to ``recordings`` becomes ``ON DELETE SET NULL`` (it was
``CASCADE``); they still belong to their call, and go with it. SQLite
cannot alter a constraint, so the tables are rebuilt (Alembic's batch mode).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("transcripts", "redactions")


def _refer_to_recordings(on_delete: str) -> None:
    for table in TABLES:
        name = f"fk_{table}_recording_id_recordings"
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(name, type_="foreignkey")
            batch.create_foreign_key(
                name, "recordings", ["recording_id"], ["id"], ondelete=on_delete
            )


def upgrade() -> None:
    _refer_to_recordings("SET NULL")


def downgrade() -> None:
    _refer_to_recordings("CASCADE")
