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
from typing import Any

from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.engine import Dialect

from gateway.store.batch import update_statement, write_plans_with
from gateway.store.engine import SQLITE_PRAGMAS, open_sqlite
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


class SqliteStatements:
    """:class:`~gateway.store.batch.BatchStatements` on a ``sqlite3`` connection.

    ``shapes`` keeps the compiled statements between batches (the writer's thread owns it).
    """

    def __init__(
        self, connection: sqlite3.Connection, dialect: Dialect, shapes: dict[Hashable, Any]
    ) -> None:
        self.connection = connection
        self.dialect = dialect
        self.shapes = shapes

    # the one place statements reach the driver
    def run(self, sql: str, arguments: Sequence[Any]) -> list[Any]:
        return self.connection.execute(sql, arguments).fetchall()

    def run_many(self, sql: str, arguments: list[tuple[Any, ...]]) -> None:
        self.connection.executemany(sql, arguments)

    def lookup(
        self, table: Table, columns: tuple[str, ...], by: str, keys: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        if not keys:
            return []
        size = _padded(len(keys))
        shape = ("lookup", table.name, columns, by, size)
        compiled = self.shapes.get(shape)
        if compiled is None:
            compiled = self.shapes[shape] = self._compile_lookup(table, columns, by, size)
        prepared, converts = compiled
        values = {f"k{i}": keys[min(i, len(keys) - 1)] for i in range(size)}
        rows = self.run(prepared.sql, prepared.arguments(values))
        return [
            tuple(
                value if convert is None or value is None else convert(value)
                for value, convert in zip(row, converts, strict=True)
            )
            for row in rows
        ]

    def _compile_lookup(
        self, table: Table, columns: tuple[str, ...], by: str, size: int
    ) -> tuple[Prepared, tuple[_Convert, ...]]:
        key = table.c[by]
        names = [f"k{i}" for i in range(size)]
        statement = select(*(table.c[name] for name in columns)).where(
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
        self.run_many(prepared.sql, [prepared.arguments(row) for row in rows])

    def _compile_insert(
        self, table: Table, given: tuple[str, ...]
    ) -> tuple[Prepared, tuple[tuple[str, Any], ...]]:
        defaults = _python_defaults(table, given)
        names = given + tuple(name for name, _ in defaults)
        statement = insert(table).values(
            {name: bindparam(name, type_=table.c[name].type) for name in names}
        )
        return prepare(statement, self.dialect, dict.fromkeys(names)), defaults

    def update_calls(self, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        shape = ("update", columns)
        prepared = self.shapes.get(shape)
        if prepared is None:
            names = ("p_id", *(f"p_{name}" for name in columns))
            prepared = prepare(update_statement(columns), self.dialect, dict.fromkeys(names))
            self.shapes[shape] = prepared
        self.run_many(prepared.sql, [prepared.arguments(row) for row in rows])


class SqliteWriteThread:
    """Batches written on one thread with its own ``sqlite3`` connection to ``path``."""

    def __init__(self, path: str, dialect: Dialect, busy_timeout_ms: int) -> None:
        self.path = path
        self.dialect = dialect
        self.busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="callgate-write")
        self._connection: sqlite3.Connection | None = None
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
            self._connection = connection
        return connection

    def _write(self, plans: list[RowPlan], verify_new: bool) -> list[RowPlan]:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            statements = SqliteStatements(connection, self.dialect, self._shapes)
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
