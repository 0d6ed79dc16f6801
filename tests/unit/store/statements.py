"""Counting what the record writer sends: statements on the ``calls`` table, inserts into
every table, and commits, on either of its paths.

Through the engine (PostgreSQL), the engine's events show them; on a SQLite file the
writer runs its batches on a ``sqlite3`` connection of its own, whose statements all go
through ``SqliteStatements.run``/``run_many`` and whose commits through
``SqliteWriteThread._commit``: those are wrapped while the log is open.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store.sqlite_writes import SqliteStatements, SqliteWriteThread


@dataclass
class Statement:
    verb: str
    executemany: bool
    rows: int


@dataclass
class StatementLog:
    """Statements touching ``calls``, INSERTs per table and transaction commits, as the
    driver saw them."""

    engine: AsyncEngine
    statements: list[Statement] = field(default_factory=list)
    inserts: list[tuple[str, int]] = field(default_factory=list)
    commits: int = 0
    _restore: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._on_execute)
        event.listen(self.engine.sync_engine, "commit", self._on_commit)
        log = self
        run, run_many = SqliteStatements.run, SqliteStatements.run_many
        commit = SqliteWriteThread._commit

        def logged_run(statements: SqliteStatements, sql: str, arguments: Any) -> Any:
            log._seen(sql, False, 1)
            return run(statements, sql, arguments)

        def logged_run_many(statements: SqliteStatements, sql: str, arguments: Any) -> None:
            log._seen(sql, True, len(arguments))
            run_many(statements, sql, arguments)

        def logged_commit(thread: SqliteWriteThread, connection: Any) -> None:
            commit(thread, connection)
            log.commits += 1

        SqliteStatements.run = logged_run  # type: ignore[method-assign]
        SqliteStatements.run_many = logged_run_many  # type: ignore[method-assign]
        SqliteWriteThread._commit = logged_commit  # type: ignore[method-assign]

        def restore() -> None:
            SqliteStatements.run, SqliteStatements.run_many = run, run_many  # type: ignore[method-assign]
            SqliteWriteThread._commit = commit  # type: ignore[method-assign]

        self._restore.append(restore)

    def close(self) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._on_execute)
        event.remove(self.engine.sync_engine, "commit", self._on_commit)
        while self._restore:
            self._restore.pop()()

    def _on_execute(
        self,
        connection: Any,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        self._seen(statement, executemany, len(parameters) if executemany else 1)

    def _seen(self, statement: str, executemany: bool, rows: int) -> None:
        words = statement.split()
        verb = words[0].upper()
        if verb == "INSERT":
            self.inserts.append((words[2], rows))
        if "calls" in statement:
            self.statements.append(Statement(verb, executemany, rows))

    def _on_commit(self, connection: Any) -> None:
        self.commits += 1

    def verbs(self) -> list[str]:
        return [statement.verb for statement in self.statements]

    def clear(self) -> None:
        self.statements.clear()
        self.inserts.clear()
        self.commits = 0
