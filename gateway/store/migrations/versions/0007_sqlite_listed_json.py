"""SQLite keeps each call's listing JSON: ``calls.listed``, written by triggers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Written by hand. SQLite only; on PostgreSQL (which builds the JSON while it
reads, in its own processes) this revision does nothing.

A page of ``/v1/calls`` is a hundred rows' JSON objects. SQLite made each
with ``json_object`` over 27 columns while it read them, and that was most of
the cost of a page (about 400 us of a 100-row page against 80 us to read one
stored text per row). ``calls.listed`` now holds the object; the triggers
below write it in the same statement's transaction whenever a row is inserted
or any listed column changes (an erasure's hashed numbers included), so it
cannot be stale. SQLite cannot add a ``STORED`` generated column to a table
that exists, and rebuilding ``calls`` would cascade into its children under
``foreign_keys=ON``: hence a plain column and triggers. The application never
writes the column.

The object's keys and values are the listing's as of this revision
(``gateway.store.listing_rows``: every column but ``media_stats`` and
``consent_rules``, instants as RFC 3339 text the way orjson writes them); a
revision that changes the listing must rewrite the triggers and the column.
A SQLite built without its JSON functions gets neither (the listing then
encodes rows in Python).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy.exc import OperationalError

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LISTED = (
    "id",
    "tenant",
    "call_id",
    "b_call_id",
    "direction",
    "source_number",
    "source_uri",
    "destination_number",
    "destination_uri",
    "source_addr",
    "destination_addr",
    "started_at",
    "answered_at",
    "ended_at",
    "duration_s",
    "billable_s",
    "disposition",
    "final_status",
    "hangup_by",
    "end_reason",
    "gateway_instance",
    "consent_mode",
    "consent_parties",
    "policy_version",
    "consent_outcome",
    "notice_sha256",
    "capture_s",
)
"""The listing's columns, in the order of its objects' keys."""
INSTANTS = ("started_at", "answered_at", "ended_at")
RFC3339 = "replace(replace({x}, '.000000', ''), ' ', 'T') || '+00:00'"
"""SQLAlchemy's SQLite text of a UTC instant as RFC 3339 (no fraction when it is zero)."""

TRIGGERS = ("calls_listed_on_insert", "calls_listed_on_update")


def _object() -> str:
    pairs = []
    for name in LISTED:
        value = RFC3339.format(x=name) if name in INSTANTS else name
        pairs.append(f"'{name}', {value}")
    return "json_object(" + ", ".join(pairs) + ")"


def _sqlite_has_json() -> bool:
    try:
        op.get_bind().exec_driver_sql("SELECT json_object('a', 1)")
    except OperationalError:
        return False
    return True


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite" or not _sqlite_has_json():
        return
    listed = _object()
    op.execute("ALTER TABLE calls ADD COLUMN listed TEXT")
    op.execute(f"UPDATE calls SET listed = {listed}")
    op.execute(
        f"CREATE TRIGGER calls_listed_on_insert AFTER INSERT ON calls BEGIN "
        f"UPDATE calls SET listed = {listed} WHERE rowid = NEW.rowid; END"
    )
    op.execute(
        f"CREATE TRIGGER calls_listed_on_update AFTER UPDATE OF {', '.join(LISTED)} ON calls "
        f"BEGIN UPDATE calls SET listed = {listed} WHERE rowid = NEW.rowid; END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    columns = op.get_bind().exec_driver_sql("PRAGMA table_info(calls)").fetchall()
    if any(column[1] == "listed" for column in columns):
        op.execute("ALTER TABLE calls DROP COLUMN listed")
