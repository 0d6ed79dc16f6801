"""The store keeps each call's listing JSON: ``calls.listed``, written by triggers.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06

Written by hand for both SQLite and PostgreSQL.

A page of ``/v1/calls`` is a hundred rows' JSON objects. SQLite made each
with ``json_object`` over 27 columns while it read them, and that was most of
the cost of a page (about 400 us of a 100-row page against 80 us to read one
stored text per row); on PostgreSQL the API decoded 2,700 values a page and
encoded them again (PostgreSQL building the objects while it read was slower
still). ``calls.listed`` now holds the object; the triggers below write it in
the same statement whenever a row is inserted or any listed column changes
(an erasure's hashed numbers included), so it cannot be stale. SQLite cannot
add a ``STORED`` generated column to a table that exists, and rebuilding
``calls`` would cascade into its children under ``foreign_keys=ON``; a
PostgreSQL generated column must be immutable, and formatting an instant is
not: hence a plain column and triggers (an ``AFTER`` trigger that updates the
row on SQLite, a ``BEFORE`` trigger that sets it on PostgreSQL). The
application never writes the column.

The object's keys and values are the listing's as of this revision
(``gateway.store.listing_rows``: every column but ``media_stats`` and
``consent_rules``), written as orjson writes the listing's values: instants
as RFC 3339 text (UTC, no fraction when it is zero), whole floats with
``.0`` (PostgreSQL would write ``65``). Numbers differ in form only below
0.0001 (exponents: SQLite ``1.0e-06``, PostgreSQL ``1e-05``, orjson ``1e-6``
and ``0.00001``). A revision that changes the listing must rewrite the
triggers and the column. A SQLite built without its JSON functions gets
neither (the listing then encodes rows in Python, as it does wherever the
column or a trigger is missing: ``listing_rows.stored_listing_ready``; a later
revision that rebuilds ``calls`` in batch mode must create the triggers again).

Running it writes every call once more (1.1M calls: about 30 s on SQLite,
where the file grows by the objects, about 1 KB a call). On PostgreSQL that
rewrite holds the table's lock: writers wait until it ends, and the old row
versions wait for VACUUM. Plan it for a quiet hour on a big store.
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

FLOATS = ("duration_s", "billable_s", "capture_s")
TRIGGERS = ("calls_listed_on_insert", "calls_listed_on_update")
"""SQLite's triggers."""
PG_FUNCTION = "calls_listed"
PG_TRIGGER = "calls_listed"
PG_UTC = "({x} AT TIME ZONE 'UTC')"
PG_RFC3339 = (
    "to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN to_char({utc}, 'US') = '000000' "
    "THEN '' ELSE '.' || to_char({utc}, 'US') END || '+00:00'"
)
PG_FLOAT = (
    "CASE WHEN {x} = trunc({x}) AND abs({x}) < 1e16 "
    "THEN (trunc({x})::bigint::text || '.0')::json ELSE to_json({x}) END"
)


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


def _postgres_object() -> str:
    """The object of the row ``NEW`` (in a PostgreSQL trigger), as text."""
    shown = []
    for name in LISTED:
        value = f"NEW.{name}"
        if name in INSTANTS:
            value = PG_RFC3339.format(utc=PG_UTC.format(x=value))
        elif name in FLOATS:
            value = PG_FLOAT.format(x=value)
        shown.append(f"{value} AS {name}")
    return f"(SELECT row_to_json(r)::text FROM (SELECT {', '.join(shown)}) AS r)"


def _upgrade_postgres() -> None:
    op.execute("ALTER TABLE calls ADD COLUMN listed TEXT")
    op.execute(
        f"CREATE FUNCTION {PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"NEW.listed := {_postgres_object()}; RETURN NEW; END $$"
    )
    op.execute(
        f"CREATE TRIGGER {PG_TRIGGER} BEFORE INSERT OR UPDATE OF {', '.join(LISTED)} "
        f"ON calls FOR EACH ROW EXECUTE FUNCTION {PG_FUNCTION}()"
    )
    op.execute("UPDATE calls SET id = id")  # the trigger writes every row's object


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgres()
        return
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
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {PG_TRIGGER} ON calls")
        op.execute(f"DROP FUNCTION IF EXISTS {PG_FUNCTION}()")
        op.execute("ALTER TABLE calls DROP COLUMN IF EXISTS listed")
        return
    if op.get_bind().dialect.name != "sqlite":
        return
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    columns = op.get_bind().exec_driver_sql("PRAGMA table_info(calls)").fetchall()
    if any(column[1] == "listed" for column in columns):
        op.execute("ALTER TABLE calls DROP COLUMN listed")
