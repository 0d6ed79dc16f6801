"""The record writer's SQLite batches, on a thread and a ``sqlite3`` connection of its own.

Through the engine, each statement of a batch crossed from the event loop to
the SQLite driver's thread and back (aiosqlite), and SQLAlchemy built its
parameters, cache keys and results each time: at 500 calls/s that was about
as much of the gateway's core as SQLite's own work. Here a whole batch is one
hop: the thread opens the transaction, runs every statement of
:func:`~gateway.store.batch.write_plans_with` and commits.

SQLAlchemy still writes every statement (one source of truth for the SQL, its
bind types and the JSON codec of the engine), compiled once per shape with
:func:`~gateway.store.prepared.prepare`; the thread binds the values with the
same processors and runs the SQL on ``sqlite3`` directly. ``BEGIN IMMEDIATE``
takes the write lock when the batch starts, so a busy file is waited for
(busy timeout) instead of failing half-way through a batch.

The calls' rows carry their listing JSON (``calls.listed``, revision 0007),
which triggers wrote after each statement: SQLite built the object with
``json_object`` and rewrote the row (a few KB) a second time, over 40 % of
SQLite's instructions for a call's three statements (callgrind, ad hoc: 484k
against 276k per call). Here the INSERT and UPDATE of ``calls`` set ``listed``
themselves, encoded in Python as the API encodes a row
(:func:`~gateway.store.listing_rows.listing_json`); an UPDATE starts from the
object its batch's lookup read with the row. Since revision 0008 the triggers
write only for a statement that leaves ``listed`` alone (every other writer),
so nothing else changes.

Errors are ``sqlite3``'s own; :func:`gateway.store.errors.is_permanent` sorts
them as it sorts SQLAlchemy's. A failed batch is rolled back; a connection that
cannot even roll back is closed and opened anew for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from typing import Any

import orjson
from sqlalchemy import Table, bindparam, insert, literal_column, select
from sqlalchemy.engine import Dialect

from gateway.store.batch import update_statement, write_plans_with
from gateway.store.engine import SQLITE_PRAGMAS, open_sqlite
from gateway.store.listing_rows import LIST_NAMES, LISTED_JSON, listed_value, listing_json
from gateway.store.models import CALLS
from gateway.store.plan import RowPlan
from gateway.store.prepared import Prepared, prepare

__all__ = ["SqliteStatements", "SqliteWriteThread"]

_Convert = Callable[[Any], Any] | None


def _padded(count: int) -> int:
    """The IN-list length a lookup of ``count`` keys is compiled for: the next power
    of two (the last key repeats), so a few shapes serve every batch size."""
    size = 1
    while size < count:
        size *= 2
    return size


def _python_defaults(table: Table, given: Iterable[str]) -> tuple[tuple[str, Any], ...]:
    """The columns of ``table`` not in ``given`` whose default SQLAlchemy computes in
    Python (a generated id, say), with that default: the database cannot fill those."""
    named = set(given)
    found = []
    for column in table.columns:
        default = column.default
        if column.name in named or default is None or default.is_sequence:
            continue
        found.append((column.name, default))
    return tuple(found)


_LISTED_KEY_COUNT = len(LIST_NAMES)


def _bound(prepared: Prepared, rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Each row's arguments for ``prepared``, every parameter taken from the row and
    processed as :meth:`~gateway.store.prepared.Prepared.arguments` does: one lookup of
    all the values a row, then the few processors (instants, JSON)."""
    names = prepared.names
    if prepared.fixed or not names:
        return [list(prepared.arguments(row)) for row in rows]
    take = itemgetter(*names)
    fixes = [(at, process) for at, process in enumerate(prepared.processors) if process]
    bound = []
    for row in rows:
        values = list(take(row)) if len(names) > 1 else [take(row)]
        for at, process in fixes:
            value = values[at]
            if value is not None:
                values[at] = process(value)
        bound.append(values)
    return bound


def _processors(names: Sequence[str], dialect: Dialect) -> tuple[_Convert, ...]:
    return tuple(CALLS.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)


def _insert_calls_listed(names: tuple[str, ...], dialect: Dialect) -> Prepared:
    """INSERT of ``calls`` rows (values by column name, then the listing object)."""
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {CALLS.name} ({', '.join(quote(name) for name in names)}, {LISTED_JSON}) "
        f"VALUES ({', '.join('?' * (len(names) + 1))})"
    )
    return Prepared(sql, names, _processors(names, dialect), {})


def _update_calls_listed(columns: tuple[str, ...], dialect: Dialect) -> Prepared:
    """UPDATE of ``columns`` of one ``calls`` row (``p_<column>`` values, then the listing
    object, then the id)."""
    quote = dialect.identifier_preparer.quote
    assignments = ", ".join(f"{quote(name)} = ?" for name in columns)
    sql = f"UPDATE {CALLS.name} SET {assignments}, {LISTED_JSON} = ? WHERE id = ?"
    names = tuple(f"p_{name}" for name in columns)
    return Prepared(sql, names, _processors(columns, dialect), {})


class SqliteStatements:
    """:class:`~gateway.store.batch.BatchStatements` on a ``sqlite3`` connection.

    ``shapes`` keeps the compiled statements between batches (the writer's thread owns
    it). ``listing``: the store keeps ``calls.listed``; the statements then set it, and a
    lookup of ``calls`` rows by id reads each row's object too, for their UPDATEs.
    """

    def __init__(
        self,
        connection: sqlite3.Connection,
        dialect: Dialect,
        shapes: dict[Hashable, Any],
        *,
        listing: bool = False,
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self.shapes = shapes
        self.listing = listing
        self.stored_listings: dict[Any, str | None] = {}

    # the one place statements reach the driver
    def run(self, sql: str, arguments: Sequence[Any]) -> list[Any]:
        return self.connection.execute(sql, arguments).fetchall()

    def run_many(self, sql: str, arguments: Sequence[Sequence[Any]]) -> None:
        self.connection.executemany(sql, arguments)

    def lookup(
        self, table: Table, columns: tuple[str, ...], by: str, keys: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        if not keys:
            return []
        size = _padded(len(keys))
        listed = self.listing and table is CALLS and by in columns
        shape = ("lookup", table.name, columns, by, size, listed)
        compiled = self.shapes.get(shape)
        if compiled is None:
            compiled = self._compile_lookup(table, columns, by, size, listed)
            self.shapes[shape] = compiled
        prepared, converts = compiled
        values = {f"k{i}": keys[min(i, len(keys) - 1)] for i in range(size)}
        rows = self.run(prepared.sql, prepared.arguments(values))
        if listed:
            at = columns.index(by)
            for row in rows:
                self.stored_listings[row[at]] = row[-1]
            rows = [row[:-1] for row in rows]
        return [
            tuple(
                value if convert is None or value is None else convert(value)
                for value, convert in zip(row, converts, strict=True)
            )
            for row in rows
        ]

    def _compile_lookup(
        self, table: Table, columns: tuple[str, ...], by: str, size: int, listed: bool
    ) -> tuple[Prepared, tuple[_Convert, ...]]:
        key = table.c[by]
        names = [f"k{i}" for i in range(size)]
        selected: list[Any] = [table.c[name] for name in columns]
        if listed:
            selected.append(literal_column(f"{table.name}.{LISTED_JSON}"))
        statement = select(*selected).where(
            key.in_([bindparam(name, type_=key.type) for name in names])
        )
        dialect = self.dialect
        converts = tuple(
            table.c[name].type.dialect_impl(dialect).result_processor(dialect, None)
            for name in columns
        )
        return prepare(statement, dialect, dict.fromkeys(names)), converts

    def insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        given = tuple(rows[0])
        shape = ("insert", table.name, given)
        compiled = self.shapes.get(shape)
        if compiled is None:
            compiled = self.shapes[shape] = self._compile_insert(table, given)
        prepared, defaults = compiled
        if defaults:
            rows = [dict(row) for row in rows]
            for row in rows:
                for name, default in defaults:
                    row[name] = default.arg(None) if default.is_callable else default.arg
        arguments = _bound(prepared, rows)
        if table is CALLS and self.listing:
            for values, row in zip(arguments, rows, strict=True):
                values.append(listing_json(row))
        self.run_many(prepared.sql, arguments)

    def _compile_insert(
        self, table: Table, given: tuple[str, ...]
    ) -> tuple[Prepared, tuple[tuple[str, Any], ...]]:
        defaults = _python_defaults(table, given)
        names = given + tuple(name for name, _ in defaults)
        if table is CALLS and self.listing:
            return _insert_calls_listed(names, self.dialect), defaults
        statement = insert(table).values(
            {name: bindparam(name, type_=table.c[name].type) for name in names}
        )
        return prepare(statement, self.dialect, dict.fromkeys(names)), defaults

    def update_calls(self, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        listed = self.listing and any(name in LIST_NAMES for name in columns)
        shape = ("update", columns, listed)
        prepared = self.shapes.get(shape)
        if prepared is None:
            if listed:
                prepared = _update_calls_listed(columns, self.dialect)
            else:
                names = ("p_id", *(f"p_{name}" for name in columns))
                prepared = prepare(update_statement(columns), self.dialect, dict.fromkeys(names))
            self.shapes[shape] = prepared
        arguments = _bound(prepared, rows)
        if listed:
            for values, row in zip(arguments, rows, strict=True):
                values.append(self._changed_listing(columns, row))
                values.append(row["p_id"])
        self.run_many(prepared.sql, arguments)

    def _changed_listing(self, columns: tuple[str, ...], row: dict[str, Any]) -> str | None:
        """The listing object of the row ``row`` changes, from the one its lookup read;
        ``None`` (the trigger then writes it) for a row read without one, or with an
        object of other keys (written under another revision)."""
        stored = self.stored_listings.get(row["p_id"])
        if stored is None:
            return None
        listed = orjson.loads(stored)
        if len(listed) != _LISTED_KEY_COUNT:
            return None
        for name in columns:
            if name in listed:
                listed[name] = listed_value(name, row["p_" + name])
        return orjson.dumps(listed).decode()


class SqliteWriteThread:
    """Batches written on one thread with its own ``sqlite3`` connection to ``path``."""

    def __init__(self, path: str, dialect: Dialect, busy_timeout_ms: int) -> None:
        self.path = path
        self.dialect = dialect
        self.busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="callgate-write")
        self._connection: sqlite3.Connection | None = None
        self._listing = False
        self._shapes: dict[Hashable, Any] = {}

    async def write(self, plans: list[RowPlan], *, verify_new: bool) -> list[RowPlan]:
        """Write ``plans`` in one transaction; the plans whose row does not exist."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write, plans, verify_new)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    def _connect(self) -> sqlite3.Connection:
        connection = self._connection
        if connection is None:
            connection = open_sqlite(self.path, self.busy_timeout_ms, SQLITE_PRAGMAS)
            self._listing = _keeps_listing(connection)
            self._connection = connection
        return connection

    def _write(self, plans: list[RowPlan], verify_new: bool) -> list[RowPlan]:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            statements = SqliteStatements(
                connection, self.dialect, self._shapes, listing=self._listing
            )
            orphans = write_plans_with(statements, plans, verify_new=verify_new)
            self._commit(connection)
        except BaseException:
            self._roll_back(connection)
            raise
        return orphans

    def _commit(self, connection: sqlite3.Connection) -> None:
        connection.execute("COMMIT")

    def _roll_back(self, connection: sqlite3.Connection) -> None:
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
        except sqlite3.Error:
            self._close()  # the next attempt opens a new connection

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.close()


def _keeps_listing(connection: sqlite3.Connection) -> bool:
    """Whether the store keeps ``calls.listed`` with triggers that leave a statement's own
    object alone (revision 0008; a SQLite without JSON functions has neither)."""
    found = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?",
        ("calls_listed_on_update",),
    ).fetchone()
    return found is not None and "OLD.listed" in found[0]
