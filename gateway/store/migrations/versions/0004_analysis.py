"""analysis: the job queue, transcripts (redacted only), redactions, cues; sealed recordings.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Written by hand for both SQLite and PostgreSQL, as the others.

- ``analysis_jobs``: one per recording to analyse, inserted with the
  recording's row; claimed, retried and finished by the workers.
- ``transcripts``: one per recording and party, redacted text and word list;
  ``live`` rows (no recording yet) are pieces made while the call ran.
- ``redactions``: the spans removed (type, words, times), never their content.
- ``analyses``: per recording, the talk-time cues and what was muted.
- ``ix_calls_tenant_stats``: a covering index for the stats endpoint;
  ``call_stats_hourly``: per tenant and hour, the counts of calls whose hour
  is settled (every call in it ended), ``call_stats_marks``: up to where;
  ``ix_calls_open``: the calls still open.
- ``recordings`` gains ``key_id`` (the key that sealed the file, null when
  stored plain) and ``redacted_at``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _call_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["call_record_id"],
        ["calls.id"],
        name=f"fk_{table}_call_record_id_calls",
        ondelete="CASCADE",
    )


def _recording_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["recording_id"],
        ["recordings.id"],
        name=f"fk_{table}_recording_id_recordings",
        ondelete="CASCADE",
    )


def upgrade() -> None:
    with op.batch_alter_table("recordings") as recordings:
        recordings.add_column(sa.Column("key_id", sa.Text(), nullable=True))
        recordings.add_column(sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "analysis_jobs",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("recording_id", sa.Text(), nullable=False),
        sa.Column("call_record_id", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.Text(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_analysis_jobs"),
        _call_fk("analysis_jobs"),
        _recording_fk("analysis_jobs"),
        sa.UniqueConstraint("recording_id", name="uq_analysis_jobs_recording_id"),
    )
    op.create_index("ix_analysis_jobs_state_not_before", "analysis_jobs", ["state", "not_before"])
    op.create_index("ix_analysis_jobs_call_record_id", "analysis_jobs", ["call_record_id"])

    op.create_table(
        "transcripts",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("call_record_id", sa.Text(), nullable=False),
        sa.Column("recording_id", sa.Text(), nullable=True),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("party", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("backend", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("words", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_transcripts"),
        _call_fk("transcripts"),
        _recording_fk("transcripts"),
    )
    op.create_index("ix_transcripts_call_record_id", "transcripts", ["call_record_id"])

    op.create_table(
        "redactions",
        sa.Column("id", BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("call_record_id", sa.Text(), nullable=False),
        sa.Column("recording_id", sa.Text(), nullable=True),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("party", sa.Text(), nullable=False),
        sa.Column("entity", sa.Text(), nullable=False),
        sa.Column("word_start", sa.Integer(), nullable=False),
        sa.Column("word_end", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_redactions"),
        _call_fk("redactions"),
        _recording_fk("redactions"),
    )
    op.create_index("ix_redactions_call_record_id", "redactions", ["call_record_id"])

    op.create_table(
        "analyses",
        sa.Column("recording_id", sa.Text(), nullable=False),
        sa.Column("call_record_id", sa.Text(), nullable=False),
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("cues", sa.JSON(), nullable=False),
        sa.Column("muted_s", sa.Float(), nullable=False),
        sa.Column("spans", sa.Integer(), nullable=False),
        sa.Column("transcriber", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("recording_id", name="pk_analyses"),
        _call_fk("analyses"),
        _recording_fk("analyses"),
    )
    op.create_index("ix_analyses_call_record_id", "analyses", ["call_record_id"])

    # /v1/stats reads only these columns of a range: the index alone answers it
    op.create_index("ix_calls_tenant_stats", "calls", [*STATS_COLUMNS])
    # the calls still open, for the stats' settled horizon
    op.create_index(
        "ix_calls_open",
        "calls",
        ["tenant", "started_at"],
        sqlite_where=sa.text("ended_at IS NULL"),
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_table(
        "call_stats_hourly",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("answered", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("billable_s", sa.Float(), nullable=False),
        *(sa.Column(f"o_{outcome}", sa.Integer(), nullable=False) for outcome in OUTCOMES),
        sa.PrimaryKeyConstraint("tenant", "hour", name="pk_call_stats_hourly"),
    )
    op.create_table(
        "call_stats_marks",
        sa.Column("tenant", sa.Text(), nullable=False),
        sa.Column("settled_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", name="pk_call_stats_marks"),
    )


OUTCOMES = ("granted", "declined", "timed_out", "withdrawn", "pending", "none", "unavailable")
"""The consent outcomes (models.CONSENT_OUTCOMES as of this revision)."""

STATS_COLUMNS = (
    "tenant",
    "started_at",
    "answered_at",
    "billable_s",
    "duration_s",
    "consent_outcome",
)


def downgrade() -> None:
    op.drop_table("call_stats_marks")
    op.drop_table("call_stats_hourly")
    op.drop_index("ix_calls_open", table_name="calls")
    op.drop_index("ix_calls_tenant_stats", table_name="calls")
    op.drop_index("ix_analyses_call_record_id", table_name="analyses")
    op.drop_table("analyses")
    op.drop_index("ix_redactions_call_record_id", table_name="redactions")
    op.drop_table("redactions")
    op.drop_index("ix_transcripts_call_record_id", table_name="transcripts")
    op.drop_table("transcripts")
    op.drop_index("ix_analysis_jobs_call_record_id", table_name="analysis_jobs")
    op.drop_index("ix_analysis_jobs_state_not_before", table_name="analysis_jobs")
    op.drop_table("analysis_jobs")
    with op.batch_alter_table("recordings") as recordings:
        recordings.drop_column("redacted_at")
        recordings.drop_column("key_id")
