"""Writing one batch of row plans in one transaction, a statement per kind of change.

New rows go out in one executemany INSERT; changes to existing rows in one
executemany UPDATE per set of changed columns. Rows a plan changes but does
not start are read first (one SELECT), which also supplies the start and
answer times the durations are computed from.

Consent events and recordings follow their calls' rows: one executemany
INSERT each, calls first so every foreign key finds its row. They are plain
inserts; only a retry (``verify_new``) reads what an earlier attempt may have
committed, and leaves out rows stored exactly as they would be written again.
A stored row that differs (an event ``seq`` used twice) is still inserted, so
the database refuses it and the writer sets that operation aside.

What to write is decided here once, in :func:`write_plans_with`, for any
:class:`BatchStatements`: :class:`EngineStatements` runs the statements on a
SQLAlchemy connection (PostgreSQL, and SQLite where no other connection may
open the database), :class:`gateway.store.sqlite_writes.SqliteStatements` on
the record writer's own ``sqlite3`` connection.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol

from sqlalchemy import Connection, Select, Table, Update, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store.durations import call_durations
from gateway.store.models import ANALYSIS_JOBS, CALLS, CONSENT_EVENTS, RECORDINGS
from gateway.store.plan import RowPlan

COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in CALLS.columns)

EVENT_KEY: tuple[str, ...] = ("call_record_id", "seq")
"""What identifies a consent event: its call and its place in the call's trail."""

LOOKUP_CHUNK = 500
"""Ids per ``IN (...)`` list: far below SQLite's and PostgreSQL's parameter limits."""


class BatchStatements(Protocol):
    """The statements a batch is written with, run inside the caller's transaction."""

    def lookup(
        self, table: Table, columns: tuple[str, ...], by: str, keys: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        """``columns`` of the rows of ``table`` whose ``by`` is one of ``keys``
        (at most :data:`LOOKUP_CHUNK` of them), as Python values."""
        ...

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` (each with the same keys) into ``table``."""
        ...

    def update_calls(self, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        """Set ``columns`` of ``calls`` rows: each row holds ``p_<column>`` values and ``p_id``."""
        ...


@dataclass(slots=True, frozen=True)
class _StoredTimes:
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None


def _lookup_all(
    statements: BatchStatements,
    table: Table,
    columns: tuple[str, ...],
    by: str,
    keys: Sequence[Any],
) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    for first in range(0, len(keys), LOOKUP_CHUNK):
        found.extend(statements.lookup(table, columns, by, keys[first : first + LOOKUP_CHUNK]))
    return found


def _stored_times(
    statements: BatchStatements, record_ids: Sequence[str]
) -> dict[str, _StoredTimes]:
    rows = _lookup_all(
        statements, CALLS, ("id", "started_at", "answered_at", "ended_at"), "id", record_ids
    )
    return {
        record_id: _StoredTimes(started_at, answered_at, ended_at)
        for record_id, started_at, answered_at, ended_at in rows
    }


def _new_row(plan: RowPlan) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMN_NAMES)
    row.update(plan.values)
    row["id"] = plan.record_id
    if row["ended_at"] is not None:
        row["duration_s"], row["billable_s"] = call_durations(
            row["started_at"], row["answered_at"], row["ended_at"]
        )
    return row


def _changes(plan: RowPlan, stored: _StoredTimes) -> dict[str, Any]:
    values = dict(plan.values)
    values.pop("id", None)
    ended_at = values.get("ended_at", stored.ended_at)
    if ended_at is not None and ("ended_at" in values or "answered_at" in values):
        values["duration_s"], values["billable_s"] = call_durations(
            values.get("started_at", stored.started_at),
            values.get("answered_at", stored.answered_at),
            ended_at,
        )
    return values


def write_plans_with(
    statements: BatchStatements, plans: Iterable[RowPlan], *, verify_new: bool
) -> list[RowPlan]:
    """Apply ``plans`` with ``statements`` (inside the caller's transaction).

    With ``verify_new``, rows the plans start are looked up too and, if a
    previous attempt already wrote them, updated instead of inserted again;
    consent events and recordings already stored as they are are left out.
    Returns the plans whose row does not exist and that do not start it; they
    change nothing (their consent events and recordings included).
    """
    plans = list(plans)
    lookup = [plan.record_id for plan in plans if verify_new or not plan.starts]
    stored = _stored_times(statements, lookup) if lookup else {}
    new_rows: list[dict[str, Any]] = []
    changes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    orphans: list[RowPlan] = []
    for plan in plans:
        times = stored.get(plan.record_id)
        if times is None:
            if plan.starts:
                new_rows.append(_new_row(plan))
            else:
                orphans.append(plan)
            continue
        values = _changes(plan, times)
        if not values:
            continue
        columns = tuple(sorted(values))
        params = {f"p_{name}": value for name, value in values.items()}
        params["p_id"] = plan.record_id
        changes.setdefault(columns, []).append(params)
    if new_rows:
        statements.insert(CALLS, new_rows)
    for columns, rows in changes.items():
        statements.update_calls(columns, rows)
    _write_children(statements, plans, orphans, verify_new=verify_new)
    return orphans


def _write_children(
    statements: BatchStatements,
    plans: list[RowPlan],
    orphans: list[RowPlan],
    *,
    verify_new: bool,
) -> None:
    """Insert the consent events and recordings of every plan whose call row exists."""
    missing = {plan.record_id for plan in orphans}
    live = [plan for plan in plans if plan.record_id not in missing]
    events = [event.row() for plan in live for event in plan.events]
    recordings = [recording.row() for plan in live for recording in plan.recordings]
    jobs = {
        recording.recording_id: recording.job_row()
        for plan in live
        for recording in plan.recordings
        if recording.analyse
    }
    if verify_new and events:
        events = _not_yet_stored(
            statements, CONSENT_EVENTS, events, key=EVENT_KEY, by="call_record_id"
        )
    if verify_new and recordings:
        recordings = _not_yet_stored(statements, RECORDINGS, recordings, key=("id",), by="id")
    if events:
        statements.insert(CONSENT_EVENTS, events)
    if recordings:
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in recordings:  # an executemany needs the same columns in every row
            shapes.setdefault(tuple(row), []).append(row)
        for rows in shapes.values():
            statements.insert(RECORDINGS, rows)
        queued = [jobs[row["id"]] for row in recordings if row["id"] in jobs]
        if queued:
            statements.insert(ANALYSIS_JOBS, queued)


def _not_yet_stored(
    statements: BatchStatements,
    table: Table,
    rows: list[dict[str, Any]],
    *,
    key: tuple[str, ...],
    by: str,
) -> list[dict[str, Any]]:
    """``rows`` without those an earlier attempt stored in ``table`` with the same values.

    Rows are matched on their ``key`` columns; stored rows are found by ``by``.
    """
    columns = tuple(rows[0])
    lookups = list(dict.fromkeys(row[by] for row in rows))
    stored: dict[tuple[Any, ...], dict[str, Any]] = {}
    for values in _lookup_all(statements, table, columns, by, lookups):
        found = dict(zip(columns, values, strict=True))
        stored[tuple(found[name] for name in key)] = found
    return [row for row in rows if stored.get(tuple(row[name] for name in key)) != row]


_LOOKUP_KEYS = "p_keys"


@lru_cache(maxsize=64)
def _lookup_statement(table: Table, columns: tuple[str, ...], by: str) -> Select[Any]:
    """``columns`` of the rows of ``table`` whose ``by`` is in the list bound as
    :data:`_LOOKUP_KEYS` (an expanding IN). Made once per shape: building a statement
    per batch left reference cycles of expression objects for the cyclic collector,
    whose pauses stop the event loop."""
    key = table.c[by]
    return select(*(table.c[name] for name in columns)).where(
        key.in_(bindparam(_LOOKUP_KEYS, type_=key.type, expanding=True))
    )


@lru_cache(maxsize=64)
def update_statement(columns: tuple[str, ...]) -> Update:
    """The UPDATE of ``calls`` that sets ``columns`` (bound as ``p_<column>``) of row ``p_id``."""
    return (
        update(CALLS)
        .where(CALLS.c.id == bindparam("p_id", type_=CALLS.c.id.type))
        .values({name: bindparam(f"p_{name}", type_=CALLS.c[name].type) for name in columns})
    )


class EngineStatements:
    """:class:`BatchStatements` on a SQLAlchemy connection (sync; in ``run_sync``)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def lookup(
        self, table: Table, columns: tuple[str, ...], by: str, keys: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        result = self.connection.execute(
            _lookup_statement(table, columns, by), {_LOOKUP_KEYS: list(keys)}
        )
        return [tuple(row) for row in result]

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        self.connection.execute(insert(table), rows)

    def update_calls(self, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        self.connection.execute(update_statement(columns), rows)


async def write_plans(
    connection: AsyncConnection, plans: Iterable[RowPlan], *, verify_new: bool
) -> list[RowPlan]:
    """:func:`write_plans_with` on ``connection`` (inside the caller's transaction)."""
    plans = list(plans)
    return await connection.run_sync(
        lambda sync: write_plans_with(EngineStatements(sync), plans, verify_new=verify_new)
    )
