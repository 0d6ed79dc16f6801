"""SQLite's listing triggers leave alone a statement that sets ``calls.listed`` itself.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08

Written by hand, for SQLite; PostgreSQL is unchanged (its ``BEFORE`` trigger
sets the object in the row write itself).

Revision 0007's ``AFTER`` triggers built every inserted or changed call's
listing object with ``json_object`` and wrote the row a second time: over 40 %
of SQLite's instructions for a call's three statements. The record writer now
sets ``listed`` in its own INSERT and UPDATE (:mod:`gateway.store.sqlite_writes`,
encoded as the API encodes a row), and the triggers write only for a statement
that does not: an INSERT that leaves ``listed`` NULL, an UPDATE of a listed
column that leaves ``listed`` as it was. Every other writer (closing orphans,
erasure, the writer through the engine) gets the object written as before. The
object the triggers write is 0007's; no row is rewritten.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ON_INSERT_WHEN = "WHEN NEW.listed IS NULL "
ON_UPDATE_WHEN = "WHEN NEW.listed IS OLD.listed "


def _revision_0007() -> ModuleType:
    """Revision 0007's module: the object and columns of its triggers."""
    path = Path(__file__).with_name("0007_listed_json.py")
    spec = importlib.util.spec_from_file_location("callgate_revision_0007", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load revision 0007 from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _triggers_present(names: Sequence[str]) -> bool:
    found = op.get_bind().exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'calls'"
    )
    return set(names) <= {row[0] for row in found}


def _create_triggers(on_insert_when: str, on_update_when: str) -> None:
    v0007 = _revision_0007()
    if op.get_bind().dialect.name != "sqlite" or not _triggers_present(v0007.TRIGGERS):
        return  # PostgreSQL's trigger sets the object in the row write; no JSON, no triggers
    listed = v0007._object()
    for trigger in v0007.TRIGGERS:
        op.execute(f"DROP TRIGGER {trigger}")
    op.execute(
        f"CREATE TRIGGER calls_listed_on_insert AFTER INSERT ON calls {on_insert_when}"
        f"BEGIN UPDATE calls SET listed = {listed} WHERE rowid = NEW.rowid; END"
    )
    op.execute(
        f"CREATE TRIGGER calls_listed_on_update AFTER UPDATE OF {', '.join(v0007.LISTED)} "
        f"ON calls {on_update_when}"
        f"BEGIN UPDATE calls SET listed = {listed} WHERE rowid = NEW.rowid; END"
    )


def upgrade() -> None:
    _create_triggers(ON_INSERT_WHEN, ON_UPDATE_WHEN)


def downgrade() -> None:
    _create_triggers("", "")
